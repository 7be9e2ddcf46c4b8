// Package chtest gives tests a real ClickHouse server: one per test binary,
// a fresh database per test.
//
// Use it from TestMain:
//
//	func TestMain(m *testing.M) { chtest.Main(m) }
//
// By default the server runs in a child process: the test binary re-executes
// itself in server mode, so no separate build is needed and a test can kill
// its own servers. AGENTAUDIT_TEST_CLICKHOUSE=host:port uses a server that is
// already running instead.
package chtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/agentaudit/agentaudit/internal/chdb"
)

const childEnv = "AGENTAUDIT_CHTEST_SERVE"

var shared struct {
	addr    string
	version string
}

// Main runs the tests with a shared server and exits.
func Main(m interface{ Run() int }) {
	if os.Getenv(childEnv) == "1" {
		os.Exit(chdb.ServeMain(os.Args[1:], os.Stderr))
	}
	os.Exit(run(m))
}

func run(m interface{ Run() int }) int {
	ctx := context.Background()
	if fuzzWorker() {
		// A fuzz worker runs fuzz inputs only, never a test that needs
		// the server: starting one per worker would take most of a short
		// fuzzing run.
		return m.Run()
	}
	if addr := os.Getenv("AGENTAUDIT_TEST_CLICKHOUSE"); addr != "" {
		shared.addr = addr
	} else {
		dir, err := os.MkdirTemp("", "agentaudit-chtest-")
		if err != nil {
			fmt.Fprintln(os.Stderr, "chtest:", err)
			return 1
		}
		defer os.RemoveAll(dir)
		p, err := StartChild(ctx, dir)
		if err != nil {
			fmt.Fprintln(os.Stderr, "chtest: start clickhouse:", err)
			return 1
		}
		defer func() {
			sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			if err := p.Stop(sctx); err != nil {
				fmt.Fprintln(os.Stderr, "chtest: stop clickhouse:", err)
			}
		}()
		shared.addr = p.Addr()
	}
	v, err := serverVersion(ctx, shared.addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "chtest: clickhouse version:", err)
		return 1
	}
	shared.version = v
	fmt.Printf("clickhouse: server version %s at %s\n", v, shared.addr)
	return m.Run()
}

// fuzzWorker reports whether this process is a fuzzing worker (go test
// -fuzz starts them with -test.fuzzworker).
func fuzzWorker() bool {
	for _, a := range os.Args[1:] {
		if a == "-test.fuzzworker" || strings.HasPrefix(a, "-test.fuzzworker=") {
			return true
		}
	}
	return false
}

// StartChild starts a server in a child process (this test binary in server
// mode) on dataDir. Only valid in a binary whose TestMain calls Main.
func StartChild(ctx context.Context, dataDir string) (*chdb.Process, error) {
	return StartChildOn(ctx, dataDir, 0, 0)
}

// StartChildOn is StartChild on given ports (0: free port), e.g. to restart
// a server where its clients expect it.
func StartChildOn(ctx context.Context, dataDir string, tcpPort, httpPort int) (*chdb.Process, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	return chdb.StartProcess(ctx, chdb.Options{DataDir: dataDir, TCPPort: tcpPort, HTTPPort: httpPort}, []string{exe}, []string{childEnv + "=1"})
}

func serverVersion(ctx context.Context, addr string) (string, error) {
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{addr}})
	if err != nil {
		return "", err
	}
	defer conn.Close()
	var v string
	err = conn.QueryRow(ctx, "SELECT version()").Scan(&v)
	return v, err
}

// Addr is the shared server's native address.
func Addr() string { return shared.addr }

// Version is the shared server's version.
func Version() string { return shared.version }

// Database creates a fresh database for the test, dropped when it ends, and
// returns its name and a connection whose default database it is.
func Database(t testing.TB) (driver.Conn, string) {
	t.Helper()
	if shared.addr == "" {
		t.Fatal("chtest: no server; call chtest.Main from TestMain")
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := "t_" + sanitize(t.Name()) + "_" + hex.EncodeToString(b)
	ctx := context.Background()
	admin := Open(t, "default")
	if err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		if t.Failed() && os.Getenv("AGENTAUDIT_TEST_KEEP_DB") != "" {
			t.Logf("keeping database %s", name)
			return
		}
		_ = admin.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" SYNC")
	})
	return Open(t, name), name
}

// Open connects to the shared server with the given default database.
func Open(t testing.TB, database string) driver.Conn {
	t.Helper()
	conn, err := clickhouse.Open(&clickhouse.Options{
		Addr:         []string{shared.addr},
		Auth:         clickhouse.Auth{Database: database},
		DialTimeout:  5 * time.Second,
		MaxOpenConns: 8,
	})
	if err != nil {
		t.Fatalf("open clickhouse: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// TempDir is a data directory for a server a test starts itself.
func TempDir(t testing.TB) string {
	t.Helper()
	return filepath.Join(t.TempDir(), "clickhouse")
}

func sanitize(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
		if b.Len() >= 40 {
			break
		}
	}
	return b.String()
}
