-- Agent audit events (schema/audit_event.v1.schema.json), one row per event.
-- Sort key starts with tenant_id; an agent's events sit together inside an
-- hour bucket, which serves per-agent timelines and compresses well.
-- event_id is the producer-set natural key; src_* as in spans.
CREATE TABLE IF NOT EXISTS `agentaudit`.audit_events ON CLUSTER `audit_cluster`
(
    event_id               UUID,
    ts                     DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),
    tenant_id              LowCardinality(String),
    agent_id               String CODEC(ZSTD(1)),
    parent_identity        String CODEC(ZSTD(1)),
    token_id               String CODEC(ZSTD(1)),
    token_type             LowCardinality(String),
    delegation_scope       Array(LowCardinality(String)),
    required_scopes        Array(LowCardinality(String)),
    tool_name              LowCardinality(String),
    tool_params_hash       String CODEC(ZSTD(1)),
    resource               String CODEC(ZSTD(1)),
    resource_tenant_id     LowCardinality(String),
    policy_decision        LowCardinality(String),
    trace_id               String CODEC(ZSTD(1)),
    span_id                String CODEC(ZSTD(1)),
    attributes             Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    schema_version         LowCardinality(String),

    src_partition          UInt16 CODEC(ZSTD(1)),
    src_offset             UInt64 CODEC(Delta, ZSTD(1)),
    src_index              UInt32 CODEC(T64, ZSTD(1)),
    ingested_at            DateTime64(3, 'UTC') DEFAULT now64(3) CODEC(Delta, ZSTD(1)),

    INDEX idx_trace_id     trace_id TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_token_id     token_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_event_id     event_id TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_src_offset   src_offset TYPE minmax GRANULARITY 1
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/`agentaudit`/audit_events', '{replica}')
PARTITION BY toDate(ts)
ORDER BY (tenant_id, toStartOfHour(ts), agent_id, ts, event_id)
SETTINGS non_replicated_deduplication_window = 1000, storage_policy = 'tiered';
