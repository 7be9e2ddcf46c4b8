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
// keys in order, span before resource. Anything it does not handle exactly
// — a malformed message, a non-string value for one of the fields it reads,
// a value too long or not UTF-8, a timestamp outside the accepted window,
// the deprecated InstrumentationLibrarySpans, otlp_json — goes to
// event.DecodeSpans, so a message is read alike either way (the tests
// compare the two on simulator traffic and on mutated messages). What it
// does not check are the fields it does not read: a message ingest
// dead-letters for, say, an over-long span name still has its tokens
// counted here.
type spanScanner struct {
	opts event.SpanOptions
	// wantLen[n]: some key the scanner reads is n bytes long (n < 64): a
	// length check rejects nearly every other attribute without comparing
	// bytes; longer keys are compared.
	wantLen [64]bool
	minNs   uint64
	maxNs   uint64
	tenant  []string // per TenantAttributes key: the span's value
	res     []string // per TenantAttributes key: the resource's value
}

// errScanFallback: the scanner leaves this message to event.DecodeSpans.
var errScanFallback = errors.New("span scanner: fall back to the full decoder")

func newSpanScanner(opts event.SpanOptions) *spanScanner {
	def := event.DefaultSpanOptions()
	if len(opts.TenantAttributes) == 0 {
		opts.TenantAttributes = def.TenantAttributes
	}
	if opts.UnknownTenant == "" {
		opts.UnknownTenant = def.UnknownTenant
	}
	l, dl := &opts.Limits, def.Limits
	if l.MaxMessageBytes <= 0 {
		l.MaxMessageBytes = dl.MaxMessageBytes
	}
	if l.MaxSpansPerMessage <= 0 {
		l.MaxSpansPerMessage = dl.MaxSpansPerMessage
	}
	if l.MaxAttributeValueBytes <= 0 {
		l.MaxAttributeValueBytes = dl.MaxAttributeValueBytes
	}
	if l.MaxAge <= 0 {
		l.MaxAge = dl.MaxAge
	}
	if l.MaxFuture <= 0 {
		l.MaxFuture = dl.MaxFuture
	}
	sc := &spanScanner{opts: opts, tenant: make([]string, len(opts.TenantAttributes)), res: make([]string, len(opts.TenantAttributes))}
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
	// and a one-byte length or varint.
	if p := *pos; end-p >= 2 && b[p] < 0x80 && b[p+1] < 0x80 && b[p]>>3 != 0 {
		switch t := b[p]; t & 7 {
		case 2:
			if e := p + 2 + int(b[p+1]); e <= end {
				*pos = e
				return wire{num: uint64(t >> 3), typ: 2, s: p + 2, e: e}, nil
			}
		case 0:
			*pos = p + 2
			return wire{num: uint64(t >> 3), v: uint64(b[p+1])}, nil
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
	kind byte   // 0 none, 's' string, 'i' int, 'd' double, 'o' other
	s    []byte // a string's bytes in the message
	v    uint64
}

func (sc *spanScanner) anyValue(b []byte, s, e int) (anyValue, error) {
	var a anyValue
	for pos := s; pos < e; {
		f, err := next(b, &pos, e)
		if err != nil {
			return a, err
		}
		switch f.num {
		case 1:
			if f.typ != 2 {
				return a, errScanFallback
			}
			a = anyValue{kind: 's', s: b[f.s:f.e]}
		case 3:
			if f.typ != 0 {
				return a, errScanFallback
			}
			a = anyValue{kind: 'i', v: f.v}
		case 4:
			if f.typ != 1 {
				return a, errScanFallback
			}
			a = anyValue{kind: 'd', v: f.v}
		case 2, 5, 6, 7:
			a = anyValue{kind: 'o'}
		case 8:
			a = anyValue{}
		}
	}
	return a, nil
}

// keyValue reads a KeyValue; the value is read only for the keys the
// scanner needs (want reports which). The key is the message's bytes.
func (sc *spanScanner) keyValue(b []byte, s, e int, want func([]byte) bool) ([]byte, anyValue, bool, error) {
	var k []byte
	vs, ve, values := -1, -1, 0
	for pos := s; pos < e; {
		f, err := next(b, &pos, e)
		if err != nil {
			return nil, anyValue{}, false, err
		}
		switch f.num {
		case 1:
			if f.typ != 2 {
				return nil, anyValue{}, false, errScanFallback
			}
			k = b[f.s:f.e]
		case 2:
			if f.typ != 2 {
				return nil, anyValue{}, false, errScanFallback
			}
			vs, ve = f.s, f.e
			values++
		}
	}
	if len(k) < len(sc.wantLen) && !sc.wantLen[len(k)] || !want(k) {
		return k, anyValue{}, false, nil
	}
	if values > 1 {
		return k, anyValue{}, false, errScanFallback // pdata merges repeated values: the full decoder's business
	}
	if vs < 0 {
		return k, anyValue{}, true, nil
	}
	v, err := sc.anyValue(b, vs, ve)
	return k, v, true, err
}

// str returns v as a stored string value: a valid string, else fallback.
func (sc *spanScanner) str(v anyValue) (string, error) {
	switch v.kind {
	case 0:
		return "", nil
	case 's':
		if len(v.s) > sc.opts.Limits.MaxAttributeValueBytes || !utf8.Valid(v.s) {
			return "", errScanFallback
		}
		if string(v.s) == "chat" {
			return "chat", nil // the operation of every span that counts: no copy
		}
		return string(v.s), nil
	}
	return "", errScanFallback // flattened forms (numbers, JSON): the full decoder's business
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
	if len(data) > sc.opts.Limits.MaxMessageBytes {
		return dst, errScanFallback
	}
	now := time.Now()
	if sc.opts.Now != nil {
		now = sc.opts.Now()
	}
	sc.minNs = uint64(max(now.Add(-sc.opts.Limits.MaxAge).UnixNano(), 0))
	sc.maxNs = uint64(now.Add(sc.opts.Limits.MaxFuture).UnixNano())
	base := len(dst)
	for pos := 0; pos < len(data); {
		f, err := next(data, &pos, len(data))
		if err != nil {
			return dst[:base], err
		}
		if f.num != 1 {
			continue
		}
		if f.typ != 2 {
			return dst[:base], errScanFallback
		}
		if dst, err = sc.resourceSpans(data, f.s, f.e, dst); err != nil {
			return dst[:base], err
		}
		if len(dst)-base > sc.opts.Limits.MaxSpansPerMessage {
			return dst[:base], errScanFallback
		}
	}
	return dst, nil
}

func (sc *spanScanner) resourceSpans(b []byte, s, e int, dst []event.Span) ([]event.Span, error) {
	clear(sc.res)
	var resAgent string
	haveScope := false
	for pos := s; pos < e; {
		f, err := next(b, &pos, e)
		if err != nil {
			return dst, err
		}
		switch f.num {
		case 1: // Resource (occurrences merge: later attributes win)
			if f.typ != 2 {
				return dst, errScanFallback
			}
			for rp := f.s; rp < f.e; {
				rf, err := next(b, &rp, f.e)
				if err != nil {
					return dst, err
				}
				if rf.num != 1 {
					continue
				}
				if rf.typ != 2 {
					return dst, errScanFallback
				}
				k, v, ok, err := sc.keyValue(b, rf.s, rf.e, func(k []byte) bool { return string(k) == event.KeyAgentID || sc.tenantIndex(k) >= 0 })
				if err != nil {
					return dst, err
				}
				if !ok {
					continue
				}
				str, err := sc.str(v)
				if err != nil {
					return dst, err
				}
				if string(k) == event.KeyAgentID {
					resAgent = str
				}
				if j := sc.tenantIndex(k); j >= 0 {
					sc.res[j] = str
				}
			}
		case 2:
			haveScope = true
		case 1000:
			return dst, errScanFallback // InstrumentationLibrarySpans: the full decoder migrates them
		}
	}
	if !haveScope {
		return dst, nil
	}
	for pos := s; pos < e; {
		f, err := next(b, &pos, e)
		if err != nil {
			return dst, err
		}
		if f.num != 2 {
			continue
		}
		if f.typ != 2 {
			return dst, errScanFallback
		}
		for sp := f.s; sp < f.e; {
			sf, err := next(b, &sp, f.e)
			if err != nil {
				return dst, err
			}
			if sf.num != 2 {
				continue
			}
			if sf.typ != 2 {
				return dst, errScanFallback
			}
			if len(dst) == cap(dst) {
				dst = append(dst, event.Span{})
			} else {
				dst = dst[:len(dst)+1]
			}
			row := &dst[len(dst)-1]
			*row = event.Span{}
			if err := sc.span(b, sf.s, sf.e, row, resAgent); err != nil {
				return dst, err
			}
		}
	}
	return dst, nil
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

func (sc *spanScanner) span(b []byte, s, e int, row *event.Span, resAgent string) error {
	var (
		trace     []byte
		start     uint64
		tok       [4]uint64
		haveTok   [4]bool
		agent, op string
	)
	clear(sc.tenant)
	want := func(k []byte) bool {
		return string(k) == event.KeyOperationName || string(k) == event.KeyAgentID || tokenKey(k) >= 0 || sc.tenantIndex(k) >= 0
	}
	for pos := s; pos < e; {
		f, err := next(b, &pos, e)
		if err != nil {
			return err
		}
		switch f.num {
		case 1:
			if f.typ != 2 {
				return errScanFallback
			}
			trace = b[f.s:f.e]
		case 7:
			if f.typ != 1 {
				return errScanFallback
			}
			start = f.v
		case 9:
			if f.typ != 2 {
				return errScanFallback
			}
			k, v, ok, err := sc.keyValue(b, f.s, f.e, want)
			if err != nil {
				return err
			}
			if !ok {
				continue
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
				if op, err = sc.str(v); err != nil {
					return err
				}
			case event.KeyAgentID:
				if agent, err = sc.str(v); err != nil {
					return err
				}
			default:
				if t := tokenKey(k); t >= 0 {
					if n, ok := tokens(v); ok {
						tok[t], haveTok[t] = n, true
					}
				}
			}
		}
	}
	if len(trace) != 16 || isZero(trace) || start == 0 || start < sc.minNs || start > sc.maxNs {
		return errScanFallback // the full decoder rejects or decides
	}
	row.TraceID = hex.EncodeToString(trace)
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

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
