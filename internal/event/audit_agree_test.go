package event

import (
	"encoding/json"
	"errors"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The built-in audit event validator against the JSON Schema library.

// agreeOptions accept any timestamp the generator writes, so only the
// schema decides.
func agreeOptions() EventOptions {
	o := testEventOptions()
	o.Limits.MaxAge = 290 * 365 * 24 * time.Hour
	o.Limits.MaxFuture = 290 * 365 * 24 * time.Hour
	return o
}

// compareValidators reports whether the two validators agree on msg:
// both accept, or both reject with the same reason — except where the
// built-in one is deliberately stricter (duplicate keys, lone surrogates,
// signs in date-time numbers).
func compareValidators(t *testing.T, dec *AuditDecoder, msg []byte) (accepted bool) {
	t.Helper()
	refErr := dec.ValidateSchema(msg)
	_, err := decodeAuditEvent(msg, dec.opts, new(auditScratch), false)
	if r, _ := ReasonOf(err); r == ReasonTimestampOutOfRange {
		err = nil // not a schema matter
	}
	if errors.Is(err, errDuplicateKey) || errors.Is(err, errLoneSurrogate) {
		return false
	}
	fr, _ := ReasonOf(err)
	rr, _ := ReasonOf(refErr)
	if err != nil && refErr == nil && fr == ReasonSchemaViolation && strings.HasPrefix(err.(*Error).Err.Error(), "/ts:") {
		var m map[string]any
		if json.Unmarshal(msg, &m) == nil {
			if s, ok := m["ts"].(string); ok && signedDateTimeNumber(s) {
				return false
			}
		}
	}
	if (err == nil) != (refErr == nil) || fr != rr {
		t.Errorf("validators disagree on %q:\n built-in: %v\n library:  %v", truncateForLog(msg), err, refErr)
	}
	return err == nil
}

// signedDateTimeNumber reports whether a time-of-day or offset number of s
// starts with a sign, which the library's strconv.Atoi accepts ("+1", "-0").
func signedDateTimeNumber(s string) bool {
	for _, i := range []int{11, 14, 17} {
		if len(s) > i && (s[i] == '+' || s[i] == '-') {
			return true
		}
	}
	if n := len(s); n >= 6 && (s[n-6] == '+' || s[n-6] == '-') {
		return s[n-5] == '+' || s[n-5] == '-' || s[n-2] == '+' || s[n-2] == '-'
	}
	return false
}

func truncateForLog(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + "..."
	}
	return string(b)
}

type eventGen struct{ r *rand.Rand }

func (g *eventGen) pick(n int) int        { return g.r.IntN(n) }
func (g *eventGen) chance(p float64) bool { return g.r.Float64() < p }

func (g *eventGen) oneOf(vs ...any) any { return vs[g.pick(len(vs))] }

func (g *eventGen) dateTime() string {
	base := g.oneOf(
		"2026-03-14T15:00:00Z", "2026-03-14T15:00:00.123456789Z", "2026-03-14t15:00:00.5z",
		"2026-03-14T16:30:00+01:30", "2026-03-14T10:00:00-05:00", "2024-02-29T23:59:60Z",
		"2026-03-13T23:59:60Z", "2026-03-14T01:59:60+02:00", "2026-03-14T00:59:60+01:00",
		"1999-12-31T23:59:59.999999999999+00:00", "2026-03-14T15:00:00.Z", "2026-02-30T00:00:00Z",
		"2026-03-14 15:00:00Z", "2026-03-14T15:00:00", "2026-3-14T15:00:00Z", "0000-01-01T00:00:00Z",
		"2100-02-29T00:00:00Z", "2000-02-29T00:00:00Z", "2026-03-14T24:00:00Z", "2026-03-14T15:00:00+24:00",
		"2026-03-14T23:58:60Z", "2026-03-14T22:59:60Z", "2026-03-15T00:00:60+00:01", "2026-03-14T23:59:60-00:01",
		"2026-03-14T23:59:61Z", "2026-03-14T15:00:00+23:59", "2026-03-14T15:00:00-23:60",
	).(string)
	b := []byte(base)
	for range g.pick(3) {
		const chars = "0123456789+-:.TtZz 9"
		b[g.pick(len(b))] = chars[g.pick(len(chars))]
	}
	return string(b)
}

func (g *eventGen) uuid() string {
	u := []byte(g.oneOf(
		"0b8f6a3e-54c2-4d7e-9a61-2f0c4e8d9b17", "0B8F6A3E-54C2-4D7E-9A61-2F0C4E8D9B17",
		"0b8f6a3e54c24d7e9a612f0c4e8d9b17", "{0b8f6a3e-54c2-4d7e-9a61-2f0c4e8d9b17}",
		"urn:uuid:0b8f6a3e-54c2-4d7e-9a61-2f0c4e8d9b17", "00000000-0000-0000-0000-000000000000",
	).(string))
	if g.chance(0.3) {
		u[g.pick(len(u))] = "0aG-z"[g.pick(5)]
	}
	return string(u)
}

func (g *eventGen) str() any {
	switch g.pick(12) {
	case 0:
		return ""
	case 1:
		return strings.Repeat("é", 256)
	case 2:
		return strings.Repeat("x", 257)
	case 3:
		return strings.Repeat("y", 512+g.pick(2))
	case 4:
		return strings.Repeat("z", 2048+g.pick(2))
	case 5:
		return "sess\u00e9ion/\"q\"\n"
	case 6:
		return strings.Repeat("ab", 32)
	case 7:
		return "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
	case 8:
		return "4bf92f3577b34da6a3ce929d0e0e4736"
	case 9:
		return "00f067aa0ba902b7"
	}
	return "v" + strconv.Itoa(g.pick(100))
}

func (g *eventGen) anyValue(depth int) any {
	switch g.pick(9) {
	case 0:
		return nil
	case 1:
		return g.chance(0.5)
	case 2:
		return json.Number(g.oneOf("0", "-1", "1.5e3", "12345678901234567890", "0.0").(string))
	case 3:
		if depth < 2 {
			return []any{g.anyValue(depth + 1)}
		}
	case 4:
		if depth < 2 {
			return map[string]any{"k": g.anyValue(depth + 1)}
		}
	}
	return g.str()
}

func (g *eventGen) scopes() any {
	if g.chance(0.1) {
		return g.anyValue(0)
	}
	n := g.pick(4)
	if g.chance(0.05) {
		n = 255 + g.pick(3)
	}
	s := make([]any, n)
	for i := range s {
		if g.chance(0.05) {
			s[i] = g.anyValue(1)
		} else {
			s[i] = g.oneOf("crm:read", "mail:send", "", strings.Repeat("s", 256+g.pick(2))).(string)
		}
	}
	return s
}

func (g *eventGen) attributes() any {
	if g.chance(0.05) {
		return g.anyValue(0)
	}
	n := g.pick(5)
	if g.chance(0.05) {
		n = 127 + g.pick(3)
	}
	m := map[string]any{}
	for i := range n {
		k := "k" + strconv.Itoa(i)
		if g.chance(0.03) {
			k = strings.Repeat("n", 256+g.pick(2))
		}
		switch g.pick(5) {
		case 0:
			m[k] = g.anyValue(1)
		case 1:
			m[k] = json.Number("42")
		case 2:
			m[k] = g.chance(0.5)
		default:
			m[k] = g.str()
		}
	}
	return m
}

// fieldValue returns a value for field f: usually valid, sometimes not.
func (g *eventGen) fieldValue(f string, valid bool) any {
	if !valid && g.chance(0.3) {
		return g.anyValue(0)
	}
	if valid {
		switch f {
		case "event_id":
			return g.oneOf("0b8f6a3e-54c2-4d7e-9a61-2f0c4e8d9b17", "0B8F6A3E-54C2-4D7E-9A61-2F0C4E8D9B17")
		case "ts":
			return g.oneOf("2026-03-14T15:00:00.5Z", "2026-03-14T16:30:00+01:30", "2024-02-29T23:59:60Z")
		case "token_type":
			return g.oneOf("session", "oauth", "m2m", "api_key")
		case "policy_decision":
			return g.oneOf("allow", "deny")
		case "schema_version":
			return "1"
		case "delegation_scope", "required_scopes":
			return []string{"crm:read", "mail:send"}[:g.pick(3)]
		case "attributes":
			return map[string]any{"ip": "10.0.0.1", "n": json.Number("-1.5e3"), "ok": true}
		case "tool_params_hash":
			return "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
		case "trace_id":
			return g.oneOf("", "4bf92f3577b34da6a3ce929d0e0e4736")
		case "span_id":
			return g.oneOf("", "00f067aa0ba902b7")
		}
		return g.oneOf("x", "é", strings.Repeat("é", 256))
	}
	switch f {
	case "event_id":
		return g.uuid()
	case "ts":
		return g.dateTime()
	case "token_type":
		return g.oneOf("session", "oauth", "m2m", "api_key", "Session", "").(string)
	case "policy_decision":
		return g.oneOf("allow", "deny", "DENY").(string)
	case "schema_version":
		return g.oneOf("1", "1", "2", json.Number("1")).(any)
	case "delegation_scope", "required_scopes":
		return g.scopes()
	case "attributes":
		return g.attributes()
	}
	return g.str()
}

var eventFields = []string{
	"schema_version", "event_id", "ts", "tenant_id", "agent_id", "parent_identity", "token_id",
	"token_type", "delegation_scope", "required_scopes", "tool_name", "tool_params_hash", "resource",
	"resource_tenant_id", "policy_decision", "trace_id", "span_id", "attributes",
}

func (g *eventGen) event() []byte {
	m := map[string]any{}
	validRate := g.oneOf(1.0, 1.0, 0.97, 0.9, 0.7).(float64)
	for _, f := range eventFields {
		required := requiredEventFields&(1<<eventField([]byte(f))) != 0
		if required || g.chance(0.5) {
			m[f] = g.fieldValue(f, g.chance(validRate))
		}
	}
	if g.chance(0.1) {
		delete(m, eventFields[g.pick(len(eventFields))])
	}
	if g.chance(0.05) {
		m[g.oneOf("tool_params", "extra", "").(string)] = g.anyValue(0)
	}
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	if g.chance(0.15) {
		b = g.corrupt(b)
	}
	return b
}

// corrupt damages the JSON text: truncation, stray characters, escapes,
// whitespace, duplicate keys, surrogates.
func (g *eventGen) corrupt(b []byte) []byte {
	s := string(b)
	switch g.pick(8) {
	case 0:
		return b[:g.pick(len(b)+1)]
	case 1:
		i := g.pick(len(b) + 1)
		const stray = "{}[],:\"\\ 0tfn-e."
		return []byte(s[:i] + string(stray[g.pick(len(stray))]) + s[i:])
	case 2:
		return []byte(strings.Replace(s, "a", `\u0061`, -1))
	case 3:
		return []byte(" \t\n" + strings.ReplaceAll(s, ",", " ,\r\n ") + "\n")
	case 4:
		return []byte(strings.Replace(s, "{", `{"tenant_id":"dup",`, 1))
	case 5:
		return []byte(strings.Replace(s, `"v`, `"\ud83d\ude00\ud800`, 1))
	case 6:
		return []byte(strings.Replace(s, `"v`, `"\ud83d\ude00`, 1))
	}
	return []byte(strings.Replace(s, `"`, `'`, 1))
}

func TestAuditValidatorAgreesWithJSONSchema(t *testing.T) {
	dec, err := NewAuditDecoder(agreeOptions())
	if err != nil {
		t.Fatal(err)
	}
	n := 20000
	if testing.Short() {
		n = 2000
	}
	accepted := 0
	for seed := range uint64(n) {
		g := &eventGen{rand.New(rand.NewPCG(seed, 2))}
		if compareValidators(t, dec, g.event()) {
			accepted++
		}
		if t.Failed() {
			t.Fatalf("seed %d", seed)
		}
	}
	t.Logf("%d of %d generated events valid", accepted, n)
	if accepted < n/10 {
		t.Errorf("generator too destructive: %d of %d valid", accepted, n)
	}
}
