-- webhook_outbox.owner: the detector instance (notify.instance) that wrote
-- the row. With several detector instances each loads, at start, only the
-- pending rows it owns (and rows written before this column, owner ''), so
-- two instances do not both send every pending message. A single instance
-- (notify.instance empty, the default) loads every pending row as before.
ALTER TABLE {{.DB}}.webhook_outbox {{.OnCluster}}
    ADD COLUMN IF NOT EXISTS owner LowCardinality(String) DEFAULT '';
