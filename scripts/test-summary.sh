#!/usr/bin/env bash
# Summarise a `go test -v` log: counts of passed/failed/skipped tests and the
# verdict per package. Exits non-zero on any failure (or a build failure).
set -euo pipefail
log=${1:?usage: test-summary.sh LOG}
pass=$(grep -acE '^\s*--- PASS' "$log" || true)
fail=$(grep -acE '^\s*--- FAIL' "$log" || true)
skip=$(grep -acE '^\s*--- SKIP' "$log" || true)
pkgfail=$(grep -acE '^FAIL\s|^FAIL$|\[build failed\]|\[setup failed\]' "$log" || true)
if [ "$skip" -gt 0 ]; then
	echo "skipped tests:"; grep -aE '^\s*--- SKIP' "$log"
fi
echo "tests: ${pass} passed, ${fail} failed, ${skip} skipped"
echo "${pass} passed, ${fail} failed"
if [ "$fail" -gt 0 ] || [ "$pkgfail" -gt 0 ]; then
	echo "FAILED (see $log)"; exit 1
fi
if [ "$skip" -gt 0 ] && [ "${CI:-}" = "true" ]; then
	echo "FAILED: tests were skipped in CI"; exit 1
fi
if [ "$pass" -eq 0 ]; then
	echo "no test ran"; exit 1
fi
