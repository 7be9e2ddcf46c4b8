package event

import (
	"encoding/base64"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.opentelemetry.io/collector/pdata/pcommon"
)

// maxValueDepth bounds the nesting of array and map attribute values.
const maxValueDepth = 64

// flattenError is the outcome of flattening a value that cannot be stored;
// the caller turns it into an *Error that says where.
type flattenError struct {
	reason Reason
	detail string
}

// flatten renders v as the string stored in an attribute map: strings as
// they are, ints and doubles as JSON numbers (NaN and infinities as "NaN",
// "+Inf", "-Inf"), booleans "true"/"false", bytes as standard base64, arrays
// and maps as compact JSON (map keys sorted), empty as "". buf is scratch.
func flatten(v pcommon.Value, maxLen int, buf *[]byte) (string, *flattenError) {
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
		*buf, fe = appendJSONValue((*buf)[:0], v, 0, maxLen)
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

// appendJSONValue appends v as compact JSON. It stops early once b exceeds
// maxLen so a huge value costs no more than the limit.
func appendJSONValue(b []byte, v pcommon.Value, depth, maxLen int) ([]byte, *flattenError) {
	if depth > maxValueDepth {
		return b, &flattenError{ReasonDecodeFailed, "value nested deeper than " + strconv.Itoa(maxValueDepth)}
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
			if b, fe = appendJSONValue(b, s.At(i), depth+1, maxLen); fe != nil {
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
			if b, fe = appendJSONValue(b, e.v, depth+1, maxLen); fe != nil {
				return b, fe
			}
		}
		return append(b, '}'), nil
	}
	return append(b, "null"...), nil
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

// tokenCount reads a token count: a non-negative int, an integral
// non-negative double below 2^64, or a string of decimal digits.
func tokenCount(v pcommon.Value) (uint64, bool) {
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
