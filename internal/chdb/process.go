package chdb

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// ServeFlags are the flags understood by ServeMain, in the order
// StartProcess passes them.
func serveFlags(o Options) []string {
	return []string{
		"-path", o.DataDir,
		"-tcp-port", strconv.Itoa(o.TCPPort),
		"-http-port", strconv.Itoa(o.HTTPPort),
		"-cache-dir", o.CacheDir,
	}
}

// ServeMain runs an in-process server in the foreground until SIGINT or
// SIGTERM, then stops it cleanly. It is the body of the child process that
// StartProcess launches and of `agentaudit clickhouse`. It returns the exit
// code.
func ServeMain(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("clickhouse", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o Options
	fs.StringVar(&o.DataDir, "path", "data/clickhouse", "data directory (kept across restarts)")
	fs.IntVar(&o.TCPPort, "tcp-port", 9000, "native protocol port on 127.0.0.1 (0 = free port)")
	fs.IntVar(&o.HTTPPort, "http-port", 8123, "HTTP port on 127.0.0.1 (0 = free port)")
	fs.StringVar(&o.CacheDir, "cache-dir", CacheDir(), "download cache for libchdb")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	log := slog.New(slog.NewJSONHandler(stderr, nil))
	o.Logger = log
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Start with a context of its own: a SIGTERM that arrives while the
	// engine is starting is handled below, by a clean stop once it is up.
	s, err := StartInProcess(context.Background(), o)
	if err != nil {
		log.Error("clickhouse did not start", "err", err)
		return 1
	}
	log.Info("clickhouse ready", "tcp", s.Addr(), "http", s.HTTPAddr(), "data_dir", s.DataDir())
	parentGone := watchParent()
	select {
	case <-s.Done():
		log.Error("clickhouse stopped unexpectedly", "err", s.Err())
		return 1
	case <-ctx.Done():
	case <-parentGone:
		log.Warn("parent process is gone; stopping")
	}
	sctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := s.Stop(sctx); err != nil {
		log.Error("clickhouse stop", "err", err)
		return 1
	}
	log.Info("clickhouse stopped")
	return 0
}

const parentPipeEnv = "AGENTAUDIT_CHDB_PARENT_FD"

// watchParent returns a channel closed when the parent that started this
// process with StartProcess exits (its end of the pipe closes); nil (never
// closed) when not started that way.
func watchParent() <-chan struct{} {
	fd := os.Getenv(parentPipeEnv)
	if fd == "" {
		return nil
	}
	n, err := strconv.Atoi(fd)
	if err != nil {
		return nil
	}
	f := os.NewFile(uintptr(n), "parent-pipe")
	gone := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, f)
		close(gone)
	}()
	return gone
}

// Process is a server running in a child process.
type Process struct {
	*Server
	cmd *exec.Cmd
}

// StartProcess runs the server in a child process: command (e.g. the
// agentaudit binary and "clickhouse", or a test binary re-executing itself)
// must run ServeMain with the flags appended. The child's output goes to
// DataDir/log/child.log; its tail is included in start errors.
func StartProcess(ctx context.Context, o Options, command []string, env []string) (*Process, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	if len(command) == 0 {
		return nil, errors.New("chdb: StartProcess needs a command")
	}
	// Fetch and verify the library here, so a missing npm or a bad hash is
	// reported by the parent as such rather than as a dead child.
	if _, err := LibraryPath(ctx, o.CacheDir, o.Logger); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(o.DataDir, "log"), 0o755); err != nil {
		return nil, fmt.Errorf("chdb: create log dir: %w", err)
	}
	logPath := filepath.Join(o.DataDir, "log", "child.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("chdb: open child log: %w", err)
	}
	cmd := exec.Command(command[0], append(append([]string(nil), command[1:]...), serveFlags(o)...)...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	// The child watches the read end of this pipe and stops when it sees
	// EOF, i.e. when this process is gone, however it died. (Pdeathsig is
	// not used: Linux sends it when the forking *thread* exits, not the
	// process, which a Go program does not control.)
	watchR, watchW, err := os.Pipe()
	if err != nil {
		logFile.Close()
		return nil, fmt.Errorf("chdb: pipe: %w", err)
	}
	cmd.ExtraFiles = []*os.File{watchR}
	cmd.Env = append(cmd.Env, parentPipeEnv+"=3")
	if err := cmd.Start(); err != nil {
		logFile.Close()
		watchR.Close()
		watchW.Close()
		return nil, fmt.Errorf("chdb: start child %s: %w", command[0], err)
	}
	watchR.Close()
	s := &Server{
		tcpAddr:  fmt.Sprintf("127.0.0.1:%d", o.TCPPort),
		httpAddr: fmt.Sprintf("127.0.0.1:%d", o.HTTPPort),
		dataDir:  o.DataDir,
		done:     make(chan struct{}),
	}
	var mu sync.Mutex
	requested := false
	go func() {
		werr := cmd.Wait()
		watchW.Close()
		logFile.Close()
		mu.Lock()
		if !requested || werr != nil {
			if werr == nil {
				werr = errors.New("exited with status 0")
			}
			if !requested {
				s.err = fmt.Errorf("chdb: child process pid %d: %w; log %s: %s", cmd.Process.Pid, werr, logPath, logTail(logPath, 1500))
			}
		}
		mu.Unlock()
		close(s.done)
	}()
	s.stop = func(ctx context.Context) error {
		mu.Lock()
		requested = true
		mu.Unlock()
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
			if cmd.ProcessState != nil && !cmd.ProcessState.Success() {
				return fmt.Errorf("chdb: child exited with %s during stop; log %s: %s", cmd.ProcessState, logPath, logTail(logPath, 1500))
			}
			return nil
		case <-ctx.Done():
			_ = cmd.Process.Kill()
			<-s.done
			return fmt.Errorf("chdb: child did not stop in time, killed: %w", ctx.Err())
		}
	}
	p := &Process{Server: s, cmd: cmd}
	o.Logger.Info("starting ClickHouse child process", "pid", cmd.Process.Pid, "tcp", s.tcpAddr, "data_dir", o.DataDir)
	if err := waitReady(ctx, s, o.StartTimeout); err != nil {
		p.Kill()
		return nil, err
	}
	return p, nil
}

// Kill ends the child with SIGKILL, as a crash would, and waits for it.
func (p *Process) Kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// PID of the child process.
func (p *Process) PID() int { return p.cmd.Process.Pid }

func logTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(bytes.TrimSpace(b))
}
