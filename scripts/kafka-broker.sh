#!/usr/bin/env bash
# Apache Kafka broker for development and CI, from Maven Central jars.
# The version and artifact list live in Go (internal/kafkabroker/fetch.go);
# this script only forwards to internal/kafkabroker/cmd/kafkabroker.
#
#   scripts/kafka-broker.sh fetch            prefetch jars into $AGENTAUDIT_CACHE (default ~/.cache/agentaudit)
#   scripts/kafka-broker.sh run [-port 9092] [-data-dir DIR] [-kind apache|kfake]
#                                            run a broker until Ctrl-C (prints its address)
#   scripts/kafka-broker.sh version          print the Kafka version and Maven artifacts
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -eq 0 ]; then
	sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
	exit 2
fi
exec go run ./internal/kafkabroker/cmd/kafkabroker "$@"
