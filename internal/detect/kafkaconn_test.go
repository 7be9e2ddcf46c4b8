package detect

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"testing"
	"time"
)

// countingConn counts the reads that reach the connection.
type countingConn struct {
	net.Conn
	reads int
}

func (c *countingConn) Read(b []byte) (int, error) {
	c.reads++
	return c.Conn.Read(b)
}

// TestBufferedConn: bytes read in kafka-go's 4 KiB steps through a
// bufferedConn are the bytes sent, with far fewer reads of the connection;
// a read past its deadline times out and loses nothing.
func TestBufferedConn(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	want := make([]byte, 2<<20)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range want {
		want[i] = byte(r.Uint32())
	}
	release := make(chan struct{})
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.Write(want[:1<<20])
		<-release
		c.Write(want[1<<20:])
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	cc := &countingConn{Conn: raw}
	bc := &bufferedConn{Conn: cc, r: bufio.NewReaderSize(cc, readBufferSize)}
	defer bc.Close()
	kafkaSide := bufio.NewReaderSize(bc, 4096) // as kafka-go reads a connection
	got := make([]byte, len(want))
	if _, err := io.ReadFull(kafkaSide, got[:1<<20]); err != nil {
		t.Fatal(err)
	}
	// Nothing more is sent until released: a read past its deadline times
	// out, and the stream continues intact afterwards.
	bc.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if _, err := kafkaSide.Read(got[1<<20 : 1<<20+1]); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past the deadline: err = %v, want a timeout", err)
	}
	bc.SetReadDeadline(time.Time{})
	close(release)
	if _, err := io.ReadFull(kafkaSide, got[1<<20:]); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("bytes read differ from bytes sent")
	}
	// 2 MiB in 4 KiB steps would be 512 reads of the connection unbuffered.
	if cc.reads > 128 {
		t.Errorf("%d reads of the connection for 2 MiB, want far fewer than 512", cc.reads)
	}
	t.Logf("%d reads of the connection for 2 MiB", cc.reads)
}
