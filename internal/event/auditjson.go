package event

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/google/uuid"
)

// The built-in audit event validator: one pass over the JSON that checks
// syntax and exactly the constraints of schema/audit_event.v1.schema.json;
// the event's strings are then copied into one allocation.
//
// Errors are ranked as the reference (encoding/json, then the JSON Schema
// library) ranks them: a syntax error anywhere is invalid_json even after a
// schema violation, so parsing always runs to the end and keeps only the
// first violation.

// Where the built-in validator is deliberately stricter than the JSON
// Schema library (see DecodeAuditEvent); the tests tell these apart.
var (
	errDuplicateKey  = errors.New("duplicate key")
	errLoneSurrogate = errors.New("lone surrogate in \\u escape")
)

// Top-level properties of the schema.
const (
	fEventID = iota
	fTS
	fTenantID
	fAgentID
	fParentIdentity
	fTokenID
	fTokenType
	fDelegationScope
	fRequiredScopes
	fToolName
	fToolParamsHash
	fResource
	fResourceTenantID
	fPolicyDecision
	fTraceID
	fSpanID
	fAttributes
	fSchemaVersion
	numEventFields
)

var eventFieldNames = [numEventFields]string{
	"event_id", "ts", "tenant_id", "agent_id", "parent_identity", "token_id",
	"token_type", "delegation_scope", "required_scopes", "tool_name",
	"tool_params_hash", "resource", "resource_tenant_id", "policy_decision",
	"trace_id", "span_id", "attributes", "schema_version",
}

// eventFieldPointers are the JSON pointers of the properties.
var eventFieldPointers = [numEventFields]string{
	"/event_id", "/ts", "/tenant_id", "/agent_id", "/parent_identity", "/token_id",
	"/token_type", "/delegation_scope", "/required_scopes", "/tool_name",
	"/tool_params_hash", "/resource", "/resource_tenant_id", "/policy_decision",
	"/trace_id", "/span_id", "/attributes", "/schema_version",
}

const requiredEventFields = 1<<fEventID | 1<<fTS | 1<<fTenantID | 1<<fAgentID |
	1<<fTokenID | 1<<fTokenType | 1<<fToolName | 1<<fPolicyDecision

// maxJSONDepth is encoding/json's nesting limit, mirrored so both reject
// the same documents.
const maxJSONDepth = 10000

// eventField returns the property whose name is k, or -1: a switch on
// the length and a byte or two picks the only candidate, one compare
// confirms it.
func eventField(k []byte) int {
	f := -1
	switch len(k) {
	case 2:
		f = fTS
	case 7:
		f = fSpanID
	case 8:
		switch k[0] {
		case 'e':
			f = fEventID
		case 'a':
			f = fAgentID
		case 'r':
			f = fResource
		case 't':
			f = fTokenID
			if k[1] == 'r' {
				f = fTraceID
			}
		}
	case 9:
		f = fTenantID
		if k[1] == 'o' {
			f = fToolName
		}
	case 10:
		f = fTokenType
		if k[0] == 'a' {
			f = fAttributes
		}
	case 14:
		f = fSchemaVersion
	case 15:
		switch k[0] {
		case 'r':
			f = fRequiredScopes
		case 'p':
			f = fParentIdentity
			if k[1] == 'o' {
				f = fPolicyDecision
			}
		}
	case 16:
		f = fDelegationScope
		if k[0] == 't' {
			f = fToolParamsHash
		}
	case 18:
		f = fResourceTenantID
	}
	if f < 0 || len(k) != len(eventFieldNames[f]) {
		return -1
	}
	if name := eventFieldNames[f]; len(k) < 8 {
		if string(k) != name {
			return -1
		}
	} else {
		// Names of 8 to 24 bytes: the first, last and middle eight bytes
		// (overlapping) cover every byte, compared as words.
		n := len(k)
		if binary.LittleEndian.Uint64(k) != le64(name, 0) ||
			binary.LittleEndian.Uint64(k[n-8:]) != le64(name, n-8) ||
			n > 16 && binary.LittleEndian.Uint64(k[8:]) != le64(name, 8) {
			return -1
		}
	}
	return f
}

// le64 returns the eight bytes of s at i as a little-endian word.
func le64(s string, i int) uint64 {
	s = s[i : i+8]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

// span is a decoded string: data[off:end], or esc[off:end] for a string
// with escapes.
type span struct {
	off, end int32
	esc      bool
}

// attrRef is an attribute: its key, and its value or a boolean.
type attrRef struct {
	k, v    span
	boolean int8 // attrTrue or attrFalse when the value is a boolean
}

const (
	attrTrue  = 1
	attrFalse = 2
)

// auditParser parses one message in data, which it never writes. A
// string without escapes is where it lies in data, one with escapes is
// decoded into esc; the event's strings are copied once, on success, into
// one allocation that holds exactly them — only those with escapes when
// share is set (AuditDecoder.DecodeShared): the others are views of data.
type auditParser struct {
	data  []byte
	share bool
	esc   []byte
	pos   int
	depth int

	seen      uint32
	fields    [numEventFields]span // the string fields
	scopes    [2][]span
	attrs     []attrRef
	eventID   uuid.UUID
	ts        time.Time
	tokenType string
	decision  string

	// high has the high bit of a byte set if a string held a non-ASCII
	// byte (maybe beyond its end): then data needs a UTF-8 check.
	high uint64

	isObject  bool
	violation string // the first schema violation, "pointer: message"
	dupKey    string // the first duplicate top-level key
}

func (p *auditParser) syntax(msg string) *Error {
	return newError(ReasonInvalidJSON, msg+" at offset "+strconv.Itoa(p.pos))
}

func (p *auditParser) violate(ptr, msg string) {
	if p.violation == "" {
		if ptr == "" {
			ptr = "/"
		}
		p.violation = ptr + ": " + msg
	}
}

// bytes returns the decoded bytes of s.
func (p *auditParser) bytes(s span) []byte {
	if s.esc {
		return p.esc[s.off:s.end]
	}
	return p.data[s.off:s.end]
}

// ws skips whitespace; compact JSON has none, which the first compare sees.
func (p *auditParser) ws() {
	if p.pos < len(p.data) && p.data[p.pos] > ' ' {
		return
	}
	p.wsSlow()
}

func (p *auditParser) wsSlow() {
	const white = 1<<' ' | 1<<'\t' | 1<<'\n' | 1<<'\r'
	d, i := p.data, p.pos
	for i < len(d) && d[i] <= ' ' && (1<<d[i])&white != 0 {
		i++
	}
	p.pos = i
}

// document parses the whole message.
func (p *auditParser) document() *Error {
	p.ws()
	if p.pos >= len(p.data) {
		return p.syntax("unexpected end of input")
	}
	if p.data[p.pos] == '{' {
		p.isObject = true
		if err := p.object(); err != nil {
			return err
		}
	} else {
		if err := p.skip(); err != nil {
			return err
		}
		p.violate("", "must be an object")
	}
	p.ws()
	if p.pos != len(p.data) {
		return p.syntax("data after the top-level value")
	}
	if p.dupKey != "" {
		return &Error{Reason: ReasonInvalidJSON, Err: fmt.Errorf("%w %s", errDuplicateKey, quote(p.dupKey))}
	}
	if missing := requiredEventFields &^ p.seen; missing != 0 && p.isObject {
		for f := range numEventFields {
			if missing&(1<<f) != 0 {
				p.violate("", "missing required property "+strconv.Quote(eventFieldNames[f]))
				break
			}
		}
	}
	return nil
}

// object parses the top-level object.
func (p *auditParser) object() *Error {
	p.pos++ // {
	p.depth++
	p.ws()
	if p.pos < len(p.data) && p.data[p.pos] == '}' {
		p.pos++
		p.depth--
		return nil
	}
	for {
		p.ws()
		if p.pos >= len(p.data) || p.data[p.pos] != '"' {
			return p.syntax("want a property name")
		}
		mark := len(p.esc)
		k, err := p.string()
		if err != nil {
			return err
		}
		key := p.bytes(k)
		f := eventField(key)
		if f < 0 {
			p.violate("", "property "+quote(string(key))+" is not allowed")
		} else if p.seen&(1<<f) != 0 && p.dupKey == "" {
			p.dupKey = eventFieldNames[f]
		}
		p.esc = p.esc[:mark]
		if p.pos < len(p.data) && p.data[p.pos] == ':' {
			p.pos++ // the compact form: no whitespace around ':'
		} else {
			p.ws()
			if p.pos >= len(p.data) || p.data[p.pos] != ':' {
				return p.syntax("want ':'")
			}
			p.pos++
		}
		p.ws()
		if p.pos >= len(p.data) {
			return p.syntax("unexpected end of input")
		}
		if f < 0 {
			err = p.skip()
		} else {
			p.seen |= 1 << f
			err = p.field(f)
		}
		if err != nil {
			return err
		}
		p.ws()
		if p.pos >= len(p.data) {
			return p.syntax("unexpected end of input")
		}
		switch p.data[p.pos] {
		case ',':
			p.pos++
		case '}':
			p.pos++
			p.depth--
			return nil
		default:
			return p.syntax("want ',' or '}'")
		}
	}
}

// field parses the value of top-level property f and checks its constraints.
func (p *auditParser) field(f int) *Error {
	switch f {
	case fDelegationScope, fRequiredScopes:
		return p.scopeArray(f)
	case fAttributes:
		return p.attributes()
	}
	ptr := eventFieldPointers[f]
	if p.data[p.pos] != '"' {
		if err := p.skip(); err != nil {
			return err
		}
		switch f {
		case fSchemaVersion:
			p.violate(ptr, `must be "1"`)
		case fTokenType:
			p.violate(ptr, "must be one of session, oauth, m2m, api_key")
		case fPolicyDecision:
			p.violate(ptr, "must be one of allow, deny")
		default:
			p.violate(ptr, "must be a string")
		}
		return nil
	}
	mark := len(p.esc)
	r, err := p.string()
	if err != nil {
		return err
	}
	s := p.bytes(r)
	p.fields[f] = r
	switch f {
	case fEventID:
		id, ok := parseUUID(s)
		if !ok {
			p.violate(ptr, "must be a uuid")
		}
		p.eventID = id
	case fTS:
		t, ok := parseDateTime(s)
		if !ok {
			p.violate(ptr, "must be an RFC 3339 date-time")
		}
		p.ts = t
	case fTenantID, fAgentID, fTokenID, fToolName:
		p.checkLength(ptr, s, 1, 256)
		return nil
	case fParentIdentity:
		p.checkLength(ptr, s, 0, 512)
		return nil
	case fResource:
		p.checkLength(ptr, s, 0, 2048)
		return nil
	case fResourceTenantID:
		p.checkLength(ptr, s, 0, 256)
		return nil
	case fToolParamsHash:
		if len(s) != 64 || !isLowerHex(s) {
			p.violate(ptr, "must be 64 lower-case hex digits")
		}
		return nil
	case fTraceID:
		if len(s) != 0 && (len(s) != 32 || !isLowerHex(s)) {
			p.violate(ptr, "must be empty or 32 lower-case hex digits")
		}
		return nil
	case fSpanID:
		if len(s) != 0 && (len(s) != 16 || !isLowerHex(s)) {
			p.violate(ptr, "must be empty or 16 lower-case hex digits")
		}
		return nil
	case fTokenType:
		switch string(s) {
		case "session":
			p.tokenType = "session"
		case "oauth":
			p.tokenType = "oauth"
		case "m2m":
			p.tokenType = "m2m"
		case "api_key":
			p.tokenType = "api_key"
		default:
			p.violate(ptr, "must be one of session, oauth, m2m, api_key")
		}
	case fPolicyDecision:
		switch string(s) {
		case "allow":
			p.decision = "allow"
		case "deny":
			p.decision = "deny"
		default:
			p.violate(ptr, "must be one of allow, deny")
		}
	case fSchemaVersion:
		if string(s) != SchemaVersion1 {
			p.violate(ptr, `must be "1"`)
		}
	}
	// Not a string of the event: its escapes need no keeping.
	p.esc = p.esc[:mark]
	return nil
}

// checkLength checks that s has between min and max characters. min is 0
// or 1, so a byte length in [min, max] proves it without counting.
func (p *auditParser) checkLength(ptr string, s []byte, min, max int) {
	if len(s) >= min && len(s) <= max {
		return
	}
	if n := utf8.RuneCount(s); n < min || n > max {
		p.violate(ptr, "length must be between "+strconv.Itoa(min)+" and "+strconv.Itoa(max)+" characters")
	}
}

// isLowerHex reports whether s holds only the bytes 0-9 and a-f; eight at
// a time, then one at a time.
func isLowerHex(s []byte) bool {
	for len(s) >= 8 {
		if !isLowerHex8(binary.LittleEndian.Uint64(s)) {
			return false
		}
		s = s[8:]
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// isLowerHex8 reports whether each byte of x is one of 0-9 a-f. For a
// byte b below 0x80, b+(0x80-lo) has its high bit set exactly when b >= lo
// and no carry leaves the byte, so each range test is two additions.
func isLowerHex8(x uint64) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	if x&highs != 0 {
		return false
	}
	digit := (x + ones*(0x80-'0')) &^ (x + ones*(0x80-'9'-1))
	af := (x + ones*(0x80-'a')) &^ (x + ones*(0x80-'f'-1))
	return (digit|af)&highs == highs
}

// countsAtMost reports whether s has at most max characters (without
// counting when the bytes alone prove it).
func countsAtMost(s []byte, max int) bool {
	return len(s) <= max || utf8.RuneCount(s) <= max
}

func (p *auditParser) scopeArray(f int) *Error {
	ptr := eventFieldPointers[f]
	if p.data[p.pos] != '[' {
		if err := p.skip(); err != nil {
			return err
		}
		p.violate(ptr, "must be an array")
		return nil
	}
	i := f - fDelegationScope
	p.scopes[i] = p.scopes[i][:0]
	p.pos++
	p.depth++
	p.ws()
	if p.pos < len(p.data) && p.data[p.pos] == ']' {
		p.pos++
		p.depth--
		return nil
	}
	for n := 0; ; n++ {
		p.ws()
		if p.pos >= len(p.data) {
			return p.syntax("unexpected end of input")
		}
		if n == 256 {
			p.violate(ptr, "must have at most 256 items")
		}
		if p.data[p.pos] == '"' {
			r, err := p.string()
			if err != nil {
				return err
			}
			if r.end == r.off || !countsAtMost(p.bytes(r), 256) {
				p.violate(ptr+"/"+strconv.Itoa(n), "length must be between 1 and 256 characters")
			}
			p.scopes[i] = append(p.scopes[i], r)
		} else {
			if err := p.skip(); err != nil {
				return err
			}
			p.violate(ptr+"/"+strconv.Itoa(n), "must be a string")
		}
		p.ws()
		if p.pos >= len(p.data) {
			return p.syntax("unexpected end of input")
		}
		switch p.data[p.pos] {
		case ',':
			p.pos++
		case ']':
			p.pos++
			p.depth--
			return nil
		default:
			return p.syntax("want ',' or ']'")
		}
	}
}

func (p *auditParser) attributes() *Error {
	const ptr = "/attributes"
	if p.data[p.pos] != '{' {
		if err := p.skip(); err != nil {
			return err
		}
		p.violate(ptr, "must be an object")
		return nil
	}
	p.attrs = p.attrs[:0]
	p.pos++
	p.depth++
	p.ws()
	if p.pos < len(p.data) && p.data[p.pos] == '}' {
		p.pos++
		p.depth--
		return nil
	}
	for n := 0; ; n++ {
		p.ws()
		if p.pos >= len(p.data) || p.data[p.pos] != '"' {
			return p.syntax("want a property name")
		}
		if n == maxSchemaAttributes {
			p.violate(ptr, "must have at most 128 properties")
		}
		k, err := p.string()
		if err != nil {
			return err
		}
		if !countsAtMost(p.bytes(k), 256) {
			p.violate(ptr, "property name longer than 256 characters")
		}
		if p.pos < len(p.data) && p.data[p.pos] == ':' {
			p.pos++
		} else {
			p.ws()
			if p.pos >= len(p.data) || p.data[p.pos] != ':' {
				return p.syntax("want ':'")
			}
			p.pos++
		}
		p.ws()
		if p.pos >= len(p.data) {
			return p.syntax("unexpected end of input")
		}
		ref := attrRef{k: k}
		switch c := p.data[p.pos]; {
		case c == '"':
			if ref.v, err = p.string(); err != nil {
				return err
			}
		case c == '-' || (c >= '0' && c <= '9'):
			start := p.pos
			if err := p.number(); err != nil {
				return err
			}
			ref.v = span{off: int32(start), end: int32(p.pos)}
		case c == 't' || c == 'f':
			if err := p.skip(); err != nil {
				return err
			}
			ref.boolean = attrTrue
			if c == 'f' {
				ref.boolean = attrFalse
			}
		default:
			if err := p.skip(); err != nil {
				return err
			}
			p.violate(ptr+"/"+pointerToken(string(p.bytes(k))), "must be a string, number or boolean")
		}
		p.attrs = append(p.attrs, ref)
		p.ws()
		if p.pos >= len(p.data) {
			return p.syntax("unexpected end of input")
		}
		switch p.data[p.pos] {
		case ',':
			p.pos++
		case '}':
			p.pos++
			p.depth--
			return nil
		default:
			return p.syntax("want ',' or '}'")
		}
	}
}

// pointerToken escapes a JSON pointer token and shortens it for messages.
func pointerToken(s string) string {
	if len(s) > 64 {
		s = strings.ToValidUTF8(s[:64], "") + "..."
	}
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

// stringFields are the top-level properties that are strings of the
// event as sent.
var stringFields = [...]int{fTenantID, fAgentID, fParentIdentity, fTokenID, fToolName,
	fToolParamsHash, fResource, fResourceTenantID, fTraceID, fSpanID}

// event builds the AuditEvent: its strings are copied into one allocation
// of exactly their size, from data or, for strings with escapes, esc.
func (p *auditParser) event() (AuditEvent, *Error) {
	n := 0
	for _, f := range stringFields {
		n += p.copied(p.fields[f])
	}
	for _, l := range p.scopes {
		for _, r := range l {
			n += p.copied(r)
		}
	}
	for _, r := range p.attrs {
		n += p.copied(r.k) + p.copied(r.v)
	}
	c := stringCopier{buf: make([]byte, n)}
	ev := AuditEvent{
		EventID:          p.eventID,
		TS:               p.ts,
		TenantID:         p.out(&c, (p.fields[fTenantID])),
		AgentID:          p.out(&c, (p.fields[fAgentID])),
		ParentIdentity:   p.out(&c, (p.fields[fParentIdentity])),
		TokenID:          p.out(&c, (p.fields[fTokenID])),
		TokenType:        p.tokenType,
		ToolName:         p.out(&c, (p.fields[fToolName])),
		ToolParamsHash:   p.out(&c, (p.fields[fToolParamsHash])),
		Resource:         p.out(&c, (p.fields[fResource])),
		ResourceTenantID: p.out(&c, (p.fields[fResourceTenantID])),
		PolicyDecision:   p.decision,
		TraceID:          p.out(&c, (p.fields[fTraceID])),
		SpanID:           p.out(&c, (p.fields[fSpanID])),
		SchemaVersion:    SchemaVersion1,
	}
	// Both scope lists in one allocation; each is capped at its length,
	// so appending to one never writes into the other.
	if n0, n1 := len(p.scopes[0]), len(p.scopes[1]); n0+n1 > 0 {
		out := make([]string, n0+n1)
		for j, r := range p.scopes[0] {
			out[j] = p.out(&c, (r))
		}
		for j, r := range p.scopes[1] {
			out[n0+j] = p.out(&c, (r))
		}
		if n0 > 0 {
			ev.DelegationScope = out[:n0:n0]
		}
		if n1 > 0 {
			ev.RequiredScopes = out[n0:]
		}
	}
	if len(p.attrs) > 0 {
		m := make(map[string]string, len(p.attrs))
		for i, r := range p.attrs {
			k := p.out(&c, (r.k))
			var v string
			switch r.boolean {
			case attrTrue:
				v = "true"
			case attrFalse:
				v = "false"
			default:
				v = p.out(&c, (r.v))
			}
			// A new key grows the map by one: no separate lookup.
			if m[k] = v; len(m) != i+1 {
				return AuditEvent{}, &Error{Reason: ReasonInvalidJSON, Err: fmt.Errorf("%w %s in /attributes", errDuplicateKey, quote(k))}
			}
		}
		ev.Attributes = m
	}
	return ev, nil
}

// copied returns how many bytes of s the event's allocation holds: all,
// unless s can be a view of shared data.
func (p *auditParser) copied(s span) int {
	if p.share && !s.esc {
		return 0
	}
	return int(s.end - s.off)
}

// out returns s as a string of the event: copied by c, or a view of
// shared data.
func (p *auditParser) out(c *stringCopier, s span) string {
	b := p.bytes(s)
	if p.share && !s.esc {
		return unsafe.String(unsafe.SliceData(b), len(b))
	}
	return c.put(b)
}

// stringCopier makes strings of buf, front to back: buf is never
// written again where a string was made, so the string can be it.
type stringCopier struct {
	buf []byte
	w   int
}

func (c *stringCopier) put(b []byte) string {
	n := copy(c.buf[c.w:], b)
	if n == 0 {
		return ""
	}
	s := unsafe.String(&c.buf[c.w], n)
	c.w += n
	return s
}

// string decodes the JSON string at p.pos (a '"') and returns where its
// decoded bytes are. A string without escapes is the bytes
// between its quotes, found eight bytes at a time. The high bits of the
// bytes read go to p.high: outside strings the grammar admits only ASCII.
func (p *auditParser) string() (span, *Error) {
	d := p.data
	i := p.pos + 1
	start := i
	// Skip plain bytes eight at a time, up to the first quote, backslash
	// or control character: each test below flags such a byte, and a
	// borrow can only flag bytes after a flagged one, so the lowest flag
	// is exact.
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	var high uint64
	for i+8 <= len(d) {
		x := binary.LittleEndian.Uint64(d[i:])
		high |= x
		q, b := x^(ones*'"'), x^(ones*'\\')
		if m := ((x-ones*0x20)&^x | (q-ones)&^q | (b-ones)&^b) & highs; m != 0 {
			i += bits.TrailingZeros64(m) >> 3
			goto special
		}
		i += 8
	}
	for i < len(d) && d[i] != '"' && d[i] != '\\' && d[i] >= 0x20 {
		high |= uint64(d[i])
		i++
	}
special:
	p.high |= high
	p.pos = i
	if i >= len(d) {
		return span{}, p.syntax("unterminated string")
	}
	switch d[i] {
	case '"':
		p.pos = i + 1
		return span{off: int32(start), end: int32(i)}, nil
	case '\\':
		return p.escapedString(start)
	}
	return span{}, p.syntax("control character in string")
}

// escapedString goes on decoding the string that starts at start, from
// its first escape at p.pos, into esc.
func (p *auditParser) escapedString(start int) (span, *Error) {
	d := p.data
	off := len(p.esc)
	p.esc = append(p.esc, d[start:p.pos]...)
	for {
		// d[p.pos] is a backslash.
		if err := p.escape(); err != nil {
			return span{}, err
		}
		i := p.pos
		var high byte
		for i < len(d) && d[i] != '"' && d[i] != '\\' && d[i] >= 0x20 {
			high |= d[i]
			i++
		}
		p.high |= uint64(high)
		p.esc = append(p.esc, d[p.pos:i]...)
		p.pos = i
		if i >= len(d) {
			return span{}, p.syntax("unterminated string")
		}
		switch d[i] {
		case '"':
			p.pos = i + 1
			return span{off: int32(off), end: int32(len(p.esc)), esc: true}, nil
		case '\\':
		default:
			return span{}, p.syntax("control character in string")
		}
	}
}

// escape decodes the escape sequence at p.pos (a '\\') into esc.
func (p *auditParser) escape() *Error {
	if p.pos+1 >= len(p.data) {
		return p.syntax("unterminated string")
	}
	c := p.data[p.pos+1]
	p.pos += 2
	switch c {
	case '"', '\\', '/':
		p.esc = append(p.esc, c)
	case 'b':
		p.esc = append(p.esc, '\b')
	case 'f':
		p.esc = append(p.esc, '\f')
	case 'n':
		p.esc = append(p.esc, '\n')
	case 'r':
		p.esc = append(p.esc, '\r')
	case 't':
		p.esc = append(p.esc, '\t')
	case 'u':
		r, ok := p.hex4()
		if !ok {
			return p.syntax("invalid \\u escape")
		}
		if r >= 0xD800 && r < 0xDC00 {
			// A high surrogate must be followed by an escaped low one.
			if p.pos+1 < len(p.data) && p.data[p.pos] == '\\' && p.data[p.pos+1] == 'u' {
				p.pos += 2
				r2, ok := p.hex4()
				if !ok {
					return p.syntax("invalid \\u escape")
				}
				if r2 >= 0xDC00 && r2 < 0xE000 {
					p.esc = utf8.AppendRune(p.esc, 0x10000+(r-0xD800)<<10+(r2-0xDC00))
					return nil
				}
			}
			return &Error{Reason: ReasonInvalidUTF8, Err: fmt.Errorf("%w at offset %d", errLoneSurrogate, p.pos)}
		}
		if r >= 0xDC00 && r < 0xE000 {
			return &Error{Reason: ReasonInvalidUTF8, Err: fmt.Errorf("%w at offset %d", errLoneSurrogate, p.pos)}
		}
		p.esc = utf8.AppendRune(p.esc, r)
	default:
		p.pos--
		return p.syntax("invalid escape")
	}
	return nil
}

func (p *auditParser) hex4() (rune, bool) {
	if p.pos+4 > len(p.data) {
		return 0, false
	}
	var r rune
	for _, c := range p.data[p.pos : p.pos+4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	p.pos += 4
	return r, true
}

// number checks the JSON number at p.pos.
func (p *auditParser) number() *Error {
	d := p.data
	i := p.pos
	if i < len(d) && d[i] == '-' {
		i++
	}
	switch {
	case i < len(d) && d[i] == '0':
		i++
	case i < len(d) && d[i] >= '1' && d[i] <= '9':
		for i < len(d) && d[i] >= '0' && d[i] <= '9' {
			i++
		}
	default:
		p.pos = i
		return p.syntax("invalid number")
	}
	if i < len(d) && d[i] == '.' {
		i++
		if i >= len(d) || d[i] < '0' || d[i] > '9' {
			p.pos = i
			return p.syntax("invalid number")
		}
		for i < len(d) && d[i] >= '0' && d[i] <= '9' {
			i++
		}
	}
	if i < len(d) && (d[i] == 'e' || d[i] == 'E') {
		i++
		if i < len(d) && (d[i] == '+' || d[i] == '-') {
			i++
		}
		if i >= len(d) || d[i] < '0' || d[i] > '9' {
			p.pos = i
			return p.syntax("invalid number")
		}
		for i < len(d) && d[i] >= '0' && d[i] <= '9' {
			i++
		}
	}
	p.pos = i
	return nil
}

// skip checks and skips any JSON value at p.pos.
func (p *auditParser) skip() *Error {
	if p.pos >= len(p.data) {
		return p.syntax("unexpected end of input")
	}
	switch c := p.data[p.pos]; {
	case c == '"':
		mark := len(p.esc)
		_, err := p.string()
		p.esc = p.esc[:mark]
		return err
	case c == '-' || (c >= '0' && c <= '9'):
		return p.number()
	case c == 't':
		return p.literal("true")
	case c == 'f':
		return p.literal("false")
	case c == 'n':
		return p.literal("null")
	case c == '[' || c == '{':
		p.depth++
		if p.depth > maxJSONDepth {
			return p.syntax("exceeded max depth")
		}
		p.pos++
		close := byte(']')
		if c == '{' {
			close = '}'
		}
		p.ws()
		if p.pos < len(p.data) && p.data[p.pos] == close {
			p.pos++
			p.depth--
			return nil
		}
		for {
			p.ws()
			if c == '{' {
				if p.pos >= len(p.data) || p.data[p.pos] != '"' {
					return p.syntax("want a property name")
				}
				if err := p.skip(); err != nil {
					return err
				}
				p.ws()
				if p.pos >= len(p.data) || p.data[p.pos] != ':' {
					return p.syntax("want ':'")
				}
				p.pos++
				p.ws()
			}
			if err := p.skip(); err != nil {
				return err
			}
			p.ws()
			if p.pos >= len(p.data) {
				return p.syntax("unexpected end of input")
			}
			switch p.data[p.pos] {
			case ',':
				p.pos++
			case close:
				p.pos++
				p.depth--
				return nil
			default:
				return p.syntax("want ',' or '" + string(close) + "'")
			}
		}
	}
	return p.syntax("invalid character " + strconv.QuoteRune(rune(p.data[p.pos])))
}

func (p *auditParser) literal(lit string) *Error {
	if len(p.data)-p.pos < len(lit) || string(p.data[p.pos:p.pos+len(lit)]) != lit {
		return p.syntax("invalid literal")
	}
	p.pos += len(lit)
	return nil
}

// parseUUID parses the JSON Schema "uuid" format: 8-4-4-4-12 hex digits of
// either case.
func parseUUID(s []byte) (uuid.UUID, bool) {
	var id uuid.UUID
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return id, false
	}
	j := 0
	for i := 0; i < 36; {
		if i == 8 || i == 13 || i == 18 || i == 23 {
			i++
			continue
		}
		hi, ok1 := unhex(s[i])
		lo, ok2 := unhex(s[i+1])
		if !ok1 || !ok2 {
			return uuid.UUID{}, false
		}
		id[j] = hi<<4 | lo
		j++
		i += 2
	}
	return id, true
}

func unhex(c byte) (byte, bool) {
	if d := c - '0'; d <= 9 {
		return d, true
	}
	if l := c | 0x20 - 'a'; l <= 5 { // c|0x20 maps A-F to a-f only
		return l + 10, true
	}
	return 0, false
}

// parseDateTime parses the JSON Schema "date-time" format (RFC 3339
// section 5.6, 't' and 'z' in either case, any number of fraction digits
// of which the first nine count) as the reference validator checks it,
// including its leap second rule (second 60 only at 23:59 UTC), which
// time.Date normalises to the next second.
func parseDateTime(s []byte) (time.Time, bool) {
	if len(s) < 20 {
		return time.Time{}, false
	}
	num := func(b []byte) (int, bool) {
		n := 0
		for _, c := range b {
			if c < '0' || c > '9' {
				return 0, false
			}
			n = n*10 + int(c-'0')
		}
		return n, true
	}
	y, ok1 := num(s[0:4])
	mo, ok2 := num(s[5:7])
	d, ok3 := num(s[8:10])
	if !ok1 || !ok2 || !ok3 || s[4] != '-' || s[7] != '-' {
		return time.Time{}, false
	}
	if mo < 1 || mo > 12 || d < 1 || d > daysIn(mo, y) {
		return time.Time{}, false
	}
	if s[10] != 'T' && s[10] != 't' {
		return time.Time{}, false
	}
	h, ok1 := num(s[11:13])
	mi, ok2 := num(s[14:16])
	sec, ok3 := num(s[17:19])
	if !ok1 || !ok2 || !ok3 || s[13] != ':' || s[16] != ':' || h > 23 || mi > 59 || sec > 60 {
		return time.Time{}, false
	}
	rest := s[19:]
	ns := 0
	if len(rest) > 0 && rest[0] == '.' {
		i := 1
		for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
			if i <= 9 {
				ns = ns*10 + int(rest[i]-'0')
			}
			i++
		}
		if i == 1 {
			return time.Time{}, false
		}
		for k := i; k <= 9; k++ {
			ns *= 10
		}
		rest = rest[i:]
	}
	offset := 0 // minutes east of UTC
	switch {
	case len(rest) == 1 && (rest[0] == 'Z' || rest[0] == 'z'):
	case len(rest) == 6 && (rest[0] == '+' || rest[0] == '-') && rest[3] == ':':
		zh, ok1 := num(rest[1:3])
		zm, ok2 := num(rest[4:6])
		if !ok1 || !ok2 || zh > 23 || zm > 59 {
			return time.Time{}, false
		}
		offset = zh*60 + zm
		if rest[0] == '-' {
			offset = -offset
		}
	default:
		return time.Time{}, false
	}
	if sec == 60 {
		hm := h*60 + mi - offset
		if hm < 0 {
			hm += 24 * 60
		}
		if hm/60 != 23 || hm%60 != 59 {
			return time.Time{}, false
		}
	}
	// What time.Date(...).Add(-offset) gives (second 60 rolls over the
	// same way), without its normalisation and zone work.
	unix := daysSinceEpoch(y, mo, d)*86400 + int64(h*3600+mi*60+sec-offset*60)
	return time.Unix(unix, int64(ns)).UTC(), true
}

// daysSinceEpoch returns the days from 1970-01-01 to the valid date
// y-m-d of the proleptic Gregorian calendar, years 0 to 9999 (the
// civil-to-days algorithm of H. Hinnant, with years starting in March).
func daysSinceEpoch(y, m, d int) int64 {
	if m <= 2 {
		y-- // -1 for January and February of year 0
	}
	era := (y + 400) / 400 // y >= -1: shifted so the division floors
	era--
	yoe := y - era*400 // [0, 399]
	doy := (153*((m+9)%12)+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return int64(era)*146097 + int64(doe) - 719468
}

func daysIn(month, year int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}
