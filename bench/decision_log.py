#!/usr/bin/env python3
"""The decision log under load and on a full disk, against a real `tla serve`.

    python3 bench/decision_log.py lag [--seconds 10] [--ingest-threads 3] [--count 16]
        [--decide-rate 0]
    sudo python3 bench/decision_log.py full-disk [--size-mib 8] [--ballast-mib 4]
    python3 bench/decision_log.py crash [--cycles 5] [--seconds 1.5]

Both build nothing: they run target/release/tla (build it first with
`cargo build --release -p tla-cli`) on 127.0.0.1, port 0, with bounded load, stop it
with SIGTERM by its pid, and print one JSON summary.

lag: a fresh data directory under /tmp (removed afterwards). Ingest threads post
batches of 1,000 impressions as fast as the server acknowledges them while one thread
asks for decisions (count 16); then reads the server's tla_decision_log_lag_seconds
histogram (time from a decision to the commit that wrote it, one sample per write for
its oldest row) and reports its count, mean and the smallest bucket bound that holds
every sample.

full-disk (needs root): mounts a tmpfs of --size-mib MiB at /tmp/tla-full-disk, fills
--ballast-mib of it with a file, serves from a data directory on it, and drives
decisions (count 50) and their impressions until the disk is full and decisions are
refused 20 times in a row; records every status and code, /healthz, and a campaign
creation while full; then deletes the ballast (space returns), waits for decisions to
be served again, drives a little more, stops the server and compares, from the
database file: the decision ids served with those logged, the event ids acknowledged
with those stored. Unmounts and removes the mount point at the end, whatever happens.

crash: a fresh data directory under /tmp (removed afterwards); each cycle asks for
decisions (50 a request) and sends an impression for each as fast as answered for
--seconds, SIGKILLs the server by its pid, counts the decision ids that stored events
refer to and the decision log lacks, restarts the server (its open restores them),
stops it and counts again.
"""

import argparse
import collections
import http.client
import json
import os
import re
import secrets
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TLA = os.path.join(ROOT, "target", "release", "tla")
SPEC = open(os.path.join(ROOT, "examples", "small.toml"), "rb").read()
SEGMENTS = ["new-visitors", "past-donors", "volunteers"]


class Server:
    """`tla serve` on `data`, stopped by its own pid."""

    def __init__(self, data, log_path):
        self.admin = f"tla_{secrets.token_hex(6)}_{secrets.token_hex(16)}"
        env = dict(os.environ, TLA_ADMIN_KEY=self.admin, TLA_LOG="warn")
        self.log = open(log_path, "wb")
        self.process = subprocess.Popen(
            [TLA, "serve", "--data", data, "--listen", "127.0.0.1:0"],
            stdout=subprocess.PIPE, stderr=self.log, env=env, stdin=subprocess.DEVNULL)
        line = self.process.stdout.readline().decode()
        match = re.search(r"http://(127\.0\.0\.1:\d+)", line)
        if not match:
            self.stop()
            sys.exit(f"tla serve did not start: {line!r}")
        self.host, self.port = match.group(1).split(":")
        threading.Thread(target=self.process.stdout.read, daemon=True).start()

    def connection(self):
        return http.client.HTTPConnection(self.host, int(self.port), timeout=30)

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
        return self.process.returncode


def call(connection, method, path, key=None, body=None, content_type="application/json"):
    headers = {"Content-Type": content_type}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    if body is not None and not isinstance(body, bytes):
        body = json.dumps(body).encode()
    connection.request(method, path, body=body, headers=headers)
    response = connection.getresponse()
    raw = response.read()
    try:
        return response.status, json.loads(raw)
    except ValueError:
        return response.status, raw.decode(errors="replace")


def metrics(connection, key):
    connection.request("GET", "/metrics", headers={"Authorization": f"Bearer {key}"})
    text = connection.getresponse().read().decode()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


def create_campaign(server):
    status, body = call(server.connection(), "POST", "/v1/campaigns", server.admin, SPEC,
                        "application/toml")
    assert status == 201, (status, body)
    return body["id"]


def lag(args):
    data = tempfile.mkdtemp(prefix="tla-decision-lag.")
    server = Server(os.path.join(data, "data"), os.path.join(data, "tla.stderr"))
    try:
        campaign = create_campaign(server)
        connection = server.connection()
        status, body = call(connection, "POST", f"/v1/campaigns/{campaign}/decisions",
                            server.admin, {"segment": "past-donors", "count": 100})
        ids = [d["decision_id"] for d in body["decisions"]]
        stop = time.monotonic() + args.seconds
        counts = collections.Counter()
        lock = threading.Lock()

        def ingest(thread):
            connection = server.connection()
            batch_number = 0
            while time.monotonic() < stop:
                events = [{"event_id": f"t{thread}-{batch_number}-{i}",
                           "decision_id": ids[i % len(ids)], "type": "impression"}
                          for i in range(1000)]
                status, body = call(connection, "POST", "/v1/events", server.admin,
                                    {"events": events})
                with lock:
                    counts[f"ingest {status}"] += 1
                    counts["events accepted"] += body.get("accepted", 0) if status == 200 else 0
                batch_number += 1

        def decide():
            connection = server.connection()
            pause = 1 / args.decide_rate if args.decide_rate else 0
            while time.monotonic() < stop:
                status, _ = call(connection, "POST", f"/v1/campaigns/{campaign}/decisions",
                                 server.admin, {"segment": "volunteers", "count": args.count})
                with lock:
                    counts[f"decide {status}"] += 1
                if pause:
                    time.sleep(pause)

        threads = [threading.Thread(target=ingest, args=(t,)) for t in range(args.ingest_threads)]
        threads.append(threading.Thread(target=decide))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        values = metrics(server.connection(), server.admin)

        def histogram(name):
            buckets = sorted(
                (float(re.search(r'le="([^"]+)"', key).group(1).replace("+Inf", "inf")), value)
                for key, value in values.items() if key.startswith(f"{name}_bucket"))
            samples = values[f"{name}_count"]
            return {
                "samples": samples,
                "mean_ms": round(1000 * values[f"{name}_sum"] / samples, 2),
                "p50_le_s": next(le for le, count in buckets if count >= samples / 2),
                "p99_le_s": next(le for le, count in buckets if count >= samples * 0.99),
                "max_le_s": next(le for le, count in buckets if count == samples),
                "buckets": {str(le): count for le, count in buckets},
            }

        print(json.dumps({
            "seconds": args.seconds,
            "ingest_threads": args.ingest_threads,
            "decide_count": args.count,
            "decide_rate_limit": args.decide_rate,
            "requests": dict(counts),
            "events_per_s": round(counts["events accepted"] / args.seconds),
            "decisions_served": values["tla_decisions_total"],
            "decisions_logged": values["tla_decisions_logged_total"],
            "decision_log_lag": histogram("tla_decision_log_lag_seconds"),
            "event_commit": histogram("tla_event_commit_seconds"),
        }, indent=2))
    finally:
        print(f"tla exit code {server.stop()}", file=sys.stderr)
        shutil.rmtree(data)


def full_disk(args):
    if os.geteuid() != 0:
        sys.exit("full-disk mounts a tmpfs and needs root")
    mount = "/tmp/tla-full-disk"
    os.makedirs(mount, exist_ok=False)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={args.size_mib}m", "tmpfs", mount],
                   check=True)
    server = None
    try:
        ballast = os.path.join(mount, "ballast")
        with open(ballast, "wb") as f:
            f.write(b"\0" * (args.ballast_mib << 20))
        server = Server(os.path.join(mount, "data"), "/tmp/tla-full-disk.stderr")
        campaign = create_campaign(server)
        connection = server.connection()
        served, acknowledged = [], []
        codes = collections.Counter()
        event_number = 0
        started = time.monotonic()

        def round_trip(phase, count=50):
            """One decision request and, if served, one impression per decision."""
            nonlocal event_number
            segment = SEGMENTS[len(served) % len(SEGMENTS)]
            status, body = call(connection, "POST", f"/v1/campaigns/{campaign}/decisions",
                                server.admin, {"segment": segment, "count": count})
            code = body["error"]["code"] if status != 200 else "ok"
            codes[f"{phase} decide {status} {code}"] += 1
            ids = [d["decision_id"] for d in body["decisions"]] if status == 200 else []
            served.extend(ids)
            # Impressions of the decisions just served, or of earlier ones when refused.
            targets = ids or served[-count:]
            events = []
            for decision_id in targets:
                events.append({"event_id": f"e{event_number}", "decision_id": decision_id,
                               "type": "impression"})
                event_number += 1
            status_e, body_e = call(connection, "POST", "/v1/events", server.admin,
                                    {"events": events})
            code_e = body_e["error"]["code"] if status_e != 200 else "ok"
            codes[f"{phase} ingest {status_e} {code_e}"] += 1
            if status_e == 200:
                acknowledged.extend(e["event_id"] for e in events)
            return status

        refused_in_a_row = 0
        while refused_in_a_row < 20 and time.monotonic() - started < 120:
            status = round_trip("filling")
            refused_in_a_row = refused_in_a_row + 1 if status != 200 else 0
            if status != 200:
                time.sleep(0.05)
        full_after_s = round(time.monotonic() - started, 2)
        health_status, health = call(connection, "GET", "/healthz")
        create_status, create_body = call(connection, "POST", "/v1/campaigns", server.admin,
                                          SPEC, "application/toml")
        while_full = metrics(connection, server.admin)
        df_full = shutil.disk_usage(mount)

        os.remove(ballast)
        freed = time.monotonic()
        while time.monotonic() - freed < 30:
            if round_trip("after freeing", count=1) == 200:
                break
            time.sleep(0.02)
        resumed_after_s = round(time.monotonic() - freed, 3)
        for _ in range(10):
            round_trip("after freeing", count=10)
        time.sleep(1.5)
        recovered_status, recovered = call(connection, "GET", "/healthz")
        final = metrics(connection, server.admin)
        exit_code = server.stop()
        server = None

        database = sqlite3.connect(f"file:{mount}/data/tla.db?mode=ro", uri=True)
        logged = {row[0] for row in database.execute("SELECT decision_id FROM decisions")}
        logged_rows = database.execute("SELECT count(*) FROM decisions").fetchone()[0]
        stored = {row[0] for row in database.execute("SELECT event_id FROM events")}
        database.close()
        print(json.dumps({
            "tmpfs_mib": args.size_mib,
            "ballast_mib": args.ballast_mib,
            "full_after_s": full_after_s,
            "disk_used_when_full_mib": round(df_full.used / 2**20, 2),
            "codes": dict(sorted(codes.items())),
            "healthz_while_full": [health_status, health],
            "create_campaign_while_full": [create_status, create_body],
            "metrics_while_full": {k: while_full[k] for k in (
                "tla_decisions_total", "tla_decisions_logged_total",
                "tla_decisions_refused_total", "tla_decision_log_backlog",
                "tla_events_accepted_total")},
            "decisions_served_again_after_s": resumed_after_s,
            "healthz_after_freeing": [recovered_status, recovered],
            "metrics_at_end": {k: final[k] for k in (
                "tla_decisions_total", "tla_decisions_logged_total",
                "tla_decisions_refused_total", "tla_decision_log_backlog",
                "tla_events_accepted_total", "tla_events_learned_total")},
            "tla_exit_code": exit_code,
            "decisions_served": len(served),
            "decision_rows_logged": logged_rows,
            "served_not_logged": len(set(served) - logged),
            "logged_not_served": len(logged - set(served)),
            "events_acknowledged": len(acknowledged),
            "acknowledged_not_stored": len(set(acknowledged) - stored),
            "stored_not_acknowledged": len(stored - set(acknowledged)),
        }, indent=2))
    finally:
        if server is not None:
            server.stop()
        subprocess.run(["umount", mount], check=False)
        os.rmdir(mount)


def unlogged_referenced(path):
    """Decision ids that stored events refer to and the decision log lacks."""
    database = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    count = database.execute(
        "SELECT count(DISTINCT decision_id) FROM events e WHERE NOT EXISTS "
        "(SELECT 1 FROM decisions d WHERE d.campaign_id = e.campaign_id "
        "AND d.at_ms = e.decided_at_ms AND d.decision_id = e.decision_id)").fetchone()[0]
    rows = database.execute("SELECT count(*) FROM decisions").fetchone()[0]
    database.close()
    return count, rows


def crash(args):
    data = tempfile.mkdtemp(prefix="tla-decision-crash.")
    directory = os.path.join(data, "data")
    results = []
    try:
        for cycle in range(args.cycles):
            server = Server(directory, os.path.join(data, "tla.stderr"))
            if cycle == 0:
                campaign = create_campaign(server)
            connection = server.connection()
            served = 0
            stop = time.monotonic() + args.seconds
            number = 0
            while time.monotonic() < stop:
                status, body = call(connection, "POST", f"/v1/campaigns/{campaign}/decisions",
                                    server.admin, {"segment": "past-donors", "count": 50})
                ids = [d["decision_id"] for d in body["decisions"]]
                served += len(ids)
                events = [{"event_id": f"c{cycle}-{number}-{i}", "decision_id": d,
                           "type": "impression"} for i, d in enumerate(ids)]
                number += 1
                call(connection, "POST", "/v1/events", server.admin, {"events": events})
            # SIGKILL, by the server's own pid.
            server.process.kill()
            server.process.wait()
            server.log.close()
            missing_after_kill, rows_after_kill = unlogged_referenced(
                os.path.join(directory, "tla.db"))
            # Restart: the open restores the decisions the stored events refer to.
            restarted = Server(directory, os.path.join(data, "tla.stderr"))
            restarted.stop()
            missing_after_restart, rows_after_restart = unlogged_referenced(
                os.path.join(directory, "tla.db"))
            results.append({
                "cycle": cycle, "decisions_served": served,
                "referenced_unlogged_after_kill": missing_after_kill,
                "decision_rows_after_kill": rows_after_kill,
                "referenced_unlogged_after_restart": missing_after_restart,
                "decision_rows_after_restart": rows_after_restart,
            })
        print(json.dumps(results, indent=2))
    finally:
        shutil.rmtree(data)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    lag_args = commands.add_parser("lag")
    lag_args.add_argument("--seconds", type=float, default=10)
    lag_args.add_argument("--ingest-threads", type=int, default=3)
    lag_args.add_argument("--count", type=int, default=16, help="decisions per request")
    lag_args.add_argument("--decide-rate", type=float, default=0,
                          help="decision requests per second at most (0: as fast as answered)")
    full = commands.add_parser("full-disk")
    full.add_argument("--size-mib", type=int, default=8)
    full.add_argument("--ballast-mib", type=int, default=4)
    crash_args = commands.add_parser("crash")
    crash_args.add_argument("--cycles", type=int, default=5)
    crash_args.add_argument("--seconds", type=float, default=1.5)
    args = parser.parse_args()
    if not os.path.exists(TLA):
        sys.exit(f"{TLA} is missing: cargo build --release -p tla-cli")
    {"lag": lag, "full-disk": full_disk, "crash": crash}[args.command](args)


if __name__ == "__main__":
    main()
