-- webhook_endpoint_state: an endpoint that answered 410 Gone is disabled
-- and stays disabled across restarts (the receiver said the subscription is
-- gone; hammering it is wrong). The row is keyed by the endpoint NAME and a
-- SHA-256 of its URL (never the URL itself, which may carry credentials), so
-- pointing the endpoint at a new URL re-enables it; an operator can also
-- re-enable it by writing a newer version with disabled = 0.
CREATE TABLE IF NOT EXISTS {{.DB}}.webhook_endpoint_state {{.OnCluster}}
(
    endpoint               LowCardinality(String),
    url_sha256             String,
    disabled               UInt8,
    reason                 String,
    updated_at             DateTime64(3, 'UTC'),
    version                UInt64
)
ENGINE = {{.EngineVersioned "ReplacingMergeTree" "webhook_endpoint_state" "version"}}
ORDER BY (endpoint, url_sha256)
SETTINGS index_granularity = 8192{{.StoragePolicySetting}};
