package chdb

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
)

// Options describe one server.
type Options struct {
	// DataDir holds the databases; data persists there across restarts.
	// Required.
	DataDir string
	// TCPPort and HTTPPort: 0 picks a free loopback port.
	TCPPort  int
	HTTPPort int
	// CacheDir is where libchdb is cached; default CacheDir().
	CacheDir string
	// StartTimeout bounds the wait until the server answers a ping
	// (default 60s: the first load of the 566 MB library is slow on a cold
	// page cache).
	StartTimeout time.Duration
	// ExtraConfig is XML inserted into the server config's <clickhouse>
	// element, after the storage configuration.
	ExtraConfig string
	Logger      *slog.Logger
}

func (o *Options) defaults() error {
	if o.DataDir == "" {
		return errors.New("chdb: DataDir is required")
	}
	abs, err := filepath.Abs(o.DataDir)
	if err != nil {
		return fmt.Errorf("chdb: data dir: %w", err)
	}
	o.DataDir = abs
	if o.CacheDir == "" {
		o.CacheDir = CacheDir()
	}
	if o.StartTimeout == 0 {
		o.StartTimeout = 60 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	for _, p := range []*int{&o.TCPPort, &o.HTTPPort} {
		if *p == 0 {
			free, err := FreePort()
			if err != nil {
				return err
			}
			*p = free
		}
	}
	return nil
}

// FreePort asks the kernel for a free loopback TCP port.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Storage policy names shipped with every embedded server (and in the
// docker-compose ClickHouse config): data lands on the hot volume and
// retention TTLs move it to cold.
const (
	StoragePolicy = "tiered"
	HotVolume     = "hot"
	ColdVolume    = "cold"
)

// serverConfig is the server-style XML config handed to the engine: a hot and
// a cold disk under the data directory and the tiered policy over them.
func serverConfig(dataDir, extra string) string {
	return `<clickhouse>
  <logger><level>warning</level><log>` + filepath.Join(dataDir, "log", "clickhouse.log") + `</log><errorlog>` + filepath.Join(dataDir, "log", "clickhouse.err.log") + `</errorlog><size>50M</size><count>2</count><console>0</console></logger>
  <shutdown_wait_unfinished>30</shutdown_wait_unfinished>
  <storage_configuration>
    <disks>
      <hot><path>` + filepath.Join(dataDir, "disks", "hot") + `/</path></hot>
      <cold><path>` + filepath.Join(dataDir, "disks", "cold") + `/</path></cold>
    </disks>
    <policies>
      <` + StoragePolicy + `>
        <volumes>
          <` + HotVolume + `><disk>hot</disk></` + HotVolume + `>
          <` + ColdVolume + `><disk>cold</disk></` + ColdVolume + `>
        </volumes>
        <move_factor>0</move_factor>
      </` + StoragePolicy + `>
    </policies>
  </storage_configuration>
  
` + extra + `
</clickhouse>
`
}

// engineArgs builds the clickhouse-local command line that turns the library
// into a server: listeners are started by the first statements and live for
// as long as the last, long-running statement runs. Killing that statement
// (by its query id) stops the server.
func engineArgs(o Options, queryID string) ([]string, error) {
	for _, d := range []string{o.DataDir, filepath.Join(o.DataDir, "log"), filepath.Join(o.DataDir, "disks", "hot"), filepath.Join(o.DataDir, "disks", "cold")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("chdb: create %s: %w", d, err)
		}
	}
	cfg := filepath.Join(o.DataDir, "agentaudit-server.xml")
	if err := os.WriteFile(cfg, []byte(serverConfig(o.DataDir, o.ExtraConfig)), 0o644); err != nil {
		return nil, fmt.Errorf("chdb: write config: %w", err)
	}
	return []string{
		"clickhouse",
		"--config-file=" + cfg,
		"--path=" + filepath.Join(o.DataDir, "db"),
		"--tcp_port=" + strconv.Itoa(o.TCPPort),
		"--http_port=" + strconv.Itoa(o.HTTPPort),
		"--listen_host=127.0.0.1",
		// clickhouse-local ignores <logger><level> from the config file and
		// logs at trace level (tens of MB per bench run); only the command
		// line sets it.
		"--log-level=warning",
		// Idle client connections notice a shutdown only every poll_interval
		// seconds. With the default (10) the engine's forced-shutdown path,
		// taken after shutdown_wait_unfinished, calls _exit(1) and would take
		// this whole process down with it while clients are still connected.
		"--poll_interval=1",
		"--query_id=" + queryID,
		"--query=SYSTEM START LISTEN TCP; SYSTEM START LISTEN HTTP; " +
			"SELECT sleepEachRow(0.2) FROM system.numbers SETTINGS max_block_size = 1 FORMAT Null",
	}, nil
}

func newQueryID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return "agentaudit-engine-" + hex.EncodeToString(b)
}

// Server is a running ClickHouse server on loopback.
type Server struct {
	tcpAddr  string
	httpAddr string
	dataDir  string
	queryID  string
	done     chan struct{}
	err      error // set before done is closed
	stop     func(ctx context.Context) error
}

// Addr is the native-protocol address (host:port) for clickhouse-go.
func (s *Server) Addr() string { return s.tcpAddr }

// HTTPAddr is the HTTP interface address (host:port).
func (s *Server) HTTPAddr() string { return s.httpAddr }

// DataDir is the directory the server keeps its data in.
func (s *Server) DataDir() string { return s.dataDir }

// Done is closed when the server has stopped, for whatever reason.
func (s *Server) Done() <-chan struct{} { return s.done }

// Err reports why the server stopped; valid after Done is closed. nil after a
// requested Stop.
func (s *Server) Err() error {
	select {
	case <-s.done:
		return s.err
	default:
		return nil
	}
}

// Stop asks the server to stop and waits until it has.
func (s *Server) Stop(ctx context.Context) error { return s.stop(ctx) }

// Options returns clickhouse-go options for this server.
func (s *Server) ClientOptions(database string) *clickhouse.Options {
	return &clickhouse.Options{
		Addr:        []string{s.tcpAddr},
		Auth:        clickhouse.Auth{Database: database, Username: "default"},
		DialTimeout: 2 * time.Second,
	}
}

// waitReady pings the native port until it answers, the server dies, or the
// timeout passes. A dead server is reported at once, never waited out.
func waitReady(ctx context.Context, s *Server, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for {
		select {
		case <-s.done:
			return fmt.Errorf("chdb: server exited during start: %w", s.err)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("chdb: server on %s not ready after %s: %w", s.tcpAddr, timeout, last)
		}
		if last = ping(ctx, s.tcpAddr); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.done:
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func ping(ctx context.Context, addr string) error {
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{addr}, DialTimeout: time.Second})
	if err != nil {
		return err
	}
	defer conn.Close()
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return conn.Ping(pctx)
}

// killEngineQuery stops a server by killing its long-running statement.
func killEngineQuery(ctx context.Context, addr, queryID string) error {
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{addr}, DialTimeout: 2 * time.Second})
	if err != nil {
		return err
	}
	defer conn.Close()
	// queryID is generated by newQueryID (hex only), never user input.
	return conn.Exec(ctx, "KILL QUERY WHERE query_id = '"+queryID+"' ASYNC")
}
