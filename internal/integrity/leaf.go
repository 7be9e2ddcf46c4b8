package integrity

import (
	"encoding/base64"
	"encoding/json"
	"hash/crc32"
	"slices"
	"strconv"
	"unicode/utf8"

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
	vals := fieldValues(ev)
	return canonicalOf(&vals)
}

func canonicalOf(vals *[len(fieldNames)][]byte) []byte {
	n := 2 + len(`"leaf_format":`) + len(LeafFormat) + 3
	for i, v := range vals {
		n += len(fieldNames[i]) + 4 + len(v)
	}
	b := make([]byte, 0, n)
	b = append(b, '{')
	for i, v := range vals {
		if i > 0 {
			b = append(b, ',')
		}
		if fieldNames[i] == "parent_identity" { // "leaf_format" sorts right before it
			b = append(b, `"leaf_format":"`+LeafFormat+`",`...)
		}
		b = append(b, '"')
		b = append(b, fieldNames[i]...)
		b = append(b, '"', ':')
		b = append(b, v...)
	}
	return append(b, '}')
}

// LeafHash is the RFC 6962 leaf hash of Canonical(ev).
func LeafHash(ev *event.AuditEvent) []byte {
	return rfc6962.DefaultHasher.HashLeaf(Canonical(ev))
}

// leafAndDigest returns LeafHash(ev) and FieldDigest(ev), encoding the
// fields once.
func leafAndDigest(ev *event.AuditEvent) ([]byte, []byte) {
	vals := fieldValues(ev)
	return rfc6962.DefaultHasher.HashLeaf(canonicalOf(&vals)), digestOf(&vals)
}

// FieldDigest returns FieldDigestSize bytes of the CRC-32 of each field's
// canonical value, in fieldNames order. Stored beside the leaf hash, it lets
// verify name which field of a modified row changed. It is a diagnostic
// hint, not a security property (the leaf hash is): a cheap checksum is
// enough, and a change of one field is missed by the hint with probability
// 2^-16, in which case the row is still reported as modified.
func FieldDigest(ev *event.AuditEvent) []byte {
	vals := fieldValues(ev)
	return digestOf(&vals)
}

func digestOf(vals *[len(fieldNames)][]byte) []byte {
	out := make([]byte, 0, len(vals)*FieldDigestSize)
	for _, v := range vals {
		c := crc32.ChecksumIEEE(v)
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

// fieldValues encodes each field of fieldNames as canonical JSON, all
// into one buffer (one allocation for the common event).
func fieldValues(ev *event.AuditEvent) [len(fieldNames)][]byte {
	n := 256 + len(ev.AgentID) + len(ev.ParentIdentity) + len(ev.Resource) + len(ev.TokenID) + len(ev.ToolParamsHash) + len(ev.TraceID)
	for k, v := range ev.Attributes {
		n += len(k) + len(v) + 6
	}
	for _, v := range ev.DelegationScope {
		n += len(v) + 3
	}
	for _, v := range ev.RequiredScopes {
		n += len(v) + 3
	}
	b := make([]byte, 0, n)
	var end [len(fieldNames)]int
	b = appendJSONString(b, ev.AgentID)
	end[0] = len(b)
	b = appendJSONMap(b, ev.Attributes)
	end[1] = len(b)
	b = appendJSONArray(b, ev.DelegationScope)
	end[2] = len(b)
	b = append(b, '"')
	b = append(b, ev.EventID.String()...)
	b = append(b, '"')
	end[3] = len(b)
	for i, v := range []string{ev.ParentIdentity, ev.PolicyDecision} {
		b = appendJSONString(b, v)
		end[4+i] = len(b)
	}
	b = appendJSONArray(b, ev.RequiredScopes)
	end[6] = len(b)
	for i, v := range []string{ev.Resource, ev.ResourceTenantID, ev.SchemaVersion, ev.SpanID} {
		b = appendJSONString(b, v)
		end[7+i] = len(b)
	}
	b = strconv.AppendUint(b, uint64(ev.SrcIndex), 10)
	end[11] = len(b)
	b = strconv.AppendUint(b, ev.SrcOffset, 10)
	end[12] = len(b)
	b = strconv.AppendUint(b, uint64(ev.SrcPartition), 10)
	end[13] = len(b)
	for i, v := range []string{ev.TenantID, ev.TokenID, ev.TokenType, ev.ToolName, ev.ToolParamsHash, ev.TraceID} {
		b = appendJSONString(b, v)
		end[14+i] = len(b)
	}
	b = append(b, '"')
	b = ev.TS.UTC().AppendFormat(b, "2006-01-02T15:04:05.000000000Z07:00")
	b = append(b, '"')
	end[20] = len(b)
	var vals [len(fieldNames)][]byte
	start := 0
	for i, e := range end {
		vals[i] = b[start:e:e]
		start = e
	}
	return vals
}

// jsonString is appendJSONString to a new slice.
func jsonString(s string) []byte { return appendJSONString(nil, s) }

// appendJSONString appends s as encoding/json writes it (HTML characters
// escaped), or {"invalid_utf8_base64":...} when s is not valid UTF-8.
func appendJSONString(dst []byte, s string) []byte {
	// Fast path, byte-identical to encoding/json: nothing to escape.
	plain := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' || c >= 0x80 {
			plain = false
			break
		}
	}
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
