#!/bin/sh
# layout_check_test.sh — proves scripts/check-layout.sh catches what it must:
# it passes on a copy of the tree, and fails, naming the line, once the copy
# gets an upward include, a circle between two folders, a file without its
# purpose line, or a header without its .c file.
set -eu
src=${WSN_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
check="$src/scripts/check-layout.sh"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failed=0

fresh_copy() {
    rm -rf "$tmp/tree"
    mkdir "$tmp/tree"
    (cd "$src" && tar cf - src shm workers proto) | (cd "$tmp/tree" && tar xf -)
}

expect_pass() {
    if ! out=$(sh "$check" "$tmp/tree" 2>&1); then
        echo "FAIL $1: the check refused a valid tree:"; echo "$out"; failed=$((failed + 1))
    else
        echo "PASS $1"
    fi
}

# expect_fail NAME PATTERN: the check must exit 1 and print a line matching PATTERN.
expect_fail() {
    if out=$(sh "$check" "$tmp/tree" 2>&1); then
        echo "FAIL $1: the check passed:"; echo "$out"; failed=$((failed + 1))
    elif ! printf '%s\n' "$out" | grep -q "$2"; then
        echo "FAIL $1: no line matching '$2' in:"; echo "$out"; failed=$((failed + 1))
    else
        echo "PASS $1: $(printf '%s\n' "$out" | grep "$2" | head -n 1)"
    fi
}

fresh_copy
expect_pass "unchanged tree"

fresh_copy
printf '#include "workers/conn.h"\n' >> "$tmp/tree/shm/region.c"
expect_fail "upward include (shm -> workers)" '^shm/region.c:[0-9]*: includes "workers/conn.h"'

fresh_copy
printf '#include "shm/region.h"\n' >> "$tmp/tree/src/common/log.c"
printf '#include "src/common/log.h"\n' >> "$tmp/tree/shm/queue.c"
expect_fail "circle (common -> shm -> common)" '^src/common/log.c:[0-9]*: includes "shm/region.h"'

fresh_copy
printf '#include "src/master/router.h"\n' >> "$tmp/tree/workers/worker.c"
expect_fail "sideways include (workers -> master)" '^workers/worker.c:[0-9]*: includes "src/master/router.h"'

fresh_copy
printf '#include "src/master/master.h"\n' >> "$tmp/tree/src/ctl/ctl.c"
expect_fail "ctl reaching into the daemon" '^src/ctl/ctl.c:[0-9]*: includes "src/master/master.h"'

fresh_copy
sed -i '1s/.*/\/\* no purpose here \*\//' "$tmp/tree/workers/conn.c"
expect_fail "file without its purpose line" '^workers/conn.c:1: does not open'

fresh_copy
printf '/* orphan.h — nobody implements this. */\n' > "$tmp/tree/workers/orphan.h"
expect_fail "header without a .c" '^workers/orphan.h: a header that belongs to no .c'

echo "$((7 - failed)) passed, $failed failed"
[ "$failed" -eq 0 ]
