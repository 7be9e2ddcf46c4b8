package ingest

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"
)

// ensureDeadLetterTopics creates the dead-letter topics when missing, so a
// broker without topic auto-creation does not stall the first bad message.
// Failure is logged, not fatal: the writer retries and the topic may be
// created by an operator.
func (s *Service) ensureDeadLetterTopics(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	client := &kafka.Client{Addr: kafka.TCP(s.cfg.Brokers...), Timeout: 10 * time.Second}
	var topics []kafka.TopicConfig
	for t := range s.codecs {
		topics = append(topics, kafka.TopicConfig{Topic: t + s.cfg.DeadLetterSuffix, NumPartitions: 1, ReplicationFactor: -1})
	}
	resp, err := client.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: topics})
	if err != nil {
		s.log.Warn("create dead-letter topics", "err", err)
		return
	}
	for t, terr := range resp.Errors {
		if terr != nil && !errors.Is(terr, kafka.TopicAlreadyExists) {
			s.log.Warn("create dead-letter topic", "dead_letter_topic", t, "err", fmt.Sprint(terr))
		}
	}
}
