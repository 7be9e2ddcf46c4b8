// Package integrity makes the stored audit events tamper-evident: every
// event is a leaf of an append-only RFC 6962 Merkle log, logs are signed
// (ed25519 checkpoints), any single event can be proven to be in a signed
// tree, and Verify recomputes everything from ClickHouse and names the rows
// that were modified, deleted or inserted. Tree maths comes from
// github.com/transparency-dev/merkle (rfc6962 hasher, compact ranges, proof
// package); this package only decides what the leaves are and where they
// live.
//
// # Unit and order
//
// One log per Kafka partition of the audit events topic, log id
// "audit_events/<partition>", leaves in offset order (see Log). Leaf index
// and offset differ: a dead-lettered message leaves no leaf.
//
// # Leaves
//
// A leaf is computed from the event AS DECODED FROM KAFKA, never read back
// from ClickHouse, so a row forged into ClickHouse never becomes a leaf. The
// leaf is the RFC 6962 leaf hash of Canonical(event), a fixed JSON encoding
// of the stored fields (src_partition/src_offset/src_index included,
// ingested_at excluded); applied to a row read back from audit_events it
// must give the same bytes, which is how Verify detects a modified row.
//
// # Tables (schema/migrations/0009_integrity.sql)
//
//   - merkle_leaves: one row per leaf, ORDER BY (log_id, leaf_index), not
//     partitioned by date so that one insert (of one log or, from a
//     Checkpointer tick, of all) is one part (atomic); a deterministic
//     insert_deduplication_token makes retries idempotent,
//     ReplacingMergeTree is the backstop.
//   - checkpoints: signed notes (C2SP tlog-checkpoint style) with the
//     compact range of the tree at that size, so OpenLog resumes cheaply.
//   - integrity_expirations: what retention deleted on purpose
//     (RecordExpiry), so it is not reported as tampering.
//
// # Ingest
//
// Each partition worker owns its partition for its generation: OpenLog at
// assignment and Track it with the instance's Checkpointer; computes each
// event's Leaf while decoding it; after ClickHouse acknowledged a flush of
// audit_events, Submits the flushed leaves, and commits the Kafka offsets
// only once they are stored (an offset committed before its leaf is stored
// would never be sealed: after a crash there, verify reports the row as
// inserted). Every CheckpointInterval the Checkpointer stores the submitted
// leaves of all logs in one insert and signs every log that grew in
// another; a worker giving its partition up signs its log once more
// (Checkpoint(ctx, true)). A crash anywhere else is safe: OpenLog rebuilds
// the state from the tables, re-consumption redelivers from the committed
// offset and offsets already sealed are ignored. Dead-lettered messages are
// simply not appended.
package integrity
