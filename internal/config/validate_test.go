package config_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/agentaudit/agentaudit/internal/config"
)

type rule struct {
	ID        string `yaml:"id"`
	Threshold int    `yaml:"threshold"`
}

// Value receiver: called on slice elements and map values alike.
func (r rule) Validate() error {
	if r.Threshold < 1 {
		return config.Field("threshold", fmt.Errorf("%w: %d, want >= 1", config.ErrInvalid, r.Threshold))
	}
	return nil
}

type webhook struct {
	URL string `yaml:"url"`
}

// Pointer receiver without a config.Field: the whole struct is at fault.
func (w *webhook) Validate() error {
	if w.URL == "" {
		return config.ErrRequired
	}
	return nil
}

type common struct {
	Tenant string `yaml:"tenant"`
}

func (c *common) Validate() error {
	if c.Tenant == "" {
		return config.Field("tenant", config.ErrRequired)
	}
	return nil
}

type detectorConfig struct {
	common   `yaml:",inline"`
	Rules    []rule             `yaml:"rules"`
	Webhook  *webhook           `yaml:"webhook"`
	Optional *webhook           `yaml:"optional"`
	ByName   map[string]webhook `yaml:"by_name"`
	Any      any                `yaml:"any"`
	NoTag    webhook
	Skipped  webhook `yaml:"-"`
	hidden   webhook // unexported fields are not walked: its zero URL is never reported
}

type serviceConfig struct {
	Ingest   ingestConfig    `yaml:"ingest"`
	Detector *detectorConfig `yaml:"detector"`
}

func (c *serviceConfig) Validate() error {
	if c.Detector == nil {
		return errors.New("detector section missing")
	}
	return nil
}

func TestValidateWalksNestedConfigsAndPrefixesPaths(t *testing.T) {
	cfg := &serviceConfig{
		Ingest: ingestConfig{Kafka: kafkaConfig{Brokers: nil, Timeout: 0}},
		Detector: &detectorConfig{
			Rules:    []rule{{ID: "ok", Threshold: 1}, {ID: "bad", Threshold: 0}},
			Webhook:  &webhook{},
			Optional: nil, // nil pointers are skipped
			ByName:   map[string]webhook{"b": {URL: "x"}, "a": {}},
			Any:      &webhook{},
			NoTag:    webhook{},
			Skipped:  webhook{},
		},
	}
	err := config.Validate(cfg)
	want := []string{
		"ingest.kafka.brokers: must not be empty",
		"ingest.kafka.timeout: invalid value",
		"detector.tenant: must not be empty",
		"detector.rules[1].threshold: invalid value: 0, want >= 1",
		"detector.webhook: must not be empty",
		"detector.by_name.a: must not be empty",
		"detector.any: must not be empty",
		"detector.notag: must not be empty",
		"detector.skipped: must not be empty",
	}
	if got := strings.Split(fmt.Sprint(err), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("Validate:\n%s\nwant:\n%s", err, strings.Join(want, "\n"))
	}
	if !errors.Is(err, config.ErrRequired) || !errors.Is(err, config.ErrInvalid) {
		t.Errorf("errors.Is does not find the sentinels in %v", err)
	}
	var fe *config.FieldError
	if !errors.As(err, &fe) || fe.Path != "ingest.kafka.brokers" {
		t.Errorf("errors.As(*FieldError) = %+v, want the first path", fe)
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  any
		want string // "" for valid
	}{
		{name: "valid config", cfg: &serviceConfig{
			Ingest:   ingestConfig{Kafka: kafkaConfig{Brokers: []string{"k:9092"}, Timeout: 1}},
			Detector: &detectorConfig{common: common{Tenant: "t"}, NoTag: webhook{URL: "u"}, Skipped: webhook{URL: "u"}},
		}},
		{name: "error of the root has no path", cfg: &serviceConfig{
			Ingest: ingestConfig{Kafka: kafkaConfig{Brokers: []string{"k:9092"}, Timeout: 1}},
		}, want: "detector section missing"},
		{name: "struct by value still gets pointer-receiver Validate", cfg: webhook{}, want: "must not be empty"},
		{name: "slice at the root", cfg: []rule{{Threshold: 1}, {Threshold: -1}}, want: "[1].threshold: invalid value: -1, want >= 1"},
		{name: "nil", cfg: nil},
		{name: "nil pointer", cfg: (*serviceConfig)(nil)},
		{name: "no validators", cfg: &struct{ A, B string }{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := config.Validate(tc.cfg)
			if got := fmt.Sprint(err); (err == nil) != (tc.want == "") || err != nil && got != tc.want {
				t.Errorf("Validate = %v, want %q", err, tc.want)
			}
		})
	}
}

type cyclic struct {
	Next *cyclic `yaml:"next"`
}

func TestValidateStopsOnPointerCycles(t *testing.T) {
	c := &cyclic{}
	c.Next = c
	if err := config.Validate(c); err != nil {
		t.Errorf("Validate = %v", err)
	}
}
