package event

import (
	"errors"
	"strconv"
)

// Reason is the stable, snake_case code of a rejected message. The set is
// fixed and small (see Reasons) so it can be a Prometheus label value and the
// value of a dead-letter header.
type Reason string

// Reasons a message is rejected. A rejection is permanent: the same bytes are
// rejected again, so the caller dead-letters the message and moves on.
const (
	// ReasonMessageTooLarge: the message exceeds Limits.MaxMessageBytes.
	ReasonMessageTooLarge Reason = "message_too_large"
	// ReasonDecodeFailed: the bytes are not an OTLP ExportTraceServiceRequest
	// in the configured encoding (or an attribute nests too deeply).
	ReasonDecodeFailed Reason = "decode_failed"
	// ReasonInvalidUTF8: a string (name, key, value, ...) is not valid UTF-8,
	// or a JSON \u escape is a lone surrogate.
	ReasonInvalidUTF8 Reason = "invalid_utf8"
	// ReasonTooManySpans: the message holds more than Limits.MaxSpansPerMessage spans.
	ReasonTooManySpans Reason = "too_many_spans"
	// ReasonTooManyAttributes: a span (with its resource and scope), event or
	// link carries more attributes than allowed.
	ReasonTooManyAttributes Reason = "too_many_attributes"
	// ReasonTooManyEvents: a span has more than Limits.MaxEventsPerSpan events.
	ReasonTooManyEvents Reason = "too_many_events"
	// ReasonTooManyLinks: a span has more than Limits.MaxLinksPerSpan links.
	ReasonTooManyLinks Reason = "too_many_links"
	// ReasonValueTooLong: a key or string value exceeds its byte limit.
	ReasonValueTooLong Reason = "value_too_long"
	// ReasonInvalidID: a trace or span id is all zeros or has the wrong length.
	ReasonInvalidID Reason = "invalid_id"
	// ReasonTimestampOutOfRange: a timestamp lies outside the accepted window
	// (MaxAge in the past .. MaxFuture ahead) or a span ends before it starts.
	ReasonTimestampOutOfRange Reason = "timestamp_out_of_range"
	// ReasonMissingField: a required span field is absent (start or end time).
	ReasonMissingField Reason = "missing_field"
	// ReasonSchemaViolation: an audit event does not match its JSON Schema.
	ReasonSchemaViolation Reason = "schema_violation"
	// ReasonInvalidJSON: an audit event is not one well-formed JSON value.
	ReasonInvalidJSON Reason = "invalid_json"
)

// Reasons returns every Reason, e.g. to initialise per-reason counters.
func Reasons() []Reason {
	return []Reason{
		ReasonMessageTooLarge, ReasonDecodeFailed, ReasonInvalidUTF8,
		ReasonTooManySpans, ReasonTooManyAttributes, ReasonTooManyEvents,
		ReasonTooManyLinks, ReasonValueTooLong, ReasonInvalidID,
		ReasonTimestampOutOfRange, ReasonMissingField, ReasonSchemaViolation,
		ReasonInvalidJSON,
	}
}

// Error is a permanent decoding error: the message can never be decoded and
// belongs on the dead-letter topic. Err says what and where, briefly; it never
// quotes attribute values and its text is always valid UTF-8.
type Error struct {
	Reason Reason
	Err    error
}

func (e *Error) Error() string { return string(e.Reason) + ": " + e.Err.Error() }

func (e *Error) Unwrap() error { return e.Err }

// ReasonOf returns the Reason of the *Error in err's chain, if any.
func ReasonOf(err error) (Reason, bool) {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason, true
	}
	return "", false
}

func newError(r Reason, msg string) *Error {
	return &Error{Reason: r, Err: errors.New(msg)}
}

// quote renders a name from the input for an error message: at most 64 bytes,
// Go-quoted, so invalid UTF-8 and control characters come out escaped.
func quote(s string) string {
	const max = 64
	if len(s) > max {
		return strconv.Quote(s[:max]) + "..."
	}
	return strconv.Quote(s)
}
