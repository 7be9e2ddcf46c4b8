package event

import (
	"encoding/binary"
	"errors"
	"strconv"
)

// A reader of the OTLP protobuf wire format, just enough for
// ExportTraceServiceRequest. It accepts and rejects exactly what pdata's
// ptrace.ProtoUnmarshaler (v1.71) accepts and rejects — same wire-type
// checks per field, same handling of unknown fields and groups, same
// recursion limit, merge semantics for repeated singular messages —
// because pdata is the reference it is tested against
// (TestFastDecoderAgreesWithPdata, FuzzDecodeSpans). It exists because
// pdata allocates an object per attribute and value, which made it two
// thirds of the decoding cost.

// Wire types.
const (
	wtVarint     = 0
	wtI64        = 1
	wtLen        = 2
	wtStartGroup = 3
	wtEndGroup   = 4
	wtI32        = 5
)

// protoRecursionLimit is pdata's nesting limit for KeyValue, AnyValue,
// ArrayValue and KeyValueList.
const protoRecursionLimit = 100

var (
	errProtoEOF          = errors.New("proto: unexpected EOF")
	errProtoOverflow     = errors.New("proto: integer overflow")
	errProtoLength       = errors.New("proto: negative length")
	errProtoEndGroup     = errors.New("proto: unexpected end of group")
	errProtoRecursion    = errors.New("proto: exceeded max recursion depth")
	errProtoIllegalField = errors.New("proto: illegal field number")
)

// field is one decoded field: for wtLen its payload is data[s:e], for
// varint and fixed types its value is v.
type field struct {
	num  int32
	wt   int8
	v    uint64
	s, e int
}

// cursor iterates over the fields of the message data[pos:end]:
//
//	for c := (cursor{data: data, pos: r.s, end: r.e}); c.more(); {
//		f := c.next()
//		switch f.num { ... }
//	}
//	if c.err != nil { ... }
//
// After an error next returns a zero field and more returns false.
type cursor struct {
	data     []byte
	pos, end int
	err      error
}

func (c *cursor) more() bool { return c.pos < c.end }

func (c *cursor) next() (f field) {
	f, c.pos, c.err = readField(c.data, c.pos, c.end)
	return f
}

// readField reads the field at pos of the message data[:end] and returns
// it with the position of the next one — end after an error.
func readField(data []byte, pos, end int) (field, int, error) {
	// Fast path: one-byte tag and, for length-delimited fields, one-byte length.
	if pos+1 < end {
		if t, l := data[pos], data[pos+1]; t < 0x80 && t>>3 != 0 && t&7 == wtLen && l < 0x80 {
			s := pos + 2
			if e := s + int(l); e <= end {
				return field{num: int32(t >> 3), wt: wtLen, s: s, e: e}, e, nil
			}
		}
	}
	f, next, err := readFieldSlow(data, pos, end)
	if err != nil {
		return field{}, end, err
	}
	return f, next, nil
}

func readFieldSlow(data []byte, pos, end int) (field, int, error) {
	tag, pos, err := varint(data, pos, end)
	if err != nil {
		return field{}, 0, err
	}
	f := field{num: int32(tag >> 3), wt: int8(tag & 7)}
	if f.num <= 0 {
		return field{}, 0, errProtoIllegalField
	}
	switch f.wt {
	case wtLen:
		var n uint64
		if n, pos, err = varint(data, pos, end); err != nil {
			return field{}, 0, err
		}
		length := int(n)
		if length < 0 {
			return field{}, 0, errProtoLength
		}
		f.s = pos
		pos += length
		if pos < 0 || pos > end {
			return field{}, 0, errProtoEOF
		}
		f.e = pos
	case wtVarint:
		if f.v, pos, err = varint(data, pos, end); err != nil {
			return field{}, 0, err
		}
	case wtI64:
		if pos+8 > end {
			return field{}, 0, errProtoEOF
		}
		f.v = binary.LittleEndian.Uint64(data[pos:])
		pos += 8
	case wtI32:
		if pos+4 > end {
			return field{}, 0, errProtoEOF
		}
		f.v = uint64(binary.LittleEndian.Uint32(data[pos:]))
		pos += 4
	default:
		if pos, err = skipGroup(data, pos, end, f.wt); err != nil {
			return field{}, 0, err
		}
	}
	return f, pos, nil
}

func varint(data []byte, pos, end int) (uint64, int, error) {
	var num uint64
	for shift := uint(0); ; shift += 7 {
		if shift >= 64 {
			return 0, 0, errProtoOverflow
		}
		if pos >= end {
			return 0, 0, errProtoEOF
		}
		b := data[pos]
		pos++
		num |= uint64(b&0x7f) << shift
		if b < 0x80 {
			return num, pos, nil
		}
	}
}

// skipGroup skips an unknown field of a group (or illegal) wire type the
// way pdata's proto.ConsumeUnknown does — including its quirk of returning
// after the first varint, fixed or length-delimited field inside a group.
func skipGroup(data []byte, pos, end int, wt int8) (int, error) {
	depth := 0
	for pos < end {
		switch wt {
		case wtVarint:
			_, pos, err := varint(data, pos, end)
			return pos, err
		case wtI64:
			if pos+8 > end {
				return 0, errProtoEOF
			}
			return pos + 8, nil
		case wtLen:
			n, p, err := varint(data, pos, end)
			if err != nil {
				return 0, err
			}
			length := int(n)
			if length < 0 {
				return 0, errProtoLength
			}
			p += length
			if p < 0 || p > end {
				return 0, errProtoEOF
			}
			return p, nil
		case wtStartGroup:
			depth++
		case wtEndGroup:
			if depth == 0 {
				return 0, errProtoEndGroup
			}
			depth--
		case wtI32:
			if pos+4 > end {
				return 0, errProtoEOF
			}
			return pos + 4, nil
		default:
			return 0, errors.New("proto: illegal wireType " + strconv.Itoa(int(wt)))
		}
		if depth == 0 {
			return pos, nil
		}
		tag, p, err := varint(data, pos, end)
		if err != nil {
			return 0, err
		}
		if int32(tag>>3) <= 0 {
			return 0, errProtoIllegalField
		}
		wt, pos = int8(tag&7), p
	}
	return 0, errProtoEOF
}

// Structural validation: the first pass over a message checks everything
// pdata checks while unmarshalling, in the same order, so that the second
// pass can trust the structure and the first error has the same reason as
// pdata's. It also counts the spans.

// idLengthError is pdata's complaint about a trace or span id that is
// neither empty nor of the right length.
type idLengthError struct{ what string }

func (e *idLengthError) Error() string { return "unmarshal: invalid " + e.what + " length" }

func wrongWireType(f field) error {
	return errors.New("proto: wrong wireType " + strconv.Itoa(int(f.wt)) + " for field " + strconv.Itoa(int(f.num)))
}

// CheckSpansProto is DecodeSpans' first pass over an otlp_proto message: it
// rejects what pdata's unmarshaler rejects, with the *Error DecodeSpans
// gives for it (ReasonDecodeFailed or ReasonInvalidID), and counts the
// spans. It does not check the message size, limits, strings or
// timestamps: DecodeSpans can still reject a message it accepts. It is for
// readers that take a shortcut past DecodeSpans (the detector's span
// scanner) and check the rest themselves, so that they accept no message
// DecodeSpans rejects. It allocates nothing when the message is valid.
func CheckSpansProto(data []byte) (spans int, err error) {
	v := validator{data: data}
	if err := v.request(); err != nil {
		return 0, unmarshalError(err)
	}
	return v.spans, nil
}

// validator is the structural first pass.
type validator struct {
	data  []byte
	spans int
}

func (v *validator) cursor(s, e int) cursor { return cursor{data: v.data, pos: s, end: e} }

// check returns the wire-type error of a known field, if any.
func check(f field, wt int8) error {
	if f.wt != wt {
		return wrongWireType(f)
	}
	return nil
}

func (v *validator) request() error {
	c := v.cursor(0, len(v.data))
	for c.more() {
		f := c.next()
		if f.num != 1 {
			continue
		}
		if err := check(f, wtLen); err != nil {
			return err
		}
		if err := v.resourceSpans(f.s, f.e); err != nil {
			return err
		}
	}
	return c.err
}

func (v *validator) resourceSpans(pos, end int) error {
	current, deprecated := 0, 0
	haveCurrent := false
	c := v.cursor(pos, end)
	for c.more() {
		f := c.next()
		switch f.num {
		case 1:
			if err := check(f, wtLen); err != nil {
				return err
			}
			if err := v.resource(f.s, f.e); err != nil {
				return err
			}
		case 2, 1000:
			if err := check(f, wtLen); err != nil {
				return err
			}
			n, err := v.scopeSpans(f.s, f.e)
			if err != nil {
				return err
			}
			if f.num == 2 {
				haveCurrent = true
				current += n
			} else {
				deprecated += n
			}
		case 3:
			if err := check(f, wtLen); err != nil {
				return err
			}
		}
	}
	if c.err != nil {
		return c.err
	}
	// Deprecated InstrumentationLibrarySpans (field 1000) count only when
	// there are no ScopeSpans, as in pdata's otlp.MigrateTraces.
	if haveCurrent {
		v.spans += current
	} else {
		v.spans += deprecated
	}
	return nil
}

func (v *validator) resource(pos, end int) error {
	c := v.cursor(pos, end)
	for c.more() {
		f := c.next()
		var err error
		switch f.num {
		case 1:
			if err = check(f, wtLen); err == nil {
				err = v.keyValue(f.s, f.e, 0)
			}
		case 2:
			err = check(f, wtVarint)
		case 3:
			if err = check(f, wtLen); err == nil {
				err = v.entityRef(f.s, f.e)
			}
		}
		if err != nil {
			return err
		}
	}
	return c.err
}

func (v *validator) entityRef(pos, end int) error {
	c := v.cursor(pos, end)
	for c.more() {
		f := c.next()
		if f.num >= 1 && f.num <= 4 {
			if err := check(f, wtLen); err != nil {
				return err
			}
		}
	}
	return c.err
}

func (v *validator) scopeSpans(pos, end int) (int, error) {
	n := 0
	c := v.cursor(pos, end)
	for c.more() {
		f := c.next()
		var err error
		switch f.num {
		case 1:
			if err = check(f, wtLen); err == nil {
				err = v.scope(f.s, f.e)
			}
		case 2:
			if err = check(f, wtLen); err == nil {
				n++
				err = v.span(f.s, f.e)
			}
		case 3:
			err = check(f, wtLen)
		}
		if err != nil {
			return 0, err
		}
	}
	return n, c.err
}

func (v *validator) scope(pos, end int) error {
	c := v.cursor(pos, end)
	for c.more() {
		f := c.next()
		var err error
		switch f.num {
		case 1, 2:
			err = check(f, wtLen)
		case 3:
			if err = check(f, wtLen); err == nil {
				err = v.keyValue(f.s, f.e, 0)
			}
		case 4:
			err = check(f, wtVarint)
		}
		if err != nil {
			return err
		}
	}
	return c.err
}

func checkID(f field, n int, what string) error {
	if err := check(f, wtLen); err != nil {
		return err
	}
	if l := f.e - f.s; l != 0 && l != n {
		return &idLengthError{what}
	}
	return nil
}

func (v *validator) span(pos, end int) error {
	c := v.cursor(pos, end)
	for c.more() {
		f := c.next()
		var err error
		switch f.num {
		case 1:
			err = checkID(f, 16, "TraceID")
		case 2, 4:
			err = checkID(f, 8, "SpanID")
		case 3, 5:
			err = check(f, wtLen)
		case 16:
			err = check(f, wtI32)
		case 6, 10, 12, 14:
			err = check(f, wtVarint)
		case 7, 8:
			err = check(f, wtI64)
		case 9:
			if err = check(f, wtLen); err == nil {
				err = v.keyValue(f.s, f.e, 0)
			}
		case 11:
			if err = check(f, wtLen); err == nil {
				err = v.event(f.s, f.e)
			}
		case 13:
			if err = check(f, wtLen); err == nil {
				err = v.link(f.s, f.e)
			}
		case 15:
			if err = check(f, wtLen); err == nil {
				err = v.status(f.s, f.e)
			}
		}
		if err != nil {
			return err
		}
	}
	return c.err
}

func (v *validator) event(pos, end int) error {
	c := v.cursor(pos, end)
	for c.more() {
		f := c.next()
		var err error
		switch f.num {
		case 1:
			err = check(f, wtI64)
		case 2:
			err = check(f, wtLen)
		case 3:
			if err = check(f, wtLen); err == nil {
				err = v.keyValue(f.s, f.e, 0)
			}
		case 4:
			err = check(f, wtVarint)
		}
		if err != nil {
			return err
		}
	}
	return c.err
}

func (v *validator) link(pos, end int) error {
	c := v.cursor(pos, end)
	for c.more() {
		f := c.next()
		var err error
		switch f.num {
		case 1:
			err = checkID(f, 16, "TraceID")
		case 2:
			err = checkID(f, 8, "SpanID")
		case 3:
			err = check(f, wtLen)
		case 4:
			if err = check(f, wtLen); err == nil {
				err = v.keyValue(f.s, f.e, 0)
			}
		case 5:
			err = check(f, wtVarint)
		case 6:
			err = check(f, wtI32)
		}
		if err != nil {
			return err
		}
	}
	return c.err
}

func (v *validator) status(pos, end int) error {
	c := v.cursor(pos, end)
	for c.more() {
		f := c.next()
		var err error
		switch f.num {
		case 2:
			err = check(f, wtLen)
		case 3:
			err = check(f, wtVarint)
		}
		if err != nil {
			return err
		}
	}
	return c.err
}

func (v *validator) keyValue(pos, end, depth int) error {
	if depth >= protoRecursionLimit {
		return errProtoRecursion
	}
	depth++
	// Fast path: a key and a value field in either order, one-byte tags
	// and lengths (see spanDecoder.keyValue).
	if end-pos >= 4 && v.data[pos+1] < 0x80 {
		t1, m := v.data[pos], pos+2+int(v.data[pos+1])
		if m+2 <= end && v.data[m+1] < 0x80 && m+2+int(v.data[m+1]) == end {
			switch t2 := v.data[m]; {
			case t1 == 0x0a && t2 == 0x12:
				return v.anyValue(m+2, end, depth)
			case t1 == 0x12 && t2 == 0x0a:
				return v.anyValue(pos+2, m, depth)
			}
		}
	}
	c := v.cursor(pos, end)
	for c.more() {
		f := c.next()
		var err error
		switch f.num {
		case 1:
			err = check(f, wtLen)
		case 2:
			if err = check(f, wtLen); err == nil {
				err = v.anyValue(f.s, f.e, depth)
			}
		case 3:
			err = check(f, wtVarint)
		}
		if err != nil {
			return err
		}
	}
	return c.err
}

func (v *validator) anyValue(pos, end, depth int) error {
	if depth >= protoRecursionLimit {
		return errProtoRecursion
	}
	depth++
	if scalarAnyValue(v.data, pos, end) {
		return nil
	}
	c := v.cursor(pos, end)
	for c.more() {
		f := c.next()
		var err error
		switch f.num {
		case 1, 7:
			err = check(f, wtLen)
		case 2, 3, 8:
			err = check(f, wtVarint)
		case 4:
			err = check(f, wtI64)
		case 5, 6:
			if err = check(f, wtLen); err == nil {
				err = v.list(f.s, f.e, depth, f.num == 5)
			}
		}
		if err != nil {
			return err
		}
	}
	return c.err
}

// scalarAnyValue reports whether data[pos:end] is an AnyValue of exactly one
// string or bytes field (one-byte length), bool or int (one-byte varint)
// or double: the common case, valid without further ado.
func scalarAnyValue(data []byte, pos, end int) bool {
	if end-pos < 2 {
		return false
	}
	switch data[pos] {
	case 1<<3 | wtLen, 7<<3 | wtLen: // string, bytes
		return data[pos+1] < 0x80 && pos+2+int(data[pos+1]) == end
	case 2<<3 | wtVarint, 3<<3 | wtVarint: // bool, int
		return data[pos+1] < 0x80 && pos+2 == end
	case 4<<3 | wtI64: // double
		return pos+9 == end
	}
	return false
}

// list validates an ArrayValue or a KeyValueList: repeated field 1.
func (v *validator) list(pos, end, depth int, array bool) error {
	if depth >= protoRecursionLimit {
		return errProtoRecursion
	}
	depth++
	c := v.cursor(pos, end)
	for c.more() {
		f := c.next()
		if f.num != 1 {
			continue
		}
		if err := check(f, wtLen); err != nil {
			return err
		}
		var err error
		if array {
			err = v.anyValue(f.s, f.e, depth)
		} else {
			err = v.keyValue(f.s, f.e, depth)
		}
		if err != nil {
			return err
		}
	}
	return c.err
}
