#!/usr/bin/env bash
# The browser suite (tests/browser): Playwright driving Debian's chromium,
# headless, against the real binaries (xray-manager, xray-node-agent with a
# real v2ray core) started on 127.0.0.1 port 0. scripts/test.sh runs it
# after the cargo tests; scripts/setup.sh installs chromium, Node.js and the
# pinned Playwright. Screenshots of every visited page, Playwright's report
# and the traces of failed tests go under target/browser/.
#
# Arguments go to `playwright test` (a spec file, `-g TITLE`, `--headed`).
# With CI=true a missing chromium, Node.js or Playwright fails the run;
# elsewhere it is skipped with a note.
set -euo pipefail
cd "$(dirname "$0")/.."

missing() {
  if [ "${CI:-}" = true ]; then
    echo "browser tests: $1 (scripts/setup.sh installs it)" >&2
    exit 1
  fi
  echo "browser tests SKIPPED: $1 (run scripts/setup.sh)" >&2
  exit 0
}
chromium="${CHROMIUM_BIN:-}"
if [ -z "$chromium" ]; then
  for c in /usr/lib/chromium/chromium /usr/bin/chromium; do
    if [ -x "$c" ]; then chromium=$c; break; fi
  done
fi
[ -n "$chromium" ] || missing "no chromium"
command -v node >/dev/null 2>&1 || missing "no Node.js"
[ -x tests/browser/node_modules/.bin/playwright ] || missing "Playwright is not installed in tests/browser"
if [ -z "${V2RAY_BIN:-}" ]; then
  V2RAY_BIN="$(command -v v2ray || true)"
  [ -n "$V2RAY_BIN" ] || missing "no v2ray"
  export V2RAY_BIN
fi
export CHROMIUM_BIN="$chromium"

# The binaries and the seeding example, built as the cargo tests build them
# (same packages and features: nothing is rebuilt after scripts/test.sh's
# nextest run).
cargo build --workspace --all-features --bins --examples

target_dir="${CARGO_TARGET_DIR:-target}"
case "$target_dir" in /*) ;; *) target_dir="$(pwd)/$target_dir" ;; esac
mkdir -p "$target_dir/browser"
# Each run's screenshots alone (tests renamed or gone leave none behind).
rm -rf "$target_dir/browser/results.json" "$target_dir/browser/screenshots"
cd tests/browser
# Which Playwright drives which chromium (a release is built against one
# chromium; Debian's may move on): printed for when a run breaks.
pw_version=$(node -p 'require("./node_modules/@playwright/test/package.json").version' || echo unknown)
pw_chromium=$(node -p 'require("./node_modules/playwright-core/browsers.json").browsers.find((b) => b.name === "chromium").browserVersion' || echo unknown)
echo "browser tests: Playwright $pw_version (built for chromium $pw_chromium), $("$CHROMIUM_BIN" --version 2>/dev/null || echo "chromium of unknown version")"
# The harness and specs type-check (Playwright itself only strips types).
node_modules/.bin/tsc -p .
status=0
PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 node_modules/.bin/playwright test "$@" || status=$?
# One closing line with the counts, whatever the reporter printed.
node -e '
  const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  const s = r.stats;
  console.log(`browser: ${s.expected} passed, ${s.unexpected} failed, ${s.skipped} skipped`);
' "$target_dir/browser/results.json" || true
exit "$status"
