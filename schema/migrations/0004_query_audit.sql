-- query_audit: every call to the query API, written by cmd/query in batches
-- (asynchronously, flushed on graceful shutdown). An audit trail of the
-- auditors: who asked, through which route, with which filters, how many
-- rows they got back and with what status.
--
-- tenant_id is the tenant the call was scoped to when that is exactly one
-- tenant, and '' when the call spanned several (tenants then lists them, or
-- is ['*'] for an unrestricted admin). Admins bound to tenants read the rows
-- of their tenants; only unrestricted admins read the '' rows.
-- request_id is unique per call; ReplacingMergeTree over it is a backstop
-- should a batch be retried after an ambiguous failure.
CREATE TABLE IF NOT EXISTS {{.DB}}.query_audit {{.OnCluster}}
(
    ts                     DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    request_id             UUID,
    tenant_id              LowCardinality(String),
    tenants                Array(LowCardinality(String)),
    principal              String CODEC(ZSTD(1)),
    auth_method            LowCardinality(String),
    role                   LowCardinality(String),
    method                 LowCardinality(String),
    route                  LowCardinality(String),
    path_params            Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    filters                Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    rows_returned          UInt64,
    status                 UInt16,
    duration_ms            Float64 CODEC(ZSTD(1)),
    client_ip              String CODEC(ZSTD(1)),
    user_agent             String CODEC(ZSTD(1)),
    error_type             LowCardinality(String),

    INDEX idx_principal    principal TYPE bloom_filter(0.01) GRANULARITY 1
)
ENGINE = {{.Engine "ReplacingMergeTree" "query_audit"}}
PARTITION BY toDate(ts)
ORDER BY (tenant_id, toStartOfHour(ts), ts, request_id)
SETTINGS non_replicated_deduplication_window = 1000{{.StoragePolicySetting}}
