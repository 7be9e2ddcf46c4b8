// Package schema holds agentaudit's data contracts as data: the ClickHouse
// migrations (ordered, templated DDL) and the versioned JSON Schema of audit
// events. See internal/migrate for how migrations are applied.
package schema

import "embed"

// Migrations are files named NNNN_name.sql, applied in order of NNNN.
//
//go:embed migrations/*.sql
var Migrations embed.FS

// AuditEventV1 is the JSON Schema (draft 2020-12) of an audit event, version 1.
//
//go:embed audit_event.v1.schema.json
var AuditEventV1 []byte

// AuditEventV1ID is the $id of AuditEventV1.
const AuditEventV1ID = "https://agentaudit.dev/schema/audit_event.v1.schema.json"
