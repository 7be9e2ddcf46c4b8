package detect

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentaudit/agentaudit/internal/webhooksink"
)

// The detector as cmd/detector runs it (RunService: the real webhook
// sender as its action sink): every simulated attack is detected once and
// reaches a receiver that verifies Standard Webhooks signatures — a
// notification per detection, a revocation for the critical ones.
func TestRunServiceDeliversSignedWebhooksPerDetection(t *testing.T) {
	e := newEnv(t, 4)
	msgs, truth, lim := simMessages(t, attackSim(), 7*time.Minute)
	secret := webhooksink.NewSecret()
	type got struct{ action, rule string }
	var mu sync.Mutex
	byDetection := map[uuid.UUID][]got{}
	sink, err := webhooksink.New(webhooksink.Options{Secrets: []string{secret}, OnMessage: func(m webhooksink.Message) {
		var p struct {
			Data struct {
				DetectionID uuid.UUID `json:"detection_id"`
				Action      string    `json:"action"`
				RuleID      string    `json:"rule_id"`
			} `json:"data"`
		}
		if err := json.Unmarshal(m.Body, &p); err != nil {
			t.Errorf("webhook body: %v", err)
			return
		}
		mu.Lock()
		byDetection[p.Data.DetectionID] = append(byDetection[p.Data.DetectionID], got{p.Data.Action, p.Data.RuleID})
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sink)
	defer srv.Close()
	t.Setenv("DETECT_TEST_WHSEC", secret)

	var cfg ServiceConfig
	cfg.RegisterFlags(newFlagSet())
	cfg.Detect = testConfig(t, e, lim)
	cfg.Notify.Default.URL = srv.URL
	cfg.Notify.Default.SecretsEnv = "DETECT_TEST_WHSEC"
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- RunService(ctx, &cfg, e.conn, e.db, testLog(), prometheus.NewRegistry()) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("RunService: %v", err)
		}
	}()
	produce(t, e.broker.Addr(), msgs)
	waitCommittedToEnd(t, e, cfg.Detect.GroupID, 4, 90*time.Second)
	ds := storedDetections(t, e.conn)
	checkAgainstTruth(t, ds, truth)

	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		missing := 0
		for _, d := range ds {
			if len(byDetection[d.ID]) == 0 {
				missing++
			}
		}
		mu.Unlock()
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d detections reached no webhook receiver", missing, len(ds))
		}
		time.Sleep(50 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	revoked := 0
	for _, d := range ds {
		actions := map[string]int{}
		for _, g := range byDetection[d.ID] {
			actions[g.action]++
			if g.rule != d.RuleID {
				t.Errorf("webhook for %s names rule %s", d.RuleID, g.rule)
			}
		}
		if actions["notify"] != 1 {
			t.Errorf("%s %s: %d notifications, want 1", d.RuleID, d.Severity, actions["notify"])
		}
		revoked += actions["revoke"]
		if actions["revoke"] > 0 && d.Attributes[AttrRevoked] != "true" {
			t.Errorf("%s %s: revoked without the detection asking for it", d.RuleID, d.Severity)
		}
	}
	if revoked == 0 {
		t.Error("no revocation webhook for the critical detections")
	}
	t.Logf("%d detections, %d revocations delivered, signatures verified by the receiver", len(ds), revoked)
}
