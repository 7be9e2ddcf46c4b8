# syntax=docker/dockerfile:1
#
# One image for every agentaudit service: docker-compose.yml runs it three
# times (ingest, detector, query) with a different entrypoint. Build context:
# the repository root. internal/deploycheck checks that every COPY source
# below exists and is not excluded by .dockerignore, and that the builder's
# Go version is the one go.mod asks for.

FROM golang:1.26-bookworm AS build
WORKDIR /src
# Dependencies first: this layer is reused until go.mod or go.sum change.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY cmd ./cmd
COPY internal ./internal
COPY schema ./schema
COPY retention ./retention
COPY deploy/healthcheck ./deploy/healthcheck
# Static binaries (no cgo: the embedded ClickHouse of the all-in-one binary
# is loaded through purego, not linked). ./cmd/... builds every service
# main, plus the healthcheck probe: distroless has no shell, curl or wget.
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/ ./cmd/... ./deploy/healthcheck

# Runtime: no shell, no package manager, runs as uid 65532.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/ /usr/local/bin/
USER nonroot:nonroot
ENTRYPOINT ["/usr/local/bin/ingest"]
