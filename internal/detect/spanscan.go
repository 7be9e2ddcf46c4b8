package detect

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"math"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/agentaudit/agentaudit/internal/event"
)

// The only rule that reads spans (rate.limit_exceeded, LLM tokens) needs,
// per span: trace id, start time, operation name, agent id, tenant and the
// input and output token counts. event.DecodeSpans decodes every field and
// flattens every attribute into maps (about a third of the detector's CPU
// under simulator traffic); spanScanner reads the OTLP protobuf wire format
// for those fields only and fills them with event.DecodeSpans' semantics:
// the same key priorities (input_tokens over the deprecated prompt_tokens,
// the last occurrence of a key wins), the same token-count forms, the
// agent from the span else its resource, the tenant from the configured
// keys in order, span before resource.
//
// It must also accept exactly the messages ingest stores: a message ingest
// dead-letters (event.DecodeSpans rejects it, as a whole: ingest never
// keeps part of a message) must count for nothing here. So the scanner
// reads only messages it can prove DecodeSpans accepts, and leaves every
// other one to event.DecodeSpans, whose answer is then ingest's. It proves
// it in the same single walk over the bytes that reads the fields:
//   - the structure DecodeSpans' first pass checks (event.CheckSpansProto,
//     pdata's wire rules): the wire type of every known field of every
//     message, id lengths; the scanner is stricter where that is simpler
//     (groups, over-long varints, field numbers beyond int32, nesting
//     deeper than a string array, a trace or span id that is not exactly
//     16 or 8 bytes, all fall back);
//   - the size, span, attribute (span + resource + scope, and per event and
//     link), event and link limits are counted as DecodeSpans counts them;
//   - every string DecodeSpans checks (names, trace states, status
//     messages, scope name and version, event names, keys and values of
//     every attribute set) is checked against its byte limit and UTF-8
//     (one ASCII test over an attribute's key and string value stands for
//     both UTF-8 tests when it passes);
//   - every timestamp (start, end, events) against the window, and ids.
//
// Where DecodeSpans' check is more than a length and UTF-8 test, the
// scanner accepts less and falls back more: an attribute value must be a
// string, int, double, bool, empty, or an array of plain ASCII strings
// whose JSON fits the limit; a map, bytes, a value of several fields or a
// KeyValue with several values goes to DecodeSpans. So does a non-string
// value for one of the fields it reads, the deprecated
// InstrumentationLibrarySpans and otlp_json. The tests run the corpus of
// rejected messages ingest's tests use (eventtest), structurally damaged
// messages (checked against event.CheckSpansProto too) and damaged
// simulator messages through both and require the same decision on each.
//
// Two things agreement still depends on: the detector's spans limits
// (Config.Spans) must be ingest's (both default alike), and the timestamp
// window is measured when each service reads the message, so a span at the
// very edge of MaxAge can be inside it for one and outside for the other.
type spanScanner struct {
	opts event.SpanOptions // with its defaults
	lim  *event.Limits     // &opts.Limits
	// wantLen[n]: some key the scanner reads is n bytes long (n < 64): a
	// length check rejects nearly every other attribute without comparing
	// bytes; longer keys are compared.
	wantLen [64]bool
	minNs   uint64
	maxNs   uint64
	spans   int // spans of the message so far
	// firstKey: per span of the ResourceSpans being read, the index of
	// the first TenantAttributes key it has (len: none).
	firstKey []int
	tenant   []string // per TenantAttributes key: the span's value
	res      []string // per TenantAttributes key: the resource's value
	// The last trace id and string values made (see intern): the spans of
	// a message share their trace, agent and tenant, so most are not
	// made again.
	lastTrace    [16]byte
	lastTraceHex string
	lastStr      [4]string
}

// errScanFallback: the scanner leaves this message to event.DecodeSpans.
var errScanFallback = errors.New("span scanner: fall back to the full decoder")

func newSpanScanner(opts event.SpanOptions) *spanScanner {
	opts = opts.WithDefaults()
	sc := &spanScanner{opts: opts, tenant: make([]string, len(opts.TenantAttributes)), res: make([]string, len(opts.TenantAttributes))}
	sc.lim = &sc.opts.Limits
	for _, k := range append([]string{event.KeyOperationName, event.KeyAgentID, event.KeyInputTokens, event.KeyPromptTokens,
		event.KeyOutputTokens, event.KeyCompletionTokens}, opts.TenantAttributes...) {
		if len(k) < len(sc.wantLen) {
			sc.wantLen[len(k)] = true
		}
	}
	return sc
}

// decode appends the spans of one message to dst: by the scanner when it
// can, else by event.DecodeSpans. On error dst is returned unchanged.
func (sc *spanScanner) decode(data []byte, enc event.Encoding, dst []event.Span) ([]event.Span, error) {
	if enc == event.EncodingProto {
		out, err := sc.scan(data, dst)
		if err == nil {
			return out, nil
		}
		clear(dst[len(dst):cap(dst)])
	}
	out, _, err := event.DecodeSpans(data, enc, sc.opts, dst)
	return out, err
}

// Wire types.
const (
	wtVarint = 0
	wtI64    = 1
	wtLen    = 2
	wtI32    = 5
)

// wire is a protobuf field: its number, wire type, varint/fixed value or
// the range of its bytes.
type wire struct {
	num  int
	typ  int
	v    uint64
	s, e int
}

// next reads the field at pos (< end) of b and returns it with the
// position after it; ok is false for what the scanner leaves to
// DecodeSpans: a malformed field, a group, a field number beyond int32
// (pdata's reader truncates it), a varint of more than 64 bits.
func next(b []byte, pos, end int) (f wire, after int, ok bool) {
	// Fast path: what OTLP encoders write almost everywhere, a one-byte tag
	// and a one-byte length or varint, or a fixed64 (timestamps).
	if end-pos >= 2 && b[pos] < 0x80 && b[pos] >= 8 {
		switch t := b[pos]; t & 7 {
		case wtLen:
			if e := pos + 2 + int(b[pos+1]); b[pos+1] < 0x80 && e <= end {
				return wire{num: int(t >> 3), typ: wtLen, s: pos + 2, e: e}, e, true
			}
		case wtVarint:
			if b[pos+1] < 0x80 {
				return wire{num: int(t >> 3), v: uint64(b[pos+1])}, pos + 2, true
			}
		case wtI64:
			if pos+9 <= end {
				return wire{num: int(t >> 3), typ: wtI64, v: binary.LittleEndian.Uint64(b[pos+1:])}, pos + 9, true
			}
		}
	}
	return nextSlow(b, pos, end)
}

func nextSlow(b []byte, pos, end int) (f wire, after int, ok bool) {
	tag, n := binary.Uvarint(b[pos:end])
	if n <= 0 || tag>>3 == 0 || tag>>3 > math.MaxInt32 {
		return f, end, false
	}
	pos += n
	f.num, f.typ = int(tag>>3), int(tag&7)
	switch f.typ {
	case wtVarint:
		v, n := binary.Uvarint(b[pos:end])
		if n <= 0 {
			return f, end, false
		}
		f.v, pos = v, pos+n
	case wtI64:
		if end-pos < 8 {
			return f, end, false
		}
		f.v, pos = binary.LittleEndian.Uint64(b[pos:]), pos+8
	case wtI32:
		if end-pos < 4 {
			return f, end, false
		}
		f.v, pos = uint64(binary.LittleEndian.Uint32(b[pos:])), pos+4
	case wtLen:
		l, n := binary.Uvarint(b[pos:end])
		if n <= 0 || l > uint64(end-pos-n) {
			return f, end, false
		}
		f.s = pos + n
		f.e = f.s + int(l)
		pos = f.e
	default: // groups: left to the full decoder
		return f, end, false
	}
	return f, pos, true
}

// keyVal is a KeyValue: its key (the message's bytes) and value.
type keyVal struct {
	k []byte
	v anyValue
}

// anyValue is an OTLP AnyValue as far as the scanner reads it.
type anyValue struct {
	kind byte   // 0 none, 's' string, 'i' int, 'd' double, 'o' other (bool, array)
	s    []byte // a string's bytes in the message
	v    uint64
}

// checkStr is DecodeSpans' test of a stored string: within the value limit
// and valid UTF-8.
func (sc *spanScanner) checkStr(s []byte) bool {
	return len(s) <= sc.lim.MaxAttributeValueBytes && (ascii(s) || utf8.Valid(s))
}

// ascii reports whether every byte of b is below 0x80: eight at a time,
// the last eight overlapping the others, no branch but the loop's.
func ascii(b []byte) bool {
	n := len(b)
	if n < 8 {
		var or byte
		for _, c := range b {
			or |= c
		}
		return or < 0x80
	}
	or := binary.LittleEndian.Uint64(b[n-8:])
	for i := 0; i+8 <= n; i += 8 {
		or |= binary.LittleEndian.Uint64(b[i:])
	}
	return or&0x8080808080808080 == 0
}

// anyValue reads the AnyValue b[s:e] and checks that pdata reads it and
// DecodeSpans stores it: one field, a string that passes checkStr, an
// int, double, bool or none, or an array of plain strings (plainStrings).
// Anything else falls back.
func (sc *spanScanner) anyValue(b []byte, s, e int) (anyValue, bool) {
	var a anyValue
	if s == e {
		return a, true
	}
	f, pos, ok := next(b, s, e)
	if !ok || pos != e {
		return a, false // several fields merge in pdata: the full decoder's business
	}
	switch {
	case f.num == 1 && f.typ == wtLen:
		a = anyValue{kind: 's', s: b[f.s:f.e]}
		return a, sc.checkStr(a.s)
	case f.num == 2 && f.typ == wtVarint:
		a = anyValue{kind: 'o'}
	case f.num == 3 && f.typ == wtVarint:
		a = anyValue{kind: 'i', v: f.v}
	case f.num == 4 && f.typ == wtI64:
		a = anyValue{kind: 'd', v: f.v}
	case f.num == 5 && f.typ == wtLen:
		if !sc.plainStrings(b, f.s, f.e) {
			return a, false
		}
		a = anyValue{kind: 'o'}
	case f.num == 8 && f.typ == wtVarint: // string_value_strindex: no value for traces
	default: // maps, bytes, unknown fields
		return a, false
	}
	return a, true
}

// plainStrings reports whether the ArrayValue b[s:e] holds only strings of
// printable ASCII other than quote and backslash whose JSON array, as
// DecodeSpans flattens it, fits the value limit: then DecodeSpans stores it
// (whole or element by element) without complaint.
func (sc *spanScanner) plainStrings(b []byte, s, e int) bool {
	size := 1 // '['
	for pos := s; pos < e; {
		f, after, ok := next(b, pos, e)
		if !ok || f.num != 1 || f.typ != wtLen {
			return false
		}
		pos = after
		v, ep, ok := next(b, f.s, f.e)
		if !ok || ep != f.e || v.num != 1 || v.typ != wtLen {
			return false
		}
		for _, c := range b[v.s:v.e] {
			if c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
				return false
			}
		}
		size += v.e - v.s + 3 // quotes, then ',' or ']'
	}
	return max(size, 2) <= sc.lim.MaxAttributeValueBytes
}

// keyValue reads the KeyValue b[s:e] and checks it as pdata reads it and
// DecodeSpans stores it: the key within its limit and UTF-8, the value by
// anyValue. The key is the message's bytes.
func (sc *spanScanner) keyValue(b []byte, s, e int, kv *keyVal) bool {
	// Fast path for what encoders write: a key (field 1) and a value
	// (field 2) in either order — pdata writes the value first — with
	// one-byte tags and lengths. Every byte of b[s+2:e] other than the key
	// and a string value is then a tag or a length below 0x80, so when
	// all of them are ASCII, so are the key and the value.
	if e-s >= 4 && b[s+1] < 0x80 {
		if m := s + 2 + int(b[s+1]); m+2 <= e && b[m+1] < 0x80 && m+2+int(b[m+1]) == e {
			var k []byte
			vs, ve := -1, -1
			switch t1, t2 := b[s], b[m]; {
			case t1 == 0x12 && t2 == 0x0a:
				k, vs, ve = b[m+2:e], s+2, m
			case t1 == 0x0a && t2 == 0x12:
				k, vs, ve = b[s+2:m], m+2, e
			}
			if vs >= 0 && len(k) <= sc.lim.MaxAttributeKeyBytes && ve-vs >= 2 {
				switch b[vs] {
				case 0x0a: // string, one-byte length
					if b[vs+1] < 0x80 && vs+2+int(b[vs+1]) == ve {
						kv.k, kv.v = k, anyValue{kind: 's', s: b[vs+2 : ve]}
						return len(kv.v.s) <= sc.lim.MaxAttributeValueBytes &&
							(ascii(b[s+2:e]) || utf8.Valid(k) && utf8.Valid(kv.v.s))
					}
				case 0x18: // int
					if n, l := binary.Uvarint(b[vs+1 : ve]); l == ve-vs-1 {
						kv.k, kv.v = k, anyValue{kind: 'i', v: n}
						return ascii(k) || utf8.Valid(k)
					}
				case 0x21: // double
					if ve-vs == 9 {
						kv.k, kv.v = k, anyValue{kind: 'd', v: binary.LittleEndian.Uint64(b[vs+1:])}
						return ascii(k) || utf8.Valid(k)
					}
				}
			}
		}
	}
	var k []byte
	vs, ve, values := -1, -1, 0
	for pos := s; pos < e; {
		f, after, ok := next(b, pos, e)
		if !ok {
			return false
		}
		pos = after
		switch f.num {
		case 1:
			if f.typ != wtLen {
				return false
			}
			k = b[f.s:f.e]
		case 2:
			if f.typ != wtLen {
				return false
			}
			vs, ve = f.s, f.e
			values++
		case 3: // key_strindex (profiles)
			if f.typ != wtVarint {
				return false
			}
		}
	}
	if values > 1 || len(k) > sc.lim.MaxAttributeKeyBytes || !utf8.Valid(k) {
		return false // repeated values merge in pdata: the full decoder's business
	}
	kv.k, kv.v = k, anyValue{}
	if vs < 0 {
		return true
	}
	var ok bool
	kv.v, ok = sc.anyValue(b, vs, ve)
	return ok
}

// wanted reports whether the scanner reads attribute k of a span.
func (sc *spanScanner) wanted(k []byte) bool {
	if len(k) < len(sc.wantLen) && !sc.wantLen[len(k)] {
		return false
	}
	return string(k) == event.KeyOperationName || string(k) == event.KeyAgentID || tokenKey(k) >= 0 || sc.tenantIndex(k) >= 0
}

// attribute checks one attribute of a set DecodeSpans stores as a map
// (resource, scope, event, link).
func (sc *spanScanner) attribute(b []byte, s, e int) bool {
	var kv keyVal
	return sc.keyValue(b, s, e, &kv)
}

// str returns v as a stored string value: a string (checked by anyValue)
// or none, else ok false.
func (sc *spanScanner) str(v anyValue) (string, bool) {
	switch v.kind {
	case 0:
		return "", true
	case 's':
		// The GenAI operation names: no copy (the spans of a message have
		// several, which would push agents and tenants out of intern's few).
		if op, ok := genAIOperation(v.s); ok {
			return op, true
		}
		return sc.intern(v.s), true
	}
	return "", false // flattened forms (numbers, JSON): the full decoder's business
}

// genAIOperation returns b as a constant when it is one of the
// gen_ai.operation.name values of the GenAI semantic conventions.
func genAIOperation(b []byte) (string, bool) {
	switch string(b) {
	case "chat":
		return "chat", true
	case "invoke_agent":
		return "invoke_agent", true
	case "execute_tool":
		return "execute_tool", true
	case "create_agent":
		return "create_agent", true
	case "embeddings":
		return "embeddings", true
	case "generate_content":
		return "generate_content", true
	case "text_completion":
		return "text_completion", true
	}
	return "", false
}

// intern returns b as a string: one of the last few made when it has the
// same bytes (agents and tenants repeat from span to span), else a new one
// that replaces the oldest of them. Comparing costs no allocation.
func (sc *spanScanner) intern(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	for _, s := range sc.lastStr {
		if s == string(b) {
			return s
		}
	}
	s := string(b)
	copy(sc.lastStr[1:], sc.lastStr[:len(sc.lastStr)-1])
	sc.lastStr[0] = s
	return s
}

// traceHex returns the hex form of a 16-byte trace id, the last one made
// when it is the same trace.
func (sc *spanScanner) traceHex(trace []byte) string {
	if sc.lastTraceHex == "" || string(trace) != string(sc.lastTrace[:]) {
		copy(sc.lastTrace[:], trace)
		sc.lastTraceHex = hex.EncodeToString(trace)
	}
	return sc.lastTraceHex
}

// tokens reads a token count as event.DecodeSpans does: a non-negative
// int, an integral non-negative double below 2^64, or decimal digits.
func tokens(v anyValue) (uint64, bool) {
	switch v.kind {
	case 'i':
		return v.v, int64(v.v) >= 0
	case 'd':
		f := math.Float64frombits(v.v)
		if f >= 0 && f < 1<<64 && f == math.Trunc(f) {
			return uint64(f), true
		}
	case 's':
		n, err := strconv.ParseUint(string(v.s), 10, 64)
		return n, err == nil
	}
	return 0, false
}

func (sc *spanScanner) tenantIndex(k []byte) int {
	for j, tk := range sc.opts.TenantAttributes {
		if string(k) == tk {
			return j
		}
	}
	return -1
}

// scan reads an otlp_proto message in one walk, or returns
// errScanFallback (and dst unchanged) for a message it leaves to
// DecodeSpans.
func (sc *spanScanner) scan(data []byte, dst []event.Span) ([]event.Span, error) {
	if len(data) > sc.lim.MaxMessageBytes {
		return dst, errScanFallback
	}
	now := sc.opts.Now()
	sc.minNs = uint64(max(now.Add(-sc.lim.MaxAge).UnixNano(), 0))
	sc.maxNs = uint64(now.Add(sc.lim.MaxFuture).UnixNano())
	sc.spans = 0
	base := len(dst)
	for pos := 0; pos < len(data); {
		f, after, ok := next(data, pos, len(data))
		if ok && f.num == 1 {
			if f.typ != wtLen {
				ok = false
			} else {
				dst, ok = sc.resourceSpans(data, f.s, f.e, dst)
			}
		}
		if !ok {
			return dst[:base], errScanFallback
		}
		pos = after
	}
	return dst, nil
}

// resourceSpans reads one ResourceSpans in one walk: its ScopeSpans,
// then (pdata writes it last) its resource, every occurrence merged (later
// attributes win). What a span takes from its resource — the agent when
// it has none, the tenant by the configured key order, the attribute
// count — is settled once the walk has seen the whole resource
// (fromResource). DecodeSpans checks the resource of every ResourceSpans
// and the scope of every ScopeSpans, with spans or without, so the scanner
// does too.
func (sc *spanScanner) resourceSpans(b []byte, s, e int, dst []event.Span) ([]event.Span, bool) {
	clear(sc.res)
	sc.firstKey = sc.firstKey[:0]
	base := len(dst)
	var resAgent string
	resAttrs, spanAttrs := 0, 0
	for pos := s; pos < e; {
		f, after, ok := next(b, pos, e)
		if !ok || f.num <= 3 && f.typ != wtLen {
			return dst, false
		}
		pos = after
		switch f.num {
		case 1: // Resource
			if !sc.resource(b, f.s, f.e, &resAgent, &resAttrs) {
				return dst, false
			}
		case 2: // ScopeSpans
			var n int
			if dst, n, ok = sc.scopeSpans(b, f.s, f.e, dst); !ok {
				return dst, false
			}
			spanAttrs = max(spanAttrs, n)
		case 1000:
			return dst, false // InstrumentationLibrarySpans: the full decoder migrates them
		}
	}
	if len(dst) > base && spanAttrs+resAttrs > sc.lim.MaxAttributesPerSpan {
		return dst, false
	}
	for i := base; i < len(dst); i++ {
		sc.fromResource(&dst[i], sc.firstKey[i-base], resAgent)
	}
	return dst, true
}

// fromResource completes a span's agent and tenant with its resource's:
// the span's agent unless empty, and the tenant of the first configured
// key the span or the resource has, the span's first (span read it).
// first is the index of the first key the span has, row.TenantID its
// value.
func (sc *spanScanner) fromResource(row *event.Span, first int, resAgent string) {
	if row.AgentID == "" {
		row.AgentID = resAgent
	}
	for _, t := range sc.res[:first] {
		if t != "" {
			row.TenantID = t
			return
		}
	}
	if first == len(sc.res) {
		row.TenantID = sc.opts.UnknownTenant
	}
}

// resource reads one occurrence of a Resource: its attributes (counted in
// *attrs, the agent and tenants kept), dropped count and entity refs.
func (sc *spanScanner) resource(b []byte, s, e int, agent *string, attrs *int) bool {
	for pos := s; pos < e; {
		f, after, ok := next(b, pos, e)
		if !ok {
			return false
		}
		pos = after
		switch f.num {
		case 1:
			*attrs++
			if f.typ != wtLen || !sc.resourceAttribute(b, f.s, f.e, agent) {
				return false
			}
		case 2:
			if f.typ != wtVarint {
				return false
			}
		case 3: // EntityRef: fields 1 to 4 are strings
			if f.typ != wtLen {
				return false
			}
			for ep := f.s; ep < f.e; {
				ef, after, ok := next(b, ep, f.e)
				if !ok || ef.num <= 4 && ef.typ != wtLen {
					return false
				}
				ep = after
			}
		}
	}
	return true
}

func (sc *spanScanner) resourceAttribute(b []byte, s, e int, agent *string) bool {
	var kv keyVal
	if !sc.keyValue(b, s, e, &kv) {
		return false
	}
	k, v := kv.k, kv.v
	isAgent, tenant := string(k) == event.KeyAgentID, sc.tenantIndex(k)
	if !isAgent && tenant < 0 {
		return true
	}
	str, ok := sc.str(v)
	if !ok {
		return false
	}
	if isAgent {
		*agent = str
	}
	if tenant >= 0 {
		sc.res[tenant] = str
	}
	return true
}

// scopeSpans reads one ScopeSpans in one walk: its spans and its scope
// (checked: name, version, attributes, every occurrence; pdata writes it
// last). It returns the most attributes a span has with its scope's, 0
// without spans.
func (sc *spanScanner) scopeSpans(b []byte, s, e int, dst []event.Span) ([]event.Span, int, bool) {
	scopeAttrs, most, spans := 0, 0, false
	for pos := s; pos < e; {
		f, after, ok := next(b, pos, e)
		if !ok || f.num <= 3 && f.typ != wtLen {
			return dst, 0, false
		}
		pos = after
		switch f.num {
		case 1:
			if !sc.scope(b, f.s, f.e, &scopeAttrs) {
				return dst, 0, false
			}
		case 2:
			if sc.spans++; sc.spans > sc.lim.MaxSpansPerMessage {
				return dst, 0, false
			}
			if len(dst) == cap(dst) {
				dst = append(dst, event.Span{})
			} else {
				dst = dst[:len(dst)+1]
			}
			row := &dst[len(dst)-1]
			*row = event.Span{}
			n, ok := sc.span(b, f.s, f.e, row)
			if !ok {
				return dst, 0, false
			}
			most, spans = max(most, n), true
		}
	}
	if !spans {
		return dst, 0, true
	}
	return dst, most + scopeAttrs, true
}

// scope checks one occurrence of an InstrumentationScope and counts its
// attributes in *attrs.
func (sc *spanScanner) scope(b []byte, s, e int, attrs *int) bool {
	for pos := s; pos < e; {
		f, after, ok := next(b, pos, e)
		if !ok {
			return false
		}
		pos = after
		switch f.num {
		case 1, 2: // name, version
			ok = f.typ == wtLen && sc.checkStr(b[f.s:f.e])
		case 3:
			*attrs++
			ok = f.typ == wtLen && sc.attribute(b, f.s, f.e)
		case 4:
			ok = f.typ == wtVarint
		}
		if !ok {
			return false
		}
	}
	return true
}

const (
	tokInput = iota
	tokPrompt
	tokOutput
	tokCompletion
)

func tokenKey(k []byte) int {
	switch string(k) {
	case event.KeyInputTokens:
		return tokInput
	case event.KeyPromptTokens:
		return tokPrompt
	case event.KeyOutputTokens:
		return tokOutput
	case event.KeyCompletionTokens:
		return tokCompletion
	}
	return -1
}

// spanFields is what span reads of a span's attributes.
type spanFields struct {
	agent, op string
	tok       [4]uint64
	haveTok   [4]bool
}

// span reads one span into row and checks everything pdata and
// DecodeSpans check of it but its number of attributes, which it returns
// (counted with the resource's and the scope's by the caller). The agent
// and tenant from the resource are the caller's (fromResource); span
// records the first tenant key the span has in sc.firstKey.
func (sc *spanScanner) span(b []byte, s, e int, row *event.Span) (int, bool) {
	var (
		trace, id            []byte
		start, end           uint64
		attrs, events, links int
		fields               spanFields
	)
	clear(sc.tenant)
	for pos := s; pos < e; {
		// Most fields of a span are attributes (field 9) of fewer than
		// 128 bytes: read here, not by next.
		if b[pos] == 9<<3|wtLen && pos+1 < e && b[pos+1] < 0x80 {
			as := pos + 2
			pos = as + int(b[pos+1])
			if attrs++; pos > e || !sc.spanAttribute(b, as, pos, &fields) {
				return 0, false
			}
			continue
		}
		f, after, ok := next(b, pos, e)
		if !ok {
			return 0, false
		}
		pos = after
		switch f.num {
		case 1:
			trace = b[f.s:f.e]
			ok = f.typ == wtLen && len(trace) == 16
		case 2:
			id = b[f.s:f.e]
			ok = f.typ == wtLen && len(id) == 8
		case 3, 5: // trace_state, name
			ok = f.typ == wtLen && sc.checkStr(b[f.s:f.e])
		case 4: // parent_span_id
			ok = f.typ == wtLen && (f.e == f.s || f.e-f.s == 8)
		case 6, 10, 12, 14: // kind, dropped counts
			ok = f.typ == wtVarint
		case 7:
			start = f.v
			ok = f.typ == wtI64
		case 8:
			end = f.v
			ok = f.typ == wtI64
		case 9:
			attrs++
			ok = f.typ == wtLen && sc.spanAttribute(b, f.s, f.e, &fields)
		case 11:
			events++
			ok = f.typ == wtLen && sc.event(b, f.s, f.e)
		case 13:
			links++
			ok = f.typ == wtLen && sc.link(b, f.s, f.e)
		case 15:
			ok = f.typ == wtLen && sc.status(b, f.s, f.e)
		case 16: // flags
			ok = f.typ == wtI32
		}
		if !ok {
			return 0, false
		}
	}
	if events > sc.lim.MaxEventsPerSpan || links > sc.lim.MaxLinksPerSpan ||
		isZero(trace) || isZero(id) ||
		start == 0 || end == 0 || !sc.inWindow(start) || !sc.inWindow(end) || end < start {
		return 0, false
	}
	row.TraceID = sc.traceHex(trace)
	row.StartTime = time.Unix(0, int64(start)).UTC()
	row.OperationName = fields.op
	row.AgentID = fields.agent
	row.InputTokens, row.OutputTokens = fields.tok[tokPrompt], fields.tok[tokCompletion]
	if fields.haveTok[tokInput] {
		row.InputTokens = fields.tok[tokInput]
	}
	if fields.haveTok[tokOutput] {
		row.OutputTokens = fields.tok[tokOutput]
	}
	first := len(sc.tenant)
	for j, t := range sc.tenant {
		if t != "" {
			first, row.TenantID = j, t
			break
		}
	}
	sc.firstKey = append(sc.firstKey, first)
	return attrs, true
}

// spanAttribute checks one span attribute and reads it when the scanner
// needs it.
func (sc *spanScanner) spanAttribute(b []byte, s, e int, out *spanFields) bool {
	var kv keyVal
	if !sc.keyValue(b, s, e, &kv) {
		return false
	}
	k, v, ok := kv.k, kv.v, true
	if !sc.wanted(k) {
		return true
	}
	if j := sc.tenantIndex(k); j >= 0 {
		if sc.tenant[j], ok = sc.str(v); !ok {
			return false
		}
	}
	switch string(k) {
	case event.KeyOperationName:
		out.op, ok = sc.str(v)
	case event.KeyAgentID:
		out.agent, ok = sc.str(v)
	default:
		if t := tokenKey(k); t >= 0 {
			if n, isCount := tokens(v); isCount {
				out.tok[t], out.haveTok[t] = n, true
			}
		}
	}
	return ok
}

// status checks a span's Status: its message is stored.
func (sc *spanScanner) status(b []byte, s, e int) bool {
	for pos := s; pos < e; {
		f, after, ok := next(b, pos, e)
		if !ok {
			return false
		}
		pos = after
		switch f.num {
		case 2:
			ok = f.typ == wtLen && sc.checkStr(b[f.s:f.e])
		case 3:
			ok = f.typ == wtVarint
		}
		if !ok {
			return false
		}
	}
	return true
}

// event checks a span event: its time in the window, its name, its
// attributes (at most MaxAttributesPerSpan).
func (sc *spanScanner) event(b []byte, s, e int) bool {
	var ts uint64
	attrs := 0
	for pos := s; pos < e; {
		f, after, ok := next(b, pos, e)
		if !ok {
			return false
		}
		pos = after
		switch f.num {
		case 1:
			ts = f.v
			ok = f.typ == wtI64
		case 2:
			ok = f.typ == wtLen && sc.checkStr(b[f.s:f.e])
		case 3:
			attrs++
			ok = f.typ == wtLen && sc.attribute(b, f.s, f.e)
		case 4:
			ok = f.typ == wtVarint
		}
		if !ok {
			return false
		}
	}
	return sc.inWindow(ts) && attrs <= sc.lim.MaxAttributesPerSpan
}

// link checks a span link: its ids set, its trace state, its attributes.
func (sc *spanScanner) link(b []byte, s, e int) bool {
	var trace, id []byte
	attrs := 0
	for pos := s; pos < e; {
		f, after, ok := next(b, pos, e)
		if !ok {
			return false
		}
		pos = after
		switch f.num {
		case 1:
			trace = b[f.s:f.e]
			ok = f.typ == wtLen && len(trace) == 16
		case 2:
			id = b[f.s:f.e]
			ok = f.typ == wtLen && len(id) == 8
		case 3:
			ok = f.typ == wtLen && sc.checkStr(b[f.s:f.e])
		case 4:
			attrs++
			ok = f.typ == wtLen && sc.attribute(b, f.s, f.e)
		case 5:
			ok = f.typ == wtVarint
		case 6:
			ok = f.typ == wtI32
		}
		if !ok {
			return false
		}
	}
	return !isZero(trace) && !isZero(id) && attrs <= sc.lim.MaxAttributesPerSpan
}

func (sc *spanScanner) inWindow(ns uint64) bool { return ns >= sc.minNs && ns <= sc.maxNs }

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
