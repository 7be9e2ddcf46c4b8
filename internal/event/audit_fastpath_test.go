package event

import (
	"bytes"
	"encoding/binary"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
	"unsafe"
)

// The fast paths of the audit decoder, each with the inputs that must
// fall off it.

func TestEventFieldNamesAndNearMisses(t *testing.T) {
	for f, name := range eventFieldNames {
		if got := eventField([]byte(name)); got != f {
			t.Errorf("eventField(%q) = %d, want %d", name, got, f)
		}
		// Same length and first byte as a real name (what the dispatch
		// looks at), one byte off: the confirming compare rejects it.
		for i := range len(name) {
			k := []byte(name)
			k[i] ^= 0x20
			if got := eventField(k); got >= 0 {
				t.Errorf("eventField(%q) = %d, want -1", k, got)
			}
		}
		for _, k := range []string{name[:len(name)-1], name + "x", "x" + name[1:], strings.ToUpper(name)} {
			if got := eventField([]byte(k)); got >= 0 && eventFieldNames[got] != k {
				t.Errorf("eventField(%q) = %d, want -1", k, got)
			}
		}
	}
	for _, k := range []string{"", "t", "tsx", "tx", "xxxxxxxx", "tenant_i", "attribute", "tool_params_has"} {
		if got := eventField([]byte(k)); got >= 0 {
			t.Errorf("eventField(%q) = %d, want -1", k, got)
		}
	}
}

func naiveLowerHex(s []byte) bool {
	for _, c := range s {
		if !strings.ContainsRune("0123456789abcdef", rune(c)) {
			return false
		}
	}
	return true
}

// TestIsLowerHexEveryByteEveryPlace puts each of the 256 byte values at
// each place of a word of hex digits (and of the tail after the words).
func TestIsLowerHexEveryByteEveryPlace(t *testing.T) {
	for n := range 20 {
		for i := range n {
			for c := range 256 {
				s := []byte(strings.Repeat("0a9f", 5)[:n])
				s[i] = byte(c)
				if got, want := isLowerHex(s), naiveLowerHex(s); got != want {
					t.Fatalf("isLowerHex(%q) = %v, want %v", s, got, want)
				}
			}
		}
	}
	// Neighbours of a bad byte must not hide it (carries, borrows).
	for a := range 256 {
		for b := range 256 {
			x := binary.LittleEndian.Uint64([]byte{'0', byte(a), byte(b), 'f', '9', 'a', byte(b), byte(a)})
			var w [8]byte
			binary.LittleEndian.PutUint64(w[:], x)
			if got, want := isLowerHex8(x), naiveLowerHex(w[:]); got != want {
				t.Fatalf("isLowerHex8(%q) = %v, want %v", w, got, want)
			}
		}
	}
}

// TestLengthChecksCountCharacters: the byte-length shortcut decides only
// when it proves the answer; multi-byte strings longer than the limit in
// bytes but not in characters are counted.
func TestLengthChecksCountCharacters(t *testing.T) {
	dec, err := NewAuditDecoder(testEventOptions())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		field string
		val   any
		ok    bool
	}{
		{"tenant_id", strings.Repeat("é", 256), true}, // 512 bytes
		{"tenant_id", strings.Repeat("é", 257), false},
		{"tenant_id", strings.Repeat("x", 256), true},
		{"tenant_id", strings.Repeat("x", 257), false},
		{"tenant_id", "", false},
		{"parent_identity", "", true},
		{"parent_identity", strings.Repeat("€", 512), true}, // 1536 bytes
		{"parent_identity", strings.Repeat("€", 513), false},
		{"resource", strings.Repeat("😀", 2048), true}, // 8192 bytes
		{"resource", strings.Repeat("😀", 2049), false},
		{"delegation_scope", []string{strings.Repeat("é", 256)}, true},
		{"delegation_scope", []string{strings.Repeat("é", 257)}, false},
		{"delegation_scope", []string{""}, false},
		{"attributes", map[string]string{strings.Repeat("é", 256): "v"}, true},
		{"attributes", map[string]string{strings.Repeat("é", 257): "v"}, false},
	} {
		msg := event(func(m map[string]any) { m[tc.field] = tc.val })
		ev, err := dec.Decode(msg)
		if (err == nil) != tc.ok {
			t.Errorf("%s of %d bytes: error %v, want ok=%v", tc.field, len(msg), err, tc.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "characters") {
			t.Errorf("%s: %v, want a length violation", tc.field, err)
		}
		if s, isString := tc.val.(string); err == nil && isString {
			if got := reflect.ValueOf(ev).FieldByNameFunc(func(n string) bool {
				return strings.EqualFold(n, strings.ReplaceAll(tc.field, "_", ""))
			}).String(); got != s {
				t.Errorf("%s decoded as %d bytes, want %d", tc.field, len(got), len(s))
			}
		}
	}
}

// TestAuditEventOwnsItsMemory: the event's strings stay as decoded when
// the caller reuses the message's buffer (Kafka clients may), for strings
// taken as they are and for strings decoded from escapes.
func TestAuditEventOwnsItsMemory(t *testing.T) {
	dec, err := NewAuditDecoder(testEventOptions())
	if err != nil {
		t.Fatal(err)
	}
	for _, msg := range [][]byte{[]byte(fullEvent), escapeAll([]byte(fullEvent)), simAuditEvents(t, 1)[0]} {
		ev, err := dec.Decode(msg)
		if err != nil {
			t.Fatal(err)
		}
		want, err := legacyDecodeAuditEvent(msg, dec.opts, new(legacyAuditScratch))
		if err != nil {
			t.Fatal(err)
		}
		for i := range msg {
			msg[i] = 'X'
		}
		if _, err := dec.Decode(msg); err == nil { // reuses the pooled scratch
			t.Fatal("decoded garbage")
		}
		if !reflect.DeepEqual(ev, want) {
			t.Fatalf("event changed with its message's buffer:\n got  %+v\n want %+v", ev, want)
		}
	}
}

// TestEscapesDecodeInPlace: escapes of every kind, at the start, middle
// and end of keys and values, one after another and next to plain runs
// longer than a word — the decoded bytes move left over the escapes.
func TestEscapesDecodeInPlace(t *testing.T) {
	dec, err := NewAuditDecoder(testEventOptions())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ json, want string }{
		{`"\n"`, "\n"},
		{`"\"\\\/\b\f\n\r\t"`, "\"\\/\b\f\n\r\t"},
		{`"abcdefghijklmnop\u00e9qrstuvwxyz0123456789"`, "abcdefghijklmnopéqrstuvwxyz0123456789"},
		{`"\u20ac\u20AC€\ud83d\ude00x\uD83D\uDE00"`, "€€€😀x😀"},
		{`"0123456789abcdef\t0123456789abcdef\\"`, "0123456789abcdef\t0123456789abcdef\\"},
		{`"é\u0041é"`, "éAé"},
	} {
		msg := event(func(m map[string]any) { delete(m, "tenant_id") })
		msg = bytes.Replace(msg, []byte(`{`), []byte(`{"tenant_id":`+tc.json+`,"attributes":{`+tc.json+`:`+tc.json+`},`), 1)
		ev, err := dec.Decode(msg)
		if err != nil {
			t.Fatalf("%s: %v", tc.json, err)
		}
		if ev.TenantID != tc.want || len(ev.Attributes) != 1 || ev.Attributes[tc.want] != tc.want {
			t.Errorf("%s: tenant %q attributes %q, want %q", tc.json, ev.TenantID, ev.Attributes, tc.want)
		}
		if !utf8.ValidString(ev.TenantID) {
			t.Errorf("%s: invalid UTF-8", tc.json)
		}
	}
}

// TestParseUUIDEveryByte puts each byte value at each place of a uuid,
// against the byte-by-byte parser the decoder had before.
func TestParseUUIDEveryByte(t *testing.T) {
	for _, base := range []string{"0b8f6a3e-54c2-4d7e-9a61-2f0c4e8d9b17", "0B8F6A3E-54C2-4D7E-9A61-2F0C4E8D9B17"} {
		for i := range len(base) {
			for c := range 256 {
				s := []byte(base)
				s[i] = byte(c)
				got, ok := parseUUID(s)
				want, wantOK := legacyParseUUID(s)
				if got != want || ok != wantOK {
					t.Fatalf("parseUUID(%q) = %v %v, want %v %v", s, got, ok, want, wantOK)
				}
			}
		}
	}
}

// TestInvalidUTF8AnywhereComesFirst: UTF-8 is checked as the strings are
// scanned, not in a pass of its own; a byte that breaks it anywhere — in
// a key, a plain or escaped value, an unknown property, between tokens,
// after a syntax error — is still invalid_utf8, and valid non-ASCII text
// in any string is still accepted.
func TestInvalidUTF8AnywhereComesFirst(t *testing.T) {
	dec, err := NewAuditDecoder(testEventOptions())
	if err != nil {
		t.Fatal(err)
	}
	valid := [][]byte{[]byte(fullEvent), escapeAll([]byte(fullEvent)), simAuditEvents(t, 1)[0],
		event(func(m map[string]any) {
			m["tenant_id"], m["attributes"] = "é€😀", map[string]any{"ключ": "值"}
		})}
	for _, msg := range valid {
		if _, err := dec.Decode(msg); err != nil {
			t.Fatalf("%s: %v", msg, err)
		}
		for i := range len(msg) + 1 {
			for _, bad := range [][]byte{{0xff}, {0x80}, {0xc3}, {0xed, 0xa0, 0x80}} {
				m := append(append(append([]byte(nil), msg[:i]...), bad...), msg[i:]...)
				if _, err := dec.Decode(m); mustReason(err) != ReasonInvalidUTF8 {
					t.Fatalf("%x inserted at %d of %q: %v, want invalid_utf8", bad, i, truncateForLog(msg), err)
				}
			}
		}
	}
}

// TestDaysSinceEpochEveryDay checks every day of years 0 to 9999, the
// range of an RFC 3339 date, against the time package.
func TestDaysSinceEpochEveryDay(t *testing.T) {
	first := time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC).Unix() / 86400
	last := time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC).Unix() / 86400
	for day := first; day <= last; day++ {
		y, m, d := time.Unix(day*86400, 0).UTC().Date()
		if got := daysSinceEpoch(y, int(m), d); got != day {
			t.Fatalf("daysSinceEpoch(%d, %d, %d) = %d, want %d", y, m, d, got, day)
		}
	}
}

// TestParseDateTimeMatchesTimeDate: offsets, fractions and leap seconds at
// the edges of days, months, years and the calendar, against the parser
// the decoder had before (time.Date, then the offset subtracted).
func TestParseDateTimeMatchesTimeDate(t *testing.T) {
	var cases []string
	for _, date := range []string{"0000-01-01", "0000-02-29", "0000-03-01", "1969-12-31", "1970-01-01",
		"2000-02-29", "2024-12-31", "2026-03-14", "9999-12-31"} {
		for _, tod := range []string{"00:00:00", "23:59:59", "23:59:60", "00:59:60", "12:34:56.789"} {
			for _, zone := range []string{"Z", "z", "+00:00", "-00:00", "+01:00", "-01:00", "+23:59", "-23:59", "+05:30"} {
				cases = append(cases, date+"T"+tod+zone)
			}
		}
	}
	for _, s := range cases {
		got, ok := parseDateTime([]byte(s))
		want, wantOK := legacyParseDateTime([]byte(s))
		if ok != wantOK || got != want {
			t.Errorf("parseDateTime(%q) = %v %v, want %v %v", s, got, ok, want, wantOK)
		}
	}
}

// TestLargeEscapedStringsThroughThePool: an event with more escaped text
// than a pooled scratch keeps, then ordinary events, through one decoder
// (one goroutine, so the same scratch): each as the old decoder had it.
func TestLargeEscapedStringsThroughThePool(t *testing.T) {
	dec, err := NewAuditDecoder(testEventOptions())
	if err != nil {
		t.Fatal(err)
	}
	big := event(func(m map[string]any) {
		m["attributes"] = map[string]any{"big": strings.Repeat("é\n", maxKeptEscapes), "small": "a\tb"}
	})
	big = bytes.ReplaceAll(big, []byte("é"), []byte(`\u00e9`))
	for _, msg := range [][]byte{big, []byte(fullEvent), big, escapeAll([]byte(fullEvent)), simAuditEvents(t, 1)[0]} {
		compareWithLegacy(t, dec, msg)
	}
	ev, err := dec.Decode(big)
	if err != nil || len(ev.Attributes["big"]) != 3*maxKeptEscapes {
		t.Fatalf("big attribute of %d bytes, error %v", len(ev.Attributes["big"]), err)
	}
}

// TestDecodeSharedViewsPlainStringsOnly: through DecodeShared the strings
// that had no escapes point into the message and the others do not (they
// were decoded); through Decode none does.
func TestDecodeSharedViewsPlainStringsOnly(t *testing.T) {
	dec, err := NewAuditDecoder(testEventOptions())
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte(fullEvent)
	inside := func(s string) bool {
		p := uintptr(unsafe.Pointer(unsafe.StringData(s)))
		b := uintptr(unsafe.Pointer(&msg[0]))
		return p >= b && p < b+uintptr(len(msg))
	}
	shared, err := dec.DecodeShared(msg)
	if err != nil {
		t.Fatal(err)
	}
	copied, err := dec.Decode(msg)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(shared, copied) {
		t.Fatalf("DecodeShared %+v, Decode %+v", shared, copied)
	}
	for _, s := range []string{shared.TenantID, shared.ToolParamsHash, shared.DelegationScope[1], shared.Attributes["ip"], shared.Attributes["score"]} {
		if !inside(s) {
			t.Errorf("DecodeShared copied %q", s)
		}
	}
	for k, v := range shared.Attributes {
		if k == "escé" && (inside(k) || inside(v)) {
			t.Errorf("DecodeShared: the escaped %q: %q is not decoded text", k, v)
		}
	}
	for _, s := range []string{copied.TenantID, copied.ToolParamsHash, copied.DelegationScope[1], copied.Attributes["ip"]} {
		if inside(s) {
			t.Errorf("Decode shares %q with its input", s)
		}
	}
}
