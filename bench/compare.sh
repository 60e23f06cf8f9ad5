#!/usr/bin/env bash
# TLA against today's tools, in ONE run on this machine.
#
#   1. builds `tla` in release (cargo build --release -p tla-cli);
#   2. runs `tla simulate ... --json` for uniform, independent-ts, factorized-ts
#      (first, so a broken or missing subcommand fails in seconds, not after the anchors);
#   3. runs the anchors (bench/anchors/run_baselines.py: random, numpy TS, MABWiser,
#      Vowpal Wabbit) on the same world, same impression stream (--sim-seed 12345) and
#      policy seed 7, each capped at --max-seconds;
#   4. prints one markdown table: % of oracle (expected), decisions+updates per second,
#      and the ratios of TLA factorized-ts to every other row.
#
# Usage: bench/compare.sh [--world small|medium|full|PATH.json] [--T N] [--max-seconds S]
#                         [--anchors LIST] [--tla-policies LIST] [--out DIR]
# Env (flags win): WORLD, T, MAX_SECONDS, ANCHOR_POLICIES, TLA_POLICIES,
#   BENCH_VENV (default <repo>/bench-venv; created with numpy scipy mabwiser vowpalwabbit
#   if missing), TLA_TIMEOUT (seconds per tla run, default 1800).
# Results: bench-results/compare-<world>-T<T>-<UTC time>/ (gitignored): tla-<policy>.json,
#   anchors.log, results.jsonl + results.md (run_baselines.py), table.md, host.txt.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

WORLD="${WORLD:-small}"
T="${T:-200000}"
MAX_SECONDS="${MAX_SECONDS:-600}"
ANCHOR_POLICIES="${ANCHOR_POLICIES:-random,numpy_ts_prior,mabwiser_ts,vw_squarecb,vw_slates_squarecb}"
TLA_POLICIES="${TLA_POLICIES:-uniform,independent-ts,factorized-ts}"
BENCH_VENV="${BENCH_VENV:-$ROOT/bench-venv}"
TLA_TIMEOUT="${TLA_TIMEOUT:-1800}"
SIM_SEED=12345
SEED=7
OUT=""

die() { echo "compare.sh: ERROR: $*" >&2; exit 1; }
usage() { sed -n '2,22p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case "$1" in
        --world) WORLD="$2"; shift 2 ;;
        --T|--impressions) T="$2"; shift 2 ;;
        --max-seconds) MAX_SECONDS="$2"; shift 2 ;;
        --anchors) ANCHOR_POLICIES="$2"; shift 2 ;;
        --tla-policies) TLA_POLICIES="$2"; shift 2 ;;
        --out) OUT="$2"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done

case "$WORLD" in
    *.json) WORLD_FILE="$WORLD"; WORLD_NAME="$(basename "$WORLD" .json)" ;;
    *) WORLD_FILE="worlds/$WORLD.json"; WORLD_NAME="$WORLD" ;;
esac
[ -f "$WORLD_FILE" ] || die "world file not found: $WORLD_FILE"
[[ "$T" =~ ^[0-9]+$ ]] || die "--T must be a positive integer, got '$T'"

STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
OUT="${OUT:-$ROOT/bench-results/compare-$WORLD_NAME-T$T-$STAMP}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
echo "== results in $OUT"

{
    echo "date_utc: $STAMP"
    echo "git: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet 2>/dev/null || echo ' (dirty)')"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
    echo "nproc: $(nproc)"
    echo "loadavg_start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "world: $WORLD_FILE  T: $T  sim_seed: $SIM_SEED  seed: $SEED  max_seconds: $MAX_SECONDS"
    echo "rustc: $(rustc --version 2>/dev/null || echo '?')"
} > "$OUT/host.txt"

# --- (a) build ---------------------------------------------------------------------------
echo "== cargo build --release -p tla-cli"
cargo build --release -p tla-cli || die "cargo build --release -p tla-cli failed"
TLA="$ROOT/target/release/tla"
[ -x "$TLA" ] || die "$TLA was not built"

# --- (c) TLA policies (run first: fail fast) --------------------------------------------
IFS=',' read -r -a TLA_POLS <<< "$TLA_POLICIES"
for P in "${TLA_POLS[@]}"; do
    echo "== tla simulate --world $WORLD_FILE --policy $P --impressions $T --seed $SEED --json"
    rc=0
    timeout "$TLA_TIMEOUT" "$TLA" simulate --world "$WORLD_FILE" --policy "$P" \
        --impressions "$T" --seed "$SEED" --json \
        > "$OUT/tla-$P.stdout" 2> "$OUT/tla-$P.stderr" || rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "--- stderr (last 20 lines):" >&2; tail -n 20 "$OUT/tla-$P.stderr" >&2 || true
        die "tla simulate --policy $P exited with status $rc (124 = timed out after ${TLA_TIMEOUT}s)"
    fi
    python3 - "$OUT/tla-$P.stdout" "$OUT/tla-$P.json" "$P" <<'PY' || die "tla simulate --policy $P did not print the JSON object expected (see $OUT/tla-$P.stdout)"
import json, math, sys
src, dst, pol = sys.argv[1:4]
text = open(src).read().strip()
obj = None
try:
    obj = json.loads(text)
except ValueError:
    # tolerate log lines before the object: take the last line that parses as an object
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                obj = json.loads(line)
                break
            except ValueError:
                pass
if not isinstance(obj, dict):
    print(f"tla simulate --policy {pol}: stdout is not one JSON object; it begins with:\n"
          f"{text[:400]!r}", file=sys.stderr)
    sys.exit(1)
bad = [k for k in ("pct_of_oracle_expected", "impressions_per_second")
       if not isinstance(obj.get(k), (int, float)) or isinstance(obj.get(k), bool)
       or not math.isfinite(obj[k])]
if bad:
    print(f"tla simulate --policy {pol}: JSON lacks numeric {bad}; keys: {sorted(obj)}", file=sys.stderr)
    sys.exit(1)
json.dump(obj, open(dst, "w"), indent=1)
print(f"   {pol}: {obj['pct_of_oracle_expected']:.1f}% of oracle (expected), "
      f"{obj['impressions_per_second']:,.0f} impressions/s")
PY
done

# --- (b) anchors -------------------------------------------------------------------------
if [ -n "$ANCHOR_POLICIES" ]; then
    PY="$BENCH_VENV/bin/python"
    if ! { [ -x "$PY" ] && "$PY" -c 'import numpy, scipy, mabwiser, vowpalwabbit' 2>/dev/null; }; then
        echo "== creating/updating venv $BENCH_VENV (numpy scipy mabwiser vowpalwabbit)"
        [ -x "$PY" ] || python3 -m venv "$BENCH_VENV" || die "python3 -m venv $BENCH_VENV failed"
        "$BENCH_VENV/bin/pip" install numpy scipy mabwiser vowpalwabbit \
            || die "pip install into $BENCH_VENV failed"
    fi
    echo "== anchors: $ANCHOR_POLICIES (cap ${MAX_SECONDS}s each; log: $OUT/anchors.log)"
    set +e
    BENCH_RESULTS="$OUT" "$PY" bench/anchors/run_baselines.py --world "$WORLD_FILE" --T "$T" \
        --policies "$ANCHOR_POLICIES" --sim-seed "$SIM_SEED" --seed "$SEED" \
        --max-seconds "$MAX_SECONDS" --out "$OUT/results.jsonl" 2>&1 | tee "$OUT/anchors.log"
    st="${PIPESTATUS[0]}"
    set -e
    [ "$st" -eq 0 ] || die "run_baselines.py exited with status $st (see $OUT/anchors.log)"
    if grep -q ': SKIPPED' "$OUT/anchors.log"; then
        echo "compare.sh: WARNING: some anchors were skipped (import failed), see anchors.log" >&2
    fi
fi
echo "loadavg_end: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/host.txt"

# --- (d) table ---------------------------------------------------------------------------
python3 - "$OUT" "$WORLD_NAME" "$T" "$TLA_POLICIES" <<'PY' | tee "$OUT/table.md"
import json, os, sys
out, world, T, tla_pols = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4].split(",")
rows = []  # (label, pct, speed, T_done, note)
jl = os.path.join(out, "results.jsonl")
if os.path.exists(jl):
    latest = {}
    for line in open(jl):
        if line.strip():
            r = json.loads(line)
            latest[r["policy"]] = r
    for p, r in latest.items():
        note = "TRUNCATED at time cap" if r["truncated"] else ""
        rows.append((f"anchor: {p}", r["pct_oracle_expected"], r["decisions_per_s"], r["T_done"], note))
for p in tla_pols:
    f = os.path.join(out, f"tla-{p}.json")
    if os.path.exists(f):
        o = json.load(open(f))
        td = o.get("impressions", o.get("t_done", T))
        rows.append((f"TLA: {p}", o["pct_of_oracle_expected"], o["impressions_per_second"],
                     td if isinstance(td, int) else T, ""))
ref = next((r for r in rows if r[0] == "TLA: factorized-ts"), None)
def ratio(a, b):
    return f"{a / b:.2f}x" if (a is not None and b) else "-"
def rate(x):
    return "-" if x is None else (f"{x:,.0f}" if x >= 100 else f"{x:.3g}")
print(f"\n## World `{world}`, T = {T:,} (sim seed 12345, policy seed 7)\n")
print("| policy | T done | % of oracle (expected) | decisions+updates/s | "
      "TLA factorized-ts / this: score | TLA factorized-ts / this: speed | notes |")
print("|---|---|---|---|---|---|---|")
for label, pct, spd, td, note in rows:
    print(f"| {label} | {td:,} | {pct:.1f} | {rate(spd)} | "
          f"{ratio(ref[1], pct) if ref else '-'} | {ratio(ref[2], spd) if ref else '-'} | {note} |")
print("\nAnchors' speed = impressions / time inside the policy (choose + update), one Python "
      "thread; TLA's = its `impressions_per_second`. Same machine, same run.")
PY
echo "== table written to $OUT/table.md"
