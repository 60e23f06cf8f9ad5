#!/usr/bin/env python3
"""Slow and idle clients against a real `tla serve`, bounded in count and time.

Two cases, each on a fresh data directory and a server on 127.0.0.1:

- slowloris: one connection sends half a request head and stalls; the server gets
  SIGTERM; how long until it exits (killed after --bound seconds).
- stalled body: the same with a complete head and a body that stops after 12 bytes.
- idle: the server runs with an open-file limit of --nofile (1024, a common default);
  --idle connections (1,100) connect and send nothing; then --probes requests
  GET /healthz on new connections, each given --bound seconds; then SIGTERM.

    python3 bench/slow_clients.py --tla target/release/tla
"""

import argparse
import os
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time


def start(tla, nofile):
    data = tempfile.mkdtemp(prefix="tla-slow-clients.")
    key = f"tla_{secrets.token_hex(6)}_{secrets.token_hex(16)}"
    env = dict(os.environ, TLA_ADMIN_KEY=key, TLA_LOG="info")

    def limit():
        if nofile:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    server = subprocess.Popen(
        [tla, "serve", "--data", data, "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        preexec_fn=limit,
        text=True,
    )
    line = server.stdout.readline()
    if not line.startswith("tla serving on http://"):
        raise SystemExit(f"tla serve did not start: {line!r} {server.stderr.read()}")
    host, port = line.split("http://")[1].split()[0].rsplit(":", 1)
    return server, data, (host, int(port))


def stop(server, data, bound):
    """SIGTERM, then the seconds until exit (None if killed after `bound`)."""
    began = time.monotonic()
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(timeout=bound)
        took = time.monotonic() - began
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
        took = None
    log = server.stderr.read()
    shutil.rmtree(data, ignore_errors=True)
    return took, log


def healthz(address, bound):
    """(status line or error, seconds)."""
    began = time.monotonic()
    try:
        with socket.create_connection(address, timeout=bound) as s:
            s.settimeout(bound)
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            answer = s.recv(4096).decode(errors="replace").split("\r\n")[0]
    except OSError as error:
        answer = f"error: {error.__class__.__name__}"
    return answer or "closed without answer", time.monotonic() - began


def slowloris(args):
    server, data, address = start(args.tla, None)
    stalled = socket.create_connection(address)
    stalled.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: ")
    time.sleep(1)
    took, _ = stop(server, data, args.bound)
    stalled.close()
    shown = f"{took:.2f} s" if took is not None else f"did not exit within {args.bound} s (killed)"
    print(f"slowloris: SIGTERM with one stalled client: {shown}")


def stalled_body(args):
    server, data, address = start(args.tla, None)
    stalled = socket.create_connection(address)
    stalled.sendall(
        b"POST /v1/events HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100\r\n\r\n{\"events\": ["
    )
    time.sleep(1)
    took, _ = stop(server, data, args.bound)
    stalled.close()
    shown = f"{took:.2f} s" if took is not None else f"did not exit within {args.bound} s (killed)"
    print(f"stalled body: SIGTERM with one request whose body stalls: {shown}")


def idle(args):
    server, data, address = start(args.tla, args.nofile)
    sockets = []
    for n in range(args.idle):
        # Paced, so that the kernel's accept queue does not overflow and drop them.
        sockets.append(socket.create_connection(address))
        if n % 50 == 49:
            time.sleep(0.01)
    time.sleep(2)
    held = len(os.listdir(f"/proc/{server.pid}/fd")) if os.path.isdir("/proc") else "?"
    print(
        f"idle: {args.idle} idle connections open, server open-file limit {args.nofile}, "
        f"server holds {held} file descriptors"
    )
    for n in range(args.probes):
        answer, took = healthz(address, args.bound)
        print(f"idle: probe {n + 1}: {answer} in {took:.3f} s")
    took, log = stop(server, data, args.bound)
    for s in sockets:
        s.close()
    shown = f"{took:.2f} s" if took is not None else f"did not exit within {args.bound} s (killed)"
    print(f"idle: SIGTERM: {shown}")
    limit_lines = [line for line in log.splitlines() if "connection limit reached" in line]
    other = [line for line in log.splitlines() if "connection" in line and line not in limit_lines]
    print(f"idle: 'connection limit reached' log lines: {len(limit_lines)}")
    for line in (limit_lines[:1] + other[:3]):
        print(f"idle: log: {line.strip()[:200]}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tla", default="target/release/tla")
    parser.add_argument("--bound", type=float, default=60.0)
    parser.add_argument("--nofile", type=int, default=1024)
    parser.add_argument("--idle", type=int, default=1100)
    parser.add_argument("--probes", type=int, default=5)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = args.idle + 64
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))
    slowloris(args)
    stalled_body(args)
    idle(args)


if __name__ == "__main__":
    main()
