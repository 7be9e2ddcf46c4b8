package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/agentaudit/agentaudit/internal/config"
	"github.com/agentaudit/agentaudit/internal/retention"
	"github.com/agentaudit/agentaudit/internal/store/chstore"
	"github.com/agentaudit/agentaudit/internal/telemetry"
)

const retentionUsage = `usage: agentaudit retention <command> [flags]

commands:
  apply [-policy FILE] [-dry-run] [-allow-below-floor -reason TEXT] [-by WHO]
        make every table's TTL match the policy (default: the shipped policy)
        and the active legal holds; -dry-run prints the DDL instead
  status [-json]
        rows, bytes, oldest/newest row and next move/delete per table and volume
  hold -tenant T [-agent A] -reason TEXT -by WHO
        place a legal hold; returns once the TTLs exclude the held rows
  release -hold-id ID -reason TEXT -by WHO
        lift a legal hold
  holds [-tenant T] [-all] [-json]
        list legal holds (active only unless -all)

Every command also takes the -clickhouse.* and -telemetry.* flags (-h lists them).
`

// retentionConfig is the config of one retention command; action selects
// which flags it registers.
type retentionConfig struct {
	ClickHouse chstore.Config   `yaml:"clickhouse"`
	Telemetry  telemetry.Config `yaml:"telemetry"`

	action          string
	PolicyFile      string `yaml:"policy_file"`
	DryRun          bool   `yaml:"-"`
	AllowBelowFloor bool   `yaml:"-"`
	Reason          string `yaml:"-"`
	By              string `yaml:"-"`
	Tenant          string `yaml:"-"`
	Agent           string `yaml:"-"`
	HoldID          string `yaml:"-"`
	All             bool   `yaml:"-"`
	JSON            bool   `yaml:"-"`
}

func (c *retentionConfig) RegisterFlags(fs *flag.FlagSet) {
	c.ClickHouse.RegisterFlagsWithPrefix("clickhouse.", fs)
	c.Telemetry.RegisterFlagsWithPrefix("telemetry.", "127.0.0.1:0", fs)
	switch c.action {
	case "apply":
		fs.StringVar(&c.PolicyFile, "policy", "", "retention policy YAML (empty: the shipped retention/default.yaml)")
		fs.BoolVar(&c.DryRun, "dry-run", false, "print the DDL that would run and change nothing")
		fs.BoolVar(&c.AllowBelowFloor, "allow-below-floor", false, "apply rules under their class floor (logged and recorded; needs -reason)")
		fs.StringVar(&c.Reason, "reason", "", "why (recorded)")
		fs.StringVar(&c.By, "by", os.Getenv("USER"), "who applies the policy (recorded; default $USER)")
	case "hold":
		fs.StringVar(&c.Tenant, "tenant", "", "tenant to hold (required)")
		fs.StringVar(&c.Agent, "agent", "", "hold only this agent's rows (tables without agent_id: the whole tenant)")
		fs.StringVar(&c.Reason, "reason", "", "why, e.g. the case reference (required, recorded)")
		fs.StringVar(&c.By, "by", "", "who places the hold (required, recorded)")
	case "release":
		fs.StringVar(&c.HoldID, "hold-id", "", "hold to lift (required; see `retention holds`)")
		fs.StringVar(&c.Reason, "reason", "", "why (required, recorded)")
		fs.StringVar(&c.By, "by", "", "who lifts the hold (required, recorded)")
	case "holds":
		fs.StringVar(&c.Tenant, "tenant", "", "only this tenant's holds")
		fs.BoolVar(&c.All, "all", false, "include released holds")
		fs.BoolVar(&c.JSON, "json", false, "print JSON")
	case "status":
		fs.BoolVar(&c.JSON, "json", false, "print JSON")
	}
}

func (c *retentionConfig) Validate() error {
	var errs []error
	required := func(name, v string) {
		if strings.TrimSpace(v) == "" {
			errs = append(errs, config.Field(name, config.ErrRequired))
		}
	}
	switch c.action {
	case "apply":
		if !c.DryRun {
			required("by", c.By)
		}
		if c.AllowBelowFloor {
			required("reason", c.Reason)
		}
	case "hold":
		required("tenant", c.Tenant)
		required("reason", c.Reason)
		required("by", c.By)
	case "release":
		required("hold-id", c.HoldID)
		required("reason", c.Reason)
		required("by", c.By)
	}
	return errors.Join(errs...)
}

func retentionMain(args []string) int {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		fmt.Fprint(os.Stderr, retentionUsage)
		return 2
	}
	cfg := retentionConfig{action: args[0]}
	switch cfg.action {
	case "apply", "status", "hold", "release", "holds":
	default:
		fmt.Fprintf(os.Stderr, "unknown retention command %q\n\n%s", cfg.action, retentionUsage)
		return 2
	}
	log, ok := load(&cfg, args[1:], &cfg.Telemetry)
	if !ok {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Commands that write need the retention tables; a dry run or a read
	// changes nothing, not even the schema.
	if cfg.ClickHouse.Migrate && !cfg.DryRun && cfg.action != "status" && cfg.action != "holds" {
		if _, err := chstore.Migrate(ctx, cfg.ClickHouse, log); err != nil {
			log.Error("migrate", "err", err)
			return 1
		}
	}
	conn, err := chstore.Open(ctx, cfg.ClickHouse)
	if err != nil {
		log.Error("connect", "err", err)
		return 1
	}
	defer conn.Close()
	m, err := retention.New(conn, retention.Options{Database: cfg.ClickHouse.Database, Cluster: cfg.ClickHouse.Cluster, Logger: log})
	if err != nil {
		log.Error("retention", "err", err)
		return 1
	}
	if err := runRetention(ctx, m, cfg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "retention "+cfg.action+":", err)
		return 1
	}
	return 0
}

func runRetention(ctx context.Context, m *retention.Manager, cfg retentionConfig, out io.Writer) error {
	switch cfg.action {
	case "apply":
		p := retention.DefaultPolicy()
		if cfg.PolicyFile != "" {
			b, err := os.ReadFile(cfg.PolicyFile)
			if err != nil {
				return err
			}
			if p, err = retention.ParsePolicy(b); err != nil {
				return fmt.Errorf("%s: %w", cfg.PolicyFile, err)
			}
		}
		res, err := m.Apply(ctx, p, retention.ApplyOptions{DryRun: cfg.DryRun, AllowBelowFloor: cfg.AllowBelowFloor, Actor: cfg.By, Reason: cfg.Reason})
		if res != nil {
			printResult(out, res, cfg.DryRun)
		}
		return err
	case "status":
		st, err := m.Status(ctx)
		if err != nil {
			return err
		}
		if cfg.JSON {
			return writeJSON(out, st)
		}
		printStatus(out, st)
		return nil
	case "hold":
		h, res, err := m.PlaceHold(ctx, retention.HoldRequest{TenantID: cfg.Tenant, AgentID: cfg.Agent, Reason: cfg.Reason, By: cfg.By})
		if res != nil {
			printResult(out, res, false)
		}
		if h.ID != "" {
			fmt.Fprintf(out, "hold %s placed on tenant %s%s\n", h.ID, h.TenantID, agentSuffix(h.AgentID))
		}
		return err
	case "release":
		h, res, err := m.ReleaseHold(ctx, cfg.HoldID, cfg.By, cfg.Reason)
		if res != nil {
			printResult(out, res, false)
		}
		if h.ID != "" {
			fmt.Fprintf(out, "hold %s on tenant %s%s released\n", h.ID, h.TenantID, agentSuffix(h.AgentID))
		}
		return err
	case "holds":
		hs, err := m.Holds(ctx, cfg.Tenant, cfg.All)
		if err != nil {
			return err
		}
		if cfg.JSON {
			return writeJSON(out, hs)
		}
		printHolds(out, hs)
		return nil
	}
	return fmt.Errorf("unknown command %q", cfg.action)
}

func agentSuffix(agent string) string {
	if agent == "" {
		return ""
	}
	return " (agent " + agent + ")"
}

func writeJSON(out io.Writer, v any) error {
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func printResult(out io.Writer, res *retention.Result, dryRun bool) {
	for _, v := range res.FloorOverrides {
		fmt.Fprintf(out, "-- FLOOR OVERRIDE: %s\n", v)
	}
	for _, tr := range res.Tables {
		line := "-- " + tr.Table + ": " + tr.State
		if tr.Note != "" {
			line += " (" + tr.Note + ")"
		}
		fmt.Fprintln(out, line)
		for _, s := range tr.Statements {
			if strings.HasPrefix(s, "--") {
				fmt.Fprintln(out, s)
			} else {
				fmt.Fprintln(out, s+";")
			}
		}
	}
	verb := "changed"
	if dryRun {
		verb = "would change"
	}
	fmt.Fprintf(out, "-- %d tables %s\n", res.Changed, verb)
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func printStatus(out io.Writer, st *retention.Status) {
	policy := "none applied (no TTL deletes data)"
	if st.PolicyApplied {
		policy = "applied"
	}
	fmt.Fprintf(out, "retention status at %s; policy: %s; active legal holds: %d\n\n", fmtTime(st.At), policy, len(st.Holds))
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "TABLE\tVOLUME\tDISK\tPARTS\tROWS\tBYTES\tOLDEST\tNEWEST\tNEXT MOVE DUE\tNEXT DELETE DUE\tNOTE")
	for _, t := range st.Tables {
		if !t.Exists || len(t.Volumes) == 0 {
			note := t.Note
			if note == "" {
				note = "no rows"
			}
			fmt.Fprintf(w, "%s\t-\t-\t0\t0\t0\t-\t-\t-\t-\t%s\n", t.Table, note)
			continue
		}
		for _, v := range t.Volumes {
			fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\t%s\t%s\n", t.Table, v.Volume, v.Disk, v.Parts, v.Rows, v.Bytes,
				fmtTime(v.Oldest), fmtTime(v.Newest), fmtTime(v.NextMoveDue), fmtTime(v.NextDeleteDue))
		}
	}
	w.Flush()
	fmt.Fprintln(out)
	for _, t := range st.Tables {
		if t.Exists {
			ttl := t.TTL
			if ttl == "" {
				ttl = "(none)"
			}
			fmt.Fprintf(out, "%s TTL: %s\n", t.Table, ttl)
		}
	}
	if len(st.Holds) > 0 {
		fmt.Fprintln(out)
		printHolds(out, st.Holds)
	}
}

func printHolds(out io.Writer, hs []retention.Hold) {
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "HOLD ID\tTENANT\tAGENT\tPLACED BY\tPLACED AT\tREASON\tRELEASED")
	for _, h := range hs {
		agent := h.AgentID
		if agent == "" {
			agent = "(all)"
		}
		released := "-"
		if h.Released {
			released = fmt.Sprintf("%s by %s: %s", fmtTime(h.ReleasedAt), h.ReleasedBy, h.ReleaseReason)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", h.ID, h.TenantID, agent, h.PlacedBy, fmtTime(h.PlacedAt), h.Reason, released)
	}
	w.Flush()
}
