#!/bin/sh
# run-fuzz.sh — run the libFuzzer harnesses built by `make fuzz`, JOBS at a
# time, each for SECONDS on a fresh copy of its seed corpus (plus its
# regressions), and collect what they find as regression candidates.
# Usage: run-fuzz.sh SRCDIR BUILDDIR SECONDS JOBS HARNESS...
#   (SRCDIR and BUILDDIR absolute; binaries in BUILDDIR/tests/fuzz/bin/fuzz_HARNESS)
# Exits 1 when any harness crashed, leaked, timed out or ran out of memory;
# its crash-*/leak-*/timeout-*/oom-* files are copied to
# BUILDDIR/tests/fuzz/new-regressions/HARNESS/.
set -u

# Longest input per harness: a bit beyond each parser's own limit, so the
# "too large" paths are reachable, but no more (longer inputs fuzz slower).
max_len_of() {
    case "$1" in
    http_request) echo 9000 ;;   # HTTP_MAX_HEAD 8192
    ws_frame) echo 8192 ;;       # room for fragmented messages past the 4 KiB first buffer
    utf8) echo 1024 ;;
    jwt) echo 4200 ;;            # AUTH_MAX_TOKEN 4096 + the 9-byte prefix
    ws_message) echo 4096 ;;
    queue) echo 1024 ;;
    login_body) echo 4200 ;;     # LOGIN_BODY_MAX 4096, and a little over
    *) echo 4096 ;;
    esac
}

dict_of() {
    case "$1" in
    http_request) echo http_request.dict ;;
    ws_message | jwt | login_body) echo json.dict ;;
    *) echo "" ;;
    esac
}

# One harness; runs as a job of the xargs below.
run_one() {
    srcdir=$1 builddir=$2 secs=$3 h=$4
    bin=$builddir/tests/fuzz/bin/fuzz_$h
    work=$builddir/tests/fuzz/work/$h
    rm -rf "$work"
    mkdir -p "$work/corpus" "$work/artifacts" || return 1
    for f in "$srcdir/tests/fuzz/corpus/$h"/*; do
        [ -f "$f" ] && cp "$f" "$work/corpus/"
    done
    # Regressions join the corpus (prefixed: their names may clash with seeds).
    for f in "$srcdir/tests/fuzz/regressions/$h"/*; do
        [ -f "$f" ] && cp "$f" "$work/corpus/regression-$(basename "$f")"
    done
    dict=$(dict_of "$h")
    set -- -max_total_time="$secs" -max_len="$(max_len_of "$h")" -timeout=10 \
        -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$work/artifacts/"
    [ -n "$dict" ] && set -- "$@" -dict="$srcdir/tests/fuzz/dict/$dict"
    echo "fuzz $h: running for ${secs}s (log: $work/fuzz.log)"
    "$bin" "$@" "$work/corpus" > "$work/fuzz.log" 2>&1
    rc=$?

    found=
    for f in "$work/artifacts"/crash-* "$work/artifacts"/leak-* \
             "$work/artifacts"/timeout-* "$work/artifacts"/oom-*; do
        [ -f "$f" ] || continue
        mkdir -p "$builddir/tests/fuzz/new-regressions/$h"
        cp "$f" "$builddir/tests/fuzz/new-regressions/$h/"
        found="$found $(basename "$f")"
    done

    # libFuzzer's final stats (-print_final_stats=1) and its last status line.
    log=$work/fuzz.log
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
    rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log" | tail -n 1)
    cov=$(grep -E '^#[0-9]+' "$log" | tail -n 1 |
        sed -n 's/.*\(cov: [0-9]* ft: [0-9]* corp: [^ ]*\).*/\1/p')
    files=$(ls "$work/corpus" | wc -l)
    summary="fuzz $h: ${execs:-?} execs (${speed:-?}/s), ${cov:-no coverage line},"
    summary="$summary $files corpus files, peak ${rss:-?} MB"

    if [ -n "$found" ] || [ "$rc" -ne 0 ]; then
        echo "$summary: FAILED (exit $rc)" > "$work/summary"
        sed -n '/==[0-9]*==\|fuzz invariant failed\|SUMMARY:/p' "$log" | head -n 20 \
            >> "$work/summary"
        if [ -n "$found" ]; then
            {
                echo "  found:$found"
                echo "  copied to $builddir/tests/fuzz/new-regressions/$h/: move them into"
                echo "  the source tree's tests/fuzz/regressions/$h/ so that \`make check\`"
                echo "  replays them (full log: $log)"
            } >> "$work/summary"
        fi
        return 1
    fi
    echo "$summary: ok" > "$work/summary"
    return 0
}

if [ "${1:-}" = --one ]; then
    shift
    run_one "$@"
    exit $?
fi

if [ $# -lt 5 ]; then
    echo "usage: $0 SRCDIR BUILDDIR SECONDS JOBS HARNESS..." >&2
    exit 2
fi
srcdir=$1 builddir=$2 secs=$3 jobs=$4
shift 4
for h in "$@"; do
    [ -x "$builddir/tests/fuzz/bin/fuzz_$h" ] || {
        echo "run-fuzz: $builddir/tests/fuzz/bin/fuzz_$h is missing (make fuzz builds it)" >&2
        exit 2
    }
    [ -d "$srcdir/tests/fuzz/corpus/$h" ] || {
        echo "run-fuzz: no seed corpus $srcdir/tests/fuzz/corpus/$h" >&2
        exit 2
    }
done

printf '%s\n' "$@" | xargs -P "$jobs" -I '{}' /bin/sh "$0" --one "$srcdir" "$builddir" "$secs" '{}'
status=$?

# The summaries, in harness order, after the parallel runs are done.
echo "---- fuzz summary (${secs}s each, $jobs at a time) ----"
for h in "$@"; do
    cat "$builddir/tests/fuzz/work/$h/summary" 2>/dev/null || echo "fuzz $h: did not run"
done
if [ "$status" -ne 0 ]; then
    echo "run-fuzz: FAILED: see above; the inputs to keep are in" \
        "$builddir/tests/fuzz/new-regressions/" >&2
    exit 1
fi
exit 0
