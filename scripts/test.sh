#!/bin/sh
# test.sh — install the build dependencies, build wsnotify from scratch in
# build/ (or build-sanitizers/ with --sanitizers), and run the whole test suite.
set -eu
cd "$(dirname "$0")/.."
sh scripts/install-deps.sh
autoreconf -fi
if [ -f config.status ]; then
    # Configured in place by hand: automake allows no out-of-tree build then.
    echo "test.sh: removing the in-place build (make distclean) to build in build/"
    make distclean >/dev/null
fi
dir=build
flags=""
if [ "${1:-}" = "--sanitizers" ]; then
    dir=build-sanitizers
    flags="--enable-sanitizers"
fi
rm -rf "$dir"
mkdir "$dir"
cd "$dir"
# shellcheck disable=SC2086
../configure $flags
make -j"$(nproc)"
if ! make -j"$(nproc)" check; then
    for f in $(find tests -name "*.log"); do
        case "$f" in test-suite.log) continue ;; esac
        if grep -q "^FAIL\|^ERROR" "${f%.log}.trs" 2>/dev/null; then
            echo "==== $f"; tail -n 80 "$f"
        fi
    done
    exit 1
fi
