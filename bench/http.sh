#!/usr/bin/env bash
# HTTP benchmark of `tla serve`, in ONE run on this machine, bounded in time:
#
#   1. the ceiling: nginx answering a constant JSON body (bench/http_ceiling.sh,
#      REPS=3 x DUR s), loaded by the same wrk settings;
#   2. builds `tla` in release and starts `tla serve` on a fresh temp data dir on
#      127.0.0.1 (port 0), with an admin key from TLA_ADMIN_KEY and a decide and an
#      ingest key made by `tla keys create`;
#   3. creates the demo-size campaign (examples/fundraising.toml) through the API and
#      fetches a few hundred signed decision ids with curl for the ingest script;
#   4. wrk -t2 -c64 -dDUR --latency with bench/wrk/*.lua: decide count=1, decide
#      count=16, ingest batches of 100 impressions (unique event ids);
#   5. prints one table (req/s, p50, p99, events/s, decide req/s as % of the nginx
#      ceiling) and the server's peak RSS (VmHWM) after the load, then stops tla with
#      SIGTERM (by its pid) and checks it stopped cleanly.
#
# Usage: bench/http.sh   Env: DUR (seconds per wrk run, default 10), CEILING_REPS (3),
#   BATCH (events per ingest request, 100), DECISION_IDS (decision ids fetched, 400),
#   OUT (results dir).  Needs nginx and wrk (http_ceiling.sh installs both from
#   Debian's packages with apt-get if missing), curl and python3.
# Results: bench-results/http-<UTC time>/ (gitignored): ceiling (http_ceiling.json and
#   raw wrk output), wrk-<run>.txt, tla.stdout/.stderr, metrics.txt, table.md,
#   summary.json.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

DUR="${DUR:-10}"
CEILING_REPS="${CEILING_REPS:-3}"
BATCH="${BATCH:-100}"
DECISION_IDS="${DECISION_IDS:-400}"
THREADS=2
CONNECTIONS=64
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
OUT="${OUT:-$ROOT/bench-results/http-$STAMP}"
mkdir -p "$OUT"

die() { echo "http.sh: ERROR: $*" >&2; exit 1; }
hex() { head -c "$1" /dev/urandom | od -An -tx1 | tr -d ' \n'; }

# ---------------------------------------------------------------- 1. nginx ceiling
echo "== 1. nginx ceiling (${CEILING_REPS} x ${DUR} s)"
REPS="$CEILING_REPS" DUR="$DUR" BENCH_RESULTS="$OUT" bash "$ROOT/bench/http_ceiling.sh" \
  | tee "$OUT/ceiling.txt"
CEILING="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["requests_per_s_median"])' \
  "$OUT/http_ceiling.json")"
command -v wrk >/dev/null || die "wrk is missing"
command -v curl >/dev/null || die "curl is missing"

# ---------------------------------------------------------------- 2. tla serve
echo "== 2. building tla (release)"
timeout 1800 cargo build --release -q -p tla-cli --bin tla
TLA="$ROOT/target/release/tla"

DATA="$(mktemp -d /tmp/tla-http-bench.XXXXXX)"
TIMEOUT_PID=""
TLA_PID=""
cleanup() {
  if [ -n "$TLA_PID" ] && kill -0 "$TLA_PID" 2>/dev/null; then
    kill -TERM "$TLA_PID" 2>/dev/null || true
  fi
  if [ -n "$TIMEOUT_PID" ]; then wait "$TIMEOUT_PID" 2>/dev/null || true; fi
  rm -rf "$DATA"
}
trap cleanup EXIT

ADMIN_KEY="tla_$(hex 6)_$(hex 16)"
DECIDE_KEY="$("$TLA" keys --data "$DATA" create --scopes decide --label "http bench")"
INGEST_KEY="$("$TLA" keys --data "$DATA" create --scopes ingest --label "http bench")"

# The server runs under `timeout`, so it never outlives 15 minutes even if this
# script is killed; it is stopped by its own pid (the child of that timeout).
TLA_ADMIN_KEY="$ADMIN_KEY" TLA_LOG=warn timeout 900 "$TLA" serve --data "$DATA" \
  --listen 127.0.0.1:0 </dev/null >"$OUT/tla.stdout" 2>"$OUT/tla.stderr" &
TIMEOUT_PID=$!
ADDR=""
for _ in $(seq 1 300); do
  ADDR="$(sed -n 's|^tla serving on http://\([^ ]*\) .*|\1|p' "$OUT/tla.stdout")"
  [ -n "$ADDR" ] && break
  kill -0 "$TIMEOUT_PID" 2>/dev/null || die "tla serve exited: $(cat "$OUT/tla.stderr")"
  sleep 0.1
done
[ -n "$ADDR" ] || die "tla serve did not start within 30 s"
TLA_PID="$(ps -o pid= --ppid "$TIMEOUT_PID" | tr -d ' ')"
[ -n "$TLA_PID" ] || die "cannot find the pid of tla serve"
case "$ADDR" in 127.0.0.1:*) ;; *) die "tla listens on $ADDR, not 127.0.0.1" ;; esac
BASE="http://$ADDR"
echo "tla pid $TLA_PID serving on $BASE (data in $DATA)"

# ---------------------------------------------------------------- 3. campaign, ids
echo "== 3. campaign (examples/fundraising.toml) and $DECISION_IDS decision ids"
# Without its [flight] table: a paced campaign skips outside its December flight, and
# this benchmark measures serving and ingest on any date.
python3 -c 'import re,sys; t=open(sys.argv[1]).read(); print(re.sub(r"(?ms)^\[flight\]\n.*?(?=^\[)", "", t), end="")' \
  examples/fundraising.toml >"$OUT/campaign.toml"
curl -sS --max-time 60 -f -X POST "$BASE/v1/campaigns" \
  -H "Authorization: Bearer $ADMIN_KEY" -H "Content-Type: application/toml" \
  --data-binary @"$OUT/campaign.toml" >"$OUT/campaign.json"
CAMPAIGN="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$OUT/campaign.json")"
mapfile -t SEGMENTS < <(python3 -c \
  'import json,sys; print("\n".join(json.load(open(sys.argv[1]))["segments"]))' "$OUT/campaign.json")
VERSIONS="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["versions"])' "$OUT/campaign.json")"
echo "campaign $CAMPAIGN: $VERSIONS versions, ${#SEGMENTS[@]} segments"

: >"$OUT/decisions.jsonl"
fetched=0
i=0
while [ "$fetched" -lt "$DECISION_IDS" ]; do
  segment="${SEGMENTS[$((i % ${#SEGMENTS[@]}))]}"
  count=$((DECISION_IDS - fetched < 100 ? DECISION_IDS - fetched : 100))
  curl -sS --max-time 30 -f -X POST "$BASE/v1/campaigns/$CAMPAIGN/decisions" \
    -H "Authorization: Bearer $DECIDE_KEY" -H "Content-Type: application/json" \
    -d "{\"segment\":\"$segment\",\"count\":$count}" >>"$OUT/decisions.jsonl"
  echo >>"$OUT/decisions.jsonl"
  fetched=$((fetched + count))
  i=$((i + 1))
done

WRK_DATA="$OUT/wrk-data.lua"
python3 - "$OUT/decisions.jsonl" "$WRK_DATA" "$CAMPAIGN" "$DECIDE_KEY" "$INGEST_KEY" \
  "${SEGMENTS[@]}" <<'EOF'
import json, sys
decisions_file, out, campaign, decide_key, ingest_key, *segments = sys.argv[1:]
ids = [d["decision_id"] for line in open(decisions_file) if line.strip()
       for d in json.loads(line)["decisions"]]
lua = lambda s: json.dumps(s)  # JSON string literals of ASCII text are Lua literals
with open(out, "w") as f:
    f.write("-- written by bench/http.sh\nreturn {\n")
    f.write(f"  campaign = {lua(campaign)},\n  decide_key = {lua(decide_key)},\n")
    f.write(f"  ingest_key = {lua(ingest_key)},\n")
    f.write("  segments = {" + ", ".join(lua(s) for s in segments) + "},\n")
    f.write("  decisions = {\n" + "".join(f"    {lua(d)},\n" for d in ids) + "  },\n}\n")
print(f"{len(ids)} decision ids -> {out}")
EOF

# ---------------------------------------------------------------- 4. load
applied_seq() { curl -sS --max-time 10 "$BASE/healthz" | python3 -c 'import json,sys; print(json.load(sys.stdin)["applied_seq"])'; }

declare -A RPS P50 P99 ERRS
run_wrk() { # name script count
  local name=$1 script=$2 count=$3 out
  echo "-- $name"
  out="$(TLA_WRK_DATA="$WRK_DATA" TLA_WRK_COUNT="$count" TLA_WRK_BATCH="$BATCH" \
    TLA_WRK_TAG="$STAMP-$name" timeout $((DUR + 30)) \
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DUR}s" --latency -s "$ROOT/bench/wrk/$script" "$BASE")"
  echo "$out" >"$OUT/wrk-$name.txt"
  echo "$out" | sed -n '/Latency Distribution/,/^ *99%/p;/Requests\/sec/p;/Non-2xx/p;/Socket errors/p'
  RPS[$name]="$(echo "$out" | awk '/^Requests\/sec:/ {print $2}')"
  P50[$name]="$(echo "$out" | awk '$1=="50%" {print $2}')"
  P99[$name]="$(echo "$out" | awk '$1=="99%" {print $2}')"
  local non2xx socket
  non2xx="$(echo "$out" | awk '/Non-2xx or 3xx responses:/ {print $5}')"
  socket="$(echo "$out" | awk -F'Socket errors: ' '/Socket errors:/ {print $2}')"
  ERRS[$name]="${non2xx:-0} non-2xx${socket:+; socket errors: $socket}"
}

echo "== 4. wrk -t$THREADS -c$CONNECTIONS -d${DUR}s --latency"
metric() {
  curl -sS --max-time 10 -H "Authorization: Bearer $ADMIN_KEY" "$BASE/metrics" \
    | awk -v m="$1" '$1 == m {print $2}'
}
run_wrk decide-1 decide.lua 1
run_wrk decide-16 decide.lua 16
# The decision log is written behind the decisions (queued in memory, flushed by the
# learner through the same writer as the events). Measure how far behind it is, and
# let it drain before the ingest run so that run measures ingest alone.
MADE="$(metric tla_decisions_total)"
LOGGED="$(metric tla_decisions_logged_total)"
BACKLOG=$((MADE - LOGGED))
DRAIN_START="$(date +%s.%N)"
for _ in $(seq 1 600); do
  [ "$(metric tla_decisions_logged_total)" -ge "$MADE" ] && break
  sleep 0.2
done
DRAIN_S="$(python3 -c "import sys,time; print(f'{time.time() - float(sys.argv[1]):.1f}')" "$DRAIN_START")"
echo "decision log after the decide runs: $MADE made, $LOGGED written, backlog $BACKLOG; drained in ${DRAIN_S} s"
SEQ_BEFORE="$(applied_seq)"
run_wrk ingest-$BATCH ingest.lua 1
# Every acknowledged event is committed; give the learner a moment to apply them.
SEQ_AFTER="$SEQ_BEFORE"
for _ in $(seq 1 100); do
  sleep 0.2
  now="$(applied_seq)"
  [ "$now" = "$SEQ_AFTER" ] && break
  SEQ_AFTER="$now"
done
STORED=$((SEQ_AFTER - SEQ_BEFORE))

HWM="$(awk '/^VmHWM:/ {print $2, $3}' "/proc/$TLA_PID/status")"
RSS="$(awk '/^VmRSS:/ {print $2, $3}' "/proc/$TLA_PID/status")"
curl -sS --max-time 10 -H "Authorization: Bearer $ADMIN_KEY" "$BASE/metrics" >"$OUT/metrics.txt" || true

# ---------------------------------------------------------------- 5. stop, report
kill -TERM "$TLA_PID"
status=0
wait "$TIMEOUT_PID" || status=$?
TIMEOUT_PID=""
[ "$status" -eq 0 ] || echo "WARNING: tla serve exited with status $status after SIGTERM" >&2
grep -q '^tla stopped cleanly$' "$OUT/tla.stdout" || echo "WARNING: tla did not print 'tla stopped cleanly'" >&2

INGEST="ingest-$BATCH"
python3 - "$OUT" "$CEILING" "$DUR" "$BATCH" "$STORED" "$HWM" "$RSS" "$status" \
  "$MADE" "$LOGGED" "$BACKLOG" "$DRAIN_S" \
  "${RPS[decide-1]}" "${P50[decide-1]}" "${P99[decide-1]}" "${ERRS[decide-1]}" \
  "${RPS[decide-16]}" "${P50[decide-16]}" "${P99[decide-16]}" "${ERRS[decide-16]}" \
  "${RPS[$INGEST]}" "${P50[$INGEST]}" "${P99[$INGEST]}" "${ERRS[$INGEST]}" <<'EOF'
import json, os, sys
out, ceiling, dur, batch, stored, hwm, rss, status, made, logged, backlog, drain = sys.argv[1:13]
ceiling, dur, batch, stored = float(ceiling), float(dur), int(batch), int(stored)
rows = []
args = sys.argv[13:]
for k, (name, per) in enumerate([("decide count=1", "decisions/s"), ("decide count=16", "decisions/s"),
                                 (f"ingest {batch} impressions/request", "events/s")]):
    rps, p50, p99, errors = args[4 * k: 4 * k + 4]
    rps = float(rps or 0)
    items = rps * (1 if k == 0 else 16 if k == 1 else batch)
    rows.append(dict(run=name, requests_per_s=rps, p50=p50, p99=p99,
                     items_per_s=items, items=per, errors=errors,
                     ratio_of_ceiling=rps / ceiling if ceiling else None))
lines = [
    f"| run | requests/s | p50 | p99 | items/s | % of nginx ceiling | errors |",
    "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
]
for r in rows:
    ratio = f"{100 * r['ratio_of_ceiling']:.1f}%" if r["run"].startswith("decide") else "-"
    lines.append(f"| {r['run']} | {r['requests_per_s']:,.0f} | {r['p50']} | {r['p99']} | "
                 f"{r['items_per_s']:,.0f} {r['items']} | {ratio} | {r['errors']} |")
lines.append(f"| nginx ceiling (median of runs) | {ceiling:,.0f} | | | | 100% | |")
notes = [
    "",
    f"ingest: events stored during the run (applied_seq delta) {stored:,} = {stored / dur:,.0f} events/s over {dur:.0f} s",
    f"decision log after the decide runs: {int(made):,} decisions made, {int(logged):,} written, "
    f"backlog {int(backlog):,}, drained in {drain} s before the ingest run",
    f"tla serve after the load: VmHWM {hwm} (peak RSS), VmRSS {rss}; exit status after SIGTERM {status}",
]
table = "\n".join(lines + notes)
print(table)
open(os.path.join(out, "table.md"), "w").write(table + "\n")
json.dump(dict(rows=rows, nginx_ceiling_rps=ceiling, duration_s=dur, ingest_events_stored=stored,
               decisions_made=int(made), decisions_logged_after_decide=int(logged),
               decision_log_backlog=int(backlog), decision_log_drain_s=float(drain),
               vm_hwm=hwm, vm_rss=rss, exit_status=int(status)),
          open(os.path.join(out, "summary.json"), "w"), indent=2)
EOF
echo "results: $OUT"
