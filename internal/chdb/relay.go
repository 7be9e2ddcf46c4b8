package chdb

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"
)

// relay fronts one of the engine's ports. libchdb's server terminates the
// whole engine (std::terminate on an uncaught NetException "Connection reset
// by peer") when a client's connection is reset, which is what the kernel
// does when a client process is SIGKILLed with unread data in its socket.
// A client that merely closes (FIN) is handled. The relay passes bytes
// through unchanged but never lets a reset reach the engine: when the client
// side ends, for any reason, it half-closes the engine side and drains it
// until the engine closes, so the engine only ever sees an orderly EOF.
// Production ClickHouse servers have no such problem and no relay.
type relay struct {
	ln     net.Listener
	target string
	log    *slog.Logger
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

func startRelay(listen, target string, log *slog.Logger) (*relay, error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, err
	}
	r := &relay{ln: ln, target: target, log: log, conns: map[net.Conn]struct{}{}}
	r.wg.Add(1)
	go r.accept()
	return r, nil
}

func (r *relay) accept() {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		r.wg.Add(1)
		go r.serve(c.(*net.TCPConn))
	}
}

func (r *relay) track(c net.Conn, add bool) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if add {
		if r.closed {
			return false
		}
		r.conns[c] = struct{}{}
	} else {
		delete(r.conns, c)
	}
	return true
}

func (r *relay) serve(client *net.TCPConn) {
	defer r.wg.Done()
	defer client.Close()
	d, err := net.DialTimeout("tcp", r.target, 5*time.Second)
	if err != nil {
		return
	}
	engine := d.(*net.TCPConn)
	if !r.track(client, true) {
		engine.Close()
		return
	}
	defer r.track(client, false)
	done := make(chan struct{})
	go func() {
		// engine → client until the engine closes; write errors (client
		// gone) only stop forwarding, the engine side is still drained.
		_, _ = io.Copy(&discardOnError{w: client}, engine)
		_ = client.CloseWrite()
		close(done)
	}()
	// client → engine until the client ends (EOF or reset), then an
	// orderly half-close towards the engine.
	_, _ = io.Copy(engine, client)
	_ = engine.CloseWrite()
	select {
	case <-done:
	case <-time.After(5 * time.Minute):
	}
	engine.Close()
}

// close stops accepting and ends client connections (their engine sides are
// still closed in order).
func (r *relay) close() {
	r.mu.Lock()
	r.closed = true
	for c := range r.conns {
		_ = c.Close()
	}
	r.mu.Unlock()
	_ = r.ln.Close()
	r.wg.Wait()
}

// discardOnError forwards writes until the first error, then swallows them.
type discardOnError struct {
	w      io.Writer
	failed bool
}

func (d *discardOnError) Write(p []byte) (int, error) {
	if !d.failed {
		if _, err := d.w.Write(p); err != nil {
			d.failed = true
		}
	}
	return len(p), nil
}
