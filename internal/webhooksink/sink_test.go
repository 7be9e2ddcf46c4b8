package webhooksink_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentaudit/agentaudit/internal/webhooksink"
)

func key(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }

// The example of the Standard Webhooks reference libraries: a known
// secret, id, timestamp and payload give a known signature.
func TestSignMatchesStandardWebhooksReferenceVector(t *testing.T) {
	k, err := webhooksink.ParseSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	if err != nil {
		t.Fatal(err)
	}
	got := webhooksink.Sign(k, "msg_p5jXN8AQM9LWM0D4loKWxJek", time.Unix(1614265330, 0), []byte(`{"test": 2432232314}`))
	if want := "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="; got != want {
		t.Fatalf("Sign = %s, want %s", got, want)
	}
}

func TestVerify(t *testing.T) {
	now := time.Now()
	body := []byte(`{"type":"agentaudit.detection"}`)
	headers := func(id string, ts time.Time, sigs ...string) http.Header {
		h := http.Header{}
		h.Set(webhooksink.HeaderID, id)
		h.Set(webhooksink.HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
		h.Set(webhooksink.HeaderSignature, strings.Join(sigs, " "))
		return h
	}
	v, err := webhooksink.NewVerifier([]string{webhooksink.FormatSecret(key(1)), webhooksink.FormatSecret(key(2))}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		h    http.Header
		body []byte
		err  error
	}{
		{"first secret", headers("msg_1", now, webhooksink.Sign(key(1), "msg_1", now, body)), body, nil},
		{"second secret among others", headers("msg_1", now, "v2,abc", webhooksink.Sign(key(9), "msg_1", now, body), webhooksink.Sign(key(2), "msg_1", now, body)), body, nil},
		{"unknown secret", headers("msg_1", now, webhooksink.Sign(key(3), "msg_1", now, body)), body, webhooksink.ErrNoValidSignature},
		{"tampered body", headers("msg_1", now, webhooksink.Sign(key(1), "msg_1", now, body)), append([]byte(" "), body...), webhooksink.ErrNoValidSignature},
		{"other id", headers("msg_2", now, webhooksink.Sign(key(1), "msg_1", now, body)), body, webhooksink.ErrNoValidSignature},
		{"stale", headers("msg_1", now.Add(-2*time.Minute), webhooksink.Sign(key(1), "msg_1", now.Add(-2*time.Minute), body)), body, webhooksink.ErrTimestamp},
		{"future", headers("msg_1", now.Add(2*time.Minute), webhooksink.Sign(key(1), "msg_1", now.Add(2*time.Minute), body)), body, webhooksink.ErrTimestamp},
		{"no signature", headers("msg_1", now), body, webhooksink.ErrMissingHeaders},
		{"no headers", http.Header{}, body, webhooksink.ErrMissingHeaders},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := v.Verify(c.h, c.body)
			if !errors.Is(err, c.err) {
				t.Fatalf("Verify: %v, want %v", err, c.err)
			}
		})
	}
}

func TestParseSecretRejectsBadSecrets(t *testing.T) {
	for _, s := range []string{"", "whsec_", "whsec_!!!", "whsec_" + base64.StdEncoding.EncodeToString([]byte("short"))} {
		if _, err := webhooksink.ParseSecret(s); !errors.Is(err, webhooksink.ErrSecret) {
			t.Errorf("ParseSecret(%q): %v", s, err)
		}
	}
}

// The sink answers 401 to bad signatures, 204 to good ones, recognises a
// retry by its webhook-id, logs revocations and counts.
func TestSinkVerifiesLogsAndCounts(t *testing.T) {
	var logs bytes.Buffer
	reg := prometheus.NewRegistry()
	var got []webhooksink.Message
	sink, err := webhooksink.New(webhooksink.Options{
		Secrets: []string{webhooksink.FormatSecret(key(1))}, Logger: slog.New(slog.NewJSONHandler(&logs, nil)),
		Registerer: reg, OnMessage: func(m webhooksink.Message) { got = append(got, m) },
	})
	if err != nil {
		t.Fatal(err)
	}
	post := func(k []byte, id string, body string) int {
		req := httptest.NewRequest(http.MethodPost, "/hook", strings.NewReader(body))
		webhooksink.SetHeaders(req.Header, [][]byte{k}, id, time.Now(), []byte(body))
		rec := httptest.NewRecorder()
		sink.ServeHTTP(rec, req)
		return rec.Code
	}
	revoke := `{"type":"agentaudit.token.revoke","data":{"token_id":"tok-9","tenant_id":"t1","rule_id":"cross_tenant.resource_mismatch","reason":"r"}}`
	caep := `{"iss":"agentaudit","sub_id":{"format":"opaque","id":"tok-8"},"events":{"` + webhooksink.CAEPSessionRevoked + `":{"reason_admin":{"en":"x"}}},"tenant_id":"t2","rule_id":"r2"}`
	for _, c := range []struct {
		k    []byte
		id   string
		body string
		want int
	}{
		{key(1), "msg_a", revoke, http.StatusNoContent},
		{key(1), "msg_a", revoke, http.StatusNoContent}, // retry: duplicate
		{key(1), "msg_b", caep, http.StatusNoContent},
		{key(1), "msg_c", `{"type":"agentaudit.detection"}`, http.StatusNoContent},
		{key(2), "msg_d", revoke, http.StatusUnauthorized},
	} {
		if code := post(c.k, c.id, c.body); code != c.want {
			t.Errorf("%s: %d, want %d", c.id, code, c.want)
		}
	}
	if len(got) != 3 || got[0].Revocation == nil || got[0].Revocation.TokenID != "tok-9" ||
		got[1].Revocation == nil || got[1].Revocation.TokenID != "tok-8" || got[1].Revocation.TenantID != "t2" || got[2].Revocation != nil {
		t.Fatalf("messages: %+v", got)
	}
	if n := strings.Count(logs.String(), `"msg":"revocation received"`); n != 2 {
		t.Errorf("%d revocation log lines, want 2:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), `"token_id":"tok-9"`) {
		t.Errorf("revocation log lacks the token:\n%s", logs.String())
	}
	want := map[string]float64{"verified": 3, "duplicate": 1, "bad_signature": 1}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		switch mf.GetName() {
		case "agentaudit_webhooksink_requests_total":
			for _, m := range mf.GetMetric() {
				o := m.GetLabel()[0].GetValue()
				if m.GetCounter().GetValue() != want[o] {
					t.Errorf("requests_total{outcome=%s} = %v, want %v", o, m.GetCounter().GetValue(), want[o])
				}
				delete(want, o)
			}
		case "agentaudit_webhooksink_revocations_total":
			if v := mf.GetMetric()[0].GetCounter().GetValue(); v != 2 {
				t.Errorf("revocations_total = %v", v)
			}
		}
	}
	if len(want) != 0 {
		t.Errorf("outcomes not counted: %v", want)
	}
}

// SetHeaders signs exactly as the spec's formula says (checked here with
// crypto/hmac directly, not with Verify).
func TestSetHeadersOneSignaturePerKey(t *testing.T) {
	h := http.Header{}
	ts := time.Unix(1700000000, 0)
	webhooksink.SetHeaders(h, [][]byte{key(1), key(2)}, "msg_x", ts, []byte("body"))
	sigs := strings.Split(h.Get(webhooksink.HeaderSignature), " ")
	if len(sigs) != 2 || h.Get(webhooksink.HeaderTimestamp) != "1700000000" || h.Get(webhooksink.HeaderID) != "msg_x" {
		t.Fatalf("headers %v", h)
	}
	for i, k := range [][]byte{key(1), key(2)} {
		m := hmac.New(sha256.New, k)
		m.Write([]byte("msg_x.1700000000.body"))
		if want := "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil)); sigs[i] != want {
			t.Errorf("signature %d = %s, want %s", i, sigs[i], want)
		}
	}
}

func TestNewSecretParses(t *testing.T) {
	a, b := webhooksink.NewSecret(), webhooksink.NewSecret()
	if a == b || !strings.HasPrefix(a, "whsec_") {
		t.Fatalf("secrets %q %q", a, b)
	}
	if k, err := webhooksink.ParseSecret(a); err != nil || len(k) != 32 {
		t.Fatalf("ParseSecret(NewSecret()) = %d bytes, %v", len(k), err)
	}
}
