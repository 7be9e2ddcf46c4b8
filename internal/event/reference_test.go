package event

// The reference implementation of DecodeSpans: the same conversion as the
// production decoder, written against pdata (ptrace.ProtoUnmarshaler,
// ptrace.JSONUnmarshaler, pcommon.Map and pcommon.Value). Tests and fuzzing
// require both to return the same rows and error reasons.

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// pdata's proto unmarshaler rejects KeyValue, AnyValue, ArrayValue and
// KeyValueList messages nested protoRecursionLimit deep (the KeyValue of an
// attribute is depth 0, its AnyValue 1). Its JSON unmarshaler has no such
// limit, but DecodeSpans re-encodes JSON to protobuf, so the reference
// applies the limit while flattening.

// flatten renders v as the string stored in an attribute map: strings as
// they are, ints and doubles as JSON numbers (NaN and infinities as "NaN",
// "+Inf", "-Inf"), booleans "true"/"false", bytes as standard base64, arrays
// and maps as compact JSON (map keys sorted), empty as "". buf is scratch.
func refFlatten(v pcommon.Value, maxLen int, buf *[]byte) (string, *flattenError) {
	switch v.Type() {
	case pcommon.ValueTypeStr:
		s := v.Str()
		if fe := checkString(s, maxLen); fe != nil {
			return "", fe
		}
		return s, nil
	case pcommon.ValueTypeInt:
		return strconv.FormatInt(v.Int(), 10), nil
	case pcommon.ValueTypeDouble:
		f := v.Double()
		switch {
		case math.IsNaN(f):
			return "NaN", nil
		case math.IsInf(f, 1):
			return "+Inf", nil
		case math.IsInf(f, -1):
			return "-Inf", nil
		}
		*buf = appendFloat((*buf)[:0], f)
		return string(*buf), nil
	case pcommon.ValueTypeBool:
		if v.Bool() {
			return "true", nil
		}
		return "false", nil
	case pcommon.ValueTypeBytes:
		b := v.Bytes().AsRaw()
		if n := base64.StdEncoding.EncodedLen(len(b)); n > maxLen {
			return "", tooLong(n, maxLen)
		}
		return base64.StdEncoding.EncodeToString(b), nil
	case pcommon.ValueTypeSlice, pcommon.ValueTypeMap:
		var fe *flattenError
		*buf, fe = refAppendJSONValue((*buf)[:0], v, 1, maxLen)
		if fe != nil {
			return "", fe
		}
		if len(*buf) > maxLen {
			return "", tooLong(len(*buf), maxLen)
		}
		return string(*buf), nil
	}
	return "", nil
}

// refAppendJSONValue appends v as compact JSON. It stops early once b exceeds
// maxLen so a huge value costs no more than the limit.
func refAppendJSONValue(b []byte, v pcommon.Value, depth, maxLen int) ([]byte, *flattenError) {
	tooDeep := &flattenError{ReasonDecodeFailed, "value nested too deeply"}
	if depth >= protoRecursionLimit {
		return b, tooDeep
	}
	switch v.Type() {
	case pcommon.ValueTypeSlice:
		if depth+1 >= protoRecursionLimit {
			return b, tooDeep
		}
	case pcommon.ValueTypeMap:
		if depth+1 >= protoRecursionLimit || (v.Map().Len() > 0 && depth+2 >= protoRecursionLimit) {
			return b, tooDeep
		}
	}
	if len(b) > maxLen {
		return b, tooLong(len(b), maxLen)
	}
	switch v.Type() {
	case pcommon.ValueTypeStr:
		s := v.Str()
		if !utf8.ValidString(s) {
			return b, &flattenError{ReasonInvalidUTF8, "not valid UTF-8"}
		}
		return appendJSONString(b, s), nil
	case pcommon.ValueTypeInt:
		return strconv.AppendInt(b, v.Int(), 10), nil
	case pcommon.ValueTypeDouble:
		f := v.Double()
		switch {
		case math.IsNaN(f):
			return append(b, `"NaN"`...), nil
		case math.IsInf(f, 1):
			return append(b, `"+Inf"`...), nil
		case math.IsInf(f, -1):
			return append(b, `"-Inf"`...), nil
		}
		return appendFloat(b, f), nil
	case pcommon.ValueTypeBool:
		return strconv.AppendBool(b, v.Bool()), nil
	case pcommon.ValueTypeBytes:
		b = append(b, '"')
		b = base64.StdEncoding.AppendEncode(b, v.Bytes().AsRaw())
		return append(b, '"'), nil
	case pcommon.ValueTypeSlice:
		s := v.Slice()
		b = append(b, '[')
		for i := 0; i < s.Len(); i++ {
			if i > 0 {
				b = append(b, ',')
			}
			var fe *flattenError
			if b, fe = refAppendJSONValue(b, s.At(i), depth+2, maxLen); fe != nil {
				return b, fe
			}
		}
		return append(b, ']'), nil
	case pcommon.ValueTypeMap:
		type kv struct {
			k string
			v pcommon.Value
		}
		m := v.Map()
		kvs := make([]kv, 0, m.Len())
		for k, v := range m.All() {
			kvs = append(kvs, kv{k, v})
		}
		slices.SortStableFunc(kvs, func(a, b kv) int { return strings.Compare(a.k, b.k) })
		b = append(b, '{')
		for i, e := range kvs {
			if i > 0 {
				b = append(b, ',')
			}
			if !utf8.ValidString(e.k) {
				return b, &flattenError{ReasonInvalidUTF8, "map key not valid UTF-8"}
			}
			b = appendJSONString(b, e.k)
			b = append(b, ':')
			var fe *flattenError
			if b, fe = refAppendJSONValue(b, e.v, depth+3, maxLen); fe != nil {
				return b, fe
			}
		}
		return append(b, '}'), nil
	}
	return append(b, "null"...), nil
}

// tokenCount reads a token count: a non-negative int, an integral
// non-negative double below 2^64, or a string of decimal digits.
func refTokenCount(v pcommon.Value) (uint64, bool) {
	switch v.Type() {
	case pcommon.ValueTypeInt:
		n := v.Int()
		return uint64(n), n >= 0
	case pcommon.ValueTypeDouble:
		f := v.Double()
		if f >= 0 && f < 1<<64 && f == math.Trunc(f) {
			return uint64(f), true
		}
	case pcommon.ValueTypeStr:
		n, err := strconv.ParseUint(v.Str(), 10, 64)
		return n, err == nil
	}
	return 0, false
}

// decodeSpansReference is DecodeSpans built on pdata: ptrace's unmarshalers
// for both encodings and pdata's object model. It is the reference the
// production decoder is tested against.
func decodeSpansReference(data []byte, enc Encoding, opts SpanOptions, dst []Span) ([]Span, Stats, error) {
	opts = opts.withDefaults()
	lim := opts.Limits
	if len(data) > lim.MaxMessageBytes {
		return dst, Stats{}, newError(ReasonMessageTooLarge, "message of "+strconv.Itoa(len(data))+" bytes exceeds limit of "+strconv.Itoa(lim.MaxMessageBytes))
	}
	var (
		td  ptrace.Traces
		err error
	)
	switch enc {
	case EncodingProto:
		td, err = (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(data)
	case EncodingJSON:
		// As DecodeSpans: JSON is re-encoded to protobuf.
		if td, err = (&ptrace.JSONUnmarshaler{}).UnmarshalTraces(data); err == nil {
			var pb []byte
			if pb, err = (&ptrace.ProtoMarshaler{}).MarshalTraces(td); err == nil {
				td, err = (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(pb)
			}
		}
	default:
		return dst, Stats{}, enc.Validate()
	}
	if err != nil {
		return dst, Stats{}, unmarshalError(err)
	}
	n := td.SpanCount()
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
	now := opts.Now()
	d := refDecoder{
		opts:       opts,
		lim:        lim,
		minNs:      unixNanos(now.Add(-lim.MaxAge)),
		maxNs:      unixNanos(now.Add(lim.MaxFuture)),
		arena:      make([]byte, 0, n*64),
		patches:    make([]patch, 0, n*3),
		spanTenant: make([]string, len(opts.TenantAttributes)),
		resTenant:  make([]string, len(opts.TenantAttributes)),
		spanIdx:    -1,
		sub:        -1,
	}
	dst, err = d.decode(td, dst)
	if err != nil {
		clear(dst[base:cap(dst)]) // drop references to the message
		return dst[:base], Stats{}, err
	}
	// All rows are in place and dst will not grow again: point the id and
	// hash fields into one string holding every hex digit of the message
	// (one allocation instead of three or more per span).
	arena := string(d.arena)
	for _, p := range d.patches {
		*p.dst = arena[p.off:p.end]
	}
	d.stats.Spans = n
	return dst, d.stats, nil
}

// refCandidate is an attribute that feeds a typed column, kept until the whole
// attribute set was seen because a preferred key may come later.
type refCandidate struct {
	set  bool
	prio int8
	key  string
	val  pcommon.Value
	tok  uint64
}

type refDecoder struct {
	opts         SpanOptions
	lim          Limits
	minNs, maxNs uint64
	stats        Stats

	arena   []byte
	patches []patch
	buf     []byte   // scratch for flattening and hashing
	kv      []kvPair // span attributes that stay in span_attributes
	cands   [numCols]refCandidate

	lastTraceID  pcommon.TraceID
	lastTraceOff int
	haveTrace    bool

	// per resource
	resAttrs   map[string]string
	resTenant  []string
	resAgent   [3]string // agent id, name, version from resource attributes
	service    string
	resLen     int
	spanTenant []string

	// where we are, for error messages: where names the part of span
	// spanIdx (-1: of the resource or scope), with "#" standing for sub.
	spanIdx int
	where   string
	sub     int
}

func (d *refDecoder) decode(td ptrace.Traces, dst []Span) ([]Span, error) {
	idx := uint32(0)
	rss := td.ResourceSpans()
	for i := 0; i < rss.Len(); i++ {
		rs := rss.At(i)
		if err := d.resource(rs.Resource()); err != nil {
			return dst, err
		}
		sss := rs.ScopeSpans()
		for j := 0; j < sss.Len(); j++ {
			ss := sss.At(j)
			scope := ss.Scope()
			d.spanIdx = -1
			d.where = "scope"
			if err := d.checkField("scope name", scope.Name()); err != nil {
				return dst, err
			}
			if err := d.checkField("scope version", scope.Version()); err != nil {
				return dst, err
			}
			scopeAttrs, err := d.attrMap(scope.Attributes(), "scope attribute")
			if err != nil {
				return dst, err
			}
			scopeLen := scope.Attributes().Len()
			spans := ss.Spans()
			for k := 0; k < spans.Len(); k++ {
				dst = dst[:len(dst)+1]
				row := &dst[len(dst)-1]
				*row = Span{
					ServiceName:        d.service,
					ScopeName:          scope.Name(),
					ScopeVersion:       scope.Version(),
					ResourceAttributes: d.resAttrs,
					ScopeAttributes:    scopeAttrs,
					SrcIndex:           idx,
				}
				d.spanIdx = int(idx)
				if err := d.span(spans.At(k), row, scopeLen); err != nil {
					return dst, err
				}
				idx++
			}
		}
	}
	return dst, nil
}

// resource prepares what spans of one resource share.
func (d *refDecoder) resource(res pcommon.Resource) error {
	d.spanIdx = -1
	attrs := res.Attributes()
	m, err := d.attrMap(attrs, "resource attribute")
	if err != nil {
		return err
	}
	d.resAttrs = m
	d.resLen = attrs.Len()
	d.service = m["service.name"]
	for j, k := range d.opts.TenantAttributes {
		d.resTenant[j] = m[k]
	}
	d.resAgent = [3]string{m[KeyAgentID], m[KeyAgentName], m[KeyAgentVersion]}
	return nil
}

func (d *refDecoder) span(sp ptrace.Span, row *Span, scopeLen int) error {
	lim := &d.lim
	d.where, d.sub = "", -1
	attrs := sp.Attributes()
	if n := attrs.Len() + d.resLen + scopeLen; n > lim.MaxAttributesPerSpan {
		return d.fail(ReasonTooManyAttributes, strconv.Itoa(n)+" span, resource and scope attributes exceed limit of "+strconv.Itoa(lim.MaxAttributesPerSpan))
	}
	events, links := sp.Events(), sp.Links()
	if events.Len() > lim.MaxEventsPerSpan {
		return d.fail(ReasonTooManyEvents, strconv.Itoa(events.Len())+" events exceed limit of "+strconv.Itoa(lim.MaxEventsPerSpan))
	}
	if links.Len() > lim.MaxLinksPerSpan {
		return d.fail(ReasonTooManyLinks, strconv.Itoa(links.Len())+" links exceed limit of "+strconv.Itoa(lim.MaxLinksPerSpan))
	}

	// Ids.
	tid, sid := sp.TraceID(), sp.SpanID()
	if tid.IsEmpty() {
		return d.fail(ReasonInvalidID, "trace_id is empty or all zeros")
	}
	if sid.IsEmpty() {
		return d.fail(ReasonInvalidID, "span_id is empty or all zeros")
	}
	if d.haveTrace && tid == d.lastTraceID {
		d.patches = append(d.patches, patch{&row.TraceID, d.lastTraceOff, d.lastTraceOff + 32})
	} else {
		d.lastTraceID, d.lastTraceOff, d.haveTrace = tid, len(d.arena), true
		d.hexID(&row.TraceID, tid[:])
	}
	d.hexID(&row.SpanID, sid[:])
	if pid := sp.ParentSpanID(); !pid.IsEmpty() {
		d.hexID(&row.ParentSpanID, pid[:])
	}

	// Times.
	start, end := uint64(sp.StartTimestamp()), uint64(sp.EndTimestamp())
	if start == 0 {
		return d.fail(ReasonMissingField, "start_time_unix_nano is missing")
	}
	if end == 0 {
		return d.fail(ReasonMissingField, "end_time_unix_nano is missing")
	}
	if err := d.checkTime("start time", start); err != nil {
		return err
	}
	if err := d.checkTime("end time", end); err != nil {
		return err
	}
	if end < start {
		return d.fail(ReasonTimestampOutOfRange, "span ends before it starts")
	}
	row.StartTime = time.Unix(0, int64(start)).UTC()
	row.EndTime = time.Unix(0, int64(end)).UTC()
	row.DurationNs = end - start

	// Plain fields.
	row.TraceState = sp.TraceState().AsRaw()
	if err := d.checkField("trace_state", row.TraceState); err != nil {
		return err
	}
	row.Flags = sp.Flags()
	row.Name = sp.Name()
	if err := d.checkField("name", row.Name); err != nil {
		return err
	}
	row.Kind = refKindString(sp.Kind())
	st := sp.Status()
	row.StatusCode = refStatusString(st.Code())
	row.StatusMessage = st.Message()
	if err := d.checkField("status message", row.StatusMessage); err != nil {
		return err
	}
	row.DroppedAttributes = sp.DroppedAttributesCount()
	row.DroppedEvents = sp.DroppedEventsCount()
	row.DroppedLinks = sp.DroppedLinksCount()

	if err := d.spanAttributes(attrs, row); err != nil {
		return err
	}
	if events.Len() > 0 {
		if err := d.events(events, row); err != nil {
			return err
		}
	}
	if links.Len() > 0 {
		if err := d.links(links, row); err != nil {
			return err
		}
	}
	return nil
}

// spanAttributes fills the typed columns, the tenant and span_attributes.
func (d *refDecoder) spanAttributes(attrs pcommon.Map, row *Span) error {
	d.where = "span attribute"
	d.kv = d.kv[:0]
	d.cands = [numCols]refCandidate{}
	clear(d.spanTenant)
	tenantKeys := d.opts.TenantAttributes
	for k, v := range attrs.All() {
		if err := d.checkKey(k); err != nil {
			return err
		}
		for j, tk := range tenantKeys {
			if k == tk {
				s, err := d.refFlatten(k, v)
				if err != nil {
					return err
				}
				d.spanTenant[j] = s
			}
		}
		col, prio, ok := genAIField(k)
		if !ok {
			if err := d.keep(k, v); err != nil {
				return err
			}
			continue
		}
		var tok uint64
		switch {
		case col >= firstTokenCol && col <= lastTokenCol:
			if tok, ok = refTokenCount(v); !ok {
				d.stats.InvalidTokenCounts++
				if err := d.keep(k, v); err != nil {
					return err
				}
				continue
			}
		case col == colFinishReasons:
			if !refIsStringSlice(v) {
				if err := d.keep(k, v); err != nil {
					return err
				}
				continue
			}
		case col == colToolArgs || col == colToolResult:
			if !d.opts.HashToolCallContent {
				if err := d.keep(k, v); err != nil {
					return err
				}
			}
		}
		c := &d.cands[col]
		switch {
		case !c.set || prio < c.prio:
			if c.set { // a less preferred key was seen first
				if err := d.keep(c.key, c.val); err != nil {
					return err
				}
			}
			*c = refCandidate{set: true, prio: prio, key: k, val: v, tok: tok}
		case prio == c.prio: // the same key again: last wins
			d.stats.DuplicateAttributes++
			*c = refCandidate{set: true, prio: prio, key: k, val: v, tok: tok}
		default:
			if err := d.keep(k, v); err != nil {
				return err
			}
		}
	}

	for col := range d.cands {
		c := &d.cands[col]
		if !c.set {
			continue
		}
		switch {
		case col <= lastStringCol:
			s, err := d.refFlatten(c.key, c.val)
			if err != nil {
				return err
			}
			*stringColumn(row, col) = s
		case col == colFinishReasons:
			sl := c.val.Slice()
			out := make([]string, sl.Len())
			for i := range out {
				s := sl.At(i).Str()
				if fe := checkString(s, d.lim.MaxAttributeValueBytes); fe != nil {
					return d.failKey(fe, c.key)
				}
				out[i] = s
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
	for j := range tenantKeys {
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

func refIsStringSlice(v pcommon.Value) bool {
	if v.Type() != pcommon.ValueTypeSlice {
		return false
	}
	s := v.Slice()
	for i := 0; i < s.Len(); i++ {
		if s.At(i).Type() != pcommon.ValueTypeStr {
			return false
		}
	}
	return true
}

// keep queues attribute k for span_attributes.
func (d *refDecoder) keep(k string, v pcommon.Value) error {
	s, err := d.refFlatten(k, v)
	if err != nil {
		return err
	}
	d.kv = append(d.kv, kvPair{k, s})
	return nil
}

// attrMap converts a resource, scope, event or link attribute set. With
// HashToolCallContent, tool call content is replaced by its SHA-256 under
// key+HashedKeySuffix.
func (d *refDecoder) attrMap(attrs pcommon.Map, where string) (map[string]string, error) {
	if attrs.Len() == 0 {
		return nil, nil
	}
	d.where = where
	m := make(map[string]string, attrs.Len())
	for k, v := range attrs.All() {
		if err := d.checkKey(k); err != nil {
			return nil, err
		}
		if d.opts.HashToolCallContent && isToolContentKey(k) {
			var h string
			if err := d.hashString(&h, k, v); err != nil {
				return nil, err
			}
			k += HashedKeySuffix
			n := len(m)
			if m[k] = h; len(m) == n {
				d.stats.DuplicateAttributes++
			}
			continue
		}
		s, err := d.refFlatten(k, v)
		if err != nil {
			return nil, err
		}
		n := len(m)
		if m[k] = s; len(m) == n {
			d.stats.DuplicateAttributes++
		}
	}
	return m, nil
}

func (d *refDecoder) events(events ptrace.SpanEventSlice, row *Span) error {
	n := events.Len()
	row.EventsTime = make([]time.Time, n)
	row.EventsName = make([]string, n)
	row.EventsAttributes = make([]map[string]string, n)
	for i := 0; i < n; i++ {
		ev := events.At(i)
		d.where, d.sub = "event #", i
		ts := uint64(ev.Timestamp())
		if err := d.checkTime("event time", ts); err != nil {
			return err
		}
		row.EventsTime[i] = time.Unix(0, int64(ts)).UTC()
		if err := d.checkField("name", ev.Name()); err != nil {
			return err
		}
		row.EventsName[i] = ev.Name()
		attrs := ev.Attributes()
		if attrs.Len() > d.lim.MaxAttributesPerSpan {
			return d.fail(ReasonTooManyAttributes, strconv.Itoa(attrs.Len())+" attributes exceed limit of "+strconv.Itoa(d.lim.MaxAttributesPerSpan))
		}
		m, err := d.attrMap(attrs, "event # attribute")
		if err != nil {
			return err
		}
		row.EventsAttributes[i] = m
	}
	return nil
}

func (d *refDecoder) links(links ptrace.SpanLinkSlice, row *Span) error {
	n := links.Len()
	row.LinksTraceID = make([]string, n)
	row.LinksSpanID = make([]string, n)
	row.LinksTraceState = make([]string, n)
	row.LinksAttributes = make([]map[string]string, n)
	for i := 0; i < n; i++ {
		l := links.At(i)
		d.where, d.sub = "link #", i
		tid, sid := l.TraceID(), l.SpanID()
		if tid.IsEmpty() || sid.IsEmpty() {
			return d.fail(ReasonInvalidID, "trace_id or span_id is empty or all zeros")
		}
		d.hexID(&row.LinksTraceID[i], tid[:])
		d.hexID(&row.LinksSpanID[i], sid[:])
		ts := l.TraceState().AsRaw()
		if err := d.checkField("trace_state", ts); err != nil {
			return err
		}
		row.LinksTraceState[i] = ts
		attrs := l.Attributes()
		if attrs.Len() > d.lim.MaxAttributesPerSpan {
			return d.fail(ReasonTooManyAttributes, strconv.Itoa(attrs.Len())+" attributes exceed limit of "+strconv.Itoa(d.lim.MaxAttributesPerSpan))
		}
		m, err := d.attrMap(attrs, "link # attribute")
		if err != nil {
			return err
		}
		row.LinksAttributes[i] = m
	}
	return nil
}

// hexID appends id in lower-case hex to the arena and records that *dst points there.
func (d *refDecoder) hexID(dst *string, id []byte) {
	off := len(d.arena)
	d.arena = hex.AppendEncode(d.arena, id)
	d.patches = append(d.patches, patch{dst, off, len(d.arena)})
}

// hashValue sets *dst (via the arena) to the SHA-256 hex of v: of a string's
// bytes, or of the compact JSON (flatten) of any other value.
func (d *refDecoder) hashValue(dst *string, k string, v pcommon.Value) error {
	sum, err := d.sum(k, v)
	if err != nil {
		return err
	}
	d.hexID(dst, sum[:])
	return nil
}

// hashString is hashValue for maps built before the arena is final.
func (d *refDecoder) hashString(dst *string, k string, v pcommon.Value) error {
	sum, err := d.sum(k, v)
	if err != nil {
		return err
	}
	*dst = hex.EncodeToString(sum[:])
	return nil
}

func (d *refDecoder) sum(k string, v pcommon.Value) ([sha256.Size]byte, error) {
	if v.Type() == pcommon.ValueTypeStr {
		// Not stored, so not bounded by MaxAttributeValueBytes. The hash is
		// of the bytes as sent, so invalid UTF-8 is harmless here.
		d.buf = append(d.buf[:0], v.Str()...)
		return sha256.Sum256(d.buf), nil
	}
	var fe *flattenError
	d.buf, fe = refAppendJSONValue(d.buf[:0], v, 1, int(^uint(0)>>1))
	if fe != nil {
		return [sha256.Size]byte{}, d.failKey(fe, k)
	}
	return sha256.Sum256(d.buf), nil
}

func (d *refDecoder) refFlatten(k string, v pcommon.Value) (string, error) {
	s, fe := refFlatten(v, d.lim.MaxAttributeValueBytes, &d.buf)
	if fe != nil {
		return "", d.failKey(fe, k)
	}
	return s, nil
}

func (d *refDecoder) checkKey(k string) error {
	if len(k) > d.lim.MaxAttributeKeyBytes {
		return d.fail(ReasonValueTooLong, "key "+quote(k)+" of "+strconv.Itoa(len(k))+" bytes exceeds limit of "+strconv.Itoa(d.lim.MaxAttributeKeyBytes))
	}
	if fe := checkString(k, d.lim.MaxAttributeKeyBytes); fe != nil {
		return d.fail(fe.reason, "key "+quote(k)+": "+fe.detail)
	}
	return nil
}

// checkField checks a string stored as is.
func (d *refDecoder) checkField(name, s string) error {
	if fe := checkString(s, d.lim.MaxAttributeValueBytes); fe != nil {
		return d.fail(fe.reason, name+": "+fe.detail)
	}
	return nil
}

func (d *refDecoder) checkTime(name string, ns uint64) error {
	if ns < d.minNs || ns > d.maxNs {
		return d.fail(ReasonTimestampOutOfRange, name+" "+strconv.FormatUint(ns, 10)+" is outside the accepted window")
	}
	return nil
}

func (d *refDecoder) failKey(fe *flattenError, k string) error {
	return d.fail(fe.reason, quote(k)+": "+fe.detail)
}

// fail returns an *Error that says which span (and part of it) is at fault.
func (d *refDecoder) fail(r Reason, msg string) error {
	where := strings.Replace(d.where, "#", strconv.Itoa(d.sub), 1)
	if d.spanIdx < 0 {
		return &Error{Reason: r, Err: fmt.Errorf("%s: %s", where, msg)}
	}
	if where == "" {
		return &Error{Reason: r, Err: fmt.Errorf("span %d: %s", d.spanIdx, msg)}
	}
	return &Error{Reason: r, Err: fmt.Errorf("span %d: %s: %s", d.spanIdx, where, msg)}
}

func refKindString(k ptrace.SpanKind) string {
	switch k {
	case ptrace.SpanKindInternal:
		return "internal"
	case ptrace.SpanKindServer:
		return "server"
	case ptrace.SpanKindClient:
		return "client"
	case ptrace.SpanKindProducer:
		return "producer"
	case ptrace.SpanKindConsumer:
		return "consumer"
	}
	return "unspecified"
}

func refStatusString(c ptrace.StatusCode) string {
	switch c {
	case ptrace.StatusCodeOk:
		return "ok"
	case ptrace.StatusCodeError:
		return "error"
	}
	return "unset"
}
