package query

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/csv"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/agentaudit/agentaudit/internal/config"
	"github.com/agentaudit/agentaudit/internal/event"
	"github.com/agentaudit/agentaudit/internal/integrity"
)

// TestExportManifestIsSignedAndBindsTheBody exports with ?manifest=1 and
// checks, as an auditor with only the public key: the trailer's note
// verifies, its SHA-256 is the body's, its row count is the body's, it
// names the checkpoint of the log holding the caller's events (and not a
// log of another tenant only), and every exported event has an inclusion
// proof against the root the manifest names.
func TestExportManifestIsSignedAndBindsTheBody(t *testing.T) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(c *Config) {
		c.Manifest.Key = config.Secret(base64.StdEncoding.EncodeToString(priv.Seed()))
		c.Manifest.Origin = "query.test"
	})
	manifestKeys := integrity.PublicKeys{integrity.KeyID(priv.Public().(ed25519.PublicKey)): priv.Public().(ed25519.PublicKey)}
	logSigner := testSigner(t)
	shared := openLog(t, e.conn, logSigner, 0)
	shared.add(t, e.conn, e.db, []string{"tenant-a", "tenant-b"}, 12, true, true)
	openLog(t, e.conn, logSigner, 5).add(t, e.conn, e.db, []string{"tenant-b"}, 4, true, true)

	export := func(who, qs string) (int, []byte, http.Header) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, e.http.URL+"/v1/export/events?"+rangeQS()+qs, nil)
		req.Header.Set("X-API-Key", keyOf(who))
		resp, err := e.http.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, b, resp.Trailer // the trailer is set once the body is read
	}
	manifestOf := func(body []byte, trailer http.Header) *integrity.Manifest {
		t.Helper()
		raw, err := base64.StdEncoding.DecodeString(trailer.Get(ManifestTrailer))
		if err != nil || len(raw) == 0 {
			t.Fatalf("no manifest trailer: %v %v", trailer, err)
		}
		m, err := integrity.VerifyManifest(string(raw), manifestKeys)
		if err != nil {
			t.Fatalf("manifest does not verify: %v\n%s", err, raw)
		}
		if _, err := integrity.VerifyManifest(string(raw), logSigner.PublicKeys()); err == nil {
			t.Fatal("manifest verifies with another key")
		}
		if got := sha256.Sum256(body); !bytes.Equal(got[:], m.SHA256) {
			t.Fatal("manifest sha256 is not the body's")
		}
		if !strings.HasPrefix(string(raw), "query.test/export\n") {
			t.Errorf("manifest origin: %q", raw)
		}
		return m
	}

	code, body, trailer := export("auditor-a", "&manifest=1")
	if code != http.StatusOK {
		t.Fatalf("export: %d %s", code, body)
	}
	m := manifestOf(body, trailer)
	var evs []Event
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		var ev Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatal(err)
		}
		evs = append(evs, ev)
	}
	if len(evs) != 6 || m.Rows != 6 {
		t.Fatalf("%d events exported, manifest says %d rows; want 6", len(evs), m.Rows)
	}
	if len(m.Checkpoints) != 1 || m.Checkpoints[0].LogID != "audit_events/0" || m.Checkpoints[0].Size != 12 {
		t.Fatalf("manifest checkpoints: %+v; want audit_events/0 at 12 only (audit_events/5 holds tenant-b only)", m.Checkpoints)
	}
	for _, ev := range evs {
		var pb InclusionProof
		if code := e.getJSON("auditor-a", "/v1/integrity/events/"+ev.EventID+"/proof?size=12", &pb); code != http.StatusOK {
			t.Fatalf("proof of exported %s: %d", ev.EventID, code)
		}
		var held *event.AuditEvent
		for _, x := range shared.events {
			if x.EventID.String() == ev.EventID {
				held = x
			}
		}
		if held == nil {
			t.Fatalf("exported %s was not sealed", ev.EventID)
		}
		if err := proof.VerifyInclusion(rfc6962.DefaultHasher, pb.LeafIndex, m.Checkpoints[0].Size, integrity.LeafHash(held), pb.Proof, m.Checkpoints[0].Root); err != nil {
			t.Fatalf("exported %s is not in the tree the manifest names: %v", ev.EventID, err)
		}
	}

	// CSV, and a principal granted every tenant: both logs.
	code, body, trailer = export("admin-all", "&format=csv&manifest=1")
	if code != http.StatusOK {
		t.Fatalf("csv export: %d %s", code, body)
	}
	m = manifestOf(body, trailer)
	recs, err := csv.NewReader(bytes.NewReader(body)).ReadAll()
	if err != nil || len(recs) != 17 || m.Rows != 16 || len(m.Checkpoints) != 2 || m.Checkpoints[1].LogID != "audit_events/5" {
		t.Fatalf("csv: %d records (%v), manifest rows %d, checkpoints %+v", len(recs), err, m.Rows, m.Checkpoints)
	}
	// Without manifest=1 there is no trailer; a hostile value is refused.
	if code, _, trailer := export("auditor-a", ""); code != http.StatusOK || trailer.Get(ManifestTrailer) != "" {
		t.Errorf("plain export: %d, trailer %v", code, trailer)
	}
	if code, body, _ := export("auditor-a", "&manifest=yes"); code != http.StatusBadRequest || !strings.Contains(string(body), ProblemInvalidParam) {
		t.Errorf("manifest=yes: %d %s", code, body)
	}
}

// TestExportManifestNeedsAKey: a server without a manifest key refuses
// ?manifest=1 rather than exporting unsigned; a bad key fails validation.
func TestExportManifestNeedsAKey(t *testing.T) {
	e := newEnv(t, nil)
	code, body, _ := e.get("auditor-a", "/v1/export/events?"+rangeQS()+"&manifest=1")
	if code != http.StatusBadRequest || !strings.Contains(string(body), "manifest") {
		t.Errorf("manifest without a key: %d %s", code, body)
	}
	var sc ServiceConfig
	env := map[string]string{"AGENTAUDIT_QUERY_MANIFEST_KEY": "not-a-key"}
	if _, err := config.Load(&sc, nil, func(k string) string { return env[k] }, "AGENTAUDIT"); err != nil {
		t.Fatal(err)
	}
	if err := config.Validate(&sc); err == nil || !strings.Contains(err.Error(), "query.manifest.key") || strings.Contains(err.Error(), "not-a-key") {
		t.Errorf("bad manifest key: %v", err)
	}
}
