#!/usr/bin/env bash
# The project's test command (see README): sets up what the tests need
# (scripts/setup.sh), then runs every test of the workspace, the PostgreSQL,
# Redis and real-core ones included, then the browser suite
# (scripts/browser-tests.sh: Playwright and Debian's chromium against the
# real binaries). TEST_DATABASE_URL / TEST_REDIS_URL / V2RAY_BIN point
# elsewhere when set. Arguments go to nextest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export TEST_DATABASE_URL="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
export TEST_REDIS_URL="${TEST_REDIS_URL:-redis://127.0.0.1:6379}"
if [ -z "${V2RAY_BIN:-}" ] && command -v v2ray >/dev/null 2>&1; then
  V2RAY_BIN="$(command -v v2ray)"
  export V2RAY_BIN
fi
status=0
cargo nextest run --workspace --all-features --no-fail-fast --status-level pass "$@" || status=$?
bash scripts/browser-tests.sh || status=$?
exit "$status"
