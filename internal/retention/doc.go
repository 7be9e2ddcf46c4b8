// Package retention turns a retention policy (retention/default.yaml or an
// operator's file) and the legal holds into ClickHouse table TTLs, and
// reports what the TTLs are doing.
//
// Each data class is one table: spans (aged by start_time), audit_events,
// detections, webhook_deliveries and query_audit (aged by ts). A class whose
// table does not exist (query_audit before its migration) or lacks the time
// column is skipped with a status line saying so. Per class the policy gives
// the age at which rows move TO VOLUME 'cold' and the age at which they are
// deleted, with per-tenant overrides; DELETE rules exclude the rows of
// active legal holds (see RenderTTL for the exact clauses).
//
// One more table is managed after the classes: trace_index, the per-hour
// index of traces that trace reconstruction reads. It is not in the policy
// file; its TTL is derived from the spans and audit_events rules and holds,
// so that an index row is never deleted before the rows it points to and
// at most two days after them (one daily partition of the data, plus a day
// for the data's TTL merges to run). Its rows say
// which table they index (migration 0040); see renderTraceIndexTTL.
//
// # What the engine guarantees, and what this package adds
//
// ALTER TABLE … MODIFY TTL is a metadata change: it returns once the new
// TTL is the table's metadata, and every merge that STARTS afterwards
// evaluates TTL rules against it, row by row. It does not touch merges
// already running: a merge takes a snapshot of the table metadata when it
// starts and applies that snapshot's TTL to the rows it writes. So a merge
// scheduled a moment before a hold was placed would still delete the held
// rows, after the ALTER returned. To close that window every TTL change
// here is fenced:
//
//	SYSTEM STOP MERGES t     -- running merges and mutations of t are
//	                         -- cancelled (their source parts stay), no new
//	                         -- ones start
//	wait until system.merges has no entry for t
//	                         -- a merge past its last cancellation check
//	                         -- commits; either way it is over
//	ALTER TABLE t MODIFY TTL … SETTINGS materialize_ttl_after_modify = 0
//	SYSTEM START MERGES t    -- always, even when the ALTER failed
//
// When PlaceHold returns nil, the held rows that existed when it returned
// are excluded from every DELETE rule and no merge still running can apply
// an older rule. Rows a merge had already deleted before the fence (rows
// that were past their age before the hold was asked for) are gone; the
// engine has no undo.
//
// The ALTER runs with materialize_ttl_after_modify = 0: on a MergeTree the
// engine otherwise makes the ALTER wait for its MATERIALIZE TTL mutation,
// which cannot run while merges are stopped (found on the engine: the ALTER
// hangs inside the fence). After the fence, apply and release queue
// ALTER … MATERIALIZE TTL (asynchronous), a mutation that recomputes every
// part's TTL info under the new TTL so a shortened age or a lifted hold acts
// without waiting for the part's next merge; it rewrites the table's parts,
// which is heavy on big tables, but policy changes and releases are rare.
// Placing a hold skips it: merges evaluate every row against the TTL in
// force when they start, so narrowing deletion needs no rewrite. Lifting a
// hold cannot skip it: a TTL merge that keeps rows because of a WHERE
// clears their due time from the part's TTL info, so without the
// re-materialization the released rows would stay until their part happened
// to merge again (verified: the release test fails without it). The same
// clearing means held parts are not re-merged every merge_with_ttl_timeout
// while the hold stands.
//
// Placing or lifting a hold re-renders the TTLs from the policy recorded by
// the latest apply (retention_audit, action policy_applied), then reads the
// holds again and re-applies until the TTLs were rendered from the current
// set, so two holds placed at once both end in force. Two operators changing
// holds at the very same moment can still briefly restart the other's merges
// inside its fence; serialize retention commands (one operator action at a
// time), as the CLI is meant to be used.
//
// With a cluster every statement runs ON CLUSTER and the merge wait reads
// clusterAllReplicas(system.merges); this path is not exercised by the
// tests (the test engine is one node).
//
// # ttl_only_drop_parts
//
// Every class table gets ttl_only_drop_parts = 1 (trace_index does not:
// its rules are all conditional, and it has no daily partitions). It changes only
// unconditional DELETE rules: a part is dropped whole once all its rows
// expired instead of being rewritten without them, which is cheap. Parts
// are per day (PARTITION BY toDate(ts)), so whole-part drops lag the exact
// age by at most a day. A class without tenant overrides and without holds
// gets such an unconditional rule. Per-tenant ages and holds need row-level
// conditions, and every part mixes tenants (the sort key starts with
// tenant_id, partitions are days): those become DELETE … WHERE rules, which
// the engine applies row by row in TTL merges regardless of the setting
// (verified on the engine), so a held tenant's rows stay while the others'
// in the same part go.
package retention
