package event

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
)

// The single-buffer decoder against the one it replaced
// (audit_legacy_test.go): same events, same errors, same messages.

// compareWithLegacy fails t unless the decoder (alone, and through a
// pooled AuditDecoder whose scratch a previous decode has used, copying
// or sharing msg) and the legacy one give the same event or the same
// error text on msg, and msg is left as it was.
func compareWithLegacy(t *testing.T, dec *AuditDecoder, msg []byte) (accepted bool) {
	t.Helper()
	in := bytes.Clone(msg)
	want, wantErr := legacyDecodeAuditEvent(msg, dec.opts, new(legacyAuditScratch))
	for name, got := range map[string]func() (AuditEvent, error){
		"decodeAuditEvent": func() (AuditEvent, error) { return decodeAuditEvent(msg, dec.opts, new(auditScratch), false) },
		"Decode":           func() (AuditEvent, error) { return dec.Decode(msg) },
		"DecodeShared":     func() (AuditEvent, error) { return dec.DecodeShared(msg) },
	} {
		ev, err := got()
		switch {
		case (err == nil) != (wantErr == nil):
			t.Errorf("%s on %q: error %v, legacy %v", name, truncateForLog(msg), err, wantErr)
		case err != nil && (err.Error() != wantErr.Error() ||
			errors.Is(err, errDuplicateKey) != errors.Is(wantErr, errDuplicateKey) ||
			errors.Is(err, errLoneSurrogate) != errors.Is(wantErr, errLoneSurrogate)):
			t.Errorf("%s on %q:\n error  %v\n legacy %v", name, truncateForLog(msg), err, wantErr)
		case err != nil:
			if r, _ := ReasonOf(err); r != mustReason(wantErr) {
				t.Errorf("%s on %q: reason %s, legacy %s", name, truncateForLog(msg), r, mustReason(wantErr))
			}
		case !reflect.DeepEqual(ev, want):
			t.Errorf("%s on %q:\n event  %+v\n legacy %+v", name, truncateForLog(msg), ev, want)
		}
	}
	if !bytes.Equal(in, msg) {
		t.Fatalf("the decoder wrote into its input %q", truncateForLog(in))
	}
	return wantErr == nil
}

func mustReason(err error) Reason {
	r, _ := ReasonOf(err)
	return r
}

// legacyCorpus returns messages that reach every path of the parser:
// generated events (valid, invalid, corrupted), the simulator's, and
// fullEvent, each also pretty-printed and with every key and string
// escaped.
func legacyCorpus(t *testing.T, generated int) [][]byte {
	t.Helper()
	var msgs [][]byte
	for seed := range uint64(generated) {
		g := &eventGen{rand.New(rand.NewPCG(seed, 5))}
		msgs = append(msgs, g.event())
	}
	base := append([][]byte{[]byte(fullEvent), event(nil)}, simAuditEvents(t, 20)...)
	for _, m := range base {
		msgs = append(msgs, m, escapeAll(m), []byte(strings.ReplaceAll(string(m), ",", " ,\n\t")))
	}
	return msgs
}

// escapeAll writes every letter a-z inside strings as a \u escape
// (upper-case hex for odd ones) and every '/' as "\/": the escaped path
// for keys and values alike.
func escapeAll(m []byte) []byte {
	var out []byte
	in := false
	for i := 0; i < len(m); i++ {
		c := m[i]
		switch {
		case c == '\\' && in:
			n := 2 // an escape stays as it is
			if m[i+1] == 'u' {
				n = 6
			}
			out = append(out, m[i:i+n]...)
			i += n - 1
			continue
		case c == '"':
			in = !in
		case in && c >= 'a' && c <= 'z':
			hex := "0123456789abcdef"
			if c%2 == 1 {
				hex = "0123456789ABCDEF"
			}
			out = append(out, '\\', 'u', '0', '0', hex[c>>4], hex[c&15])
			continue
		case in && c == '/':
			out = append(out, '\\', '/')
			continue
		}
		out = append(out, c)
	}
	return out
}

func TestAuditDecoderMatchesLegacy(t *testing.T) {
	dec, err := NewAuditDecoder(agreeOptions())
	if err != nil {
		t.Fatal(err)
	}
	n := 5000
	if testing.Short() {
		n = 500
	}
	accepted := 0
	for _, m := range legacyCorpus(t, n) {
		if compareWithLegacy(t, dec, m) {
			accepted++
		}
		if t.Failed() {
			t.FailNow()
		}
	}
	if accepted < n/10 {
		t.Errorf("only %d accepted: the corpus misses the valid paths", accepted)
	}
}

// TestAuditDecoderMatchesLegacyOnDamage truncates a simulator event,
// fullEvent and a small event with every string escaped at every byte, and overwrites every
// byte with each JSON delimiter and a few more: every syntax error at
// every offset, in keys, values and between them.
func TestAuditDecoderMatchesLegacyOnDamage(t *testing.T) {
	dec, err := NewAuditDecoder(agreeOptions())
	if err != nil {
		t.Fatal(err)
	}
	bases := [][]byte{[]byte(fullEvent), simAuditEvents(t, 1)[0], escapeAll(event(nil))}
	const bytesToTry = "\"\\{}[],: \x00\x1fu0a-.eE+tnZ\xc3\x80\xff"
	for _, b := range bases {
		for i := range len(b) {
			compareWithLegacy(t, dec, b[:i])
			m := bytes.Clone(b)
			for _, c := range []byte(bytesToTry) {
				m[i] = c
				compareWithLegacy(t, dec, m)
			}
			if t.Failed() {
				t.FailNow()
			}
		}
	}
}

func FuzzAuditDecoderMatchesLegacy(f *testing.F) {
	f.Add([]byte(fullEvent))
	f.Add(escapeAll([]byte(fullEvent)))
	f.Add([]byte(`{"attributes":{"a":"\ud83d\ude00","b":1e400,"c":-0.0,"a":true}}`))
	f.Add([]byte(`{"t\u0073":"2026-03-14T15:00:00Z","tenant_id":"\u00e9\n","tenant_id":"b"}`))
	for seed := range uint64(8) {
		g := &eventGen{rand.New(rand.NewPCG(seed, 6))}
		f.Add(g.event())
	}
	dec, err := NewAuditDecoder(agreeOptions())
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		compareWithLegacy(t, dec, data)
	})
}
