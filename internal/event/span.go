package event

import (
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/agentaudit/agentaudit/internal/config"
)

// Span is one row of the spans table (schema/migrations/0001_spans.sql): one
// field per column, in column order, the column name in the ch tag;
// ingested_at is left to its DEFAULT.
//
// Rows from one DecodeSpans call share memory: spans of one resource (scope)
// share one ResourceAttributes (ScopeAttributes) map, and their strings are
// substrings of one copy of the message (so a row keeps its message in
// memory). Treat rows as read-only. Empty maps and slices are nil.
type Span struct {
	TenantID      string    `ch:"tenant_id"`
	StartTime     time.Time `ch:"start_time"`
	EndTime       time.Time `ch:"end_time"`
	DurationNs    uint64    `ch:"duration_ns"`
	TraceID       string    `ch:"trace_id"`       // 32 lower-case hex digits
	SpanID        string    `ch:"span_id"`        // 16 lower-case hex digits
	ParentSpanID  string    `ch:"parent_span_id"` // 16 hex digits, "" for a root span
	TraceState    string    `ch:"trace_state"`
	Flags         uint32    `ch:"flags"`
	Name          string    `ch:"name"`
	Kind          string    `ch:"kind"`        // unspecified, internal, server, client, producer, consumer
	StatusCode    string    `ch:"status_code"` // unset, ok, error
	StatusMessage string    `ch:"status_message"`
	ServiceName   string    `ch:"service_name"`
	ScopeName     string    `ch:"scope_name"`
	ScopeVersion  string    `ch:"scope_version"`

	// OpenTelemetry GenAI semantic conventions (see the package doc for the
	// attribute keys each column is read from).
	OperationName            string   `ch:"operation_name"`
	ProviderName             string   `ch:"provider_name"`
	AgentID                  string   `ch:"agent_id"`
	AgentName                string   `ch:"agent_name"`
	AgentVersion             string   `ch:"agent_version"`
	ToolName                 string   `ch:"tool_name"`
	ToolCallID               string   `ch:"tool_call_id"`
	ToolType                 string   `ch:"tool_type"`
	RequestModel             string   `ch:"request_model"`
	ResponseModel            string   `ch:"response_model"`
	ResponseID               string   `ch:"response_id"`
	ConversationID           string   `ch:"conversation_id"`
	FinishReasons            []string `ch:"finish_reasons"`
	InputTokens              uint64   `ch:"input_tokens"`
	OutputTokens             uint64   `ch:"output_tokens"`
	CacheReadInputTokens     uint64   `ch:"cache_read_input_tokens"`
	CacheCreationInputTokens uint64   `ch:"cache_creation_input_tokens"`
	ReasoningOutputTokens    uint64   `ch:"reasoning_output_tokens"`
	ErrorType                string   `ch:"error_type"`
	ToolCallArgumentsSHA256  string   `ch:"tool_call_arguments_sha256"` // 64 hex digits, "" when absent
	ToolCallResultSHA256     string   `ch:"tool_call_result_sha256"`

	ResourceAttributes map[string]string   `ch:"resource_attributes"`
	ScopeAttributes    map[string]string   `ch:"scope_attributes"`
	SpanAttributes     map[string]string   `ch:"span_attributes"`
	EventsTime         []time.Time         `ch:"events_time"`
	EventsName         []string            `ch:"events_name"`
	EventsAttributes   []map[string]string `ch:"events_attributes"`
	LinksTraceID       []string            `ch:"links_trace_id"`
	LinksSpanID        []string            `ch:"links_span_id"`
	LinksTraceState    []string            `ch:"links_trace_state"`
	LinksAttributes    []map[string]string `ch:"links_attributes"`
	DroppedAttributes  uint32              `ch:"dropped_attributes_count"`
	DroppedEvents      uint32              `ch:"dropped_events_count"`
	DroppedLinks       uint32              `ch:"dropped_links_count"`

	// Where the row came from in Kafka: set by the ingest consumer, except
	// SrcIndex, the 0-based position of the span in its message, which
	// DecodeSpans sets.
	SrcPartition uint16 `ch:"src_partition"`
	SrcOffset    uint64 `ch:"src_offset"`
	SrcIndex     uint32 `ch:"src_index"`
}

// Key returns the natural key of the span, trace id and span id (48 hex digits).
func (s *Span) Key() string { return s.TraceID + s.SpanID }

// Encoding is the encoding of OTLP messages on a Kafka topic, named as the
// OpenTelemetry Collector's kafkaexporter names it.
type Encoding string

// Encodings written by the kafkaexporter: one ExportTraceServiceRequest per message.
const (
	EncodingProto Encoding = "otlp_proto"
	EncodingJSON  Encoding = "otlp_json"
)

// ErrUnknownEncoding is returned by DecodeSpans for an Encoding other than
// EncodingProto and EncodingJSON: a configuration error, not a bad message.
var ErrUnknownEncoding = errors.New("unknown encoding")

// Validate reports whether e is a known encoding.
func (e Encoding) Validate() error {
	switch e {
	case EncodingProto, EncodingJSON:
		return nil
	}
	return fmt.Errorf("%w %q, want %s or %s", ErrUnknownEncoding, string(e), EncodingProto, EncodingJSON)
}

// Limits bound what one message may contain. A message that exceeds a limit
// is rejected as a whole. Zero fields take the default of DefaultLimits.
type Limits struct {
	// MaxMessageBytes bounds the encoded message.
	MaxMessageBytes int `yaml:"max_message_bytes"`
	// MaxSpansPerMessage bounds the spans of one message.
	MaxSpansPerMessage int `yaml:"max_spans_per_message"`
	// MaxAttributesPerSpan bounds span + resource + scope attributes of one
	// span, and the attributes of each event and link.
	MaxAttributesPerSpan int `yaml:"max_attributes_per_span"`
	// MaxAttributeKeyBytes bounds an attribute key.
	MaxAttributeKeyBytes int `yaml:"max_attribute_key_bytes"`
	// MaxAttributeValueBytes bounds every stored string: attribute values (as
	// flattened), span, event and scope names, status message, trace state.
	// Tool call content that is only hashed is not stored and not bounded.
	MaxAttributeValueBytes int `yaml:"max_attribute_value_bytes"`
	// MaxEventsPerSpan and MaxLinksPerSpan bound events and links of a span.
	MaxEventsPerSpan int `yaml:"max_events_per_span"`
	MaxLinksPerSpan  int `yaml:"max_links_per_span"`
	// MaxAge and MaxFuture bound every timestamp to [now-MaxAge, now+MaxFuture]:
	// the tables are partitioned by day and absurd timestamps would create
	// absurd partitions.
	MaxAge    time.Duration `yaml:"max_age"`
	MaxFuture time.Duration `yaml:"max_future"`
}

// DefaultLimits returns the default limits. The attribute value limit is
// generous because opt-in GenAI content (gen_ai.input.messages, ...) is large
// and a violation rejects the whole message.
func DefaultLimits() Limits {
	return Limits{
		MaxMessageBytes:        8 << 20,
		MaxSpansPerMessage:     20000,
		MaxAttributesPerSpan:   512,
		MaxAttributeKeyBytes:   1024,
		MaxAttributeValueBytes: 64 << 10,
		MaxEventsPerSpan:       1024,
		MaxLinksPerSpan:        1024,
		MaxAge:                 400 * 24 * time.Hour,
		MaxFuture:              time.Hour,
	}
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	set := func(p *int, def int) {
		if *p == 0 {
			*p = def
		}
	}
	set(&l.MaxMessageBytes, d.MaxMessageBytes)
	set(&l.MaxSpansPerMessage, d.MaxSpansPerMessage)
	set(&l.MaxAttributesPerSpan, d.MaxAttributesPerSpan)
	set(&l.MaxAttributeKeyBytes, d.MaxAttributeKeyBytes)
	set(&l.MaxAttributeValueBytes, d.MaxAttributeValueBytes)
	set(&l.MaxEventsPerSpan, d.MaxEventsPerSpan)
	set(&l.MaxLinksPerSpan, d.MaxLinksPerSpan)
	if l.MaxAge == 0 {
		l.MaxAge = d.MaxAge
	}
	if l.MaxFuture == 0 {
		l.MaxFuture = d.MaxFuture
	}
	return l
}

// RegisterFlagsWithPrefix binds the limits to flags (prefix+"max-message-bytes", ...)
// with the defaults of DefaultLimits.
func (l *Limits) RegisterFlagsWithPrefix(prefix string, fs *flag.FlagSet) {
	d := DefaultLimits()
	fs.IntVar(&l.MaxMessageBytes, prefix+"max-message-bytes", d.MaxMessageBytes, "Largest accepted message in bytes.")
	fs.IntVar(&l.MaxSpansPerMessage, prefix+"max-spans-per-message", d.MaxSpansPerMessage, "Most spans in one message.")
	fs.IntVar(&l.MaxAttributesPerSpan, prefix+"max-attributes-per-span", d.MaxAttributesPerSpan, "Most attributes of a span, its resource and scope together (and of each event and link).")
	fs.IntVar(&l.MaxAttributeKeyBytes, prefix+"max-attribute-key-bytes", d.MaxAttributeKeyBytes, "Longest attribute key in bytes.")
	fs.IntVar(&l.MaxAttributeValueBytes, prefix+"max-attribute-value-bytes", d.MaxAttributeValueBytes, "Longest stored string value in bytes.")
	fs.IntVar(&l.MaxEventsPerSpan, prefix+"max-events-per-span", d.MaxEventsPerSpan, "Most events of a span.")
	fs.IntVar(&l.MaxLinksPerSpan, prefix+"max-links-per-span", d.MaxLinksPerSpan, "Most links of a span.")
	fs.DurationVar(&l.MaxAge, prefix+"max-age", d.MaxAge, "Oldest accepted timestamp, as an age.")
	fs.DurationVar(&l.MaxFuture, prefix+"max-future", d.MaxFuture, "Furthest accepted timestamp in the future.")
}

// Validate rejects negative limits (zero means the default).
func (l *Limits) Validate() error {
	var errs []error
	for _, f := range []struct {
		name string
		v    int64
	}{
		{"max_message_bytes", int64(l.MaxMessageBytes)},
		{"max_spans_per_message", int64(l.MaxSpansPerMessage)},
		{"max_attributes_per_span", int64(l.MaxAttributesPerSpan)},
		{"max_attribute_key_bytes", int64(l.MaxAttributeKeyBytes)},
		{"max_attribute_value_bytes", int64(l.MaxAttributeValueBytes)},
		{"max_events_per_span", int64(l.MaxEventsPerSpan)},
		{"max_links_per_span", int64(l.MaxLinksPerSpan)},
		{"max_age", int64(l.MaxAge)},
		{"max_future", int64(l.MaxFuture)},
	} {
		if f.v < 0 {
			errs = append(errs, config.Field(f.name, fmt.Errorf("%w: must not be negative", config.ErrInvalid)))
		}
	}
	return errors.Join(errs...)
}

// SpanOptions configure DecodeSpans. Start from DefaultSpanOptions: the zero
// value has HashToolCallContent false, which stores raw tool call content.
type SpanOptions struct {
	// TenantAttributes are the attribute keys that carry the tenant, in order
	// of preference (see the package doc for how span and resource attributes
	// are searched). Empty means DefaultTenantAttributes.
	TenantAttributes []string `yaml:"tenant_attributes"`
	// UnknownTenant is the tenant of spans without one; "" means "unknown".
	UnknownTenant string `yaml:"unknown_tenant"`
	// HashToolCallContent stores gen_ai.tool.call.arguments and
	// gen_ai.tool.call.result only as their SHA-256; when false the raw
	// values are also kept in the attribute maps.
	HashToolCallContent bool `yaml:"hash_tool_call_content"`
	// Limits bound a message.
	Limits Limits `yaml:"limits"`
	// Now returns the current time for the timestamp window; nil means time.Now.
	Now func() time.Time `yaml:"-"`
}

// DefaultTenantAttributes returns the attribute keys searched for the tenant
// by default: tenant.id, then org.id.
func DefaultTenantAttributes() []string { return []string{"tenant.id", "org.id"} }

// DefaultUnknownTenant is the tenant of spans that carry none.
const DefaultUnknownTenant = "unknown"

// DefaultSpanOptions returns the defaults: tenant from tenant.id then org.id,
// "unknown" otherwise, tool call content hashed, DefaultLimits.
func DefaultSpanOptions() SpanOptions {
	return SpanOptions{
		TenantAttributes:    DefaultTenantAttributes(),
		UnknownTenant:       DefaultUnknownTenant,
		HashToolCallContent: true,
		Limits:              DefaultLimits(),
	}
}

// RegisterFlagsWithPrefix binds the options to flags with the defaults of
// DefaultSpanOptions (limits under prefix+"limits.").
func (o *SpanOptions) RegisterFlagsWithPrefix(prefix string, fs *flag.FlagSet) {
	config.StringSliceVar(fs, &o.TenantAttributes, prefix+"tenant-attributes", DefaultTenantAttributes(), "Attribute keys carrying the tenant, in order of preference, comma-separated.")
	fs.StringVar(&o.UnknownTenant, prefix+"unknown-tenant", DefaultUnknownTenant, "Tenant of spans that carry none.")
	fs.BoolVar(&o.HashToolCallContent, prefix+"hash-tool-call-content", true, "Store tool call arguments and results only as SHA-256.")
	o.Limits.RegisterFlagsWithPrefix(prefix+"limits.", fs)
}

// Validate checks the tenant attribute keys (Limits validates itself).
func (o *SpanOptions) Validate() error {
	for _, k := range o.TenantAttributes {
		if k == "" {
			return config.Field("tenant_attributes", fmt.Errorf("%w: empty key", config.ErrInvalid))
		}
	}
	return nil
}

// WithDefaults is o with every unset field (zero) set to its default, as
// DecodeSpans reads it.
func (o SpanOptions) WithDefaults() SpanOptions { return o.withDefaults() }

func (o SpanOptions) withDefaults() SpanOptions {
	if len(o.TenantAttributes) == 0 {
		o.TenantAttributes = DefaultTenantAttributes()
	}
	if o.UnknownTenant == "" {
		o.UnknownTenant = DefaultUnknownTenant
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	o.Limits = o.Limits.withDefaults()
	return o
}

// Stats count what DecodeSpans noticed in a message it accepted.
type Stats struct {
	// Spans is the number of rows appended.
	Spans int
	// UnknownTenant counts spans that carried no tenant attribute.
	UnknownTenant int
	// DuplicateAttributes counts keys repeated within one attribute set; the
	// last value was kept.
	DuplicateAttributes int
	// InvalidTokenCounts counts token-count attributes that were not a
	// non-negative integer: kept in span_attributes, column left 0.
	InvalidTokenCounts int
}
