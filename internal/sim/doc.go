// Package sim generates deterministic, realistic multi-tenant AI-agent
// traffic for agentaudit: OTLP GenAI traces as the OpenTelemetry Collector's
// kafkaexporter writes them, audit events as producers publish them, and
// injected attacks with their ground truth. The ingest benchmark preloads a
// Workload, the detector's tests assert against Truth, and cmd/agentsim
// streams it into Kafka for the all-in-one demo.
//
// # Determinism
//
// Everything random is drawn from one math/rand/v2 PCG source seeded with
// Config.Seed: names, ids (trace, span, event UUIDs, tokens, agents),
// timings, token counts, tool arguments. Time is simulated: it starts at
// Config.Start and advances with the traffic; the clock is never read for
// data. The same Config therefore always yields byte-identical messages;
// rendering draws no randomness, so a Workload encoded on any number of
// cores is identical too.
//
// # World
//
// Config.Tenants tenants ("acme", "globex", … then generated names), each
// with Config.AgentsPerTenant agents. Every agent is delegated by a parent
// identity of its tenant ("user:alice@acme.example" or
// "service:ci-bot@acme.example") that holds a set of scopes; the agent's
// credential (token_id, token_type session|oauth for users, m2m|api_key for
// services) carries delegation_scope, a strict subset of the parent's
// scopes, and its baseline tools are exactly the catalog tools whose
// required scopes lie within it (crm.read_contact, github.create_issue,
// db.query, email.send, payments.refund, mcp__slack__post_message, …).
// Each agent talks to one model (openai gpt-4o, anthropic
// claude-sonnet-4-5, aws.bedrock, gcp.vertex_ai …) and reports an OTel
// resource with service.name, service.version, deployment.environment.name,
// tenant.id and host/cloud/k8s attributes.
//
// # Messages
//
// A trace message is one ExportTraceServiceRequest (ptrace.ProtoMarshaler
// or ptrace.JSONMarshaler per Config.SpanEncoding) holding exactly one
// trace, keyed by the hex trace id as partition_traces_by_id does: a root
// "invoke_agent {agent}" span and 2–4 children, "chat {model}" spans and
// "execute_tool {tool}" spans, 11–14 attributes each (about 730 protobuf
// bytes per span, resource included). Config.DeprecatedKeyRatio
// of the traces use gen_ai.system and gen_ai.usage.prompt_tokens /
// completion_tokens instead of gen_ai.provider.name and
// gen_ai.usage.input_tokens / output_tokens. The execute_tool span carries
// gen_ai.tool.call.arguments; the audit event's tool_params_hash is the
// SHA-256 of exactly those bytes.
//
// Every execute_tool span has one audit event (schema v1) with its
// trace_id and span_id, ts = the span's start, keyed tenant_id/agent_id.
// Events carry attributes: auth.method, delegation.parent_scope (the
// parent's scopes, space-separated), gateway, gen_ai.conversation.id,
// policy.id, policy.reason on denials, tool.args_bytes. Messages come in
// simulated-time order: an event at its ts, a trace when the Collector
// exported it (0.2–5 s after the root span ended), so a trace's events
// precede it.
//
// # Benign invariants
//
// Traffic that is not listed in the ground truth never looks like an
// attack. For every benign event:
//
//  1. required_scopes ⊆ delegation_scope; a benign deny (BenignDenyRatio,
//     policy.reason never "missing_scope") also has required ⊆ delegation.
//  2. delegation_scope ⊆ the parent's scopes (delegation.parent_scope),
//     and no parent ever holds a privileged scope (admin:org, iam:write,
//     payments:payout, secrets:read).
//  3. resource_tenant_id is tenant_id or "" (not applicable: e-mail to
//     outside recipients, web search).
//  4. Stable binding: an agent_id, and a token_id, appear under one
//     tenant_id only; a token belongs to one agent.
//  5. Stable scopes: all tokens of an agent carry the same delegation_scope
//     (rotation after TokenTTL issues a new token with the same scopes).
//  6. No token that an attack used appears in a benign event at or after
//     the attack's start (the victim resumes with a fresh token), so
//     benign traffic never reuses a token a detector may have revoked.
//  7. Moderate rates: per agent, in any window of one minute, at most
//     Limits().Traces root spans, Limits().Events events and
//     Limits().Tokens LLM tokens (chat spans' input + output).
//  8. A victim agent is silent from the start of its attack until
//     AttackConfig.Quiet after the attack's last event.
//
// (A Workload asked for more than three events per trace adds untraced
// events, which can exceed 7; its events are still benign otherwise.)
//
// # Attacks and ground truth
//
// Each AttackKind (see its doc) is switched on in AttackConfig.Kinds and
// runs every AttackConfig.Interval of simulated time, the kinds staggered
// within an interval, after AttackConfig.Warmup. Every instance is
// recorded as an Attack: kind, tenant, agent, parent, token, the
// offending scopes, first and last event time, every event id and trace id
// it emitted, and per kind: OtherTenantID, RevokeRequestedAt + RelatedID
// (revoked_token_reuse and the scope_escalation that triggers the
// revocation), Requests and Tokens (rate_burst). Sim.Truth returns the
// instances whose messages have all been returned; Workload.Truth all.
package sim
