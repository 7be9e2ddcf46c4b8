package event

import (
	"encoding/base64"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Kinds of OTLP AnyValue.
const (
	vEmpty = iota
	vStr
	vBool
	vInt
	vDouble
	vSlice // ArrayValue
	vMap   // KeyValueList
	vBytes
)

// anyVal is an OTLP AnyValue in the message: scalars in n (int64 bits,
// 0/1, float64 bits), strings, bytes, arrays and maps as the range a:b of
// their payload.
type anyVal struct {
	typ  int8
	n    uint64
	a, b int
}

// keyValue reads a KeyValue. Like pdata it merges repeated value fields:
// the last oneof field set wins.
func (d *spanDecoder) keyValue(r rng) (string, anyVal) {
	var (
		k string
		v anyVal
	)
	// Fast path for what encoders write: a key (field 1) and a value
	// (field 2) in either order — pdata writes the value first — with
	// one-byte tags and lengths.
	if p := r.s; r.e-p >= 4 && d.data[p+1] < 0x80 {
		t1, m := d.data[p], p+2+int(d.data[p+1])
		if m+2 <= r.e && d.data[m+1] < 0x80 && m+2+int(d.data[m+1]) == r.e {
			switch t2 := d.data[m]; {
			case t1 == 0x0a && t2 == 0x12:
				d.anyValueInto(&v, rng{m + 2, r.e})
				return d.msg[p+2 : m], v
			case t1 == 0x12 && t2 == 0x0a:
				d.anyValueInto(&v, rng{p + 2, m})
				return d.msg[m+2 : r.e], v
			}
		}
	}
	for c := d.cursor(r); c.more(); {
		f := c.next()
		switch f.num {
		case 1:
			k = d.msg[f.s:f.e]
		case 2:
			d.anyValueInto(&v, rng{f.s, f.e})
		}
	}
	return k, v
}

func (d *spanDecoder) anyValue(r rng) anyVal {
	var v anyVal
	d.anyValueInto(&v, r)
	return v
}

func (d *spanDecoder) anyValueInto(v *anyVal, r rng) {
	if scalarAnyValue(d.data, r.s, r.e) {
		switch p := r.s; d.data[p] {
		case 1<<3 | wtLen:
			*v = anyVal{typ: vStr, a: p + 2, b: r.e}
			return
		case 3<<3 | wtVarint:
			*v = anyVal{typ: vInt, n: uint64(d.data[p+1])}
			return
		}
	}
	for pos := r.s; pos < r.e; {
		f, next, _ := readField(d.data, pos, r.e)
		pos = next
		switch f.num {
		case 1:
			*v = anyVal{typ: vStr, a: f.s, b: f.e}
		case 2:
			var b uint64
			if f.v != 0 {
				b = 1
			}
			*v = anyVal{typ: vBool, n: b}
		case 3:
			*v = anyVal{typ: vInt, n: f.v}
		case 4:
			*v = anyVal{typ: vDouble, n: f.v}
		case 5:
			*v = anyVal{typ: vSlice, a: f.s, b: f.e}
		case 6:
			*v = anyVal{typ: vMap, a: f.s, b: f.e}
		case 7:
			*v = anyVal{typ: vBytes, a: f.s, b: f.e}
		case 8: // string_value_strindex (profiles): no value for traces
			*v = anyVal{}
		}
	}
}

func (d *spanDecoder) isStringSlice(v anyVal) bool {
	if v.typ != vSlice {
		return false
	}
	for c := d.cursor(rng{v.a, v.b}); c.more(); {
		f := c.next()
		if f.num == 1 && d.anyValue(rng{f.s, f.e}).typ != vStr {
			return false
		}
	}
	return true
}

// tokenCount reads a token count: a non-negative int, an integral
// non-negative double below 2^64, or a string of decimal digits.
func (d *spanDecoder) tokenCount(v anyVal) (uint64, bool) {
	switch v.typ {
	case vInt:
		return v.n, int64(v.n) >= 0
	case vDouble:
		f := math.Float64frombits(v.n)
		if f >= 0 && f < 1<<64 && f == math.Trunc(f) {
			return uint64(f), true
		}
	case vStr:
		n, err := strconv.ParseUint(d.msg[v.a:v.b], 10, 64)
		return n, err == nil
	}
	return 0, false
}

// flattenError is the outcome of flattening a value that cannot be stored;
// the caller turns it into an *Error that says where.
type flattenError struct {
	reason Reason
	detail string
}

// flattenValue renders v as the string stored in an attribute map: strings
// as they are, ints and doubles as JSON numbers (NaN and infinities as
// "NaN", "+Inf", "-Inf"), booleans "true"/"false", bytes as standard
// base64, arrays and maps as compact JSON (map keys sorted), empty as "".
func (d *spanDecoder) flattenValue(v anyVal, maxLen int) (string, *flattenError) {
	switch v.typ {
	case vStr:
		s := d.msg[v.a:v.b]
		if fe := checkString(s, maxLen); fe != nil {
			return "", fe
		}
		return s, nil
	case vInt:
		return strconv.FormatInt(int64(v.n), 10), nil
	case vDouble:
		f := math.Float64frombits(v.n)
		if s, ok := nonFinite(f); ok {
			return s, nil
		}
		d.buf = appendFloat(d.buf[:0], f)
		return string(d.buf), nil
	case vBool:
		if v.n != 0 {
			return "true", nil
		}
		return "false", nil
	case vBytes:
		if n := base64.StdEncoding.EncodedLen(v.b - v.a); n > maxLen {
			return "", tooLong(n, maxLen)
		}
		return base64.StdEncoding.EncodeToString(d.data[v.a:v.b]), nil
	case vSlice, vMap:
		var fe *flattenError
		d.buf, fe = d.appendJSON(d.buf[:0], v, maxLen)
		if fe != nil {
			return "", fe
		}
		if len(d.buf) > maxLen {
			return "", tooLong(len(d.buf), maxLen)
		}
		return string(d.buf), nil
	}
	return "", nil
}

func nonFinite(f float64) (string, bool) {
	switch {
	case math.IsNaN(f):
		return "NaN", true
	case math.IsInf(f, 1):
		return "+Inf", true
	case math.IsInf(f, -1):
		return "-Inf", true
	}
	return "", false
}

// appendJSON appends v as compact JSON. It stops early once b exceeds
// maxLen so a huge value costs no more than the limit. Nesting is bounded
// by the wire reader's recursion limit.
func (d *spanDecoder) appendJSON(b []byte, v anyVal, maxLen int) ([]byte, *flattenError) {
	if len(b) > maxLen {
		return b, tooLong(len(b), maxLen)
	}
	switch v.typ {
	case vStr:
		s := d.msg[v.a:v.b]
		if !utf8.ValidString(s) {
			return b, &flattenError{ReasonInvalidUTF8, "not valid UTF-8"}
		}
		return appendJSONString(b, s), nil
	case vInt:
		return strconv.AppendInt(b, int64(v.n), 10), nil
	case vDouble:
		f := math.Float64frombits(v.n)
		if s, ok := nonFinite(f); ok {
			return strconv.AppendQuote(b, s), nil
		}
		return appendFloat(b, f), nil
	case vBool:
		return strconv.AppendBool(b, v.n != 0), nil
	case vBytes:
		b = append(b, '"')
		b = base64.StdEncoding.AppendEncode(b, d.data[v.a:v.b])
		return append(b, '"'), nil
	case vSlice:
		b = append(b, '[')
		first := true
		for c := d.cursor(rng{v.a, v.b}); c.more(); {
			f := c.next()
			if f.num != 1 {
				continue
			}
			if !first {
				b = append(b, ',')
			}
			first = false
			var fe *flattenError
			if b, fe = d.appendJSON(b, d.anyValue(rng{f.s, f.e}), maxLen); fe != nil {
				return b, fe
			}
		}
		return append(b, ']'), nil
	case vMap:
		type kv struct {
			k string
			v anyVal
		}
		var kvs []kv
		for c := d.cursor(rng{v.a, v.b}); c.more(); {
			f := c.next()
			if f.num == 1 {
				k, v := d.keyValue(rng{f.s, f.e})
				kvs = append(kvs, kv{k, v})
			}
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
			if b, fe = d.appendJSON(b, e.v, maxLen); fe != nil {
				return b, fe
			}
		}
		return append(b, '}'), nil
	}
	return append(b, "null"...), nil
}

func checkString(s string, maxLen int) *flattenError {
	if len(s) > maxLen {
		return tooLong(len(s), maxLen)
	}
	if !utf8.ValidString(s) {
		return &flattenError{ReasonInvalidUTF8, "not valid UTF-8"}
	}
	return nil
}

func tooLong(n, max int) *flattenError {
	return &flattenError{ReasonValueTooLong, strconv.Itoa(n) + " bytes, limit " + strconv.Itoa(max)}
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s, valid UTF-8, as a JSON string: quote,
// backslash and control characters escaped, everything else verbatim.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		start = i + 1
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// appendFloat appends f as encoding/json (and ECMAScript) would: the
// shortest representation, exponent form only below 1e-6 and from 1e21.
func appendFloat(b []byte, f float64) []byte {
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// clean up e-09 to e-9
		n := len(b)
		if n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}
