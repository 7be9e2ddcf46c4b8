package event

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace"
)

// DecodeSpans decodes one Kafka message, an OTLP ExportTraceServiceRequest in
// encoding enc, and appends one Span per OTLP span to dst, in message order.
//
// On error nothing is appended (dst is returned with its original length) and
// the error is an *Error whose Reason says why the message can never be
// decoded — except for an unknown enc, reported as ErrUnknownEncoding. dst is
// grown once to fit the message; reuse it between calls to save allocations.
//
// otlp_proto is decoded by this package's own wire reader, which accepts
// exactly what pdata's ptrace.ProtoUnmarshaler accepts (tests and fuzzing
// compare the two) at a fraction of the cost; otlp_json is unmarshalled by
// ptrace.JSONUnmarshaler and re-encoded to protobuf for the same path.
func DecodeSpans(data []byte, enc Encoding, opts SpanOptions, dst []Span) ([]Span, Stats, error) {
	opts = opts.withDefaults()
	lim := opts.Limits
	if len(data) > lim.MaxMessageBytes {
		return dst, Stats{}, newError(ReasonMessageTooLarge, "message of "+strconv.Itoa(len(data))+" bytes exceeds limit of "+strconv.Itoa(lim.MaxMessageBytes))
	}
	switch enc {
	case EncodingProto:
	case EncodingJSON:
		td, err := (&ptrace.JSONUnmarshaler{}).UnmarshalTraces(data)
		if err != nil {
			return dst, Stats{}, unmarshalError(err)
		}
		if data, err = (&ptrace.ProtoMarshaler{}).MarshalTraces(td); err != nil {
			return dst, Stats{}, &Error{Reason: ReasonDecodeFailed, Err: err}
		}
	default:
		return dst, Stats{}, enc.Validate()
	}

	v := validator{data: data}
	if err := v.request(); err != nil {
		return dst, Stats{}, unmarshalError(err)
	}
	n := v.spans
	if n > lim.MaxSpansPerMessage {
		return dst, Stats{}, newError(ReasonTooManySpans, strconv.Itoa(n)+" spans exceed limit of "+strconv.Itoa(lim.MaxSpansPerMessage))
	}
	if n == 0 {
		return dst, Stats{}, nil
	}

	base := len(dst)
	if cap(dst)-base < n {
		grown := make([]Span, base, base+n)
		copy(grown, dst)
		dst = grown
	}
	d := decoders.Get().(*spanDecoder)
	defer d.release()
	d.start(data, opts, n)
	dst, err := d.request(dst)
	if err != nil {
		clear(dst[base:cap(dst)]) // drop references to the message
		return dst[:base], Stats{}, err
	}
	// All rows are in place and dst will not grow again: point the id and
	// hash fields into one string holding every hex digit of the message
	// (one allocation instead of three or more per span).
	arena := d.arena.String()
	for _, p := range d.patches {
		*p.dst = arena[p.off:p.end]
	}
	d.stats.Spans = n
	return dst, d.stats, nil
}

// decoders recycles the scratch space of spanDecoders.
var decoders = sync.Pool{New: func() any { return new(spanDecoder) }}

func (d *spanDecoder) start(data []byte, opts SpanOptions, spans int) {
	now := opts.Now()
	d.data = data
	d.msg = string(data) // every stored string is a substring of this one copy
	d.opts, d.lim = opts, opts.Limits
	d.minNs = unixNanos(now.Add(-d.lim.MaxAge))
	d.maxNs = unixNanos(now.Add(d.lim.MaxFuture))
	d.arena.Grow(spans * 64)
	d.spanTenant = slices.Grow(d.spanTenant[:0], len(opts.TenantAttributes))[:len(opts.TenantAttributes)]
	d.resTenant = slices.Grow(d.resTenant[:0], len(opts.TenantAttributes))[:len(opts.TenantAttributes)]
	d.spanIdx, d.sub = -1, -1
}

// release drops every reference to the message and the rows, and returns d
// to the pool.
func (d *spanDecoder) release() {
	clear(d.patches[:cap(d.patches)])
	clear(d.kv[:cap(d.kv)])
	clear(d.spanTenant[:cap(d.spanTenant)])
	clear(d.resTenant[:cap(d.resTenant)])
	*d = spanDecoder{ // everything else zero: no references survive
		patches:    d.patches[:0],
		buf:        d.buf[:0],
		kv:         d.kv[:0],
		ranges:     d.ranges[:0],
		attrR:      d.attrR[:0],
		eventR:     d.eventR[:0],
		linkR:      d.linkR[:0],
		spanTenant: d.spanTenant[:0],
		resTenant:  d.resTenant[:0],
	}
	decoders.Put(d)
}

// unmarshalError classifies an error of the wire reader or of pdata's JSON
// unmarshaler, whose errors are not exported, hence the text match
// (TestDecodeSpansRejects guards it).
func unmarshalError(err error) *Error {
	if _, ok := err.(*idLengthError); ok {
		return &Error{Reason: ReasonInvalidID, Err: err}
	}
	msg := err.Error()
	r := ReasonDecodeFailed
	if strings.Contains(msg, "TraceID length") || strings.Contains(msg, "SpanID length") ||
		strings.Contains(msg, "ID.UnmarshalJSONIter") {
		r = ReasonInvalidID
	}
	// pdata's JSON errors quote the input around the fault: keep the text
	// short and valid UTF-8.
	if len(msg) > 160 {
		msg = msg[:160] + "..."
	}
	return &Error{Reason: r, Err: &shortError{msg: strings.ToValidUTF8(msg, "\ufffd"), err: err}}
}

// shortError replaces the text of err.
type shortError struct {
	msg string
	err error
}

func (e *shortError) Error() string { return e.msg }
func (e *shortError) Unwrap() error { return e.err }

func unixNanos(t time.Time) uint64 {
	if t.Before(time.Unix(0, 0)) {
		return 0
	}
	return uint64(t.UnixNano())
}

// patch is a string field to point into the arena once it is final.
type patch struct {
	dst      *string
	off, end int
}

type kvPair struct{ k, v string }

type rng struct{ s, e int }

// candidate is an attribute that feeds a typed column, kept until the whole
// attribute set was seen because a preferred key may come later.
type candidate struct {
	prio int8
	key  string
	val  anyVal
	tok  uint64
}

type spanDecoder struct {
	data         []byte
	msg          string
	opts         SpanOptions
	lim          Limits
	minNs, maxNs uint64
	stats        Stats

	arena   strings.Builder
	patches []patch
	buf     []byte   // scratch for flattening and hashing
	kv      []kvPair // span attributes that stay in span_attributes
	cands   [numCols]candidate
	candSet uint32 // bit col set: cands[col] holds a candidate
	ranges  []rng  // scratch: occurrences of a merged message
	attrR   []rng  // scratch: attributes, events and links of the span
	eventR  []rng
	linkR   []rng

	lastTraceID  [16]byte
	lastTraceOff int
	haveTrace    bool

	// per resource
	resAttrs  map[string]string
	resTenant []string  // value of each tenant key on the resource
	resAgent  [3]string // agent id, name, version from resource attributes
	service   string
	resLen    int

	spanTenant []string // value of each tenant key on the span

	// where we are, for error messages: where names the part of span
	// spanIdx (-1: of the resource or scope), with "#" standing for sub.
	spanIdx int
	where   string
	sub     int

	idx uint32 // position of the next span in the message
}

func (d *spanDecoder) cursor(r rng) cursor { return cursor{data: d.data, pos: r.s, end: r.e} }

// The validator has checked the structure, so the cursors below meet no
// errors and need no checks.

func (d *spanDecoder) request(dst []Span) ([]Span, error) {
	for c := d.cursor(rng{0, len(d.data)}); c.more(); {
		f := c.next()
		if f.num == 1 {
			var err error
			if dst, err = d.resourceSpans(rng{f.s, f.e}, dst); err != nil {
				return dst, err
			}
		}
	}
	return dst, nil
}

func (d *spanDecoder) resourceSpans(rs rng, dst []Span) ([]Span, error) {
	// The resource first, wherever it is: all its occurrences merged.
	d.ranges = d.ranges[:0]
	haveScopeSpans := false
	for c := d.cursor(rs); c.more(); {
		f := c.next()
		switch f.num {
		case 1:
			d.ranges = append(d.ranges, rng{f.s, f.e})
		case 2:
			haveScopeSpans = true
		}
	}
	if err := d.resource(d.ranges); err != nil {
		return dst, err
	}
	// Spans under the deprecated InstrumentationLibrarySpans (1000) only
	// when there are no ScopeSpans (pdata's otlp.MigrateTraces).
	scopeField := int32(2)
	if !haveScopeSpans {
		scopeField = 1000
	}
	for c := d.cursor(rs); c.more(); {
		f := c.next()
		if f.num == scopeField {
			var err error
			if dst, err = d.scopeSpans(rng{f.s, f.e}, dst); err != nil {
				return dst, err
			}
		}
	}
	return dst, nil
}

// resource prepares what spans of one resource share.
func (d *spanDecoder) resource(occurrences []rng) error {
	d.spanIdx = -1
	d.where = "resource attribute"
	m, n, err := d.attrMap(occurrences, 1)
	if err != nil {
		return err
	}
	d.resAttrs, d.resLen = m, n
	d.service = m["service.name"]
	for j, k := range d.opts.TenantAttributes {
		d.resTenant[j] = m[k]
	}
	d.resAgent = [3]string{m[KeyAgentID], m[KeyAgentName], m[KeyAgentVersion]}
	return nil
}

func (d *spanDecoder) scopeSpans(ss rng, dst []Span) ([]Span, error) {
	d.ranges = d.ranges[:0]
	for c := d.cursor(ss); c.more(); {
		f := c.next()
		if f.num == 1 {
			d.ranges = append(d.ranges, rng{f.s, f.e})
		}
	}
	var name, version string
	for _, r := range d.ranges {
		for c := d.cursor(r); c.more(); {
			f := c.next()
			switch f.num {
			case 1:
				name = d.msg[f.s:f.e]
			case 2:
				version = d.msg[f.s:f.e]
			}
		}
	}
	d.spanIdx = -1
	d.where = "scope"
	if err := d.checkField("scope name", name); err != nil {
		return dst, err
	}
	if err := d.checkField("scope version", version); err != nil {
		return dst, err
	}
	d.where = "scope attribute"
	scopeAttrs, scopeLen, err := d.attrMap(d.ranges, 3)
	if err != nil {
		return dst, err
	}
	for c := d.cursor(ss); c.more(); {
		f := c.next()
		if f.num != 2 {
			continue
		}
		dst = dst[:len(dst)+1]
		row := &dst[len(dst)-1]
		*row = Span{
			ServiceName:        d.service,
			ScopeName:          name,
			ScopeVersion:       version,
			ResourceAttributes: d.resAttrs,
			ScopeAttributes:    scopeAttrs,
			SrcIndex:           d.idx,
		}
		d.spanIdx = int(d.idx)
		d.idx++
		if err := d.span(rng{f.s, f.e}, row, scopeLen); err != nil {
			return dst, err
		}
	}
	return dst, nil
}

// spanScalars are the non-repeated fields of a span, last occurrence wins.
type spanScalars struct {
	traceID, spanID, parentID rng
	traceState, name          string
	flags                     uint32
	kind                      int32
	start, end                uint64
	dropped                   [3]uint32
	statusMsg                 string
	statusCode                int32
	attrs, events, links      int
}

// scalars reads the span's fields once: scalars into s, the ranges of
// attributes, events and links into d.attrR, d.eventR and d.linkR.
func (d *spanDecoder) scalars(sp rng) spanScalars {
	var s spanScalars
	d.attrR, d.eventR, d.linkR = d.attrR[:0], d.eventR[:0], d.linkR[:0]
	for c := d.cursor(sp); c.more(); {
		f := c.next()
		switch f.num {
		case 1:
			s.traceID = rng{f.s, f.e}
		case 2:
			s.spanID = rng{f.s, f.e}
		case 3:
			s.traceState = d.msg[f.s:f.e]
		case 4:
			s.parentID = rng{f.s, f.e}
		case 5:
			s.name = d.msg[f.s:f.e]
		case 6:
			s.kind = int32(f.v)
		case 7:
			s.start = f.v
		case 8:
			s.end = f.v
		case 9:
			d.attrR = append(d.attrR, rng{f.s, f.e})
		case 10:
			s.dropped[0] = uint32(f.v)
		case 11:
			d.eventR = append(d.eventR, rng{f.s, f.e})
		case 12:
			s.dropped[1] = uint32(f.v)
		case 13:
			d.linkR = append(d.linkR, rng{f.s, f.e})
		case 14:
			s.dropped[2] = uint32(f.v)
		case 15:
			for c := d.cursor(rng{f.s, f.e}); c.more(); {
				f := c.next()
				switch f.num {
				case 2:
					s.statusMsg = d.msg[f.s:f.e]
				case 3:
					s.statusCode = int32(f.v)
				}
			}
		case 16:
			s.flags = uint32(f.v)
		}
	}
	s.attrs, s.events, s.links = len(d.attrR), len(d.eventR), len(d.linkR)
	return s
}

// isZeroID reports whether an id field is absent, empty or all zeros.
func (d *spanDecoder) isZeroID(r rng) bool {
	for _, b := range d.data[r.s:r.e] {
		if b != 0 {
			return false
		}
	}
	return true
}

func (d *spanDecoder) span(sp rng, row *Span, scopeLen int) error {
	lim := &d.lim
	d.where, d.sub = "", -1
	s := d.scalars(sp)
	if n := s.attrs + d.resLen + scopeLen; n > lim.MaxAttributesPerSpan {
		return d.fail(ReasonTooManyAttributes, strconv.Itoa(n)+" span, resource and scope attributes exceed limit of "+strconv.Itoa(lim.MaxAttributesPerSpan))
	}
	if s.events > lim.MaxEventsPerSpan {
		return d.fail(ReasonTooManyEvents, strconv.Itoa(s.events)+" events exceed limit of "+strconv.Itoa(lim.MaxEventsPerSpan))
	}
	if s.links > lim.MaxLinksPerSpan {
		return d.fail(ReasonTooManyLinks, strconv.Itoa(s.links)+" links exceed limit of "+strconv.Itoa(lim.MaxLinksPerSpan))
	}

	// Ids.
	if d.isZeroID(s.traceID) {
		return d.fail(ReasonInvalidID, "trace_id is empty or all zeros")
	}
	if d.isZeroID(s.spanID) {
		return d.fail(ReasonInvalidID, "span_id is empty or all zeros")
	}
	tid := d.data[s.traceID.s:s.traceID.e]
	if d.haveTrace && string(tid) == string(d.lastTraceID[:]) {
		d.patches = append(d.patches, patch{&row.TraceID, d.lastTraceOff, d.lastTraceOff + 32})
	} else {
		copy(d.lastTraceID[:], tid)
		d.lastTraceOff, d.haveTrace = d.arena.Len(), true
		d.hexID(&row.TraceID, tid)
	}
	d.hexID(&row.SpanID, d.data[s.spanID.s:s.spanID.e])
	if !d.isZeroID(s.parentID) {
		d.hexID(&row.ParentSpanID, d.data[s.parentID.s:s.parentID.e])
	}

	// Times.
	if s.start == 0 {
		return d.fail(ReasonMissingField, "start_time_unix_nano is missing")
	}
	if s.end == 0 {
		return d.fail(ReasonMissingField, "end_time_unix_nano is missing")
	}
	if err := d.checkTime("start time", s.start); err != nil {
		return err
	}
	if err := d.checkTime("end time", s.end); err != nil {
		return err
	}
	if s.end < s.start {
		return d.fail(ReasonTimestampOutOfRange, "span ends before it starts")
	}
	row.StartTime = time.Unix(0, int64(s.start)).UTC()
	row.EndTime = time.Unix(0, int64(s.end)).UTC()
	row.DurationNs = s.end - s.start

	// Plain fields.
	if err := d.checkField("trace_state", s.traceState); err != nil {
		return err
	}
	row.TraceState = s.traceState
	row.Flags = s.flags
	if err := d.checkField("name", s.name); err != nil {
		return err
	}
	row.Name = s.name
	row.Kind = kindString(s.kind)
	row.StatusCode = statusString(s.statusCode)
	if err := d.checkField("status message", s.statusMsg); err != nil {
		return err
	}
	row.StatusMessage = s.statusMsg
	row.DroppedAttributes, row.DroppedEvents, row.DroppedLinks = s.dropped[0], s.dropped[1], s.dropped[2]

	if err := d.spanAttributes(row); err != nil {
		return err
	}
	if s.events > 0 {
		if err := d.events(row); err != nil {
			return err
		}
	}
	if s.links > 0 {
		if err := d.links(row); err != nil {
			return err
		}
	}
	return nil
}

// spanAttributes fills the typed columns, the tenant and span_attributes.
func (d *spanDecoder) spanAttributes(row *Span) error {
	d.where = "span attribute"
	d.kv = d.kv[:0]
	d.candSet = 0
	clear(d.spanTenant)
	for _, r := range d.attrR {
		k, v := d.keyValue(r)
		if err := d.spanAttribute(k, v); err != nil {
			return err
		}
	}

	for col := range d.cands {
		if d.candSet&(1<<col) == 0 {
			continue
		}
		c := &d.cands[col]
		switch {
		case col <= lastStringCol:
			s, err := d.flatten(c.key, c.val)
			if err != nil {
				return err
			}
			*stringColumn(row, col) = s
		case col == colFinishReasons:
			out := make([]string, 0, 2)
			for ec := d.cursor(rng{c.val.a, c.val.b}); ec.more(); {
				ef := ec.next()
				if ef.num != 1 {
					continue
				}
				e := d.anyValue(rng{ef.s, ef.e})
				s := d.msg[e.a:e.b]
				if fe := checkString(s, d.lim.MaxAttributeValueBytes); fe != nil {
					return d.failKey(fe, c.key)
				}
				out = append(out, s)
			}
			row.FinishReasons = out
		case col >= firstTokenCol && col <= lastTokenCol:
			*tokenColumn(row, col) = c.tok
		case col == colToolArgs || col == colToolResult:
			if err := d.hashValue(stringColumn(row, col), c.key, c.val); err != nil {
				return err
			}
		}
	}
	// Agent identity often sits on the resource of an agent service.
	if row.AgentID == "" {
		row.AgentID = d.resAgent[0]
	}
	if row.AgentName == "" {
		row.AgentName = d.resAgent[1]
	}
	if row.AgentVersion == "" {
		row.AgentVersion = d.resAgent[2]
	}

	if len(d.kv) > 0 {
		m := make(map[string]string, len(d.kv))
		for _, e := range d.kv {
			n := len(m)
			m[e.k] = e.v
			if len(m) == n {
				d.stats.DuplicateAttributes++
			}
		}
		row.SpanAttributes = m
	}

	// Tenant: for each key in order, the span's value wins over the
	// resource's (see the package doc).
	for j := range d.opts.TenantAttributes {
		if t := d.spanTenant[j]; t != "" {
			row.TenantID = t
			return nil
		}
		if t := d.resTenant[j]; t != "" {
			row.TenantID = t
			return nil
		}
	}
	row.TenantID = d.opts.UnknownTenant
	d.stats.UnknownTenant++
	return nil
}

func (d *spanDecoder) spanAttribute(k string, v anyVal) error {
	col, prio, ok := genAIField(k)
	if ok && len(k) <= d.lim.MaxAttributeKeyBytes {
		// A known key: ASCII, no need to check UTF-8.
	} else if err := d.checkKey(k); err != nil {
		return err
	}
	for j, tk := range d.opts.TenantAttributes {
		if k == tk {
			s, err := d.flatten(k, v)
			if err != nil {
				return err
			}
			d.spanTenant[j] = s
		}
	}
	if !ok {
		return d.keep(k, v)
	}
	var tok uint64
	switch {
	case col >= firstTokenCol && col <= lastTokenCol:
		if tok, ok = d.tokenCount(v); !ok {
			d.stats.InvalidTokenCounts++
			return d.keep(k, v)
		}
	case col == colFinishReasons:
		if !d.isStringSlice(v) {
			return d.keep(k, v)
		}
	case col == colToolArgs || col == colToolResult:
		if !d.opts.HashToolCallContent {
			if err := d.keep(k, v); err != nil {
				return err
			}
		}
	}
	c := &d.cands[col]
	set := d.candSet&(1<<col) != 0
	switch {
	case !set || prio < c.prio:
		if set { // a less preferred key was seen first
			if err := d.keep(c.key, c.val); err != nil {
				return err
			}
		}
		*c = candidate{prio: prio, key: k, val: v, tok: tok}
		d.candSet |= 1 << col
	case prio == c.prio: // the same key again: last wins
		d.stats.DuplicateAttributes++
		*c = candidate{prio: prio, key: k, val: v, tok: tok}
	default:
		return d.keep(k, v)
	}
	return nil
}

// keep queues attribute k for span_attributes.
func (d *spanDecoder) keep(k string, v anyVal) error {
	s, err := d.flatten(k, v)
	if err != nil {
		return err
	}
	d.kv = append(d.kv, kvPair{k, s})
	return nil
}

// attrMap converts the KeyValue fields number kvField of the occurrences
// of a (merged) message: a resource, scope, event or link attribute set.
// With HashToolCallContent, tool call content is replaced by its SHA-256
// under key+HashedKeySuffix. It also returns the number of attributes.
func (d *spanDecoder) attrMap(occurrences []rng, kvField int32) (map[string]string, int, error) {
	n := 0
	for _, r := range occurrences {
		for c := d.cursor(r); c.more(); {
			f := c.next()
			if f.num == kvField {
				n++
			}
		}
	}
	if n == 0 {
		return nil, 0, nil
	}
	m := make(map[string]string, n)
	for _, r := range occurrences {
		for c := d.cursor(r); c.more(); {
			f := c.next()
			if f.num != kvField {
				continue
			}
			k, v := d.keyValue(rng{f.s, f.e})
			if err := d.checkKey(k); err != nil {
				return nil, 0, err
			}
			var s string
			if d.opts.HashToolCallContent && isToolContentKey(k) {
				if err := d.hashString(&s, k, v); err != nil {
					return nil, 0, err
				}
				k += HashedKeySuffix
			} else {
				var err error
				if s, err = d.flatten(k, v); err != nil {
					return nil, 0, err
				}
			}
			l := len(m)
			if m[k] = s; len(m) == l {
				d.stats.DuplicateAttributes++
			}
		}
	}
	return m, n, nil
}

func (d *spanDecoder) events(row *Span) error {
	n := len(d.eventR)
	row.EventsTime = make([]time.Time, n)
	row.EventsName = make([]string, n)
	row.EventsAttributes = make([]map[string]string, n)
	for i, ev := range d.eventR {
		var (
			ts    uint64
			name  string
			attrs int
		)
		for c := d.cursor(ev); c.more(); {
			f := c.next()
			switch f.num {
			case 1:
				ts = f.v
			case 2:
				name = d.msg[f.s:f.e]
			case 3:
				attrs++
			}
		}
		d.where, d.sub = "event #", i
		if err := d.checkTime("event time", ts); err != nil {
			return err
		}
		row.EventsTime[i] = time.Unix(0, int64(ts)).UTC()
		if err := d.checkField("name", name); err != nil {
			return err
		}
		row.EventsName[i] = name
		if attrs > d.lim.MaxAttributesPerSpan {
			return d.fail(ReasonTooManyAttributes, strconv.Itoa(attrs)+" attributes exceed limit of "+strconv.Itoa(d.lim.MaxAttributesPerSpan))
		}
		d.where = "event # attribute"
		m, _, err := d.attrMap(d.eventR[i:i+1], 3)
		if err != nil {
			return err
		}
		row.EventsAttributes[i] = m
	}
	return nil
}

func (d *spanDecoder) links(row *Span) error {
	n := len(d.linkR)
	row.LinksTraceID = make([]string, n)
	row.LinksSpanID = make([]string, n)
	row.LinksTraceState = make([]string, n)
	row.LinksAttributes = make([]map[string]string, n)
	for i, l := range d.linkR {
		var (
			tid, sid rng
			state    string
			attrs    int
		)
		for c := d.cursor(l); c.more(); {
			f := c.next()
			switch f.num {
			case 1:
				tid = rng{f.s, f.e}
			case 2:
				sid = rng{f.s, f.e}
			case 3:
				state = d.msg[f.s:f.e]
			case 4:
				attrs++
			}
		}
		d.where, d.sub = "link #", i
		if d.isZeroID(tid) || d.isZeroID(sid) {
			return d.fail(ReasonInvalidID, "trace_id or span_id is empty or all zeros")
		}
		d.hexID(&row.LinksTraceID[i], d.data[tid.s:tid.e])
		d.hexID(&row.LinksSpanID[i], d.data[sid.s:sid.e])
		if err := d.checkField("trace_state", state); err != nil {
			return err
		}
		row.LinksTraceState[i] = state
		if attrs > d.lim.MaxAttributesPerSpan {
			return d.fail(ReasonTooManyAttributes, strconv.Itoa(attrs)+" attributes exceed limit of "+strconv.Itoa(d.lim.MaxAttributesPerSpan))
		}
		d.where = "link # attribute"
		m, _, err := d.attrMap(d.linkR[i:i+1], 4)
		if err != nil {
			return err
		}
		row.LinksAttributes[i] = m
	}
	return nil
}

// hexID appends id in lower-case hex to the arena and records that *dst points there.
func (d *spanDecoder) hexID(dst *string, id []byte) {
	var buf [2 * sha256.Size]byte
	n := hex.Encode(buf[:], id)
	off := d.arena.Len()
	d.arena.Write(buf[:n])
	d.patches = append(d.patches, patch{dst, off, off + n})
}

// hashValue sets *dst (via the arena) to the SHA-256 hex of v: of a string's
// bytes, or of the compact JSON (flatten) of any other value.
func (d *spanDecoder) hashValue(dst *string, k string, v anyVal) error {
	sum, err := d.sum(k, v)
	if err != nil {
		return err
	}
	d.hexID(dst, sum[:])
	return nil
}

// hashString is hashValue for maps built before the arena is final.
func (d *spanDecoder) hashString(dst *string, k string, v anyVal) error {
	sum, err := d.sum(k, v)
	if err != nil {
		return err
	}
	*dst = hex.EncodeToString(sum[:])
	return nil
}

func (d *spanDecoder) sum(k string, v anyVal) ([sha256.Size]byte, error) {
	if v.typ == vStr {
		// Not stored, so not bounded by MaxAttributeValueBytes. The hash is
		// of the bytes as sent, so invalid UTF-8 is harmless here.
		return sha256.Sum256(d.data[v.a:v.b]), nil
	}
	var fe *flattenError
	d.buf, fe = d.appendJSON(d.buf[:0], v, int(^uint(0)>>1))
	if fe != nil {
		return [sha256.Size]byte{}, d.failKey(fe, k)
	}
	return sha256.Sum256(d.buf), nil
}

func (d *spanDecoder) flatten(k string, v anyVal) (string, error) {
	s, fe := d.flattenValue(v, d.lim.MaxAttributeValueBytes)
	if fe != nil {
		return "", d.failKey(fe, k)
	}
	return s, nil
}

func (d *spanDecoder) checkKey(k string) error {
	if len(k) > d.lim.MaxAttributeKeyBytes {
		return d.fail(ReasonValueTooLong, "key "+quote(k)+" of "+strconv.Itoa(len(k))+" bytes exceeds limit of "+strconv.Itoa(d.lim.MaxAttributeKeyBytes))
	}
	if fe := checkString(k, d.lim.MaxAttributeKeyBytes); fe != nil {
		return d.fail(fe.reason, "key "+quote(k)+": "+fe.detail)
	}
	return nil
}

// checkField checks a string stored as is.
func (d *spanDecoder) checkField(name, s string) error {
	if fe := checkString(s, d.lim.MaxAttributeValueBytes); fe != nil {
		return d.fail(fe.reason, name+": "+fe.detail)
	}
	return nil
}

func (d *spanDecoder) checkTime(name string, ns uint64) error {
	if ns < d.minNs || ns > d.maxNs {
		return d.fail(ReasonTimestampOutOfRange, name+" "+strconv.FormatUint(ns, 10)+" is outside the accepted window")
	}
	return nil
}

func (d *spanDecoder) failKey(fe *flattenError, k string) error {
	return d.fail(fe.reason, quote(k)+": "+fe.detail)
}

// fail returns an *Error that says which span (and part of it) is at fault.
func (d *spanDecoder) fail(r Reason, msg string) error {
	where := strings.Replace(d.where, "#", strconv.Itoa(d.sub), 1)
	if d.spanIdx < 0 {
		return &Error{Reason: r, Err: fmt.Errorf("%s: %s", where, msg)}
	}
	if where == "" {
		return &Error{Reason: r, Err: fmt.Errorf("span %d: %s", d.spanIdx, msg)}
	}
	return &Error{Reason: r, Err: fmt.Errorf("span %d: %s: %s", d.spanIdx, where, msg)}
}

// OTLP SpanKind and StatusCode enum values.
const (
	spanKindInternal = 1
	spanKindServer   = 2
	spanKindClient   = 3
	spanKindProducer = 4
	spanKindConsumer = 5
	statusCodeOk     = 1
	statusCodeError  = 2
)

func kindString(k int32) string {
	switch k {
	case spanKindInternal:
		return "internal"
	case spanKindServer:
		return "server"
	case spanKindClient:
		return "client"
	case spanKindProducer:
		return "producer"
	case spanKindConsumer:
		return "consumer"
	}
	return "unspecified"
}

func statusString(c int32) string {
	switch c {
	case statusCodeOk:
		return "ok"
	case statusCodeError:
		return "error"
	}
	return "unset"
}
