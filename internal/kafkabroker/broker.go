// Package kafkabroker provides Kafka brokers for tests and for the embedded
// (all-in-one) mode: an in-process kfake cluster (StartFake) and a real
// Apache Kafka broker in KRaft mode, assembled from Maven Central artifacts
// and run as a child JVM (StartApache).
//
// Both are returned as a *Broker, so a test suite can run the same closure
// against either and prove that what passes against the fake also holds
// against the real thing.
package kafkabroker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
)

// Kind values reported by Broker.Kind (the Apache kind carries its version).
const (
	KindFake   = "kfake"
	KindApache = "apache-kafka"
)

// ErrClosed is returned by Broker methods called after Close.
var ErrClosed = errors.New("kafka broker closed")

// Broker is a running Kafka broker (fake or real) reachable on loopback.
// It is safe for concurrent use.
type Broker struct {
	addr    string
	kind    string
	version string
	logPath string

	mu     sync.Mutex
	closed bool
	stop   func() error // stops the broker and releases its resources
	err    error        // result of stop, returned by every Close
}

// Addr returns the bootstrap address (host:port) to give Kafka clients.
func (b *Broker) Addr() string { return b.addr }

// Kind describes the broker: "kfake" or "apache-kafka <version>".
func (b *Broker) Kind() string {
	if b.kind == KindApache {
		return b.kind + " " + b.version
	}
	return b.kind
}

// Version is the broker's version: the Apache Kafka release read from the
// kafka-clients jar the broker runs (e.g. "4.4.0"), or the kfake module
// version.
func (b *Broker) Version() string { return b.version }

// LogPath is the file the Apache broker logs to (in its data directory,
// removed by Close unless ApacheOptions.DataDir was set); "" for kfake.
func (b *Broker) LogPath() string { return b.logPath }

// Close stops the broker and removes what it created. It is idempotent; every
// call returns the result of the first.
func (b *Broker) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.closed {
		b.closed = true
		b.err = b.stop()
	}
	return b.err
}

func (b *Broker) isClosed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closed
}

// CreateTopic creates a topic with the given number of partitions
// (replication factor 1) and waits until every partition has a leader, so a
// producer can write to it as soon as CreateTopic returns. If the topic
// already exists with the same number of partitions, CreateTopic returns nil.
// Without a deadline on ctx, it gives up after 30 seconds.
func (b *Broker) CreateTopic(ctx context.Context, name string, partitions int) error {
	if b.isClosed() {
		return ErrClosed
	}
	return createTopic(ctx, b.addr, name, partitions)
}

func createTopic(ctx context.Context, addr, name string, partitions int) error {
	if partitions < 1 {
		return fmt.Errorf("create topic %s: partitions must be at least 1, got %d", name, partitions)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
	}
	deadline, _ := ctx.Deadline()

	// kafka-go's Conn API talks to one broker without background goroutines,
	// which keeps goleak quiet; CreateTopics must go to the controller (the
	// KRaft broker forwards it to the active controller).
	var d kafka.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("create topic %s: dial %s: %w", name, addr, err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(deadline); err != nil {
		return fmt.Errorf("create topic %s: %w", name, err)
	}
	ctrl, err := conn.Controller()
	if err != nil {
		return fmt.Errorf("create topic %s: find controller: %w", name, err)
	}
	ctrlAddr := net.JoinHostPort(ctrl.Host, strconv.Itoa(ctrl.Port))
	cc, err := d.DialContext(ctx, "tcp", ctrlAddr)
	if err != nil {
		return fmt.Errorf("create topic %s: dial controller %s: %w", name, ctrlAddr, err)
	}
	defer cc.Close()
	if err := cc.SetDeadline(deadline); err != nil {
		return fmt.Errorf("create topic %s: %w", name, err)
	}
	// Conn.CreateTopics treats "topic already exists" as success; the
	// partition count is checked below.
	err = cc.CreateTopics(kafka.TopicConfig{Topic: name, NumPartitions: partitions, ReplicationFactor: 1})
	if err != nil {
		return fmt.Errorf("create topic %s: %w", name, err)
	}
	return waitForLeaders(ctx, conn, name, partitions)
}

// waitForLeaders polls metadata until all partitions of topic have a leader.
func waitForLeaders(ctx context.Context, conn *kafka.Conn, topic string, partitions int) error {
	for {
		ps, err := conn.ReadPartitions(topic)
		ready := 0
		for _, p := range ps {
			if p.Error == nil && p.Leader.Host != "" {
				ready++
			}
		}
		switch {
		case err == nil && len(ps) > 0 && len(ps) != partitions:
			return fmt.Errorf("create topic %s: exists with %d partitions, want %d", topic, len(ps), partitions)
		case err == nil && ready == partitions:
			return nil
		}
		select {
		case <-ctx.Done():
			if err == nil {
				err = fmt.Errorf("%d of %d partitions have a leader", ready, partitions)
			}
			return fmt.Errorf("create topic %s: wait for leaders: %w (last: %v)", topic, ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
