package event_test

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/agentaudit/agentaudit/internal/event"
	"github.com/agentaudit/agentaudit/internal/event/eventtest"
)

// Every message of the shared corpus (eventtest, also run through ingest
// and the detector) is rejected with its reason, appends nothing and says
// why in a short valid text; the valid messages it is built from pass.
func TestDecodeSpansRejects(t *testing.T) {
	now := time.Date(2026, 3, 14, 15, 9, 26, 535897932, time.UTC)
	for _, c := range eventtest.RejectedSpans(now) {
		t.Run(c.Name, func(t *testing.T) {
			opts := eventtest.Options(now)
			if c.Opts != nil {
				c.Opts(&opts)
			}
			dst := make([]event.Span, 1, 8)
			dst[0].Name = "already there"
			rows, st, err := event.DecodeSpans(c.Msg, c.Encoding, opts, dst)
			r, ok := event.ReasonOf(err)
			if !ok || r != c.Reason {
				t.Fatalf("err = %v, want reason %s", err, c.Reason)
			}
			if len(rows) != 1 || rows[0].Name != "already there" || st != (event.Stats{}) {
				t.Errorf("rows were appended on error: %d rows, stats %+v", len(rows), st)
			}
			if msg := err.Error(); !strings.HasPrefix(msg, string(c.Reason)+": ") || !utf8.ValidString(msg) || len(msg) > 300 {
				t.Errorf("error text %q", msg)
			}
			t.Log(err)
		})
	}
	for _, c := range eventtest.ValidSpans(now) {
		rows, _, err := event.DecodeSpans(c.Msg, c.Encoding, eventtest.Options(now), nil)
		if err != nil || len(rows) == 0 {
			t.Errorf("%s: %d rows, %v", c.Name, len(rows), err)
		}
	}
	seen := map[event.Reason]bool{}
	for _, c := range eventtest.RejectedSpans(now) {
		seen[c.Reason] = true
	}
	for _, r := range event.Reasons() {
		if !seen[r] && r != event.ReasonSchemaViolation && r != event.ReasonInvalidJSON {
			t.Errorf("no span message in the corpus is rejected for %s", r)
		}
	}
}

// CheckSpansProto is DecodeSpans' first pass: where it rejects a corpus
// message it gives the message's reason, and on the valid messages it
// counts the spans DecodeSpans decodes.
func TestCheckSpansProtoIsTheFirstPass(t *testing.T) {
	now := time.Date(2026, 3, 14, 15, 9, 26, 535897932, time.UTC)
	rejected := 0
	for _, c := range eventtest.RejectedSpans(now) {
		if c.Encoding != event.EncodingProto {
			continue
		}
		if _, err := event.CheckSpansProto(c.Msg); err != nil {
			rejected++
			if r, _ := event.ReasonOf(err); r != c.Reason {
				t.Errorf("%s: CheckSpansProto: %v, DecodeSpans: %s", c.Name, err, c.Reason)
			}
		}
	}
	if rejected < 5 {
		t.Errorf("CheckSpansProto rejected %d corpus messages: the comparison proves little", rejected)
	}
	for _, c := range eventtest.ValidSpans(now) {
		if c.Encoding != event.EncodingProto {
			continue
		}
		rows, _, err := event.DecodeSpans(c.Msg, c.Encoding, eventtest.Options(now), nil)
		if n, cerr := event.CheckSpansProto(c.Msg); err != nil || cerr != nil || n != len(rows) {
			t.Errorf("%s: CheckSpansProto %d spans (%v), DecodeSpans %d (%v)", c.Name, n, cerr, len(rows), err)
		}
	}
}
