package event

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/agentaudit/agentaudit/internal/config"
	"github.com/agentaudit/agentaudit/schema"
)

// AuditEvent is one row of the audit_events table
// (schema/migrations/0002_audit_events.sql), decoded from one message that
// matches schema/audit_event.v1.schema.json: one field per column, in column
// order; ingested_at is left to its DEFAULT. Absent optional strings are "",
// absent arrays and attributes nil.
type AuditEvent struct {
	EventID          uuid.UUID `ch:"event_id"`
	TS               time.Time `ch:"ts"` // UTC
	TenantID         string    `ch:"tenant_id"`
	AgentID          string    `ch:"agent_id"`
	ParentIdentity   string    `ch:"parent_identity"`
	TokenID          string    `ch:"token_id"`
	TokenType        string    `ch:"token_type"` // session, oauth, m2m, api_key
	DelegationScope  []string  `ch:"delegation_scope"`
	RequiredScopes   []string  `ch:"required_scopes"`
	ToolName         string    `ch:"tool_name"`
	ToolParamsHash   string    `ch:"tool_params_hash"`
	Resource         string    `ch:"resource"`
	ResourceTenantID string    `ch:"resource_tenant_id"`
	PolicyDecision   string    `ch:"policy_decision"` // allow, deny
	TraceID          string    `ch:"trace_id"`
	SpanID           string    `ch:"span_id"`
	// Attributes holds string values as sent, numbers as their JSON text
	// exactly as sent (no float rounding), booleans as "true"/"false".
	Attributes    map[string]string `ch:"attributes"`
	SchemaVersion string            `ch:"schema_version"` // "1"

	// Where the row came from in Kafka, set by the ingest consumer.
	SrcPartition uint16 `ch:"src_partition"`
	SrcOffset    uint64 `ch:"src_offset"`
	SrcIndex     uint32 `ch:"src_index"`
}

// SchemaVersion1 is the schema_version of events that match AuditEventV1.
const SchemaVersion1 = "1"

// maxSchemaAttributes is maxProperties of attributes in the JSON Schema.
const maxSchemaAttributes = 128

// EventLimits bound an audit event message. Zero fields take the default of
// DefaultEventLimits.
type EventLimits struct {
	// MaxMessageBytes bounds the JSON message.
	MaxMessageBytes int `yaml:"max_message_bytes"`
	// MaxAttributes bounds the attributes; the schema allows at most 128, a
	// lower value is reported as too_many_attributes.
	MaxAttributes int `yaml:"max_attributes"`
	// MaxAge and MaxFuture bound ts to [now-MaxAge, now+MaxFuture].
	MaxAge    time.Duration `yaml:"max_age"`
	MaxFuture time.Duration `yaml:"max_future"`
}

// DefaultEventLimits returns the default limits. 1 MiB is above the largest
// event the schema admits with realistic content and Kafka's default
// message size.
func DefaultEventLimits() EventLimits {
	return EventLimits{
		MaxMessageBytes: 1 << 20,
		MaxAttributes:   maxSchemaAttributes,
		MaxAge:          400 * 24 * time.Hour,
		MaxFuture:       time.Hour,
	}
}

func (l EventLimits) withDefaults() EventLimits {
	d := DefaultEventLimits()
	if l.MaxMessageBytes == 0 {
		l.MaxMessageBytes = d.MaxMessageBytes
	}
	if l.MaxAttributes == 0 {
		l.MaxAttributes = d.MaxAttributes
	}
	if l.MaxAge == 0 {
		l.MaxAge = d.MaxAge
	}
	if l.MaxFuture == 0 {
		l.MaxFuture = d.MaxFuture
	}
	return l
}

// RegisterFlagsWithPrefix binds the limits to flags with the defaults of DefaultEventLimits.
func (l *EventLimits) RegisterFlagsWithPrefix(prefix string, fs *flag.FlagSet) {
	d := DefaultEventLimits()
	fs.IntVar(&l.MaxMessageBytes, prefix+"max-message-bytes", d.MaxMessageBytes, "Largest accepted audit event in bytes.")
	fs.IntVar(&l.MaxAttributes, prefix+"max-attributes", d.MaxAttributes, "Most attributes of an audit event (the schema allows 128).")
	fs.DurationVar(&l.MaxAge, prefix+"max-age", d.MaxAge, "Oldest accepted ts, as an age.")
	fs.DurationVar(&l.MaxFuture, prefix+"max-future", d.MaxFuture, "Furthest accepted ts in the future.")
}

// Validate rejects negative limits and MaxAttributes above the schema's 128.
func (l *EventLimits) Validate() error {
	var errs []error
	neg := func(name string, v int64) {
		if v < 0 {
			errs = append(errs, config.Field(name, fmt.Errorf("%w: must not be negative", config.ErrInvalid)))
		}
	}
	neg("max_message_bytes", int64(l.MaxMessageBytes))
	neg("max_attributes", int64(l.MaxAttributes))
	neg("max_age", int64(l.MaxAge))
	neg("max_future", int64(l.MaxFuture))
	if l.MaxAttributes > maxSchemaAttributes {
		errs = append(errs, config.Field("max_attributes", fmt.Errorf("%w: the schema allows at most %d", config.ErrInvalid, maxSchemaAttributes)))
	}
	return errors.Join(errs...)
}

// EventOptions configure audit event decoding.
type EventOptions struct {
	Limits EventLimits `yaml:"limits"`
	// ValidateWithSchema also validates every event with the JSON Schema
	// library, after the built-in validator accepted it. Tests prove the two
	// agree; this is a belt-and-braces switch that costs about ten times the
	// decoding time.
	ValidateWithSchema bool `yaml:"validate_with_schema"`
	// Now returns the current time for the ts window; nil means time.Now.
	Now func() time.Time `yaml:"-"`
}

// DefaultEventOptions returns DefaultEventLimits without schema-library validation.
func DefaultEventOptions() EventOptions {
	return EventOptions{Limits: DefaultEventLimits()}
}

// RegisterFlagsWithPrefix binds the options to flags (limits under prefix+"limits.").
func (o *EventOptions) RegisterFlagsWithPrefix(prefix string, fs *flag.FlagSet) {
	o.Limits.RegisterFlagsWithPrefix(prefix+"limits.", fs)
	fs.BoolVar(&o.ValidateWithSchema, prefix+"validate-with-schema", false, "Also validate each audit event with the JSON Schema library (slow; the built-in validator enforces the same schema).")
}

func (o EventOptions) withDefaults() EventOptions {
	o.Limits = o.Limits.withDefaults()
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// AuditDecoder decodes audit events. It holds the compiled JSON Schema
// (schema.AuditEventV1); it is safe for concurrent use.
type AuditDecoder struct {
	opts   EventOptions
	schema *jsonschema.Schema
	// scratch holds *auditScratch buffers for the attributes, scopes and
	// escaped strings of one decode, reused: a decoder runs per message on
	// the hot path.
	scratch sync.Pool
}

// NewAuditDecoder compiles the audit event JSON Schema, with format
// assertions (uuid, date-time) on.
func NewAuditDecoder(opts EventOptions) (*AuditDecoder, error) {
	sch, err := CompileAuditEventSchema()
	if err != nil {
		return nil, err
	}
	return &AuditDecoder{opts: opts.withDefaults(), schema: sch}, nil
}

// CompileAuditEventSchema compiles schema.AuditEventV1 with format assertions on.
func CompileAuditEventSchema() (*jsonschema.Schema, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(schema.AuditEventV1))
	if err != nil {
		return nil, fmt.Errorf("parse audit event schema: %w", err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource(schema.AuditEventV1ID, doc); err != nil {
		return nil, fmt.Errorf("add audit event schema: %w", err)
	}
	sch, err := c.Compile(schema.AuditEventV1ID)
	if err != nil {
		return nil, fmt.Errorf("compile audit event schema: %w", err)
	}
	return sch, nil
}

// Decode validates data against the audit event schema and decodes it; see
// DecodeAuditEvent. With ValidateWithSchema the JSON Schema library checks
// the event too.
func (d *AuditDecoder) Decode(data []byte) (AuditEvent, error) {
	return d.decode(data, false)
}

// DecodeShared is Decode for a caller that hands data over: the event's
// strings that had no escapes in the JSON are views of data, not copies,
// so data must not be written again while the event or any string taken
// from it is in use (and keeps all of data alive as long). It saves a
// copy and an allocation per event. A Kafka message value read by
// kafka-go qualifies: each message gets a new slice that nothing writes.
// data itself is never written.
func (d *AuditDecoder) DecodeShared(data []byte) (AuditEvent, error) {
	return d.decode(data, true)
}

func (d *AuditDecoder) decode(data []byte, share bool) (AuditEvent, error) {
	sc, _ := d.scratch.Get().(*auditScratch)
	if sc == nil {
		sc = new(auditScratch)
	}
	ev, err := decodeAuditEvent(data, d.opts, sc, share)
	d.scratch.Put(sc)
	if err != nil || !d.opts.ValidateWithSchema {
		return ev, err
	}
	if err := d.ValidateSchema(data); err != nil {
		return AuditEvent{}, err
	}
	return ev, nil
}

// ValidateSchema validates data with the JSON Schema library alone: the
// reference the built-in validator is tested against. It returns nil or an
// *Error with reason message_too_large, invalid_utf8, invalid_json or
// schema_violation.
func (d *AuditDecoder) ValidateSchema(data []byte) error {
	if len(data) > d.opts.Limits.MaxMessageBytes {
		return newError(ReasonMessageTooLarge, "message of "+strconv.Itoa(len(data))+" bytes exceeds limit of "+strconv.Itoa(d.opts.Limits.MaxMessageBytes))
	}
	if !utf8.Valid(data) {
		return newError(ReasonInvalidUTF8, "message is not valid UTF-8")
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return &Error{Reason: ReasonInvalidJSON, Err: err}
	}
	err = d.schema.Validate(doc)
	if err == nil {
		return nil
	}
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return &Error{Reason: ReasonSchemaViolation, Err: err}
	}
	// The basic output lists the error tree flattened, leaves last.
	out := ve.BasicOutput()
	msg := ve.Error()
	if n := len(out.Errors); n > 0 && out.Errors[n-1].Error != nil {
		u := out.Errors[n-1]
		loc := u.InstanceLocation
		if loc == "" {
			loc = "/"
		}
		msg = loc + ": " + u.Error.String()
	}
	if len(msg) > 200 {
		msg = strings.ToValidUTF8(msg[:200], "") + "..."
	}
	return newError(ReasonSchemaViolation, msg)
}

// DecodeAuditEvent validates one audit event message against
// schema/audit_event.v1.schema.json and decodes it. The error is an *Error
// with reason message_too_large, invalid_utf8, invalid_json,
// schema_violation (naming the JSON pointer at fault),
// timestamp_out_of_range or too_many_attributes.
//
// Validation is built in — the JSON Schema library is about ten times slower
// — and enforces exactly the schema's constraints (TestAuditValidatorAgreesWithJSONSchema
// compares both on generated events), except that it is stricter where the
// library is lax: duplicate object keys are invalid_json, a \u escape that
// is a lone surrogate is invalid_utf8 (the library would store U+FFFD), and
// date-time fields must be digits (the library's strconv.Atoi takes "+1").
func DecodeAuditEvent(data []byte, opts EventOptions) (AuditEvent, error) {
	return decodeAuditEvent(data, opts.withDefaults(), new(auditScratch), false)
}

// auditScratch is space for the references to the attributes and scopes
// of one decode and its strings with escapes, kept (grown) for the next:
// the event's strings are copied out of it.
type auditScratch struct {
	attrs  []attrRef
	scopes [2][]span
	esc    []byte
}

// maxKeptEscapes bounds the escape space a pooled scratch keeps.
const maxKeptEscapes = 64 << 10

// decodeAuditEvent decodes data with scratch's space; with share, the
// event's strings without escapes are views of data.
func decodeAuditEvent(data []byte, opts EventOptions, scratch *auditScratch, share bool) (AuditEvent, error) {
	lim := opts.Limits
	if len(data) > lim.MaxMessageBytes {
		return AuditEvent{}, newError(ReasonMessageTooLarge, "message of "+strconv.Itoa(len(data))+" bytes exceeds limit of "+strconv.Itoa(lim.MaxMessageBytes))
	}
	p := auditParser{data: data, share: share, esc: scratch.esc[:0], attrs: scratch.attrs[:0],
		scopes: [2][]span{scratch.scopes[0][:0], scratch.scopes[1][:0]}}
	ev, err := p.decode(opts)
	scratch.attrs, scratch.scopes[0], scratch.scopes[1] = p.attrs[:0], p.scopes[0][:0], p.scopes[1][:0]
	if cap(p.esc) <= maxKeptEscapes {
		scratch.esc = p.esc[:0]
	}
	// Invalid UTF-8 comes first, whatever else is wrong. The parser saw
	// every byte: outside strings it admits ASCII only, and it marked
	// non-ASCII bytes in strings, so an event of ASCII strings needs no
	// second pass.
	if (err != nil || p.high&0x8080808080808080 != 0) && !utf8.Valid(data) {
		return AuditEvent{}, newError(ReasonInvalidUTF8, "message is not valid UTF-8")
	}
	return ev, err
}

// decode parses p.data and checks the event against opts.
func (p *auditParser) decode(opts EventOptions) (AuditEvent, error) {
	lim := opts.Limits
	if err := p.document(); err != nil {
		return AuditEvent{}, err
	}
	ev, err := p.event()
	if err != nil {
		return AuditEvent{}, err
	}
	if p.violation != "" {
		return AuditEvent{}, newError(ReasonSchemaViolation, p.violation)
	}
	now := opts.Now()
	if ev.TS.Before(now.Add(-lim.MaxAge)) || ev.TS.After(now.Add(lim.MaxFuture)) {
		return AuditEvent{}, newError(ReasonTimestampOutOfRange, "/ts: "+ev.TS.Format(time.RFC3339Nano)+" is outside the accepted window")
	}
	if n := len(ev.Attributes); n > lim.MaxAttributes {
		return AuditEvent{}, newError(ReasonTooManyAttributes, "/attributes: "+strconv.Itoa(n)+" attributes exceed limit of "+strconv.Itoa(lim.MaxAttributes))
	}
	return ev, nil
}
