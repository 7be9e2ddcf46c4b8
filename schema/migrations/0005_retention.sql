-- Retention: legal holds and the audit trail of retention actions
-- (internal/retention). Neither table carries a TTL: they are the record of
-- why data was kept or deleted and are kept for as long as the database.
--
-- legal_holds: one row per hold; releasing a hold writes a newer version of
-- the same row (released = 1). Read with FINAL. agent_id '' holds the whole
-- tenant; a hold on one agent covers that agent's rows in tables that have an
-- agent_id column and the whole tenant in those that do not (never less
-- than asked for).
CREATE TABLE IF NOT EXISTS {{.DB}}.legal_holds {{.OnCluster}}
(
    tenant_id              LowCardinality(String),
    hold_id                UUID,
    agent_id               String,
    reason                 String,
    placed_by              String,
    placed_at              DateTime64(3, 'UTC'),
    released               UInt8,
    released_by            String,
    released_at            DateTime64(3, 'UTC'),
    release_reason         String,
    version                UInt64
)
ENGINE = {{.EngineVersioned "ReplacingMergeTree" "legal_holds" "version"}}
ORDER BY (tenant_id, hold_id)
SETTINGS index_granularity = 8192{{.StoragePolicySetting}};

-- retention_audit: append-only. action is one of
--   policy_applied  (tenant_id '', details = the policy as JSON, the DDL run)
--   floor_override  (a retention under a class floor, applied on purpose)
--   hold_placed, hold_released
-- The latest policy_applied row is the policy in force: placing or lifting
-- a hold re-renders the TTLs from it.
CREATE TABLE IF NOT EXISTS {{.DB}}.retention_audit {{.OnCluster}}
(
    tenant_id              LowCardinality(String),
    ts                     DateTime64(9, 'UTC'),
    action                 LowCardinality(String),
    actor                  String,
    class                  LowCardinality(String),
    agent_id               String,
    hold_id                String,
    reason                 String,
    details                String CODEC(ZSTD(3))
)
ENGINE = {{.Engine "MergeTree" "retention_audit"}}
ORDER BY (tenant_id, ts, action)
SETTINGS index_granularity = 8192{{.StoragePolicySetting}};
