#!/bin/sh
# quickstart.sh — install the build dependencies, build wsnotify, and run
# wsnotifyd in the foreground with a development secret (Ctrl-C stops it).
# Extra arguments are passed to wsnotifyd, e.g. scripts/quickstart.sh --workers 4
set -eu
cd "$(dirname "$0")/.."
sh scripts/install-deps.sh
[ -x configure ] || autoreconf -fi
# Build out of tree in build-dev/ (scripts/test.sh uses build/), unless this
# checkout was already configured in place.
if [ -f config.status ]; then
    BIN=.
else
    BIN=build-dev
    mkdir -p "$BIN"
    [ -f "$BIN/Makefile" ] || (cd "$BIN" && ../configure)
fi
make -C "$BIN" -j"$(nproc)"

JWT_SECRET="${JWT_SECRET:-dev-secret-change-me}"
export JWT_SECRET
PORT=8080
cat <<INFO

wsnotifyd is starting with the development secret "$JWT_SECRET" (set JWT_SECRET
or use --jwt-secret-file in production). In another terminal:

  # mint a token for user 1
  JWT_SECRET='$JWT_SECRET' $BIN/wsnotifyctl token --user-id 1 --email user@example.com

  # connect (any WebSocket client), e.g. with Python's standard library:
  python3 tests/e2e/wsnclient.py "ws://127.0.0.1:$PORT/ws?token=TOKEN"

  # server health
  $BIN/wsnotifyctl health

  # send user 1 a notification (gRPC on 127.0.0.1:50056); it is stored, so a
  # user who is offline gets it on connecting
  $BIN/wsnotifyctl send --user-id 1 --type match_created --title Hello --message World

  # its state (STORED, SENT, ACKED), with the notification_id it printed
  $BIN/wsnotifyctl status --user-id 1 --id NOTIFICATION_ID

The history lives in $BIN/data (--data-dir).
INFO
exec "$BIN/wsnotifyd" --data-dir "$BIN/data" "$@"
