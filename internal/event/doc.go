// Package event is agentaudit's shared data model: the rows of the spans and
// audit_events tables (Span, AuditEvent) and the decoders that turn Kafka
// messages into them. It knows nothing of Kafka or ClickHouse.
//
// # Spans
//
// DecodeSpans takes one message as the OpenTelemetry Collector's
// kafkaexporter writes it — an OTLP ExportTraceServiceRequest, encoding
// otlp_proto or otlp_json — and returns one Span per OTLP span.
//
// Granularity: a message is accepted or rejected as a whole. If any span in
// it is invalid, DecodeSpans returns an *Error and no rows, and the message
// goes to the dead-letter topic as it arrived. A message is the unit Kafka
// offsets, dead-lettering and the kafkaexporter's retries work in; splitting
// it would store a partial trace whose remainder exists only in the
// dead-letter topic, which an auditor cannot tell from a complete one.
//
// Tenant: for each key of SpanOptions.TenantAttributes in order (default
// tenant.id, then org.id), the span's attribute wins over the resource's;
// the first non-empty value found is the tenant. Key order comes first
// because the list is the operator's statement of which key is
// authoritative; within a key the span wins because OTel puts the service's
// default on the resource and a multi-tenant agent overrides it per span.
// Spans with no tenant get UnknownTenant (default "unknown") and are counted
// in Stats.UnknownTenant. Tenant attributes stay in the attribute maps.
//
// GenAI attributes (OpenTelemetry semantic conventions, registry of
// open-telemetry/semantic-conventions-genai) become typed columns and are
// removed from span_attributes; everything else stays, so nothing is lost.
// Accepted keys, preferred first:
//
//	operation_name               gen_ai.operation.name
//	provider_name                gen_ai.provider.name, gen_ai.system (deprecated)
//	agent_id/name/version        gen_ai.agent.id, .name, .version (from the resource when the span has none; kept there)
//	tool_name, tool_call_id      gen_ai.tool.name, gen_ai.tool.call.id
//	tool_type                    gen_ai.tool.type
//	request_model                gen_ai.request.model
//	response_model, response_id  gen_ai.response.model, gen_ai.response.id
//	conversation_id              gen_ai.conversation.id
//	finish_reasons               gen_ai.response.finish_reasons (an array of strings; any other type stays an attribute)
//	input_tokens                 gen_ai.usage.input_tokens, gen_ai.usage.prompt_tokens (deprecated)
//	output_tokens                gen_ai.usage.output_tokens, gen_ai.usage.completion_tokens (deprecated)
//	cache_read_input_tokens      gen_ai.usage.cache_read.input_tokens, gen_ai.usage.cache_read_input_tokens
//	cache_creation_input_tokens  gen_ai.usage.cache_creation.input_tokens, gen_ai.usage.cache_creation_input_tokens
//	reasoning_output_tokens      gen_ai.usage.reasoning.output_tokens, gen_ai.usage.reasoning_output_tokens, gen_ai.usage.reasoning_tokens
//	error_type                   error.type
//	tool_call_arguments_sha256   gen_ai.tool.call.arguments
//	tool_call_result_sha256      gen_ai.tool.call.result
//
// When a column has several keys the preferred one wins wherever it appears
// and the others stay in span_attributes. Token counts may be ints, integral
// doubles or decimal strings; anything else (negative, fractional, text)
// stays in span_attributes, the column stays 0 and Stats.InvalidTokenCounts
// counts it.
//
// Tool call content: gen_ai.tool.call.arguments and gen_ai.tool.call.result
// are stored as the SHA-256 (lower-case hex) of the string's bytes, or of the
// compact JSON (as below) of a structured value. With HashToolCallContent
// (the default) the raw value is stored nowhere: in resource, scope, event
// and link attributes the key is replaced by key+".sha256" holding the hash.
// With HashToolCallContent false the raw value is also kept in the maps.
//
// Attribute values are flattened to strings deterministically: strings as
// they are, ints in decimal, doubles as JSON numbers (as encoding/json
// writes them; NaN and infinities as "NaN", "+Inf", "-Inf"), booleans
// "true"/"false", bytes as standard base64, arrays and maps as compact JSON
// with map keys sorted. A key repeated within one attribute set keeps its
// last value (counted in Stats.DuplicateAttributes).
//
// Every stored string is valid UTF-8 — pdata does not check, so
// DecodeSpans does — and bounded by Limits; ids are lower-case hex of the
// right length and never all zeros; every timestamp lies in the accepted
// window, which also keeps it representable as DateTime64(9).
//
// Decoding: otlp_proto is read by this package's own protobuf wire reader
// (proto.go), not by pdata's unmarshaler, which allocates an object per
// attribute and value (about 60 allocations per span against 4 here, and
// 1.7 times the instructions). The reader accepts and rejects exactly what
// ptrace.ProtoUnmarshaler does; reference_test.go keeps the same conversion
// written on pdata's object model, and tests and fuzzing require both to
// return identical rows and error reasons. otlp_json goes through
// ptrace.JSONUnmarshaler, then ptrace.ProtoMarshaler, then the same reader.
// Every string of a row is a substring of one copy of its message.
//
// # Audit events
//
// DecodeAuditEvent (and AuditDecoder.Decode) validates one JSON message
// against schema/audit_event.v1.schema.json with a built-in validator that
// enforces the same constraints as the JSON Schema library, an order of
// magnitude faster; AuditDecoder.ValidateSchema runs the library itself, the
// reference the tests hold the built-in validator to.
package event
