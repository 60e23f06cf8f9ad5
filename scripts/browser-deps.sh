#!/usr/bin/env bash
# Installs the browser the dashboard's browser test drives (crates/tla-server/tests/
# browser.rs): Debian's `chromium` and `chromium-driver`, pinned below, only when
# `chromium` or `chromedriver` is missing from the PATH, quietly. Needs apt-get and
# root (or sudo). Runs first in the test command of the README.
#
#   scripts/browser-deps.sh
#   CHROMIUM_VERSION=<version from `apt-cache policy chromium`> scripts/browser-deps.sh
set -euo pipefail

CHROMIUM_VERSION=${CHROMIUM_VERSION:-148.0.7778.167-1~deb12u1}

if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
    exit 0
fi
if ! command -v apt-get >/dev/null; then
    echo "browser-deps: chromium or chromedriver is missing and there is no apt-get; install Chromium and its chromedriver (the browser test fails without them when CI is set)" >&2
    exit 1
fi
sudo=""
if [ "$(id -u)" != 0 ]; then
    sudo="sudo -n"
fi
echo "browser-deps: installing chromium and chromium-driver $CHROMIUM_VERSION" >&2
$sudo apt-get update -qq >/dev/null
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    "chromium=$CHROMIUM_VERSION" "chromium-driver=$CHROMIUM_VERSION" >/dev/null
