#!/bin/sh
# install-deps.sh — install what wsnotify needs to build and test on Debian 12
# (run as root). Already-installed packages are left alone, so it is quick the
# second time.
set -eu

PACKAGES="build-essential autoconf automake libtool pkg-config
libevent-dev libjwt-dev libjson-c-dev libssl-dev check
libgrpc-dev libprotobuf-c-dev protobuf-c-compiler protobuf-compiler grpc-proto
python3 python3-grpcio python3-protobuf protobuf-compiler-grpc
mandoc systemd openssl liblmdb-dev
clang-14 libclang-rt-14-dev"

missing=""
for p in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
if [ -z "$missing" ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps.sh: missing packages:$missing — run as root (or: sudo $0)" >&2
    exit 1
fi
echo "install-deps.sh: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
