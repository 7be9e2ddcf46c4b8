package event

// The audit event decoder as it was before the single-buffer rewrite
// (commit d6cbb79), kept verbatim (renamed) as the oracle of
// TestAuditDecoderMatchesLegacy and FuzzAuditDecoderMatchesLegacy: the
// rewrite must accept, reject (with the same message) and decode exactly
// as this did.

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/google/uuid"
)

func legacyEventField(k []byte) int {
	switch string(k) {
	case "event_id":
		return fEventID
	case "ts":
		return fTS
	case "tenant_id":
		return fTenantID
	case "agent_id":
		return fAgentID
	case "parent_identity":
		return fParentIdentity
	case "token_id":
		return fTokenID
	case "token_type":
		return fTokenType
	case "delegation_scope":
		return fDelegationScope
	case "required_scopes":
		return fRequiredScopes
	case "tool_name":
		return fToolName
	case "tool_params_hash":
		return fToolParamsHash
	case "resource":
		return fResource
	case "resource_tenant_id":
		return fResourceTenantID
	case "policy_decision":
		return fPolicyDecision
	case "trace_id":
		return fTraceID
	case "span_id":
		return fSpanID
	case "attributes":
		return fAttributes
	case "schema_version":
		return fSchemaVersion
	}
	return -1
}

// legacyStrRef is a decoded string in the arena; for attributes, key and value.
type legacyStrRef struct {
	off, end     int32
	voff, vend   int32
	constant     string // value when it is not in the arena
	haveConstant bool
}

type legacyAuditParser struct {
	data  []byte
	pos   int
	arena []byte
	depth int

	seen      uint32
	fields    [numEventFields]legacyStrRef
	scopes    [2][]legacyStrRef
	attrs     []legacyStrRef
	eventID   uuid.UUID
	ts        time.Time
	tokenType string
	decision  string

	isObject  bool
	violation string // the first schema violation, "pointer: message"
	dupKey    string // the first duplicate top-level key
}

func (p *legacyAuditParser) syntax(msg string) *Error {
	return newError(ReasonInvalidJSON, msg+" at offset "+strconv.Itoa(p.pos))
}

func (p *legacyAuditParser) violate(ptr, msg string) {
	if p.violation == "" {
		if ptr == "" {
			ptr = "/"
		}
		p.violation = ptr + ": " + msg
	}
}

func (p *legacyAuditParser) ws() {
	for p.pos < len(p.data) {
		switch p.data[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

// document parses the whole message.
func (p *legacyAuditParser) document() *Error {
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
func (p *legacyAuditParser) object() *Error {
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
		koff := len(p.arena)
		if err := p.str(); err != nil {
			return err
		}
		f := legacyEventField(p.arena[koff:])
		if f < 0 {
			p.violate("", "property "+quote(string(p.arena[koff:]))+" is not allowed")
		} else if p.seen&(1<<f) != 0 && p.dupKey == "" {
			p.dupKey = eventFieldNames[f]
		}
		p.arena = p.arena[:koff]
		p.ws()
		if p.pos >= len(p.data) || p.data[p.pos] != ':' {
			return p.syntax("want ':'")
		}
		p.pos++
		p.ws()
		if p.pos >= len(p.data) {
			return p.syntax("unexpected end of input")
		}
		var err *Error
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
func (p *legacyAuditParser) field(f int) *Error {
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
	off := len(p.arena)
	if err := p.str(); err != nil {
		return err
	}
	s := p.arena[off:]
	p.fields[f] = legacyStrRef{off: int32(off), end: int32(len(p.arena))}
	switch f {
	case fEventID:
		id, ok := legacyParseUUID(s)
		if !ok {
			p.violate(ptr, "must be a uuid")
		}
		p.eventID = id
		p.arena = p.arena[:off]
	case fTS:
		t, ok := legacyParseDateTime(s)
		if !ok {
			p.violate(ptr, "must be an RFC 3339 date-time")
		}
		p.ts = t
		p.arena = p.arena[:off]
	case fTenantID, fAgentID, fTokenID, fToolName:
		p.checkLength(ptr, s, 1, 256)
	case fParentIdentity:
		p.checkLength(ptr, s, 0, 512)
	case fResource:
		p.checkLength(ptr, s, 0, 2048)
	case fResourceTenantID:
		p.checkLength(ptr, s, 0, 256)
	case fToolParamsHash:
		if len(s) != 64 || !legacyIsLowerHex(s) {
			p.violate(ptr, "must be 64 lower-case hex digits")
		}
	case fTraceID:
		if len(s) != 0 && (len(s) != 32 || !legacyIsLowerHex(s)) {
			p.violate(ptr, "must be empty or 32 lower-case hex digits")
		}
	case fSpanID:
		if len(s) != 0 && (len(s) != 16 || !legacyIsLowerHex(s)) {
			p.violate(ptr, "must be empty or 16 lower-case hex digits")
		}
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
		p.arena = p.arena[:off]
	case fPolicyDecision:
		switch string(s) {
		case "allow":
			p.decision = "allow"
		case "deny":
			p.decision = "deny"
		default:
			p.violate(ptr, "must be one of allow, deny")
		}
		p.arena = p.arena[:off]
	case fSchemaVersion:
		if string(s) != SchemaVersion1 {
			p.violate(ptr, `must be "1"`)
		}
		p.arena = p.arena[:off]
	}
	return nil
}

func (p *legacyAuditParser) checkLength(ptr string, s []byte, min, max int) {
	if n := utf8.RuneCount(s); n < min || n > max {
		p.violate(ptr, "length must be between "+strconv.Itoa(min)+" and "+strconv.Itoa(max)+" characters")
	}
}

func legacyIsLowerHex(s []byte) bool {
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func (p *legacyAuditParser) scopeArray(f int) *Error {
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
			off := len(p.arena)
			if err := p.str(); err != nil {
				return err
			}
			if c := utf8.RuneCount(p.arena[off:]); c < 1 || c > 256 {
				p.violate(ptr+"/"+strconv.Itoa(n), "length must be between 1 and 256 characters")
			}
			p.scopes[i] = append(p.scopes[i], legacyStrRef{off: int32(off), end: int32(len(p.arena))})
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

func (p *legacyAuditParser) attributes() *Error {
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
		koff := len(p.arena)
		if err := p.str(); err != nil {
			return err
		}
		kend := len(p.arena)
		if utf8.RuneCount(p.arena[koff:kend]) > 256 {
			p.violate(ptr, "property name longer than 256 characters")
		}
		p.ws()
		if p.pos >= len(p.data) || p.data[p.pos] != ':' {
			return p.syntax("want ':'")
		}
		p.pos++
		p.ws()
		if p.pos >= len(p.data) {
			return p.syntax("unexpected end of input")
		}
		ref := legacyStrRef{off: int32(koff), end: int32(kend)}
		switch c := p.data[p.pos]; {
		case c == '"':
			if err := p.str(); err != nil {
				return err
			}
			ref.voff, ref.vend = int32(kend), int32(len(p.arena))
		case c == '-' || (c >= '0' && c <= '9'):
			start := p.pos
			if err := p.number(); err != nil {
				return err
			}
			p.arena = append(p.arena, p.data[start:p.pos]...)
			ref.voff, ref.vend = int32(kend), int32(len(p.arena))
		case c == 't' || c == 'f':
			if err := p.skip(); err != nil {
				return err
			}
			ref.constant, ref.haveConstant = "true", true
			if c == 'f' {
				ref.constant = "false"
			}
		default:
			if err := p.skip(); err != nil {
				return err
			}
			p.violate(ptr+"/"+legacyPointerToken(string(p.arena[koff:kend])), "must be a string, number or boolean")
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

// legacyPointerToken escapes a JSON pointer token and shortens it for messages.
func legacyPointerToken(s string) string {
	if len(s) > 64 {
		s = strings.ToValidUTF8(s[:64], "") + "..."
	}
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

// event builds the AuditEvent from the arena: one string allocation for
// all string fields.
func (p *legacyAuditParser) event() (AuditEvent, *Error) {
	// The strings of the event share one copy of the arena: p is dropped
	// after this, so the arena is never written again and can be that copy.
	all := unsafe.String(unsafe.SliceData(p.arena), len(p.arena))
	get := func(r legacyStrRef) string { return all[r.off:r.end] }
	ev := AuditEvent{
		EventID:          p.eventID,
		TS:               p.ts,
		TenantID:         get(p.fields[fTenantID]),
		AgentID:          get(p.fields[fAgentID]),
		ParentIdentity:   get(p.fields[fParentIdentity]),
		TokenID:          get(p.fields[fTokenID]),
		TokenType:        p.tokenType,
		ToolName:         get(p.fields[fToolName]),
		ToolParamsHash:   get(p.fields[fToolParamsHash]),
		Resource:         get(p.fields[fResource]),
		ResourceTenantID: get(p.fields[fResourceTenantID]),
		PolicyDecision:   p.decision,
		TraceID:          get(p.fields[fTraceID]),
		SpanID:           get(p.fields[fSpanID]),
		SchemaVersion:    SchemaVersion1,
	}
	// Both scope lists in one allocation; each is capped at its length,
	// so appending to one never writes into the other.
	if n0, n1 := len(p.scopes[0]), len(p.scopes[1]); n0+n1 > 0 {
		out := make([]string, n0+n1)
		for j, r := range p.scopes[0] {
			out[j] = get(r)
		}
		for j, r := range p.scopes[1] {
			out[n0+j] = get(r)
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
		for _, r := range p.attrs {
			v := r.constant
			if !r.haveConstant {
				v = all[r.voff:r.vend]
			}
			k := get(r)
			if _, dup := m[k]; dup {
				return AuditEvent{}, &Error{Reason: ReasonInvalidJSON, Err: fmt.Errorf("%w %s in /attributes", errDuplicateKey, quote(k))}
			}
			m[k] = v
		}
		ev.Attributes = m
	}
	return ev, nil
}

// str decodes the JSON string at p.pos (a '"') and appends it to the arena.
func (p *legacyAuditParser) str() *Error {
	p.pos++
	start := p.pos
	d := p.data
	for {
		// Skip plain bytes eight at a time: stop at a word holding a quote,
		// a backslash or a control character (or a false positive next to
		// one), which the byte loop below then handles.
		const ones, highs = 0x0101010101010101, 0x8080808080808080
		for p.pos+8 <= len(d) {
			x := binary.LittleEndian.Uint64(d[p.pos:])
			q, b := x^(ones*'"'), x^(ones*'\\')
			if ((x-ones*0x20)&^x|(q-ones)&^q|(b-ones)&^b)&highs != 0 {
				break
			}
			p.pos += 8
		}
		for p.pos < len(d) && d[p.pos] != '"' && d[p.pos] != '\\' && d[p.pos] >= 0x20 {
			p.pos++
		}
		if p.pos >= len(d) {
			return p.syntax("unterminated string")
		}
		switch d[p.pos] {
		case '"':
			p.arena = append(p.arena, d[start:p.pos]...)
			p.pos++
			return nil
		case '\\':
			p.arena = append(p.arena, d[start:p.pos]...)
			if err := p.escape(); err != nil {
				return err
			}
			start = p.pos
		default:
			return p.syntax("control character in string")
		}
	}
}

// escape decodes the escape sequence at p.pos (a '\\').
func (p *legacyAuditParser) escape() *Error {
	if p.pos+1 >= len(p.data) {
		return p.syntax("unterminated string")
	}
	c := p.data[p.pos+1]
	p.pos += 2
	switch c {
	case '"', '\\', '/':
		p.arena = append(p.arena, c)
	case 'b':
		p.arena = append(p.arena, '\b')
	case 'f':
		p.arena = append(p.arena, '\f')
	case 'n':
		p.arena = append(p.arena, '\n')
	case 'r':
		p.arena = append(p.arena, '\r')
	case 't':
		p.arena = append(p.arena, '\t')
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
					p.arena = utf8.AppendRune(p.arena, 0x10000+(r-0xD800)<<10+(r2-0xDC00))
					return nil
				}
			}
			return &Error{Reason: ReasonInvalidUTF8, Err: fmt.Errorf("%w at offset %d", errLoneSurrogate, p.pos)}
		}
		if r >= 0xDC00 && r < 0xE000 {
			return &Error{Reason: ReasonInvalidUTF8, Err: fmt.Errorf("%w at offset %d", errLoneSurrogate, p.pos)}
		}
		p.arena = utf8.AppendRune(p.arena, r)
	default:
		p.pos--
		return p.syntax("invalid escape")
	}
	return nil
}

func (p *legacyAuditParser) hex4() (rune, bool) {
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
func (p *legacyAuditParser) number() *Error {
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
func (p *legacyAuditParser) skip() *Error {
	if p.pos >= len(p.data) {
		return p.syntax("unexpected end of input")
	}
	switch c := p.data[p.pos]; {
	case c == '"':
		off := len(p.arena)
		err := p.str()
		p.arena = p.arena[:off]
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

func (p *legacyAuditParser) literal(lit string) *Error {
	if len(p.data)-p.pos < len(lit) || string(p.data[p.pos:p.pos+len(lit)]) != lit {
		return p.syntax("invalid literal")
	}
	p.pos += len(lit)
	return nil
}

// legacyParseUUID parses the JSON Schema "uuid" format: 8-4-4-4-12 hex digits of
// either case.
func legacyParseUUID(s []byte) (uuid.UUID, bool) {
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
		hi, ok1 := legacyUnhex(s[i])
		lo, ok2 := legacyUnhex(s[i+1])
		if !ok1 || !ok2 {
			return uuid.UUID{}, false
		}
		id[j] = hi<<4 | lo
		j++
		i += 2
	}
	return id, true
}

func legacyUnhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// legacyParseDateTime parses the JSON Schema "date-time" format (RFC 3339
// section 5.6, 't' and 'z' in either case, any number of fraction digits
// of which the first nine count) as the reference validator checks it,
// including its leap second rule (second 60 only at 23:59 UTC), which
// time.Date normalises to the next second.
func legacyParseDateTime(s []byte) (time.Time, bool) {
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
	if mo < 1 || mo > 12 || d < 1 || d > legacyDaysIn(mo, y) {
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
	t := time.Date(y, time.Month(mo), d, h, mi, sec, ns, time.UTC)
	return t.Add(-time.Duration(offset) * time.Minute), true
}

func legacyDaysIn(month, year int) int {
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

// legacyAuditScratch is space for the references to the attributes and scopes
// of one decode, kept (grown) for the next: the event's strings are copied
// out of the arena, not these.
type legacyAuditScratch struct {
	attrs  []legacyStrRef
	scopes [2][]legacyStrRef
}

// legacyDecodeAuditEvent decodes data with scratch's space.
func legacyDecodeAuditEvent(data []byte, opts EventOptions, scratch *legacyAuditScratch) (AuditEvent, error) {
	lim := opts.Limits
	if len(data) > lim.MaxMessageBytes {
		return AuditEvent{}, newError(ReasonMessageTooLarge, "message of "+strconv.Itoa(len(data))+" bytes exceeds limit of "+strconv.Itoa(lim.MaxMessageBytes))
	}
	if !utf8.Valid(data) {
		return AuditEvent{}, newError(ReasonInvalidUTF8, "message is not valid UTF-8")
	}
	p := legacyAuditParser{data: data, arena: make([]byte, 0, len(data)), attrs: scratch.attrs[:0],
		scopes: [2][]legacyStrRef{scratch.scopes[0][:0], scratch.scopes[1][:0]}}
	defer func() {
		scratch.attrs, scratch.scopes[0], scratch.scopes[1] = p.attrs[:0], p.scopes[0][:0], p.scopes[1][:0]
	}()
	if err := p.document(); err != nil {
		return AuditEvent{}, err
	}
	ev, err := p.event()
	if err != nil {
		return AuditEvent{}, err
	}
	if p.violation != "" {
		return AuditEvent{}, newError(ReasonSchemaViolation, p.violation)
	}
	now := opts.Now()
	if ev.TS.Before(now.Add(-lim.MaxAge)) || ev.TS.After(now.Add(lim.MaxFuture)) {
		return AuditEvent{}, newError(ReasonTimestampOutOfRange, "/ts: "+ev.TS.Format(time.RFC3339Nano)+" is outside the accepted window")
	}
	if n := len(ev.Attributes); n > lim.MaxAttributes {
		return AuditEvent{}, newError(ReasonTooManyAttributes, "/attributes: "+strconv.Itoa(n)+" attributes exceed limit of "+strconv.Itoa(lim.MaxAttributes))
	}
	return ev, nil
}
