-- trace_index rows say which table they index, so that retention
-- (internal/retention) can age each row like the rows it points to: a
-- 'span' row by the spans rule, an 'event' row by the audit_events rule
-- (spans are kept 90 days by default, audit events 400: one rule for both
-- would keep the index of a spans-only trace ten months after its spans).
--
-- source is part of the sort key so that ReplacingMergeTree keeps one row
-- per table rather than folding a trace's span row and event row of the
-- same hour into one. Readers are unchanged: they take min(hour) and
-- max(hour) over every row of the trace. A column added in the same ALTER
-- may be appended to the sort key (metadata only, no part is rewritten);
-- it must have no default expression, so the rows written before this
-- migration read the Enum's first value, 'any': indexed from either table,
-- aged by the longer of the two rules.
ALTER TABLE {{.DB}}.trace_index {{.OnCluster}}
    ADD COLUMN IF NOT EXISTS source Enum8('any' = 0, 'span' = 1, 'event' = 2),
    MODIFY ORDER BY (tenant_id, trace_id, hour, source);

-- MODIFY QUERY swaps a view's query atomically: no insert between two
-- statements goes unindexed, as it could with DROP and CREATE.
ALTER TABLE {{.DB}}.trace_index_spans_mv {{.OnCluster}} MODIFY QUERY
SELECT DISTINCT tenant_id, trace_id, toStartOfHour(start_time) AS hour, 'span' AS source
FROM {{.DB}}.spans
WHERE trace_id != '';

ALTER TABLE {{.DB}}.trace_index_events_mv {{.OnCluster}} MODIFY QUERY
SELECT DISTINCT tenant_id, trace_id, toStartOfHour(ts) AS hour, 'event' AS source
FROM {{.DB}}.audit_events
WHERE trace_id != ''
