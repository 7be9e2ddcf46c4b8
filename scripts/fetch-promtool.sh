#!/usr/bin/env bash
# Fetch promtool (Prometheus' rule and config checker) into the cache and
# print its path. Used by internal/deploycheck's tests; idempotent.
#
#   scripts/fetch-promtool.sh            print the path, fetching once
#
# Only package registries are reachable here, so promtool comes from one of:
#   debian  the Debian package `prometheus` (apt-get download, ~19 MB, ~2 s;
#           Prometheus 2.42 on bookworm), unpacked with dpkg-deb;
#   go      `go install github.com/prometheus/prometheus/cmd/promtool@$PROMTOOL_GO_VERSION`
#           through the Go module proxy in a throw-away module: ~300 MB of
#           modules (Kubernetes and cloud SDKs for service discovery), and
#           the compile had not finished after 46 min (niced, on the shared
#           2-core machine at load 25); a fallback only.
# PROMTOOL_METHOD=auto (default) tries debian, then go. The binary is cached
# in $AGENTAUDIT_CACHE/promtool/<method>-<version>/ (default ~/.cache/agentaudit).
set -euo pipefail

cache=${AGENTAUDIT_CACHE:-$HOME/.cache/agentaudit}/promtool
method=${PROMTOOL_METHOD:-auto}
go_version=${PROMTOOL_GO_VERSION:-v0.316.0}

log() { echo "fetch-promtool: $*" >&2; }

from_debian() {
	command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null || { log "no apt-get/dpkg-deb"; return 1; }
	local tmp
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' RETURN
	chmod 755 "$tmp"
	if ! (cd "$tmp" && apt-get download -q prometheus >/dev/null 2>&1); then
		# A fresh machine may have no package lists yet.
		if [ "$(id -u)" = 0 ]; then
			log "apt-get download failed; running apt-get update"
			apt-get update -qq >/dev/null 2>&1 || true
		fi
		(cd "$tmp" && apt-get download -q prometheus >/dev/null 2>&1) || { log "apt-get download prometheus failed"; return 1; }
	fi
	local deb version dir
	deb=$(ls "$tmp"/prometheus_*.deb)
	version=$(dpkg-deb -f "$deb" Version)
	dir=$cache/debian-${version//[^A-Za-z0-9._-]/_}
	if [ ! -x "$dir/promtool" ]; then
		dpkg-deb -x "$deb" "$tmp/x"
		mkdir -p "$dir"
		install -m 0755 "$tmp/x/usr/bin/promtool" "$dir/promtool.tmp"
		mv "$dir/promtool.tmp" "$dir/promtool"
	fi
	echo "$dir/promtool"
}

from_go() {
	command -v go >/dev/null || { log "no go"; return 1; }
	local dir=$cache/go-$go_version tmp
	if [ ! -x "$dir/promtool" ]; then
		tmp=$(mktemp -d)
		trap 'rm -rf "$tmp"' RETURN
		log "go install promtool@$go_version (slow: compiles Prometheus)"
		(cd "$tmp" && go mod init promtool-fetch >/dev/null 2>&1 &&
			GOFLAGS=-mod=mod GOBIN="$tmp/bin" go install "github.com/prometheus/prometheus/cmd/promtool@$go_version") >&2
		mkdir -p "$dir"
		mv "$tmp/bin/promtool" "$dir/promtool"
	fi
	echo "$dir/promtool"
}

cached() {
	local p
	for p in "$cache"/"$1"-*/promtool; do
		if [ -x "$p" ]; then echo "$p"; return 0; fi
	done
	return 1
}

case $method in
auto) cached debian || cached go || from_debian || from_go ;;
debian) cached debian || from_debian ;;
go) [ -x "$cache/go-$go_version/promtool" ] && echo "$cache/go-$go_version/promtool" || from_go ;;
*) log "PROMTOOL_METHOD=$method: want auto, debian or go"; exit 2 ;;
esac
