# agentaudit — make targets. Downloads (libchdb from npm, Apache Kafka jars from
# Maven Central) are cached in $(AGENTAUDIT_CACHE) (default ~/.cache/agentaudit).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
GO ?= go
export AGENTAUDIT_CACHE ?= $(HOME)/.cache/agentaudit
TEST_FLAGS ?= -count=1 -timeout 25m
TEST_LOG ?= .cache/test.log
CI_FUZZTIME ?= 10s

.PHONY: all build run deps test test-race vet fuzz clickhouse kafka bench-ingest bench-query clean

all: build

build:
	$(GO) build -o bin/ ./cmd/...

## run: the whole system on embedded defaults (embedded Kafka + ClickHouse), data in ./data
run: build
	./bin/agentaudit run -data-dir data

## deps: fetch and verify the embedded engines once (idempotent, cached)
deps:
	@$(GO) run ./internal/chdb/cmd/chdbfetch >/dev/null
	@$(GO) run ./internal/kafkabroker/cmd/kafkabroker fetch >/dev/null
	@bash scripts/fetch-promtool.sh >/dev/null
	@echo "deps cached in $(AGENTAUDIT_CACHE)"

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l cmd internal schema retention deploy)" || { echo "gofmt needed:"; gofmt -l cmd internal schema retention deploy; exit 1; }

## test: vet, then every test against the real engines (ClickHouse 26.7 via libchdb,
## kfake and a real Apache Kafka broker). Full log in $(TEST_LOG).
test: deps vet
	@mkdir -p $(dir $(TEST_LOG))
	@echo "go test $(TEST_FLAGS) ./...  (full log: $(TEST_LOG))"
	@$(GO) test $(TEST_FLAGS) -v ./... 2>&1 | tee $(TEST_LOG) \
	  | grep -aE --line-buffered '^(ok|FAIL|---|panic:|clickhouse:|kafka:|--- FAIL)|^\s+--- FAIL|\[build failed\]|\[setup failed\]|_test\.go:[0-9]+:.*(FAIL|Error|error|panic)' || true
	@bash scripts/test-summary.sh $(TEST_LOG)
	@$(MAKE) --no-print-directory fuzz FUZZTIME=$(CI_FUZZTIME)

test-race: deps
	$(GO) test -race $(TEST_FLAGS) ./...

## fuzz: each fuzz target briefly (FUZZTIME=20s by default)
FUZZTIME ?= 20s
fuzz:
	@for p in ./internal/event/ ./internal/detect/; do \
	  for t in $$($(GO) test -list '^Fuzz' $$p | grep ^Fuzz); do \
	    echo "fuzz $$p $$t for $(FUZZTIME)"; \
	    if out=$$($(GO) test -run='^$$' -fuzz="^$$t$$" -fuzztime=$(FUZZTIME) $$p 2>&1); then \
	      echo "$$out" | tail -3; \
	    else echo "$$out"; exit 1; fi; done; done

## clickhouse: an embedded ClickHouse server in the foreground (native :9000, HTTP :8123)
clickhouse:
	$(GO) run ./cmd/agentaudit clickhouse -path data/clickhouse

## kafka: a real Apache Kafka broker in the foreground on :9092
kafka:
	bash scripts/kafka-broker.sh run -port 9092 -data-dir data/kafka-apache

clean:
	rm -rf bin .cache

## bench-ingest: 1M GenAI spans (250k traces) + 200k audit events preloaded into Kafka,
## ingested into the embedded ClickHouse, 3 runs, then 3 with the tamper-evident log on
## (each ending with 40k live events at 5k/s for the proof lag); medians as name=value lines.
bench-ingest: deps build
	$(GO) run ./internal/ingest/ingestbench -runs 3

## bench-detect: detector latency (attack's Kafka timestamp → signed webhook received by a
## verifying receiver, through the durable outbox) under 20k audit events/s with an attack
## every 100 ms, and max throughput on a preloaded backlog; medians of 3 runs as name=value lines.
.PHONY: bench-detect
bench-detect: deps build
	$(GO) build -o bin/ ./internal/kafkabroker/cmd/kafkabroker
	$(GO) run ./internal/detect/detectbench -runs 3

## bench-query: 10M audit events + 10M spans (100 tenants, 10k agents, 30 days) loaded
## into the embedded ClickHouse (kept in .cache/bench-query between runs), then the query
## API driven over HTTP (keep-alive, 8 in flight); medians of 3 runs as name=value lines.
.PHONY: bench-query
bench-query: deps build
	$(GO) run ./internal/query/querybench -runs 3
