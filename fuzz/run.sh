#!/usr/bin/env bash
# Runs each fuzz target for SECONDS (default 60), bounded, from the committed seeds.
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
#   fuzz/run.sh            # both targets, 60 s each
#   fuzz/run.sh 300 spec_parse
# Crashes land in fuzz/artifacts/<target>/; the growing corpus in fuzz/corpus/<target>/
# (both gitignored). Without nightly, the stable smoke test covers the same entry
# points: cargo test -p tla-server --test fuzz_smoke
set -euo pipefail
cd "$(dirname "$0")"
SECONDS_EACH=${1:-60}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(spec_parse event_batch)
if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "no nightly toolchain: run the stable smoke test instead (cargo test -p tla-server --test fuzz_smoke)" >&2
  exit 2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "cargo-fuzz is missing: cargo install cargo-fuzz" >&2
  exit 2
fi
for target in "${TARGETS[@]}"; do
  case $target in
    spec_parse) max_len=16384 ;;  # the large example spec is ~14 KB
    *) max_len=4096 ;;
  esac
  mkdir -p "corpus/$target"
  echo "== $target: ${SECONDS_EACH} s"
  timeout $((SECONDS_EACH + 600)) cargo +nightly fuzz run -O "$target" "corpus/$target" "seeds/$target" -- \
    -max_total_time="$SECONDS_EACH" -max_len="$max_len" -timeout=10 -rss_limit_mb=4096
done
