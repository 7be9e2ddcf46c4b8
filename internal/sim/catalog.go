package sim

import (
	"math/rand/v2"
	"strconv"
)

// The static vocabulary the world is drawn from: tenants, people, agents,
// scopes, tools and models. Everything random is drawn through the Sim's
// RNG, so the same seed always picks the same words.

// knownTenants are used first, in this order; further tenants get generated
// names (see tenantName).
var knownTenants = []string{
	"acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne", "wonka",
	"soylent", "tyrell", "cyberdyne", "vandelay",
}

var tenantPrefixes = []string{"nor", "qua", "vel", "zan", "bri", "cor", "dex", "lum", "tor", "mar", "syn", "ark"}
var tenantSuffixes = []string{"vex", "tix", "ora", "ium", "lytics", "works", "soft", "labs", "nova", "gen", "base", "line"}

var humanNames = []string{
	"alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan",
	"judy", "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter",
}

var serviceNames = []string{
	"ci-bot", "billing-worker", "support-router", "etl-scheduler", "sales-sync", "ops-automation",
}

// agentRoles name agents; each has a description used as
// gen_ai.agent.description.
var agentRoles = []struct{ name, desc string }{
	{"support-triage", "Triages inbound support tickets"},
	{"sales-assistant", "Drafts follow-ups and updates CRM records"},
	{"code-reviewer", "Reviews pull requests and files issues"},
	{"billing-helper", "Answers billing questions and issues refunds"},
	{"ops-runbook", "Executes operational runbooks"},
	{"research-analyst", "Searches internal docs and summarises"},
	{"hr-onboarding", "Schedules onboarding and sends welcome mail"},
	{"data-analyst", "Runs read-only analytics queries"},
	{"meeting-scheduler", "Books meetings across calendars"},
	{"release-manager", "Tracks releases and posts status updates"},
}

// Scopes. benignScopes may be held by parents and delegated to agents;
// privilegedScopes are never held by any parent identity, so benign traffic
// never carries them (delegation_exceeds_parent uses them).
var benignScopes = []string{
	"calendar:read", "calendar:write", "crm:read", "crm:write", "db:read", "db:write",
	"docs:read", "drive:read", "email:read", "email:send", "github:issues.write",
	"github:repo.read", "jira:write", "payments:read", "payments:refund", "slack:write",
}

var privilegedScopes = []string{"admin:org", "iam:write", "payments:payout", "secrets:read"}

// resourceKind says who owns what a tool touches.
type resourceKind uint8

const (
	resTenant   resourceKind = iota // a resource of the caller's tenant: resource_tenant_id = tenant
	resExternal                     // outside any tenant (e-mail recipient, the web): resource_tenant_id = ""
)

// tool is one entry of the tool catalog.
type tool struct {
	name     string
	spanName string // "execute_tool {name}", set by the tools initializer
	desc     string
	scopes   []string // required_scopes, sorted
	mcp      bool     // an MCP server's tool (mcp.* attributes) rather than an HTTP API
	server   string   // backend host; "%s" is replaced by the tenant
	res      resourceKind
	// params writes the synthetic call arguments (JSON) and the resource
	// touched, for tenant.
	params func(r *rand.Rand, tenant string) (args, resource string)
}

var tools = withSpanNames([]tool{
	{name: "crm.read_contact", desc: "Read a CRM contact", scopes: []string{"crm:read"}, server: "crm.%s.internal", res: resTenant,
		params: func(r *rand.Rand, t string) (string, string) {
			id := "ct_" + hexN(r, 8)
			return `{"contact_id":"` + id + `","fields":["name","email","owner"]}`, "crm://" + t + "/contacts/" + id
		}},
	{name: "crm.search_accounts", desc: "Search CRM accounts", scopes: []string{"crm:read"}, server: "crm.%s.internal", res: resTenant,
		params: func(r *rand.Rand, t string) (string, string) {
			return `{"query":"` + pick(r, searchWords) + `","limit":` + strconv.Itoa(10+r.IntN(40)) + `}`, "crm://" + t + "/accounts"
		}},
	{name: "crm.update_contact", desc: "Update a CRM contact", scopes: []string{"crm:read", "crm:write"}, server: "crm.%s.internal", res: resTenant,
		params: func(r *rand.Rand, t string) (string, string) {
			id := "ct_" + hexN(r, 8)
			return `{"contact_id":"` + id + `","patch":{"stage":"` + pick(r, stages) + `"}}`, "crm://" + t + "/contacts/" + id
		}},
	{name: "github.get_file", desc: "Read a file from a repository", scopes: []string{"github:repo.read"}, server: "api.github.com", res: resTenant,
		params: func(r *rand.Rand, t string) (string, string) {
			repo := t + "/" + pick(r, repos)
			return `{"repo":"` + repo + `","path":"` + pick(r, paths) + `","ref":"main"}`, "github://" + repo
		}},
	{name: "github.list_pull_requests", desc: "List open pull requests", scopes: []string{"github:repo.read"}, server: "api.github.com", res: resTenant,
		params: func(r *rand.Rand, t string) (string, string) {
			repo := t + "/" + pick(r, repos)
			return `{"repo":"` + repo + `","state":"open","per_page":` + strconv.Itoa(10+r.IntN(20)) + `}`, "github://" + repo + "/pulls"
		}},
	{name: "github.create_issue", desc: "Open an issue", scopes: []string{"github:issues.write"}, server: "api.github.com", res: resTenant,
		params: func(r *rand.Rand, t string) (string, string) {
			repo := t + "/" + pick(r, repos)
			return `{"repo":"` + repo + `","title":"` + pick(r, issueTitles) + ` #` + strconv.Itoa(1000+r.IntN(9000)) + `","labels":["` + pick(r, labels) + `"]}`, "github://" + repo + "/issues"
		}},
	{name: "db.query", desc: "Run a read-only SQL query", scopes: []string{"db:read"}, server: "pg.%s.internal", res: resTenant,
		params: func(r *rand.Rand, t string) (string, string) {
			table := pick(r, tables)
			return `{"sql":"SELECT id, status, updated_at FROM ` + table + ` WHERE account_id = $1 LIMIT 50","args":[` + strconv.Itoa(r.IntN(100000)) + `]}`, "db://" + t + "/" + table
		}},
	{name: "db.execute", desc: "Run a SQL statement", scopes: []string{"db:read", "db:write"}, server: "pg.%s.internal", res: resTenant,
		params: func(r *rand.Rand, t string) (string, string) {
			table := pick(r, tables)
			return `{"sql":"UPDATE ` + table + ` SET status = $1 WHERE id = $2","args":["` + pick(r, stages) + `",` + strconv.Itoa(r.IntN(100000)) + `]}`, "db://" + t + "/" + table
		}},
	{name: "email.search_inbox", desc: "Search the shared inbox", scopes: []string{"email:read"}, server: "mail.%s.internal", res: resTenant,
		params: func(r *rand.Rand, t string) (string, string) {
			return `{"query":"from:customer subject:` + pick(r, searchWords) + `","limit":20}`, "mailbox://" + t + "/support"
		}},
	{name: "email.send", desc: "Send an e-mail", scopes: []string{"email:send"}, server: "smtp.%s.internal", res: resExternal,
		params: func(r *rand.Rand, t string) (string, string) {
			to := pick(r, humanNames) + "." + hexN(r, 2) + "@customer.example"
			return `{"to":"` + to + `","subject":"` + pick(r, issueTitles) + `","template":"` + pick(r, templates) + `"}`, "mailto:" + to
		}},
	{name: "payments.get_invoice", desc: "Fetch an invoice", scopes: []string{"payments:read"}, server: "payments.%s.internal", res: resTenant,
		params: func(r *rand.Rand, t string) (string, string) {
			id := "in_" + hexN(r, 8)
			return `{"invoice_id":"` + id + `"}`, "payments://" + t + "/invoices/" + id
		}},
	{name: "payments.refund", desc: "Refund a charge", scopes: []string{"payments:read", "payments:refund"}, server: "payments.%s.internal", res: resTenant,
		params: func(r *rand.Rand, t string) (string, string) {
			id := "ch_" + hexN(r, 8)
			return `{"charge_id":"` + id + `","amount_cents":` + strconv.Itoa(500+r.IntN(20000)) + `,"reason":"` + pick(r, refundReasons) + `"}`, "payments://" + t + "/charges/" + id
		}},
	{name: "calendar.list_events", desc: "List calendar events", scopes: []string{"calendar:read"}, server: "calendar.%s.internal", res: resTenant,
		params: func(r *rand.Rand, t string) (string, string) {
			who := pick(r, humanNames)
			return `{"calendar":"` + who + `","days":` + strconv.Itoa(1+r.IntN(14)) + `}`, "calendar://" + t + "/" + who
		}},
	{name: "calendar.create_event", desc: "Create a calendar event", scopes: []string{"calendar:write"}, server: "calendar.%s.internal", res: resTenant,
		params: func(r *rand.Rand, t string) (string, string) {
			who := pick(r, humanNames)
			return `{"calendar":"` + who + `","title":"` + pick(r, meetings) + `","duration_min":` + strconv.Itoa(15*(1+r.IntN(4))) + `}`, "calendar://" + t + "/" + who
		}},
	{name: "mcp__slack__post_message", desc: "Post to a Slack channel", scopes: []string{"slack:write"}, mcp: true, server: "mcp-slack.%s.internal", res: resTenant,
		params: func(r *rand.Rand, t string) (string, string) {
			ch := pick(r, channels)
			return `{"channel":"#` + ch + `","text":"` + pick(r, issueTitles) + `"}`, "slack://" + t + "/" + ch
		}},
	{name: "mcp__jira__create_ticket", desc: "Create a Jira ticket", scopes: []string{"jira:write"}, mcp: true, server: "mcp-jira.%s.internal", res: resTenant,
		params: func(r *rand.Rand, t string) (string, string) {
			p := pick(r, jiraProjects)
			return `{"project":"` + p + `","summary":"` + pick(r, issueTitles) + `","priority":"` + pick(r, priorities) + `"}`, "jira://" + t + "/" + p
		}},
	{name: "mcp__drive__search_files", desc: "Search shared drive files", scopes: []string{"drive:read"}, mcp: true, server: "mcp-drive.%s.internal", res: resTenant,
		params: func(r *rand.Rand, t string) (string, string) {
			return `{"query":"` + pick(r, searchWords) + `","mime_type":"application/pdf"}`, "drive://" + t + "/shared"
		}},
	{name: "docs.search", desc: "Search the knowledge base", scopes: []string{"docs:read"}, server: "kb.%s.internal", res: resTenant,
		params: func(r *rand.Rand, t string) (string, string) {
			return `{"query":"` + pick(r, searchWords) + `","top_k":` + strconv.Itoa(3+r.IntN(8)) + `}`, "kb://" + t + "/articles"
		}},
	{name: "web.search", desc: "Search the public web", scopes: []string{}, server: "search.example", res: resExternal,
		params: func(r *rand.Rand, t string) (string, string) {
			return `{"q":"` + pick(r, searchWords) + ` ` + pick(r, searchWords) + `","count":10}`, ""
		}},

	// Privileged tools: their scopes are never held by a parent identity,
	// so only attacks call them successfully.
	{name: "iam.assign_role", desc: "Assign an IAM role", scopes: []string{"iam:write"}, server: "iam.%s.internal", res: resTenant,
		params: func(r *rand.Rand, t string) (string, string) {
			who := pick(r, humanNames)
			return `{"principal":"user:` + who + `","role":"org_admin"}`, "iam://" + t + "/principals/" + who
		}},
	{name: "secrets.read_secret", desc: "Read a secret", scopes: []string{"secrets:read"}, server: "vault.%s.internal", res: resTenant,
		params: func(r *rand.Rand, t string) (string, string) {
			p := "prod/" + pick(r, secretNames)
			return `{"path":"` + p + `","version":"latest"}`, "secrets://" + t + "/" + p
		}},
	{name: "payments.payout", desc: "Send a payout", scopes: []string{"payments:payout", "payments:read"}, server: "payments.%s.internal", res: resTenant,
		params: func(r *rand.Rand, t string) (string, string) {
			id := "po_" + hexN(r, 8)
			return `{"destination":"acct_` + hexN(r, 6) + `","amount_cents":` + strconv.Itoa(100000+r.IntN(900000)) + `}`, "payments://" + t + "/payouts/" + id
		}},
	{name: "admin.export_tenant_data", desc: "Export all tenant data", scopes: []string{"admin:org"}, server: "admin.%s.internal", res: resTenant,
		params: func(r *rand.Rand, t string) (string, string) {
			return `{"format":"parquet","include":["users","billing","audit"]}`, "admin://" + t + "/export"
		}},
})

func withSpanNames(ts []tool) []tool {
	for i := range ts {
		ts[i].spanName = "execute_tool " + ts[i].name
	}
	return ts
}

var (
	searchWords   = []string{"renewal", "invoice", "outage", "onboarding", "churn", "pricing", "latency", "refund", "contract", "roadmap", "security review", "SLA"}
	stages        = []string{"qualified", "proposal", "negotiation", "closed_won", "closed_lost", "resolved", "pending"}
	repos         = []string{"web", "api", "mobile", "infra", "billing", "docs"}
	paths         = []string{"README.md", "src/main.go", "package.json", "deploy/values.yaml", "docs/runbook.md", "Makefile"}
	issueTitles   = []string{"Login times out after SSO redirect", "Invoice totals off by one cent", "Flaky integration test", "Upgrade TLS settings", "Customer asks for data export", "Weekly status update", "Dashboard shows stale numbers"}
	labels        = []string{"bug", "enhancement", "customer", "security", "ops"}
	tables        = []string{"orders", "tickets", "invoices", "accounts", "subscriptions", "events"}
	templates     = []string{"ticket_update", "welcome", "invoice_reminder", "meeting_followup"}
	refundReasons = []string{"duplicate", "requested_by_customer", "fraudulent", "service_outage"}
	meetings      = []string{"Onboarding sync", "QBR", "Incident review", "1:1", "Design review"}
	channels      = []string{"support", "sales", "releases", "incidents", "general"}
	jiraProjects  = []string{"OPS", "SUP", "ENG", "FIN"}
	priorities    = []string{"low", "medium", "high"}
	secretNames   = []string{"db-password", "stripe-key", "signing-key", "aws-root"}
)

// model is an LLM an agent calls.
type model struct {
	provider   string // gen_ai.provider.name
	system     string // the deprecated gen_ai.system value
	request    string // gen_ai.request.model
	response   string // gen_ai.response.model
	server     string // server.address
	scope      string // instrumentation scope name
	scopeVer   string
	respPrefix string // gen_ai.response.id prefix
	callPrefix string // gen_ai.tool.call.id prefix
	chatName   string // "chat {request}", set by the models initializer
}

var models = withChatNames([]model{
	{"openai", "openai", "gpt-4o", "gpt-4o-2024-08-06", "api.openai.com", "opentelemetry.instrumentation.openai_v2", "2.1b0", "chatcmpl-", "call_", ""},
	{"openai", "openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18", "api.openai.com", "opentelemetry.instrumentation.openai_v2", "2.1b0", "chatcmpl-", "call_", ""},
	{"openai", "openai", "gpt-4.1", "gpt-4.1-2025-04-14", "api.openai.com", "opentelemetry.instrumentation.openai_agents", "0.4.0", "chatcmpl-", "call_", ""},
	{"anthropic", "anthropic", "claude-sonnet-4-5", "claude-sonnet-4-5-20250929", "api.anthropic.com", "opentelemetry.instrumentation.anthropic", "0.40.0", "msg_01", "toolu_01", ""},
	{"anthropic", "anthropic", "claude-3-5-haiku", "claude-3-5-haiku-20241022", "api.anthropic.com", "opentelemetry.instrumentation.anthropic", "0.40.0", "msg_01", "toolu_01", ""},
	{"aws.bedrock", "aws.bedrock", "anthropic.claude-3-5-sonnet-20240620-v1:0", "anthropic.claude-3-5-sonnet-20240620-v1:0", "bedrock-runtime.us-east-1.amazonaws.com", "opentelemetry.instrumentation.botocore", "0.55b0", "msg_bdrk_01", "tooluse_", ""},
	{"aws.bedrock", "aws.bedrock", "amazon.nova-pro-v1:0", "amazon.nova-pro-v1:0", "bedrock-runtime.us-east-1.amazonaws.com", "opentelemetry.instrumentation.botocore", "0.55b0", "nova-", "tooluse_", ""},
	{"gcp.vertex_ai", "vertex_ai", "gemini-2.0-flash", "gemini-2.0-flash-001", "us-central1-aiplatform.googleapis.com", "opentelemetry.instrumentation.vertexai", "2.0b0", "gem-", "fc_", ""},
})

func withChatNames(ms []model) []model {
	for i := range ms {
		ms[i].chatName = "chat " + ms[i].request
	}
	return ms
}

var sdkLanguages = []string{"python", "python", "nodejs", "go"}

var regions = []string{"us-east-1", "us-west-2", "eu-west-1", "eu-central-1"}

// Helpers drawing from r.

func pick[T any](r *rand.Rand, xs []T) T { return xs[r.IntN(len(xs))] }

const hexdigits = "0123456789abcdef"

// hexN returns n random bytes as 2n lower-case hex digits.
func hexN(r *rand.Rand, n int) string {
	b := make([]byte, 2*n)
	var v uint64
	for i := range n {
		if i%8 == 0 {
			v = r.Uint64()
		}
		c := byte(v)
		v >>= 8
		b[2*i] = hexdigits[c>>4]
		b[2*i+1] = hexdigits[c&0xf]
	}
	return string(b)
}

const alnum = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// alnumN returns n random alphanumeric characters (provider-style ids).
func alnumN(r *rand.Rand, n int) string {
	b := make([]byte, n)
	var v uint64
	for i := range b {
		if i%10 == 0 {
			v = r.Uint64()
		}
		b[i] = alnum[v%62]
		v /= 62
	}
	return string(b)
}
