-- Tamper-evident audit log (internal/integrity): one RFC 6962 Merkle log per
-- Kafka partition of the audit events topic, log_id 'audit_events/<partition>'.
--
-- merkle_leaves holds one row per sealed event, leaf_index dense from 0 in
-- Kafka offset order. It is not partitioned by date so that one insert of a
-- batch of leaves is one part, atomically visible or not at all; the log is
-- rebuilt from it at start. leaf_hash is the RFC 6962 leaf hash of the
-- event's canonical encoding; field_digest holds 2 bytes of CRC-32 per field,
-- a hint that lets verify name the modified field (not itself authenticated:
-- leaf_hash is). ReplacingMergeTree is a backstop: a retried insert carries
-- the same insert_deduplication_token, and a duplicate that slips through
-- has the same key and the same content.
CREATE TABLE IF NOT EXISTS `agentaudit`.merkle_leaves ON CLUSTER `audit_cluster`
(
    log_id                 LowCardinality(String),
    leaf_index             UInt64 CODEC(Delta, ZSTD(1)),
    src_offset             UInt64 CODEC(Delta, ZSTD(1)),
    event_id               UUID,
    tenant_id              LowCardinality(String),
    ts                     DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),
    leaf_hash              FixedString(32),
    field_digest           String,

    INDEX idx_event_id     event_id TYPE bloom_filter(0.001) GRANULARITY 1
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/`agentaudit`/merkle_leaves', '{replica}')
ORDER BY (log_id, leaf_index)
SETTINGS non_replicated_deduplication_window = 1000, storage_policy = 'tiered';

-- Signed checkpoints (tree heads) of the logs. note is the signed text
-- (origin, size, base64 root, time, blank line, signature line), the other
-- columns repeat what it says for querying. compact_range holds the roots of
-- the tree's perfect subtrees at size (not signed, but bound to the signed
-- root), so a restarted ingest resumes without reading every leaf. Plain MergeTree: a forged row with the
-- same key must stay visible beside the genuine one for verify to see it.
CREATE TABLE IF NOT EXISTS `agentaudit`.checkpoints ON CLUSTER `audit_cluster`
(
    log_id                 LowCardinality(String),
    size                   UInt64,
    root_hash              FixedString(32),
    ts                     DateTime64(3, 'UTC'),
    key_id                 LowCardinality(String),
    signature              String,
    note                   String,
    compact_range          Array(FixedString(32))
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/`agentaudit`/checkpoints', '{replica}')
ORDER BY (log_id, size)
SETTINGS non_replicated_deduplication_window = 1000, storage_policy = 'tiered';

-- Deletions made by retention: audit events of tenant_id ('' = every tenant)
-- with ts < before were deleted on purpose, so verify reports their leaves
-- as expired rather than as deleted rows.
CREATE TABLE IF NOT EXISTS `agentaudit`.integrity_expirations ON CLUSTER `audit_cluster`
(
    tenant_id              LowCardinality(String),
    before                 DateTime64(9, 'UTC'),
    reason                 String,
    recorded_at            DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/`agentaudit`/integrity_expirations', '{replica}')
ORDER BY (tenant_id, before);
