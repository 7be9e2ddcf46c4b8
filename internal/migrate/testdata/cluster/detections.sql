-- What the detector found and what it did about it.
--
-- detections: one row per detection. detection_id is deterministic (derived
-- from rule, actor and the evidence) so a detector restarted after a crash
-- that re-detects the same thing writes the same id; ReplacingMergeTree over
-- (tenant_id, ts, detection_id) keeps one row, and `version` lets the
-- detector raise suppressed_count (repeats folded into this detection during
-- its suppression window) by writing a newer version of the same row.
-- Readers that need the latest suppressed_count use argMax(…, version) or FINAL
-- (the table is small: detections, not events).
CREATE TABLE IF NOT EXISTS `agentaudit`.detections ON CLUSTER `audit_cluster`
(
    detection_id           UUID,
    ts                     DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    event_ts               DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),
    rule_id                LowCardinality(String),
    severity               LowCardinality(String),
    tenant_id              LowCardinality(String),
    agent_id               String CODEC(ZSTD(1)),
    parent_identity        String CODEC(ZSTD(1)),
    token_id               String CODEC(ZSTD(1)),
    token_type             LowCardinality(String),
    tool_name              LowCardinality(String),
    resource_tenant_id     LowCardinality(String),
    evidence_event_ids     Array(UUID),
    trace_id               String CODEC(ZSTD(1)),
    summary                String CODEC(ZSTD(1)),
    suppressed_count       UInt32,
    attributes             Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    version                UInt64,

    INDEX idx_detection_id detection_id TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_token_id     token_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_trace_id     trace_id TYPE bloom_filter(0.01) GRANULARITY 1
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/`agentaudit`/detections', '{replica}', version)
PARTITION BY toDate(ts)
ORDER BY (tenant_id, toStartOfHour(ts), ts, detection_id)
SETTINGS non_replicated_deduplication_window = 1000, storage_policy = 'tiered';

-- webhook_deliveries: every delivery attempt, append-only (an audit trail of
-- what the product asked other systems to do). delivery_id is the Standard
-- Webhooks `webhook-id`, stable across retries of one message.
-- endpoint is the configured endpoint NAME, never its URL (URLs may carry
-- credentials).
CREATE TABLE IF NOT EXISTS `agentaudit`.webhook_deliveries ON CLUSTER `audit_cluster`
(
    delivery_id            String CODEC(ZSTD(1)),
    detection_id           UUID,
    ts                     DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    tenant_id              LowCardinality(String),
    endpoint               LowCardinality(String),
    kind                   LowCardinality(String),
    token_id               String CODEC(ZSTD(1)),
    attempt                UInt16,
    status_code            UInt16,
    outcome                LowCardinality(String),
    latency_ms             Float64 CODEC(ZSTD(1)),
    error                  String CODEC(ZSTD(1)),
    next_attempt_at        Nullable(DateTime64(3, 'UTC')),

    INDEX idx_detection_id detection_id TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_delivery_id  delivery_id TYPE bloom_filter(0.001) GRANULARITY 1
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/`agentaudit`/webhook_deliveries', '{replica}')
PARTITION BY toDate(ts)
ORDER BY (tenant_id, toStartOfHour(ts), delivery_id, attempt)
SETTINGS non_replicated_deduplication_window = 1000, storage_policy = 'tiered';

-- webhook_outbox: the durable queue of deliveries. A row is written (state
-- 'pending') together with its detection, BEFORE anything is sent; each
-- state change writes a newer version of the row. On start the detector
-- resends every delivery whose latest state is still 'pending', so a
-- detector killed at any instant loses no delivery. body is the exact JSON
-- that is signed and sent, so a retry after a restart sends the same bytes.
CREATE TABLE IF NOT EXISTS `agentaudit`.webhook_outbox ON CLUSTER `audit_cluster`
(
    delivery_id            String,
    detection_id           UUID,
    created_at             DateTime64(3, 'UTC'),
    tenant_id              LowCardinality(String),
    endpoint               LowCardinality(String),
    kind                   LowCardinality(String),
    token_id               String CODEC(ZSTD(1)),
    body                   String CODEC(ZSTD(3)),
    state                  LowCardinality(String),
    attempts               UInt16,
    next_attempt_at        DateTime64(3, 'UTC'),
    updated_at             DateTime64(3, 'UTC'),
    version                UInt64
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/`agentaudit`/webhook_outbox', '{replica}', version)
ORDER BY (tenant_id, delivery_id)
SETTINGS index_granularity = 8192, storage_policy = 'tiered';

-- revocations: one row per revocation the product asked for (a token named
-- in a revocation webhook). The detector warms its revoked-token set from
-- here at start (rule credential.revoked_reuse); the query API lists them
-- per token.
CREATE TABLE IF NOT EXISTS `agentaudit`.revocations ON CLUSTER `audit_cluster`
(
    tenant_id              LowCardinality(String),
    token_id               String CODEC(ZSTD(1)),
    token_type             LowCardinality(String),
    agent_id               String CODEC(ZSTD(1)),
    ts                     DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    detection_id           UUID,
    delivery_id            String CODEC(ZSTD(1)),
    rule_id                LowCardinality(String),
    reason                 String CODEC(ZSTD(1))
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/`agentaudit`/revocations', '{replica}')
PARTITION BY toYYYYMM(ts)
ORDER BY (tenant_id, token_id, ts, detection_id)
SETTINGS non_replicated_deduplication_window = 1000, storage_policy = 'tiered';
