package sim_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.uber.org/goleak"

	"github.com/agentaudit/agentaudit/internal/kafkabroker"
	"github.com/agentaudit/agentaudit/internal/sim"
)

// One in-process Kafka broker per test binary, started on first use.
var broker struct {
	once sync.Once
	b    *kafkabroker.Broker
	err  error
}

func testBroker(t *testing.T) *kafkabroker.Broker {
	t.Helper()
	broker.once.Do(func() { broker.b, broker.err = kafkabroker.StartFake(kafkabroker.FakeOptions{}) })
	if broker.err != nil {
		t.Fatalf("start kfake: %v", broker.err)
	}
	return broker.b
}

func TestMain(m *testing.M) {
	code := m.Run()
	if broker.b != nil {
		if err := broker.b.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "close broker:", err)
			code = 1
		}
	}
	// kfake's Close does not wait for its connection goroutines; goleak.Find
	// retries with backoff, which covers that without ignoring anything.
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// scale shrinks test sizes under the race detector, which is ~10× slower.
func scale(n int) int {
	if raceEnabled {
		return max(1, n/5)
	}
	return n
}

// auditEvent is the decoded form of an audit event (schema v1).
type auditEvent struct {
	SchemaVersion    string         `json:"schema_version"`
	EventID          string         `json:"event_id"`
	TS               time.Time      `json:"ts"`
	TenantID         string         `json:"tenant_id"`
	AgentID          string         `json:"agent_id"`
	ParentIdentity   string         `json:"parent_identity"`
	TokenID          string         `json:"token_id"`
	TokenType        string         `json:"token_type"`
	DelegationScope  []string       `json:"delegation_scope"`
	RequiredScopes   []string       `json:"required_scopes"`
	ToolName         string         `json:"tool_name"`
	ToolParamsHash   string         `json:"tool_params_hash"`
	Resource         string         `json:"resource"`
	ResourceTenantID string         `json:"resource_tenant_id"`
	PolicyDecision   string         `json:"policy_decision"`
	TraceID          string         `json:"trace_id"`
	SpanID           string         `json:"span_id"`
	Attributes       map[string]any `json:"attributes"`
}

func (e auditEvent) parentScopes() []string {
	s, _ := e.Attributes["delegation.parent_scope"].(string)
	return strings.Fields(s)
}

func decodeEvent(t testing.TB, m sim.Message) auditEvent {
	t.Helper()
	var e auditEvent
	dec := json.NewDecoder(bytes.NewReader(m.Value))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		t.Fatalf("decode event %s: %v", m.Value, err)
	}
	return e
}

func decodeTraces(t testing.TB, m sim.Message, encoding string) ptrace.Traces {
	t.Helper()
	var (
		td  ptrace.Traces
		err error
	)
	if encoding == sim.EncodingJSON {
		td, err = (&ptrace.JSONUnmarshaler{}).UnmarshalTraces(m.Value)
	} else {
		td, err = (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(m.Value)
	}
	if err != nil {
		t.Fatalf("decode traces: %v", err)
	}
	return td
}

// take returns the next n messages of s.
func take(t testing.TB, s *sim.Sim, n int) []sim.Message {
	t.Helper()
	out := make([]sim.Message, 0, n)
	for len(out) < n {
		m, ok := s.Next()
		if !ok {
			t.Fatalf("sim ended after %d messages, want %d", len(out), n)
		}
		out = append(out, m)
	}
	return out
}

func newSim(t testing.TB, cfg sim.Config) *sim.Sim {
	t.Helper()
	s, err := sim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// allAttacks is a config with every attack kind on, at a pace that keeps
// tests short.
func allAttacks() sim.Config {
	cfg := sim.DefaultConfig()
	cfg.Attacks.Kinds = sim.AllAttackKinds
	cfg.Attacks.Interval = 4 * time.Minute
	cfg.Attacks.Warmup = 30 * time.Second
	cfg.Attacks.Quiet = 3 * time.Minute
	return cfg
}
