package sim

import (
	"bytes"
	"testing"
	"time"
)

// TestEncoderReuseMatchesFreshBuild: reusing a Traces per shape must give
// exactly the bytes of building each trace from scratch.
func TestEncoderReuseMatchesFreshBuild(t *testing.T) {
	for _, enc := range []string{EncodingProto, EncodingJSON} {
		cfg := DefaultConfig()
		cfg.SpanEncoding = enc
		cfg.DeprecatedKeyRatio = 0.3
		cfg.ToolErrorRatio = 0.2
		cfg.Attacks.Kinds = AllAttackKinds
		cfg.Attacks.Interval = time.Minute
		p := newPlanner(cfg, &budget{traces: 3000, events: -1})
		e := newEncoder(cfg)
		n := 0
		for {
			m, ok := p.next()
			if !ok {
				break
			}
			if m.trace == nil {
				continue
			}
			got := e.render(m).Value
			want := marshal(buildTraces(m.trace), enc)
			if !bytes.Equal(got, want) {
				t.Fatalf("%s: trace %d: reused encoder output differs from a fresh build", enc, n)
			}
			n++
		}
		t.Logf("%s: %d traces, %d shapes", enc, n, len(e.shapes))
	}
}
