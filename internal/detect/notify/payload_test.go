package notify

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/agentaudit/agentaudit/internal/event"
)

var update = flag.Bool("update", false, "rewrite golden files")

func fixedDetection() event.Detection {
	at := time.Date(2026, 11, 27, 1, 2, 3, 456_000_000, time.UTC)
	return event.Detection{
		ID: uuid.MustParse("0b5d3c1e-8a61-5f3c-9a0e-2f4f7d9a1c01"), Time: at, EventTime: at.Add(-3 * time.Millisecond),
		RuleID: "cross_tenant.resource_mismatch", Severity: event.SeverityCritical,
		TenantID: "acme", AgentID: "agent-billing-7", ParentIdentity: "user:alice@acme.example",
		TokenID: "tok-4f1c", TokenType: "oauth", ToolName: "crm.export", ResourceTenantID: "globex",
		EvidenceEventIDs: []uuid.UUID{uuid.MustParse("6f1e2d3c-4b5a-4d7e-8f90-a1b2c3d4e5f6")},
		TraceID:          "4bf92f3577b34da6a3ce929d0e0e4736",
		Summary:          "agent-billing-7 of tenant acme touched crm://contacts of tenant globex; the action was allowed",
		SuppressedCount:  2, Attributes: map[string]string{"resource": "crm://contacts"},
	}
}

// The three body formats are pinned by golden files (run with -update
// after an intended change and review the diff).
func TestBodiesGolden(t *testing.T) {
	d := fixedDetection()
	for _, c := range []struct {
		file string
		ep   Endpoint
		kind string
	}{
		{"json_revoke.json", Endpoint{Name: "soc", Format: FormatJSON}, KindRevoke},
		{"json_notify.json", Endpoint{Name: "soc", Format: FormatJSON}, KindNotify},
		{"caep_opaque.json", Endpoint{Name: "idp", Format: FormatCAEPSET, CAEPSubjectFormat: "opaque"}, KindRevoke},
		{"caep_jwt_id.json", Endpoint{Name: "idp", Format: FormatCAEPSET, CAEPSubjectFormat: "jwt_id", TokenIssuer: "https://auth.acme.example"}, KindRevoke},
		{"ocsf.json", Endpoint{Name: "siem", Format: FormatOCSF}, KindNotify},
	} {
		t.Run(c.file, func(t *testing.T) {
			b, err := body(d, &c.ep, c.kind, "agentaudit", DeliveryID(d.ID, c.ep.Name, c.kind))
			if err != nil {
				t.Fatal(err)
			}
			var pretty bytes.Buffer
			if err := json.Indent(&pretty, b, "", "  "); err != nil {
				t.Fatal(err)
			}
			pretty.WriteByte('\n')
			path := filepath.Join("testdata", c.file)
			if *update {
				if err := os.WriteFile(path, pretty.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update)", err)
			}
			if !bytes.Equal(pretty.Bytes(), want) {
				t.Fatalf("%s differs from golden; got:\n%s", path, pretty.Bytes())
			}
		})
	}
}

// The OCSF finding carries the fields OCSF requires of class 2004.
func TestOCSFRequiredFields(t *testing.T) {
	b, err := OCSF(fixedDetection())
	if err != nil {
		t.Fatal(err)
	}
	var f map[string]any
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]float64{"class_uid": 2004, "category_uid": 2, "activity_id": 1, "type_uid": 200401, "severity_id": 5, "time": float64(fixedDetection().Time.UnixMilli())} {
		if f[k] != want {
			t.Errorf("%s = %v, want %v", k, f[k], want)
		}
	}
	fi, _ := f["finding_info"].(map[string]any)
	md, _ := f["metadata"].(map[string]any)
	if fi["uid"] != fixedDetection().ID.String() || fi["title"] == "" || md["version"] == nil || md["product"] == nil {
		t.Errorf("finding_info %v metadata %v", fi, md)
	}
}

// webhook-id is deterministic in (detection, endpoint, kind) and differs
// when any of them does.
func TestDeliveryIDStableAndDistinct(t *testing.T) {
	d := fixedDetection().ID
	ids := map[string]bool{
		DeliveryID(d, "a", KindRevoke): true, DeliveryID(d, "a", KindNotify): true,
		DeliveryID(d, "b", KindRevoke): true, DeliveryID(uuid.New(), "a", KindRevoke): true,
	}
	if len(ids) != 4 || DeliveryID(d, "a", KindRevoke) != DeliveryID(d, "a", KindRevoke) {
		t.Fatalf("ids %v", ids)
	}
}
