package integrity

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"hash/crc32"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/agentaudit/agentaudit/internal/event"
)

// LeafFormat names the canonical encoding below; it is part of the encoding,
// so a future format can never produce the same leaf bytes.
const LeafFormat = "agentaudit.audit_event.v1"

// fieldNames are the stored fields of an audit_events row that a leaf
// covers, in the order of the canonical encoding (sorted, as JSON object
// keys are). ingested_at is not covered: the server sets it.
var fieldNames = [...]string{
	"agent_id", "attributes", "delegation_scope", "event_id", "parent_identity",
	"policy_decision", "required_scopes", "resource", "resource_tenant_id",
	"schema_version", "span_id", "src_index", "src_offset", "src_partition",
	"tenant_id", "token_id", "token_type", "tool_name", "tool_params_hash",
	"trace_id", "ts",
}

// FieldDigestSize is the number of bytes of field_digest per field.
const FieldDigestSize = 2

// Canonical returns the canonical encoding of an audit event's stored
// fields, the bytes a leaf hashes. It is JSON with a fixed shape, so that
// the same event gives the same bytes whether it was decoded from Kafka or
// read back from ClickHouse:
//
//   - one object, keys sorted: every field of fieldNames plus
//     "leaf_format": LeafFormat; no insignificant whitespace;
//   - strings as encoding/json writes them (HTML characters escaped); a
//     string that is not valid UTF-8 (which ingest never stores, but a
//     tampered row may hold) becomes {"invalid_utf8_base64":"..."} so the
//     encoding stays injective instead of folding bytes into U+FFFD;
//   - ts as RFC 3339 in UTC with exactly nine fractional digits;
//   - arrays as stored, in order, nil as []; attributes as an object with
//     sorted keys, nil as {};
//   - event_id in its canonical lower-case UUID form; integers in decimal.
func Canonical(ev *event.AuditEvent) []byte {
	var e leafEncoder
	return e.encode(ev)
}

// LeafHash is the RFC 6962 leaf hash of Canonical(ev).
func LeafHash(ev *event.AuditEvent) []byte {
	return rfc6962.DefaultHasher.HashLeaf(Canonical(ev))
}

// FieldDigest returns FieldDigestSize bytes of the CRC-32 of each field's
// canonical value, in fieldNames order. Stored beside the leaf hash, it lets
// verify name which field of a modified row changed. It is a diagnostic
// hint, not a security property (the leaf hash is): a cheap checksum is
// enough, and a change of one field is missed by the hint with probability
// 2^-16, in which case the row is still reported as modified.
func FieldDigest(ev *event.AuditEvent) []byte {
	var e leafEncoder
	e.encode(ev)
	return e.appendDigest(nil)
}

// leafEncoder writes canonical encodings into a buffer it reuses (sealing
// encodes every stored event: no allocation per event) and remembers where
// each field's value is, for the field digest.
type leafEncoder struct {
	buf []byte
	val [len(fieldNames)][2]int // start and end of each field's value in buf
}

// encode returns Canonical(ev), valid until the next call.
func (e *leafEncoder) encode(ev *event.AuditEvent) []byte {
	b := append(e.buf[:0], '{')
	for i, name := range fieldNames {
		if i > 0 {
			b = append(b, ',')
		}
		if name == "parent_identity" { // "leaf_format" sorts right before it
			b = append(b, `"leaf_format":"`+LeafFormat+`",`...)
		}
		b = append(b, '"')
		b = append(b, name...)
		b = append(b, '"', ':')
		start := len(b)
		switch i {
		case 0:
			b = appendJSONString(b, ev.AgentID)
		case 1:
			b = appendJSONMap(b, ev.Attributes)
		case 2:
			b = appendJSONArray(b, ev.DelegationScope)
		case 3:
			b = appendUUID(b, ev.EventID)
		case 4:
			b = appendJSONString(b, ev.ParentIdentity)
		case 5:
			b = appendJSONString(b, ev.PolicyDecision)
		case 6:
			b = appendJSONArray(b, ev.RequiredScopes)
		case 7:
			b = appendJSONString(b, ev.Resource)
		case 8:
			b = appendJSONString(b, ev.ResourceTenantID)
		case 9:
			b = appendJSONString(b, ev.SchemaVersion)
		case 10:
			b = appendJSONString(b, ev.SpanID)
		case 11:
			b = strconv.AppendUint(b, uint64(ev.SrcIndex), 10)
		case 12:
			b = strconv.AppendUint(b, ev.SrcOffset, 10)
		case 13:
			b = strconv.AppendUint(b, uint64(ev.SrcPartition), 10)
		case 14:
			b = appendJSONString(b, ev.TenantID)
		case 15:
			b = appendJSONString(b, ev.TokenID)
		case 16:
			b = appendJSONString(b, ev.TokenType)
		case 17:
			b = appendJSONString(b, ev.ToolName)
		case 18:
			b = appendJSONString(b, ev.ToolParamsHash)
		case 19:
			b = appendJSONString(b, ev.TraceID)
		case 20:
			b = appendTimestamp(b, ev.TS)
		}
		e.val[i] = [2]int{start, len(b)}
	}
	b = append(b, '}')
	e.buf = b
	return b
}

// leafAndDigest returns LeafHash(ev) and FieldDigest(ev), encoding the
// fields once.
func (e *leafEncoder) leafAndDigest(ev *event.AuditEvent) ([]byte, []byte) {
	h := rfc6962.DefaultHasher.HashLeaf(e.encode(ev))
	return h, e.appendDigest(make([]byte, 0, len(fieldNames)*FieldDigestSize))
}

// appendDigest appends FieldDigest of the last encoded event.
func (e *leafEncoder) appendDigest(out []byte) []byte {
	for _, v := range e.val {
		c := crc32.ChecksumIEEE(e.buf[v[0]:v[1]])
		out = append(out, byte(c>>8), byte(c))
	}
	return out
}

// changedFields compares two field digests and names the fields that
// differ; nil when the digests are malformed or all equal.
func changedFields(stored, actual []byte) []string {
	if len(stored) != len(actual) || len(stored) != len(fieldNames)*FieldDigestSize {
		return nil
	}
	var out []string
	for i := range fieldNames {
		a, b := stored[i*FieldDigestSize:(i+1)*FieldDigestSize], actual[i*FieldDigestSize:(i+1)*FieldDigestSize]
		if string(a) != string(b) {
			out = append(out, fieldNames[i])
		}
	}
	return out
}

// appendUUID appends the quoted canonical (lower-case, hyphenated) form.
func appendUUID(b []byte, u uuid.UUID) []byte {
	b = append(b, '"')
	b = hex.AppendEncode(b, u[0:4])
	b = append(b, '-')
	b = hex.AppendEncode(b, u[4:6])
	b = append(b, '-')
	b = hex.AppendEncode(b, u[6:8])
	b = append(b, '-')
	b = hex.AppendEncode(b, u[8:10])
	b = append(b, '-')
	b = hex.AppendEncode(b, u[10:16])
	return append(b, '"')
}

// appendTimestamp appends the quoted RFC 3339 UTC form with nine fractional
// digits, as time's "2006-01-02T15:04:05.000000000Z07:00" layout writes it.
func appendTimestamp(b []byte, t time.Time) []byte {
	t = t.UTC()
	year, month, day := t.Date()
	if year < 0 || year > 9999 { // not storable in ClickHouse; keep time's own form
		b = append(b, '"')
		b = t.AppendFormat(b, "2006-01-02T15:04:05.000000000Z07:00")
		return append(b, '"')
	}
	hour, minute, sec := t.Clock()
	b = append(b, '"')
	b = appendDigits(b, year, 4)
	b = append(b, '-')
	b = appendDigits(b, int(month), 2)
	b = append(b, '-')
	b = appendDigits(b, day, 2)
	b = append(b, 'T')
	b = appendDigits(b, hour, 2)
	b = append(b, ':')
	b = appendDigits(b, minute, 2)
	b = append(b, ':')
	b = appendDigits(b, sec, 2)
	b = append(b, '.')
	b = appendDigits(b, t.Nanosecond(), 9)
	return append(b, 'Z', '"')
}

// appendDigits appends v (≥ 0) in decimal, zero-padded to width digits.
func appendDigits(b []byte, v, width int) []byte {
	n := len(b)
	for range width {
		b = append(b, '0')
	}
	for i := len(b) - 1; i >= n; i-- {
		b[i] = byte('0' + v%10)
		v /= 10
	}
	return b
}

// jsonPlain reports whether encoding/json writes s as itself between
// quotes: ASCII without control characters, '"', '\\', '<', '>' or '&'.
// Eight bytes at a time: each test below is non-zero exactly when some byte
// of x has the property (bytes below n: (x - n·lsb) &^ x & msb, for
// n ≤ 0x80; bytes equal to c: those below 1 after XOR with c·lsb).
func jsonPlain(s string) bool {
	const lsb, msb = 0x0101010101010101, 0x8080808080808080
	below := func(x, n uint64) uint64 { return (x - n*lsb) &^ x & msb }
	i := 0
	for ; i+8 <= len(s); i += 8 {
		x := uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
			uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
		if x&msb|below(x, 0x20)|below(x^('"'*lsb), 1)|below(x^('\\'*lsb), 1)|
			below(x^('<'*lsb), 1)|below(x^('>'*lsb), 1)|below(x^('&'*lsb), 1) != 0 {
			return false
		}
	}
	for ; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x80 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

// appendJSONString appends s as encoding/json writes it (HTML characters
// escaped), or {"invalid_utf8_base64":...} when s is not valid UTF-8.
func appendJSONString(dst []byte, s string) []byte {
	// Fast path, byte-identical to encoding/json: nothing to escape.
	plain := jsonPlain(s)
	if plain {
		dst = append(dst, '"')
		dst = append(dst, s...)
		return append(dst, '"')
	}
	if !utf8.ValidString(s) {
		dst = append(dst, `{"invalid_utf8_base64":"`...)
		dst = base64.StdEncoding.AppendEncode(dst, []byte(s))
		return append(dst, `"}`...)
	}
	j, _ := json.Marshal(s) // a valid string always marshals
	return append(dst, j...)
}

func appendJSONArray(b []byte, a []string) []byte {
	b = append(b, '[')
	for i, s := range a {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, s)
	}
	return append(b, ']')
}

func appendJSONMap(b []byte, m map[string]string) []byte {
	var kbuf [32]string
	keys := kbuf[:0]
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, k)
		b = append(b, ':')
		b = appendJSONString(b, m[k])
	}
	return append(b, '}')
}
