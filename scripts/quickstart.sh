#!/bin/sh
# quickstart.sh — install the build dependencies, build wsnotify, and run
# wsnotifyd in the foreground with a usable demo set-up (Ctrl-C stops it): a
# development secret, the login endpoint with one demo account
# (test@example.com / password123, user 1), the browser test page, and the
# history under the build folder. Extra arguments go to wsnotifyd, e.g.
#   sh scripts/quickstart.sh --workers 4
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
USERS="$BIN/demo-users"
if [ ! -f "$USERS" ]; then
    umask 077
    echo "password123" | "$BIN/wsnotifyctl" user --user-id 1 --email test@example.com > "$USERS"
fi
chmod 600 "$USERS"
PORT=8080
GRPC=50056
cat <<INFO

wsnotifyd is starting on ports $PORT (HTTP/WebSocket) and $GRPC (gRPC) with the
development secret "$JWT_SECRET" (set JWT_SECRET, or --jwt-secret-file, in
production), the demo account test@example.com / password123 (user 1, in
$USERS) and the history in $BIN/data. In another terminal:

  # 1. log in and copy access_token
  curl -X POST http://localhost:$PORT/api/v1/auth/login -H "Content-Type: application/json" -d '{"email":"test@example.com","password":"password123"}'

  # 2. connect: open the test page, log in there and press Connect
  #      http://localhost:$PORT/test_websocket.html
  #    or from a program:  new WebSocket("ws://localhost:$PORT/ws?token=TOKEN")
INFO
if command -v websocat >/dev/null 2>&1; then
    echo "  #    or:  websocat \"ws://localhost:$PORT/ws?token=TOKEN\"   then type {\"type\":\"ping\"}"
else
    echo "  #    or:  python3 tests/e2e/wsnclient.py \"ws://localhost:$PORT/ws?token=TOKEN\"   then type {\"type\":\"ping\"}"
fi
cat <<INFO

  # 3. trigger a notification (grpcurl finds the method by reflection)
  grpcurl -plaintext -d '{"user_id":1,"type":"match_created","title":"Test Notification","message":"This is a test!","send_push":true}' localhost:$GRPC notification.NotificationService/SendNotification

  # the same with the project's own client, and the other commands
  $BIN/wsnotifyctl send --user-id 1 --type match_created --title "Test Notification" --message "This is a test!"
  $BIN/wsnotifyctl status --user-id 1 --id NOTIFICATION_ID
  JWT_SECRET='$JWT_SECRET' $BIN/wsnotifyctl token --user-id 1 --email test@example.com
  $BIN/wsnotifyctl health

INFO
exec "$BIN/wsnotifyd" --port "$PORT" --grpc-port "$GRPC" --data-dir "$BIN/data" \
    --users-file "$USERS" --demo "$@"
