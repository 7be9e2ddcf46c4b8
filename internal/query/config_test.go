package query

import (
	"strings"
	"testing"

	"github.com/agentaudit/agentaudit/internal/config"
)

func TestConfigDefaultsAndValidation(t *testing.T) {
	var sc ServiceConfig
	if _, err := config.Load(&sc, nil, func(string) string { return "" }, "AGENTAUDIT"); err != nil {
		t.Fatal(err)
	}
	if err := config.Validate(&sc); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	if sc.Query.ListenAddress != DefaultListenAddress {
		t.Errorf("listen address %q", sc.Query.ListenAddress)
	}
	// Secrets come from the environment, never flags.
	env := map[string]string{"AGENTAUDIT_QUERY_AUTH_JWT_HMAC_SECRET": "short"}
	var sc2 ServiceConfig
	if _, err := config.Load(&sc2, []string{"-query.max-page-size=5", "-query.rate-limit.burst=0"}, func(k string) string { return env[k] }, "AGENTAUDIT"); err != nil {
		t.Fatal(err)
	}
	err := config.Validate(&sc2)
	for _, want := range []string{"query.jwt.hmac_secret", "query.max_page_size", "query.rate_limit.burst"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("validation error %v does not name %s", err, want)
		}
	}
	var sc3 ServiceConfig
	if _, err := config.Load(&sc3, []string{"-query.auth.jwt.hmac-secret=x"}, func(string) string { return "" }, "AGENTAUDIT"); err == nil {
		t.Error("a secret on the command line was accepted")
	}
}
