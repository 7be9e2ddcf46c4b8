package query

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentaudit/agentaudit/internal/retention"
)

// TestRetentionStatusPerTenant applies a policy with an override for
// tenant-b and a legal hold on one of tenant-a's agents, then reads the
// status as each kind of principal.
func TestRetentionStatusPerTenant(t *testing.T) {
	e := newEnv(t, nil)
	a := seed(t, e.conn, e.db, "tenant-a", "a", 40, base)
	seed(t, e.conn, e.db, "tenant-b", "b", 30, base)
	m, err := retention.New(e.conn, retention.Options{Database: e.db})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	p := retention.DefaultPolicy()
	def := p.Classes[retention.AuditEvents]
	over := retention.Rule{ColdAfter: def.ColdAfter + 10*retention.Day, DeleteAfter: def.DeleteAfter + 100*retention.Day}
	p.Tenants = map[string]map[retention.Class]retention.Rule{"tenant-b": {retention.AuditEvents: over}}
	if _, err := m.Apply(ctx, p, retention.ApplyOptions{Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := m.PlaceHold(ctx, retention.HoldRequest{TenantID: "tenant-a", AgentID: a.agent, Reason: "case 42", By: "test"}); err != nil {
		t.Fatal(err)
	}

	get := func(who, qs string) (RetentionStatus, string) {
		t.Helper()
		code, body, _ := e.get(who, "/v1/retention/status"+qs)
		if code != http.StatusOK {
			t.Fatalf("%s%s: %d %s", who, qs, code, body)
		}
		var st RetentionStatus
		if err := json.Unmarshal(body, &st); err != nil {
			t.Fatal(err)
		}
		return st, string(body)
	}
	auditEvents := func(st RetentionStatus, tenant string) retention.TenantClassStatus {
		t.Helper()
		for _, c := range st.Classes {
			if c.TenantID == tenant && c.Class == retention.AuditEvents {
				return c
			}
		}
		t.Fatalf("no audit_events row of %s in %+v", tenant, st.Classes)
		return retention.TenantClassStatus{}
	}
	rows := func(c retention.TenantClassStatus) (n uint64) {
		for _, v := range c.Volumes {
			n += v.Rows
		}
		return n
	}

	st, body := get("auditor-a", "")
	if !st.PolicyApplied || st.Database != nil || strings.Contains(body, "tenant-b") || strings.Contains(body, `"policy"`) {
		t.Errorf("auditor-a: policy_applied %v, database %v, body %s", st.PolicyApplied, st.Database != nil, body)
	}
	if len(st.Classes) != len(retention.Classes()) {
		t.Errorf("auditor-a: %d class rows, want one per class", len(st.Classes))
	}
	ca := auditEvents(st, "tenant-a")
	if !ca.Exists || rows(ca) != 40 || ca.DeleteAfterSeconds != int64(def.DeleteAfter/time.Second) || ca.Held || !slices.Equal(ca.HeldAgents, []string{a.agent}) {
		t.Errorf("tenant-a audit_events: %+v", ca)
	}
	if !ca.NextDeleteDue.IsZero() {
		t.Errorf("tenant-a is under a hold, yet a deletion is due %v", ca.NextDeleteDue)
	}
	if len(st.Holds) != 1 || st.Holds[0].TenantID != "tenant-a" || st.Holds[0].AgentID != a.agent || st.Holds[0].Reason != "case 42" {
		t.Errorf("tenant-a holds: %+v", st.Holds)
	}

	st, body = get("auditor-b", "")
	cb := auditEvents(st, "tenant-b")
	if rows(cb) != 30 || cb.DeleteAfterSeconds != int64(over.DeleteAfter/time.Second) || cb.ColdAfterSeconds != int64(over.ColdAfter/time.Second) || cb.Held {
		t.Errorf("tenant-b audit_events (override): %+v", cb)
	}
	if want := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC).Add(over.DeleteAfter); !cb.NextDeleteDue.Equal(want) {
		t.Errorf("tenant-b next deletion due %v, want %v (oldest row + override)", cb.NextDeleteDue, want)
	}
	if len(st.Holds) != 0 || strings.Contains(body, "tenant-a") {
		t.Errorf("auditor-b sees tenant-a: %s", body)
	}

	// Granted every tenant, naming none: the whole database and the policy.
	st, _ = get("admin-all", "")
	if st.Database == nil || st.Database.Policy == nil || st.Database.Policy.Tenants["tenant-b"][retention.AuditEvents] != over || len(st.Classes) != 0 || len(st.Holds) != 1 {
		t.Errorf("admin-all: %+v", st)
	}
	var total uint64
	for _, tb := range st.Database.Tables {
		if tb.Class == retention.AuditEvents {
			for _, v := range tb.Volumes {
				total += v.Rows
			}
		}
	}
	if total != 70 {
		t.Errorf("admin-all: audit_events holds %d rows over its volumes, want 70", total)
	}
	// Naming tenants narrows it to them.
	st, body = get("admin-all", "?tenant=tenant-b")
	if st.Database != nil || len(st.Classes) != len(retention.Classes()) || strings.Contains(body, "tenant-a") {
		t.Errorf("admin-all naming tenant-b: %s", body)
	}
}
