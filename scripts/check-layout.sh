#!/bin/sh
# check-layout.sh — keep the folders one-way layers (README "Layout").
# Usage: check-layout.sh [SOURCE_ROOT]   (default: $WSN_SRCDIR, else the checkout
# this script is in). Exits 1, naming each offending line, when
#   - a file includes a project header from a folder it must not depend on,
#   - a .c or .h file does not open with its one-line purpose ("/* NAME — ..."
#     or "/* FOLDER/NAME — ..."),
#   - a header belongs to no .c file of its folder (X.h without X.c; the type
#     headers X-t.h and the header-only files listed below are exempt).
set -eu

# The allowed arrows, in one place: each folder may include headers of its own
# folder and of the folders listed after it. Nothing else points anywhere.
ARROWS='
proto:
src/common: proto
shm: src/common proto
src/master: shm src/common proto
workers: shm src/common proto
src/ctl: src/common proto
src: src/master workers shm src/common proto
scripts/bench: src/common proto
'
HEADER_ONLY='shm/hash.h'

root=${1:-${WSN_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}}
cd "$root"

folders=$(printf '%s\n' "$ARROWS" | sed -n 's/^\([^:]*\):.*/\1/p')
allowed_of() {
    printf '%s\n' "$ARROWS" | sed -n "s#^$1:##p"
}
# The layer of a path: the longest folder of ARROWS it is directly in.
layer_of() {
    dir=$(dirname "$1")
    for f in $folders; do
        [ "$dir" = "$f" ] && { echo "$f"; return; }
    done
    echo ""
}

tmp_fail=$(mktemp)
trap 'rm -f "$tmp_fail"' EXIT
files=$(for f in $folders; do
    [ -d "$f" ] && find "$f" -maxdepth 1 -type f \( -name '*.c' -o -name '*.h' \) \
        ! -name '*.pb-c.*'
done | sort)

for file in $files; do
    layer=$(layer_of "$file")
    allowed="$layer$(allowed_of "$layer")"
    # "#include "dir/x.h"": the folder of every project include.
    grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$file" | while IFS= read -r line; do
        num=${line%%:*}
        target=$(printf '%s\n' "$line" | sed 's/.*include[[:space:]]*"\([^"]*\)".*/\1/')
        tdir=$(dirname "$target")
        ok=no
        for a in $allowed; do
            [ "$tdir" = "$a" ] && ok=yes
        done
        if [ "$ok" = no ]; then
            echo "$file:$num: includes \"$target\": $layer may include only $allowed"
            echo x >> "$tmp_fail"
        fi
    done
    base=$(basename "$file")
    first=$(head -n 1 "$file")
    case "$first" in
    "/* $base — "* | "/* $file — "*) ;;
    *)
        echo "$file:1: does not open with its purpose (\"/* $base — ...\")"
        echo x >> "$tmp_fail"
        ;;
    esac
    case "$file" in
    *-t.h) ;;
    *.h)
        case " $HEADER_ONLY " in *" $file "*) continue ;; esac
        if [ ! -f "${file%.h}.c" ]; then
            echo "$file: a header that belongs to no .c file (${file%.h}.c is missing)"
            echo x >> "$tmp_fail"
        fi
        ;;
    esac
done

if [ -s "$tmp_fail" ]; then
    echo "check-layout: $(wc -l < "$tmp_fail") problem(s); the arrows are in $0"
    exit 1
fi
echo "check-layout: $(printf '%s\n' "$files" | wc -l) files, every include one-way"
