-- GenAI and other OTLP spans, one row per span.
-- Sort key starts with tenant_id: every query is tenant-scoped. Spans of one
-- trace sit together inside an hour bucket, which is what trace reconstruction
-- reads and what makes the random ids compress.
-- src_* record where the row came from in Kafka (topic partition, offset,
-- position in the message): ingest uses them to make redelivery after a crash
-- write every row exactly once (see README, "Exactly-once rows").
-- ReplacingMergeTree over the natural key is only a backstop for duplicates
-- a producer sent twice; ingest itself never writes a row twice.
CREATE TABLE IF NOT EXISTS {{.DB}}.spans {{.OnCluster}}
(
    tenant_id              LowCardinality(String),
    start_time             DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),
    end_time               DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),
    duration_ns            UInt64 CODEC(T64, ZSTD(1)),
    trace_id               String CODEC(ZSTD(1)),
    span_id                String CODEC(ZSTD(1)),
    parent_span_id         String CODEC(ZSTD(1)),
    trace_state            String CODEC(ZSTD(1)),
    flags                  UInt32 CODEC(ZSTD(1)),
    name                   LowCardinality(String),
    kind                   LowCardinality(String),
    status_code            LowCardinality(String),
    status_message         String CODEC(ZSTD(1)),
    service_name           LowCardinality(String),
    scope_name             LowCardinality(String),
    scope_version          LowCardinality(String),

    -- OpenTelemetry GenAI semantic conventions, typed.
    operation_name         LowCardinality(String),
    provider_name          LowCardinality(String),
    agent_id               String CODEC(ZSTD(1)),
    agent_name             LowCardinality(String),
    agent_version          LowCardinality(String),
    tool_name              LowCardinality(String),
    tool_call_id           String CODEC(ZSTD(1)),
    tool_type              LowCardinality(String),
    request_model          LowCardinality(String),
    response_model         LowCardinality(String),
    response_id            String CODEC(ZSTD(1)),
    conversation_id        String CODEC(ZSTD(1)),
    finish_reasons         Array(LowCardinality(String)),
    input_tokens           UInt64 CODEC(T64, ZSTD(1)),
    output_tokens          UInt64 CODEC(T64, ZSTD(1)),
    cache_read_input_tokens     UInt64 CODEC(T64, ZSTD(1)),
    cache_creation_input_tokens UInt64 CODEC(T64, ZSTD(1)),
    reasoning_output_tokens     UInt64 CODEC(T64, ZSTD(1)),
    error_type             LowCardinality(String),
    -- Tool call arguments and results are kept only as SHA-256 hex.
    tool_call_arguments_sha256 String CODEC(ZSTD(1)),
    tool_call_result_sha256    String CODEC(ZSTD(1)),

    -- Everything else, nothing dropped.
    resource_attributes    Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    scope_attributes       Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    span_attributes        Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    events_time            Array(DateTime64(9, 'UTC')) CODEC(ZSTD(1)),
    events_name            Array(LowCardinality(String)),
    events_attributes      Array(Map(LowCardinality(String), String)) CODEC(ZSTD(1)),
    links_trace_id         Array(String) CODEC(ZSTD(1)),
    links_span_id          Array(String) CODEC(ZSTD(1)),
    links_trace_state      Array(String) CODEC(ZSTD(1)),
    links_attributes       Array(Map(LowCardinality(String), String)) CODEC(ZSTD(1)),
    dropped_attributes_count UInt32 CODEC(T64, ZSTD(1)),
    dropped_events_count   UInt32 CODEC(T64, ZSTD(1)),
    dropped_links_count    UInt32 CODEC(T64, ZSTD(1)),

    src_partition          UInt16 CODEC(ZSTD(1)),
    src_offset             UInt64 CODEC(Delta, ZSTD(1)),
    src_index              UInt32 CODEC(T64, ZSTD(1)),
    ingested_at            DateTime64(3, 'UTC') DEFAULT now64(3) CODEC(Delta, ZSTD(1)),

    INDEX idx_trace_id     trace_id TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_agent_id     agent_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_src_offset   src_offset TYPE minmax GRANULARITY 1
)
ENGINE = {{.Engine "ReplacingMergeTree" "spans"}}
PARTITION BY toDate(start_time)
ORDER BY (tenant_id, toStartOfHour(start_time), trace_id, span_id)
SETTINGS non_replicated_deduplication_window = 1000{{.StoragePolicySetting}}
