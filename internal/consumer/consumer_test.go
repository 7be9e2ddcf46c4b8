package consumer

import (
	"errors"
	"flag"
	"strings"
	"testing"

	"github.com/agentaudit/agentaudit/internal/config"
)

// The flags carry the service's prefix and group default; Check names each
// bad field.
func TestFlagsAndCheck(t *testing.T) {
	var c Config
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	c.RegisterFlagsWithPrefix("svc.", fs, Usage{GroupDefault: "svc-group"})
	if err := fs.Parse([]string{"-svc.kafka.brokers=a:1,b:2"}); err != nil {
		t.Fatal(err)
	}
	if c.GroupID != "svc-group" || len(c.Brokers) != 2 || c.SpansEncoding != "otlp_proto" {
		t.Fatalf("defaults: %+v", c)
	}
	if err := c.Check(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	c.Brokers, c.GroupID, c.SpansEncoding, c.FetchMaxBytes = nil, "", "xml", 0
	err := c.Check()
	if !errors.Is(err, config.ErrRequired) || !errors.Is(err, config.ErrInvalid) {
		t.Fatalf("bad config: %v", err)
	}
	for _, field := range []string{"brokers", "group_id", "spans_encoding", "fetch_max_bytes"} {
		if !strings.Contains(err.Error(), field) {
			t.Errorf("error does not name %s: %v", field, err)
		}
	}
}
