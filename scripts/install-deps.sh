#!/bin/sh
# install-deps.sh — install what wsnotify needs to build and test on Debian 12
# (run as root): the Debian packages, node when it is missing, and the pinned
# npm packages of the browser and node tests (tests/web, from its lock file).
# --bench also installs what only the benchmarks use (README "Performance"):
# nginx's nchan module (bench.py's comparison) and perf (bench-profile.sh).
# What is installed already is left alone, so it is quick the second time.
set -eu
cd "$(dirname "$0")/.."

PACKAGES="build-essential autoconf automake libtool pkg-config
libevent-dev libjwt-dev libjson-c-dev libssl-dev check
libgrpc-dev libprotobuf-c-dev protobuf-c-compiler protobuf-compiler grpc-proto
python3 python3-grpcio python3-protobuf protobuf-compiler-grpc
mandoc systemd openssl liblmdb-dev libcrypt-dev libhiredis-dev redis-server nginx
clang-14 libclang-rt-14-dev chromium"
case "${1:-}" in
--bench) PACKAGES="$PACKAGES libnginx-mod-nchan linux-perf" ;;
"") ;;
*) echo "usage: install-deps.sh [--bench]" >&2; exit 2 ;;
esac
# Node comes with some machines (NodeSource's nodejs bundles npm); Debian's
# own packages otherwise.
command -v node >/dev/null 2>&1 || PACKAGES="$PACKAGES nodejs npm"

missing=""
for p in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
if [ -n "$missing" ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "install-deps.sh: missing packages:$missing — run as root (or: sudo $0)" >&2
        exit 1
    fi
    echo "install-deps.sh: installing$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

# The tests' npm packages, exactly as locked; never a browser download (the
# tests drive Debian's /usr/bin/chromium).
if [ -f tests/web/package-lock.json ] &&
   { [ ! -f tests/web/node_modules/.package-lock.json ] ||
     [ tests/web/package-lock.json -nt tests/web/node_modules/.package-lock.json ]; }; then
    echo "install-deps.sh: npm ci in tests/web"
    PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --prefix tests/web --prefer-offline --no-audit \
        --no-fund --loglevel=error
fi
