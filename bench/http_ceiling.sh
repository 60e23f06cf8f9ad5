#!/usr/bin/env bash
# HTTP ceiling on this machine: nginx serving a constant 200 JSON response on
# 127.0.0.1 only, loaded by wrk (2 threads, 64 connections, 10 s), repeated
# REPS times.  This is the "physical-ish" ceiling a decision API served over
# HTTP/1.1 keep-alive on this machine can be compared to (server and load
# generator share the same cores).
# Everything is bounded: apt steps by timeout, nginx by a watchdog, wrk by
# timeout.  nginx is stopped by its pid (never by name).
# Usage: bench/http_ceiling.sh   (env: REPS, DUR, PORT, BENCH_RESULTS; bench/http.sh
# runs it first with REPS=3 DUR=10).  Results default to <repo>/bench-results/.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUTDIR=${BENCH_RESULTS:-$ROOT/bench-results}
cd "$ROOT/bench"
mkdir -p "$OUTDIR"
PORT=${PORT:-18080}
REPS=${REPS:-5}
DUR=${DUR:-10}

if ! command -v nginx >/dev/null || ! command -v wrk >/dev/null; then
  timeout 600 apt-get update
  DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y nginx wrk
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

WORK=$(mktemp -d /tmp/http_ceiling.XXXXXX)
BODY='{"decision_id":"d-0000000001","creative":{"headline":3,"image":17,"body":5,"cta":2},"segment":12,"propensity":0.0123}'
cat > "$WORK/nginx.conf" <<EOF
worker_processes auto;
pid $WORK/nginx.pid;
error_log $WORK/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 10000000;
    keepalive_timeout 60s;
    server {
        listen 127.0.0.1:$PORT;
        location / {
            default_type application/json;
            return 200 '$BODY';
        }
    }
}
EOF

"$NGINX" -t -p "$WORK" -c "$WORK/nginx.conf" 2>&1 | tail -1
# nginx runs in the foreground under `timeout`: it never outlives 10 minutes,
# even if this script is killed.  It is stopped by the master's pid (pid file).
timeout 600 "$NGINX" -p "$WORK" -c "$WORK/nginx.conf" -g 'daemon off;' </dev/null >/dev/null 2>&1 &
TIMEOUT_PID=$!
NGINX_PID=""
cleanup() {
  if [ -n "$NGINX_PID" ]; then kill "$NGINX_PID" 2>/dev/null || true; fi
  wait "$TIMEOUT_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
for i in $(seq 1 50); do
  [ -s "$WORK/nginx.pid" ] && break
  sleep 0.1
done
NGINX_PID=$(cat "$WORK/nginx.pid")

# wait until it answers
for i in $(seq 1 50); do
  if timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$PORT" 2>/dev/null; then break; fi
  sleep 0.1
done
echo "nginx pid $NGINX_PID listening on 127.0.0.1:$PORT ($(nproc) cores, worker_processes auto)"

RAW="$OUTDIR/http_ceiling_wrk.txt"
: > "$RAW"
RPS=()
for r in $(seq 1 "$REPS"); do
  out=$(timeout $((DUR + 20)) wrk -t2 -c64 -d${DUR}s --latency "http://127.0.0.1:$PORT/decide")
  echo "=== run $r ===" >> "$RAW"
  echo "$out" >> "$RAW"
  rps=$(echo "$out" | awk '/^Requests\/sec:/ {print $2}')
  p50=$(echo "$out" | awk '$1=="50%" {print $2}')
  p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  echo "run $r: ${rps} req/s  p50=${p50} p99=${p99}"
  RPS+=("$rps")
done

median=$(printf '%s\n' "${RPS[@]}" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
nginx_ver=$("$NGINX" -v 2>&1 | sed 's/.*nginx\///' || true)
wrk_ver=$(wrk -v 2>&1 | head -1 | awk '{print $2}' || true)
load=$(cut -d' ' -f1 /proc/loadavg)
cpu=$(awk -F: '/model name/ {gsub(/^ +/,"",$2); print $2; exit}' /proc/cpuinfo)
printf '{"timestamp":"%s","tool":"wrk %s","server":"nginx %s","workers":"auto (%s)","threads":2,"connections":64,"duration_s":%s,"response_bytes":%s,"requests_per_s_runs":[%s],"requests_per_s_median":%s,"cpu":"%s","nproc":%s,"loadavg_1min_after":%s}\n' \
  "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$wrk_ver" "$nginx_ver" "$(nproc)" "$DUR" "${#BODY}" \
  "$(IFS=,; echo "${RPS[*]}")" "$median" "$cpu" "$(nproc)" "$load" > "$OUTDIR/http_ceiling.json"
min=$(printf '%s\n' "${RPS[@]}" | sort -g | head -1)
max=$(printf '%s\n' "${RPS[@]}" | sort -g | tail -1)
echo "median: $median req/s (min $min, max $max over $REPS runs)  (raw wrk output: $RAW, summary: $OUTDIR/http_ceiling.json)"
