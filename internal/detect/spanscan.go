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
// other one to event.DecodeSpans, whose answer is then ingest's:
//   - the structure is DecodeSpans' own first pass (event.CheckSpansProto:
//     pdata's wire rules, id lengths, nesting) and gives the span count;
//   - the size, span, attribute (span + resource + scope, and per event and
//     link), event and link limits are counted as DecodeSpans counts them;
//   - every string DecodeSpans checks (names, trace states, status
//     messages, scope name and version, event names, keys and values of
//     every attribute set) is checked against its byte limit and UTF-8;
//   - every timestamp (start, end, events) against the window, and ids.
//
// Where DecodeSpans' check is more than a length and UTF-8 test, the
// scanner accepts less and falls back more: an attribute value must be a
// string, int, double, bool, empty, or an array of plain ASCII strings
// whose JSON fits the limit; a map, bytes, a value of several fields or a
// KeyValue with several values goes to DecodeSpans. So does a non-string
// value for one of the fields it reads, the deprecated
// InstrumentationLibrarySpans and otlp_json. The tests run the corpus of
// rejected messages ingest's tests use (eventtest) and damaged simulator
// messages through both and require the same decision on each. The checks
// about doubled the scanner's time (still about half of DecodeSpans' on
// simulator traffic, which never falls back).
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
	tenant  []string // per TenantAttributes key: the span's value
	res     []string // per TenantAttributes key: the resource's value
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

// wire is a protobuf field: its number, wire type, varint/fixed value or
// the range of its bytes.
type wire struct {
	num  uint64
	typ  byte
	v    uint64
	s, e int
}

// next reads the field at *pos (< end) of b.
func next(b []byte, pos *int, end int) (wire, error) {
	// Fast path: what OTLP encoders write almost everywhere, a one-byte tag
	// and a one-byte length or varint, or a fixed64 (timestamps).
	if p := *pos; end-p >= 2 && b[p] < 0x80 && b[p]>>3 != 0 {
		switch t := b[p]; t & 7 {
		case 2:
			if e := p + 2 + int(b[p+1]); b[p+1] < 0x80 && e <= end {
				*pos = e
				return wire{num: uint64(t >> 3), typ: 2, s: p + 2, e: e}, nil
			}
		case 0:
			if b[p+1] < 0x80 {
				*pos = p + 2
				return wire{num: uint64(t >> 3), v: uint64(b[p+1])}, nil
			}
		case 1:
			if p+9 <= end {
				*pos = p + 9
				return wire{num: uint64(t >> 3), typ: 1, v: binary.LittleEndian.Uint64(b[p+1:])}, nil
			}
		}
	}
	return nextSlow(b, pos, end)
}

func nextSlow(b []byte, pos *int, end int) (wire, error) {
	var f wire
	tag, n := binary.Uvarint(b[*pos:end])
	if n <= 0 {
		return f, errScanFallback
	}
	*pos += n
	f.num, f.typ = tag>>3, byte(tag&7)
	if f.num == 0 {
		return f, errScanFallback
	}
	switch f.typ {
	case 0:
		v, n := binary.Uvarint(b[*pos:end])
		if n <= 0 {
			return f, errScanFallback
		}
		f.v, *pos = v, *pos+n
	case 1:
		if end-*pos < 8 {
			return f, errScanFallback
		}
		f.v, *pos = binary.LittleEndian.Uint64(b[*pos:]), *pos+8
	case 5:
		if end-*pos < 4 {
			return f, errScanFallback
		}
		f.v, *pos = uint64(binary.LittleEndian.Uint32(b[*pos:])), *pos+4
	case 2:
		l, n := binary.Uvarint(b[*pos:end])
		if n <= 0 || l > uint64(end-*pos-n) {
			return f, errScanFallback
		}
		f.s = *pos + n
		f.e = f.s + int(l)
		*pos = f.e
	default: // groups: left to the full decoder
		return f, errScanFallback
	}
	return f, nil
}

// anyValue is an OTLP AnyValue as far as the scanner reads it.
type anyValue struct {
	kind byte   // 0 none, 's' string, 'i' int, 'd' double, 'o' other (bool, array)
	s    []byte // a string's bytes in the message
	v    uint64
}

// checkStr is DecodeSpans' test of a stored string: within the value limit
// and valid UTF-8.
func (sc *spanScanner) checkStr(s []byte) error {
	if len(s) > sc.lim.MaxAttributeValueBytes || !utf8.Valid(s) {
		return errScanFallback
	}
	return nil
}

// anyValue reads an AnyValue and checks that DecodeSpans stores it: one
// field, a string that passes checkStr, an int, double, bool or none, or
// an array of plain strings (plainStrings). Anything else falls back.
func (sc *spanScanner) anyValue(b []byte, s, e int) (anyValue, error) {
	var a anyValue
	for pos, n := s, 0; pos < e; n++ {
		f, err := next(b, &pos, e)
		if err != nil || n > 0 {
			return a, errScanFallback // several fields merge in pdata: the full decoder's business
		}
		switch {
		case f.num == 1 && f.typ == 2:
			a = anyValue{kind: 's', s: b[f.s:f.e]}
			if err := sc.checkStr(a.s); err != nil {
				return a, err
			}
		case f.num == 2 && f.typ == 0:
			a = anyValue{kind: 'o'}
		case f.num == 3 && f.typ == 0:
			a = anyValue{kind: 'i', v: f.v}
		case f.num == 4 && f.typ == 1:
			a = anyValue{kind: 'd', v: f.v}
		case f.num == 5 && f.typ == 2:
			if !sc.plainStrings(b, f.s, f.e) {
				return a, errScanFallback
			}
			a = anyValue{kind: 'o'}
		case f.num == 8 && f.typ == 0: // string_value_strindex: no value for traces
			a = anyValue{}
		default: // maps, bytes, unknown fields
			return a, errScanFallback
		}
	}
	return a, nil
}

// plainStrings reports whether the ArrayValue b[s:e] holds only strings of
// printable ASCII other than quote and backslash whose JSON array, as DecodeSpans
// flattens it, fits the value limit: then DecodeSpans stores it (whole or
// element by element) without complaint.
func (sc *spanScanner) plainStrings(b []byte, s, e int) bool {
	size := 1 // '['
	for pos := s; pos < e; {
		f, err := next(b, &pos, e)
		if err != nil || f.num != 1 || f.typ != 2 {
			return false
		}
		ep := f.s
		v, err := next(b, &ep, f.e)
		if err != nil || ep != f.e || v.num != 1 || v.typ != 2 {
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

// keyValue reads a KeyValue and checks it as DecodeSpans stores it: the key
// within its limit and UTF-8, the value by anyValue. The key is the
// message's bytes.
func (sc *spanScanner) keyValue(b []byte, s, e int) ([]byte, anyValue, error) {
	// Fast path for what encoders write: a key (field 1) and a value
	// (field 2) in either order — pdata writes the value first — with
	// one-byte tags and lengths, the value a string or a small int.
	if p := s; e-p >= 4 && b[p+1] < 0x80 {
		if m := p + 2 + int(b[p+1]); m+2 <= e && b[m+1] < 0x80 && m+2+int(b[m+1]) == e {
			var k []byte
			vs, ve := -1, -1
			switch t1, t2 := b[p], b[m]; {
			case t1 == 0x12 && t2 == 0x0a:
				k, vs, ve = b[m+2:e], p+2, m
			case t1 == 0x0a && t2 == 0x12:
				k, vs, ve = b[p+2:m], m+2, e
			}
			if vs >= 0 {
				if len(k) > sc.lim.MaxAttributeKeyBytes || !utf8.Valid(k) {
					return k, anyValue{}, errScanFallback
				}
				if ve-vs >= 2 && b[vs+1] < 0x80 {
					switch b[vs] {
					case 0x0a: // string
						if vs+2+int(b[vs+1]) == ve {
							v := anyValue{kind: 's', s: b[vs+2 : ve]}
							return k, v, sc.checkStr(v.s)
						}
					case 0x18: // int
						if vs+2 == ve {
							return k, anyValue{kind: 'i', v: uint64(b[vs+1])}, nil
						}
					}
				}
				v, err := sc.anyValue(b, vs, ve)
				return k, v, err
			}
		}
	}
	var k []byte
	vs, ve, values := -1, -1, 0
	for pos := s; pos < e; {
		f, err := next(b, &pos, e)
		if err != nil {
			return nil, anyValue{}, err
		}
		switch f.num {
		case 1:
			if f.typ != 2 {
				return nil, anyValue{}, errScanFallback
			}
			k = b[f.s:f.e]
		case 2:
			if f.typ != 2 {
				return nil, anyValue{}, errScanFallback
			}
			vs, ve = f.s, f.e
			values++
		}
	}
	if values > 1 || len(k) > sc.lim.MaxAttributeKeyBytes || !utf8.Valid(k) {
		return k, anyValue{}, errScanFallback // repeated values merge in pdata: the full decoder's business
	}
	if vs < 0 {
		return k, anyValue{}, nil
	}
	v, err := sc.anyValue(b, vs, ve)
	return k, v, err
}

// wanted reports whether the scanner reads attribute k of a span.
func (sc *spanScanner) wanted(k []byte) bool {
	if len(k) < len(sc.wantLen) && !sc.wantLen[len(k)] {
		return false
	}
	return string(k) == event.KeyOperationName || string(k) == event.KeyAgentID || tokenKey(k) >= 0 || sc.tenantIndex(k) >= 0
}

// attribute checks one attribute of a set DecodeSpans stores as a map
// (scope, event, link): errScanFallback unless it passes keyValue.
func (sc *spanScanner) attribute(b []byte, s, e int) error {
	_, _, err := sc.keyValue(b, s, e)
	return err
}

// str returns v as a stored string value: a string (checked by anyValue)
// or none, else fallback.
func (sc *spanScanner) str(v anyValue) (string, error) {
	switch v.kind {
	case 0:
		return "", nil
	case 's':
		// The GenAI operation names: no copy (the spans of a message have
		// several, which would push agents and tenants out of intern's few).
		if op, ok := genAIOperation(v.s); ok {
			return op, nil
		}
		return sc.intern(v.s), nil
	}
	return "", errScanFallback // flattened forms (numbers, JSON): the full decoder's business
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

func (sc *spanScanner) scan(data []byte, dst []event.Span) ([]event.Span, error) {
	if len(data) > sc.lim.MaxMessageBytes {
		return dst, errScanFallback
	}
	spans, err := event.CheckSpansProto(data)
	if err != nil || spans > sc.lim.MaxSpansPerMessage {
		return dst, errScanFallback
	}
	if spans == 0 {
		return dst, nil // DecodeSpans accepts it as it is, and it counts for nothing
	}
	now := sc.opts.Now()
	sc.minNs = uint64(max(now.Add(-sc.lim.MaxAge).UnixNano(), 0))
	sc.maxNs = uint64(now.Add(sc.lim.MaxFuture).UnixNano())
	base := len(dst)
	err = messages(data, 0, len(data), 1, func(s, e int) (err error) {
		dst, err = sc.resourceSpans(data, s, e, dst)
		return err
	})
	if err != nil {
		return dst[:base], err
	}
	return dst, nil
}

// messages calls fn with the bounds of each occurrence of the
// length-delimited field num in b[s:e], in order; num with another wire
// type is errScanFallback.
func messages(b []byte, s, e int, num uint64, fn func(s, e int) error) error {
	for pos := s; pos < e; {
		f, err := next(b, &pos, e)
		if err != nil {
			return err
		}
		if f.num != num {
			continue
		}
		if f.typ != 2 {
			return errScanFallback
		}
		if err := fn(f.s, f.e); err != nil {
			return err
		}
	}
	return nil
}

// resourceSpans reads one ResourceSpans: its resource (every occurrence,
// merged: later attributes win), then each ScopeSpans. DecodeSpans checks
// the resource of every ResourceSpans and the scope of every ScopeSpans,
// with spans or without, so the scanner does too.
func (sc *spanScanner) resourceSpans(b []byte, s, e int, dst []event.Span) ([]event.Span, error) {
	clear(sc.res)
	var resAgent string
	resAttrs := 0
	for pos := s; pos < e; {
		f, err := next(b, &pos, e)
		if err != nil {
			return dst, err
		}
		switch f.num {
		case 1: // Resource
			if f.typ != 2 {
				return dst, errScanFallback
			}
			err = messages(b, f.s, f.e, 1, func(s, e int) error {
				resAttrs++
				k, v, err := sc.keyValue(b, s, e)
				if err != nil {
					return err
				}
				agent, tenant := string(k) == event.KeyAgentID, sc.tenantIndex(k)
				if !agent && tenant < 0 {
					return nil
				}
				str, err := sc.str(v)
				if err != nil {
					return err
				}
				if agent {
					resAgent = str
				}
				if tenant >= 0 {
					sc.res[tenant] = str
				}
				return nil
			})
			if err != nil {
				return dst, err
			}
		case 1000:
			return dst, errScanFallback // InstrumentationLibrarySpans: the full decoder migrates them
		}
	}
	err := messages(b, s, e, 2, func(s, e int) (err error) {
		dst, err = sc.scopeSpans(b, s, e, dst, resAgent, resAttrs)
		return err
	})
	return dst, err
}

// scopeSpans reads one ScopeSpans: its scope (checked: name, version,
// attributes, every occurrence), then its spans. outer is the number of
// resource attributes, counted with each span's.
func (sc *spanScanner) scopeSpans(b []byte, s, e int, dst []event.Span, resAgent string, outer int) ([]event.Span, error) {
	err := messages(b, s, e, 1, func(s, e int) error {
		for sp := s; sp < e; {
			sf, err := next(b, &sp, e)
			if err != nil {
				return err
			}
			switch {
			case (sf.num == 1 || sf.num == 2) && sf.typ == 2: // name, version
				err = sc.checkStr(b[sf.s:sf.e])
			case sf.num == 3 && sf.typ == 2:
				outer++
				err = sc.attribute(b, sf.s, sf.e)
			case sf.num <= 3:
				err = errScanFallback
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return dst, err
	}
	err = messages(b, s, e, 2, func(s, e int) error {
		if len(dst) == cap(dst) {
			dst = append(dst, event.Span{})
		} else {
			dst = dst[:len(dst)+1]
		}
		row := &dst[len(dst)-1]
		*row = event.Span{}
		return sc.span(b, s, e, row, resAgent, outer)
	})
	return dst, err
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

// span reads one span into row and checks everything DecodeSpans checks of
// it; outer is the number of resource and scope attributes.
func (sc *spanScanner) span(b []byte, s, e int, row *event.Span, resAgent string, outer int) error {
	var (
		trace, id            []byte
		start, end           uint64
		attrs, events, links int
		tok                  [4]uint64
		haveTok              [4]bool
		agent, op            string
	)
	clear(sc.tenant)
	for pos := s; pos < e; {
		f, err := next(b, &pos, e)
		if err != nil {
			return err
		}
		switch f.num {
		case 1, 2, 3, 5, 9, 11, 13, 15:
			if f.typ != 2 {
				return errScanFallback
			}
		case 7, 8:
			if f.typ != 1 {
				return errScanFallback
			}
		}
		switch f.num {
		case 1:
			trace = b[f.s:f.e]
		case 2:
			id = b[f.s:f.e]
		case 3, 5: // trace_state, name
			err = sc.checkStr(b[f.s:f.e])
		case 7:
			start = f.v
		case 8:
			end = f.v
		case 9:
			attrs++
			err = sc.spanAttribute(b, f.s, f.e, &agent, &op, &tok, &haveTok)
		case 11:
			events++
			err = sc.event(b, f.s, f.e)
		case 13:
			links++
			err = sc.link(b, f.s, f.e)
		case 15: // status: its message is stored
			for sp := f.s; sp < f.e && err == nil; {
				var sf wire
				if sf, err = next(b, &sp, f.e); err == nil && sf.num == 2 {
					if sf.typ != 2 {
						return errScanFallback
					}
					err = sc.checkStr(b[sf.s:sf.e])
				}
			}
		}
		if err != nil {
			return err
		}
	}
	// What DecodeSpans rejects, checked in its order would not matter: any
	// failure hands the message to it.
	if attrs+outer > sc.lim.MaxAttributesPerSpan || events > sc.lim.MaxEventsPerSpan || links > sc.lim.MaxLinksPerSpan ||
		len(trace) != 16 || isZero(trace) || isZero(id) ||
		start == 0 || end == 0 || !sc.inWindow(start) || !sc.inWindow(end) || end < start {
		return errScanFallback
	}
	row.TraceID = sc.traceHex(trace)
	row.StartTime = time.Unix(0, int64(start)).UTC()
	row.OperationName = op
	row.AgentID = agent
	if agent == "" {
		row.AgentID = resAgent
	}
	row.InputTokens, row.OutputTokens = tok[tokPrompt], tok[tokCompletion]
	if haveTok[tokInput] {
		row.InputTokens = tok[tokInput]
	}
	if haveTok[tokOutput] {
		row.OutputTokens = tok[tokOutput]
	}
	row.TenantID = sc.opts.UnknownTenant
	for j := range sc.tenant {
		if t := sc.tenant[j]; t != "" {
			row.TenantID = t
			break
		}
		if t := sc.res[j]; t != "" {
			row.TenantID = t
			break
		}
	}
	return nil
}

// spanAttribute checks one span attribute and reads it when the scanner
// needs it.
func (sc *spanScanner) spanAttribute(b []byte, s, e int, agent, op *string, tok *[4]uint64, haveTok *[4]bool) error {
	k, v, err := sc.keyValue(b, s, e)
	if err != nil || !sc.wanted(k) {
		return err
	}
	if j := sc.tenantIndex(k); j >= 0 {
		str, err := sc.str(v)
		if err != nil {
			return err
		}
		sc.tenant[j] = str
	}
	switch string(k) {
	case event.KeyOperationName:
		*op, err = sc.str(v)
	case event.KeyAgentID:
		*agent, err = sc.str(v)
	default:
		if t := tokenKey(k); t >= 0 {
			if n, ok := tokens(v); ok {
				tok[t], haveTok[t] = n, true
			}
		}
	}
	return err
}

// event checks a span event: its time in the window, its name, its
// attributes (at most MaxAttributesPerSpan).
func (sc *spanScanner) event(b []byte, s, e int) error {
	var ts uint64
	attrs := 0
	for pos := s; pos < e; {
		f, err := next(b, &pos, e)
		if err != nil {
			return err
		}
		switch {
		case f.num == 1 && f.typ == 1:
			ts = f.v
		case f.num == 2 && f.typ == 2:
			err = sc.checkStr(b[f.s:f.e])
		case f.num == 3 && f.typ == 2:
			attrs++
			err = sc.attribute(b, f.s, f.e)
		case f.num <= 3:
			err = errScanFallback
		}
		if err != nil {
			return err
		}
	}
	if !sc.inWindow(ts) || attrs > sc.lim.MaxAttributesPerSpan {
		return errScanFallback
	}
	return nil
}

// link checks a span link: its ids set, its trace state, its attributes.
func (sc *spanScanner) link(b []byte, s, e int) error {
	var trace, id []byte
	attrs := 0
	for pos := s; pos < e; {
		f, err := next(b, &pos, e)
		if err != nil {
			return err
		}
		if f.num <= 4 && f.typ != 2 {
			return errScanFallback
		}
		switch f.num {
		case 1:
			trace = b[f.s:f.e]
		case 2:
			id = b[f.s:f.e]
		case 3:
			err = sc.checkStr(b[f.s:f.e])
		case 4:
			attrs++
			err = sc.attribute(b, f.s, f.e)
		}
		if err != nil {
			return err
		}
	}
	if isZero(trace) || isZero(id) || attrs > sc.lim.MaxAttributesPerSpan {
		return errScanFallback
	}
	return nil
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
