package chdb

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/ebitengine/purego"
)

// ErrEngineInUse is returned when a second in-process engine is asked for:
// libchdb holds process-wide state (one ClickHouse "main" per process).
var ErrEngineInUse = errors.New("chdb: an in-process engine was already started in this process (only one per process; use a child process)")

// engineOnce guards the process-wide engine. This is the one piece of global
// state in the package, and it mirrors a real constraint of the library.
var engineUsed sync.Mutex
var engineStarted bool

type engineLib struct {
	queryCmdline   func(argc int32, argv **byte) uintptr
	resultError    func(res uintptr) *byte
	destroyResult  func(res uintptr)
	setSigHandlers func(enabled bool)
}

func loadEngine(path string) (*engineLib, error) {
	h, err := purego.Dlopen(path, purego.RTLD_NOW|purego.RTLD_GLOBAL)
	if err != nil {
		return nil, fmt.Errorf("chdb: load %s: %w", path, err)
	}
	var lib engineLib
	for name, fp := range map[string]any{
		"chdb_query_cmdline":               &lib.queryCmdline,
		"chdb_result_error":                &lib.resultError,
		"chdb_destroy_query_result":        &lib.destroyResult,
		"chdb_set_signal_handlers_enabled": &lib.setSigHandlers,
	} {
		sym, err := purego.Dlsym(h, name)
		if err != nil {
			return nil, fmt.Errorf("chdb: %s lacks %s (not the pinned build?): %w", path, name, err)
		}
		purego.RegisterFunc(fp, sym)
	}
	return &lib, nil
}

// StartInProcess loads libchdb into this process and runs the server on a
// dedicated OS thread. At most one per process, ever.
//
// ClickHouse's own signal handlers are disabled before the engine starts:
// with them installed, a Go nil-pointer panic (raised from SIGSEGV) would
// kill the whole process instead of being recoverable.
func StartInProcess(ctx context.Context, o Options) (*Server, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	engineUsed.Lock()
	if engineStarted {
		engineUsed.Unlock()
		return nil, ErrEngineInUse
	}
	engineStarted = true
	engineUsed.Unlock()

	path, err := LibraryPath(ctx, o.CacheDir, o.Logger)
	if err != nil {
		return nil, err
	}
	lib, err := loadEngine(path)
	if err != nil {
		return nil, err
	}
	lib.setSigHandlers(false)

	// The engine listens on private loopback ports behind relays on the
	// public ones (see relay.go for why).
	public := o
	for _, p := range []*int{&o.TCPPort, &o.HTTPPort} {
		if *p, err = FreePort(); err != nil {
			return nil, err
		}
	}
	engineTCP := fmt.Sprintf("127.0.0.1:%d", o.TCPPort)
	tcpRelay, err := startRelay(fmt.Sprintf("127.0.0.1:%d", public.TCPPort), engineTCP, o.Logger)
	if err != nil {
		return nil, fmt.Errorf("chdb: listen on native port %d: %w", public.TCPPort, err)
	}
	httpRelay, err := startRelay(fmt.Sprintf("127.0.0.1:%d", public.HTTPPort), fmt.Sprintf("127.0.0.1:%d", o.HTTPPort), o.Logger)
	if err != nil {
		tcpRelay.close()
		return nil, fmt.Errorf("chdb: listen on HTTP port %d: %w", public.HTTPPort, err)
	}

	qid := newQueryID()
	args, err := engineArgs(o, qid)
	if err != nil {
		tcpRelay.close()
		httpRelay.close()
		return nil, err
	}
	s := &Server{
		tcpAddr:  fmt.Sprintf("127.0.0.1:%d", public.TCPPort),
		httpAddr: fmt.Sprintf("127.0.0.1:%d", public.HTTPPort),
		dataDir:  o.DataDir,
		queryID:  qid,
		done:     make(chan struct{}),
	}
	var stopping sync.Mutex
	requested := false
	go func() {
		runtime.LockOSThread() // the engine runs its main on this thread until stopped
		err := runEngine(lib, args)
		stopping.Lock()
		if requested && err != nil && isKilled(err) {
			err = nil
		}
		if err == nil && !requested {
			err = errors.New("chdb: engine returned without being stopped")
		}
		stopping.Unlock()
		s.err = err
		tcpRelay.close()
		httpRelay.close()
		close(s.done)
	}()
	s.stop = func(ctx context.Context) error {
		stopping.Lock()
		requested = true
		stopping.Unlock()
		select {
		case <-s.done:
			return s.err
		default:
		}
		if err := killEngineQuery(ctx, engineTCP, qid); err != nil {
			return fmt.Errorf("chdb: stop engine: %w", err)
		}
		select {
		case <-s.done:
			return s.err
		case <-ctx.Done():
			return fmt.Errorf("chdb: stop engine: %w", ctx.Err())
		}
	}
	o.Logger.Info("starting in-process ClickHouse", "tcp", s.tcpAddr, "http", s.httpAddr, "data_dir", o.DataDir)
	if err := waitReady(ctx, s, o.StartTimeout); err != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = s.stop(sctx)
		return nil, err
	}
	return s, nil
}

func runEngine(lib *engineLib, args []string) error {
	cargs := make([][]byte, len(args))
	argv := make([]*byte, len(args)+1)
	for i, a := range args {
		cargs[i] = append([]byte(a), 0)
		argv[i] = &cargs[i][0]
	}
	res := lib.queryCmdline(int32(len(args)), &argv[0])
	runtime.KeepAlive(cargs)
	runtime.KeepAlive(argv)
	if res == 0 {
		return errors.New("chdb: engine returned no result")
	}
	defer lib.destroyResult(res)
	if msg := goString(lib.resultError(res)); msg != "" {
		return fmt.Errorf("chdb: engine: %s", msg)
	}
	return nil
}

func isKilled(err error) bool {
	s := err.Error()
	return strings.Contains(s, "QUERY_WAS_CANCELLED") || strings.Contains(s, "cancelled") || strings.Contains(s, "killed")
}

func goString(p *byte) string {
	if p == nil {
		return ""
	}
	var n int
	for *(*byte)(unsafe.Add(unsafe.Pointer(p), n)) != 0 {
		n++
	}
	return string(unsafe.Slice(p, n))
}
