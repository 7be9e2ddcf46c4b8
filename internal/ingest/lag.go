package ingest

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"
)

// watchLag measures the group's lag every LagInterval until ctx ends.
//
// Lag is the high watermark minus the group's COMMITTED offset, read from
// the brokers — not from this instance's fetches. A fetch-based figure stops
// changing when a partition stops being consumed, which is exactly when lag
// matters; this one keeps growing with every produced message until the
// partition's rows are acknowledged and committed again.
func (s *Service) watchLag(ctx context.Context, topics []string) {
	transport := &kafka.Transport{}
	defer transport.CloseIdleConnections()
	client := &kafka.Client{Addr: kafka.TCP(s.cfg.Brokers...), Timeout: 10 * time.Second, Transport: transport}
	t := time.NewTicker(s.cfg.LagInterval)
	defer t.Stop()
	for {
		if err := s.measureLag(ctx, client, topics); err != nil && ctx.Err() == nil {
			s.log.Debug("measure consumer lag", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *Service) measureLag(ctx context.Context, client *kafka.Client, topics []string) error {
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: topics})
	if err != nil {
		return fmt.Errorf("metadata: %w", err)
	}
	parts := map[string][]int{}
	reqs := map[string][]kafka.OffsetRequest{}
	for _, t := range md.Topics {
		if t.Error != nil {
			continue
		}
		for _, p := range t.Partitions {
			parts[t.Name] = append(parts[t.Name], p.ID)
			reqs[t.Name] = append(reqs[t.Name], kafka.FirstOffsetOf(p.ID), kafka.LastOffsetOf(p.ID))
		}
	}
	if len(parts) == 0 {
		return nil
	}
	offs, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: reqs})
	if err != nil {
		return fmt.Errorf("list offsets: %w", err)
	}
	committed, err := client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: s.cfg.GroupID, Topics: parts})
	if err != nil {
		return fmt.Errorf("offset fetch: %w", err)
	}
	if committed.Error != nil {
		return fmt.Errorf("offset fetch: %w", committed.Error)
	}
	for topic, ps := range offs.Topics {
		done := map[int]int64{}
		for _, c := range committed.Topics[topic] {
			if c.Error == nil {
				done[c.Partition] = c.CommittedOffset
			}
		}
		for _, p := range ps {
			if p.Error != nil {
				continue
			}
			from, ok := done[p.Partition]
			if !ok || from < p.FirstOffset {
				// Nothing committed yet (-1), or retention deleted past the
				// commit: consumption starts at the first offset.
				from = p.FirstOffset
			}
			s.m.lag.WithLabelValues(topic, strconv.Itoa(p.Partition)).Set(float64(max(p.LastOffset-from, 0)))
		}
	}
	return nil
}
