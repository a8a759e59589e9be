"""wsnclient — a small WebSocket/HTTP client and daemon harness for the
wsnotifyd end-to-end tests.  Python 3 standard library only.

Everything here is bounded by timeouts: no call blocks forever.

    conn = connect("127.0.0.1", port, "/ws?token=" + tok)
    if isinstance(conn, HTTPResponse): ...            # the server refused (401, 400, ...)
    conn.recv_json(2)                                  # {"type": "connected", ...}
    conn.send_text('{"type":"ping"}')
    conn.close(1000, "bye")                            # -> (code, reason) echoed by the server
"""

import atexit
import base64
import hashlib
import hmac
import json
import os
import re
import select
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time

__all__ = [
    "OP_CONT", "OP_TEXT", "OP_BINARY", "OP_CLOSE", "OP_PING", "OP_PONG",
    "WSError", "WSTimeout", "WSEOF", "WSClosed", "HandshakeError",
    "Frame", "HTTPResponse", "WSConnection",
    "connect", "start_handshake", "finish_handshake", "connect_many",
    "http_request", "free_port", "make_token", "b64url", "Daemon",
]

OP_CONT, OP_TEXT, OP_BINARY = 0x0, 0x1, 0x2
OP_CLOSE, OP_PING, OP_PONG = 0x8, 0x9, 0xA

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class WSError(Exception):
    pass


class WSTimeout(WSError):
    """Nothing (or not enough) arrived before the deadline."""


class WSEOF(WSError):
    """The peer closed the TCP connection (FIN or RST) without a close frame."""


class WSClosed(WSError):
    """A close frame arrived while a message was expected."""

    def __init__(self, code, reason):
        super().__init__("connection closed by server: code=%r reason=%r" % (code, reason))
        self.code = code
        self.reason = reason


class HandshakeError(WSError):
    """The server answered 101 but the handshake is not valid."""


class Frame:
    __slots__ = ("fin", "rsv", "opcode", "masked", "payload")

    def __init__(self, fin, rsv, opcode, masked, payload):
        self.fin, self.rsv, self.opcode, self.masked, self.payload = fin, rsv, opcode, masked, payload

    def __repr__(self):
        p = self.payload if len(self.payload) <= 80 else self.payload[:80] + b"..."
        return "Frame(fin=%d, rsv=%d, opcode=%#x, masked=%d, len=%d, payload=%r)" % (
            self.fin, self.rsv, self.opcode, self.masked, len(self.payload), p)


class HTTPResponse:
    """A plain HTTP answer (anything but a valid 101)."""

    def __init__(self, status, reason, headers, body, raw_head=b""):
        self.status = status
        self.reason = reason
        self.headers = headers        # dict: lower-case name -> value (last wins)
        self.body = body              # bytes
        self.raw_head = raw_head

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def header(self, name, default=None):
        return self.headers.get(name.lower(), default)

    def __repr__(self):
        return "HTTPResponse(%d %s, headers=%r, body=%r)" % (
            self.status, self.reason, self.headers, self.body[:300])


# --------------------------------------------------------------------------- sockets

def _deadline(timeout):
    return time.monotonic() + timeout


def _remaining(deadline):
    return max(0.0, deadline - time.monotonic())


def _wait_fd(sock, events, deadline):
    """Wait (poll, not select: no FD_SETSIZE limit) until sock is ready or the deadline."""
    if events == select.POLLIN and isinstance(sock, ssl.SSLSocket) and sock.pending():
        return True                 # decrypted bytes already buffered: poll would not see them
    p = select.poll()
    p.register(sock.fileno(), events)
    while True:
        ms = int(_remaining(deadline) * 1000)
        r = p.poll(ms)
        if r:
            return True
        if ms <= 0:
            return False


def _connect_tcp(host, port, timeout, ssl_context=None):
    """ssl_context: an ssl.SSLContext to speak TLS (the handshake is done here, blocking
    with the timeout); None for plain TCP."""
    s = socket.create_connection((host, port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if ssl_context is not None:
        try:
            s = ssl_context.wrap_socket(s, server_hostname=host)
        except BaseException:
            s.close()
            raise
    s.setblocking(False)
    return s


def _sendall(sock, data, deadline):
    view = memoryview(data)
    while view:
        if not _wait_fd(sock, select.POLLOUT, deadline):
            raise WSTimeout("send timed out with %d bytes unsent" % len(view))
        try:
            n = sock.send(view)
        except (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            continue
        view = view[n:]


def _recv_some(sock, deadline, bufsize=65536):
    """bytes (b"" on EOF or reset) or raise WSTimeout."""
    while True:
        if not _wait_fd(sock, select.POLLIN, deadline):
            raise WSTimeout("receive timed out")
        try:
            return sock.recv(bufsize)
        except (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            continue
        except (ConnectionResetError, ssl.SSLEOFError):
            return b""


def _parse_head(head):
    """head: bytes up to (not including) the blank line. -> (status, reason, headers)"""
    lines = head.split(b"\r\n")
    m = re.match(rb"HTTP/1\.[01] (\d{3})(?: (.*))?$", lines[0])
    if not m:
        raise WSError("bad HTTP status line: %r" % lines[0][:200])
    headers = {}
    for line in lines[1:]:
        if b":" not in line:
            raise WSError("bad HTTP header line: %r" % line[:200])
        k, v = line.split(b":", 1)
        headers[k.decode("latin-1").strip().lower()] = v.decode("latin-1").strip()
    return int(m.group(1)), (m.group(2) or b"").decode("latin-1"), headers


def _read_head(sock, deadline, buf=b"", limit=65536):
    """-> (head bytes, rest bytes). Raises WSEOF if closed before a full head."""
    while b"\r\n\r\n" not in buf:
        if len(buf) > limit:
            raise WSError("response head too large")
        chunk = _recv_some(sock, deadline)
        if not chunk:
            raise WSEOF("connection closed before a response head (got %r)" % buf[:200])
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    return head, rest


def _read_body(sock, headers, rest, deadline):
    """Body by Content-Length, chunked, or until EOF (bounded by the deadline)."""
    if "content-length" in headers:
        n = int(headers["content-length"])
        body = rest
        while len(body) < n:
            chunk = _recv_some(sock, deadline)
            if not chunk:
                break
            body += chunk
        return body[:n]
    if "chunked" in headers.get("transfer-encoding", "").lower():
        data, body = rest, b""
        while True:
            while b"\r\n" not in data:
                chunk = _recv_some(sock, deadline)
                if not chunk:
                    return body
                data += chunk
            line, data = data.split(b"\r\n", 1)
            size = int(line.split(b";")[0], 16)
            while len(data) < size + 2:
                chunk = _recv_some(sock, deadline)
                if not chunk:
                    return body + data[:size]
                data += chunk
            if size == 0:
                return body
            body += data[:size]
            data = data[size + 2:]
    body = rest
    try:
        while True:
            chunk = _recv_some(sock, deadline)
            if not chunk:
                break
            body += chunk
    except WSTimeout:
        pass
    return body


def http_request(host, port, method="GET", path="/", headers=None, body=b"", timeout=5.0,
                 raw=None, ssl_context=None):
    """One HTTP/1.1 request on a fresh connection (Connection: close).
    raw: send these bytes instead of building a request.  -> HTTPResponse.
    ssl_context: speak HTTPS with it.
    Raises WSEOF if the server closes without answering."""
    deadline = _deadline(timeout)
    s = _connect_tcp(host, port, timeout, ssl_context)
    try:
        if raw is None:
            h = {"Host": "%s:%d" % (host, port), "Connection": "close"}
            if body:
                h["Content-Length"] = str(len(body))
            for k, v in (headers or {}).items():
                h[k] = v
            req = "%s %s HTTP/1.1\r\n" % (method, path)
            req += "".join("%s: %s\r\n" % (k, v) for k, v in h.items() if v is not None)
            raw = req.encode("latin-1") + b"\r\n" + (body or b"")
        try:
            _sendall(s, raw, deadline)
        except (BrokenPipeError, ConnectionResetError):
            pass            # the server may answer and close before reading everything
        head, rest = _read_head(s, deadline)
        status, reason, hdrs = _parse_head(head)
        b = b"" if method == "HEAD" else _read_body(s, hdrs, rest, deadline)
        return HTTPResponse(status, reason, hdrs, b, head)
    finally:
        s.close()


# --------------------------------------------------------------------------- WebSocket

def encode_frame(opcode, payload=b"", fin=True, mask=True, rsv=0, mask_key=None):
    """Raw frame bytes. rsv is the 3-bit RSV1..3 value (4 = RSV1)."""
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    b0 = (0x80 if fin else 0) | ((rsv & 7) << 4) | (opcode & 0x0F)
    n = len(payload)
    mbit = 0x80 if mask else 0
    if n < 126:
        head = struct.pack("!BB", b0, mbit | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        head = struct.pack("!BBQ", b0, mbit | 127, n)
    if not mask:
        return head + payload
    key = mask_key if mask_key is not None else os.urandom(4)
    if n:
        # XOR with the repeated key, fast: one big-int operation.
        k = (key * (n // 4 + 1))[:n]
        masked = (int.from_bytes(payload, "little") ^ int.from_bytes(k, "little")).to_bytes(n, "little")
    else:
        masked = b""
    return head + key + masked


def close_payload(code=None, reason=""):
    if code is None:
        return b""
    return struct.pack("!H", code) + (reason.encode("utf-8") if isinstance(reason, str) else reason)


def parse_close_payload(p):
    if len(p) == 0:
        return 1005, ""
    if len(p) == 1:
        return None, repr(p)
    return struct.unpack("!H", p[:2])[0], p[2:].decode("utf-8", "replace")


class WSConnection:
    """An upgraded connection. Always sends masked frames unless asked not to.
    auto_pong: answer every ping frame read (recv_*) with a pong of the same payload."""

    def __init__(self, sock, response, leftover=b"", auto_pong=True):
        self.sock = sock
        self.response = response          # HTTPResponse of the 101
        self.buf = bytearray(leftover)
        self.auto_pong = auto_pong
        self.pings_received = []          # payloads of server ping frames
        self.close_received = None        # (code, reason) of the server's close frame
        self.close_sent = False
        self.eof = False                  # TCP closed by the peer
        self.discarded = []               # data frames read while waiting for close
        self._frag_op = None
        self._frag = bytearray()

    # ---- sending
    def send_raw(self, data, timeout=5.0):
        _sendall(self.sock, data, _deadline(timeout))

    def send_frame(self, opcode, fin=True, payload=b"", mask=True, rsv=0, timeout=5.0):
        self.send_raw(encode_frame(opcode, payload, fin=fin, mask=mask, rsv=rsv), timeout)
        if opcode == OP_CLOSE:
            self.close_sent = True

    def send_text(self, text, timeout=5.0):
        if isinstance(text, (dict, list)):
            text = json.dumps(text)
        self.send_frame(OP_TEXT, True, text.encode("utf-8") if isinstance(text, str) else text,
                        timeout=timeout)

    def send_binary(self, data, timeout=5.0):
        self.send_frame(OP_BINARY, True, data, timeout=timeout)

    def send_ping(self, payload=b"", timeout=5.0):
        self.send_frame(OP_PING, True, payload, timeout=timeout)

    def send_close(self, code=1000, reason="", timeout=5.0):
        self.send_frame(OP_CLOSE, True, close_payload(code, reason), timeout=timeout)

    # ---- receiving
    def _fill(self, n, deadline):
        while len(self.buf) < n:
            if self.eof:
                raise WSEOF("connection closed by peer")
            chunk = _recv_some(self.sock, deadline)
            if not chunk:
                self.eof = True
                raise WSEOF("connection closed by peer")
            self.buf += chunk

    def recv_frame(self, timeout=5.0):
        """Next frame (any opcode). Answers pings when auto_pong. Raises WSTimeout/WSEOF."""
        deadline = _deadline(timeout)
        self._fill(2, deadline)
        b0, b1 = self.buf[0], self.buf[1]
        n = b1 & 0x7F
        pos = 2
        if n == 126:
            self._fill(4, deadline)
            n = struct.unpack("!H", bytes(self.buf[2:4]))[0]
            pos = 4
        elif n == 127:
            self._fill(10, deadline)
            n = struct.unpack("!Q", bytes(self.buf[2:10]))[0]
            pos = 10
        masked = bool(b1 & 0x80)
        key = b""
        if masked:
            self._fill(pos + 4, deadline)
            key = bytes(self.buf[pos:pos + 4])
            pos += 4
        if n > 64 * 1024 * 1024:
            raise WSError("absurd frame length %d" % n)
        self._fill(pos + n, deadline)
        payload = bytes(self.buf[pos:pos + n])
        del self.buf[:pos + n]
        if masked and n:
            k = (key * (n // 4 + 1))[:n]
            payload = (int.from_bytes(payload, "little") ^ int.from_bytes(k, "little")).to_bytes(n, "little")
        f = Frame(b0 >> 7, (b0 >> 4) & 7, b0 & 0x0F, masked, payload)
        if f.opcode == OP_PING:
            self.pings_received.append(payload)
            if self.auto_pong and not self.close_sent:
                try:
                    self.send_frame(OP_PONG, True, payload)
                except OSError:
                    pass
        elif f.opcode == OP_CLOSE and self.close_received is None:
            self.close_received = parse_close_payload(payload)
        return f

    def recv_message(self, timeout=5.0, include_pings=False):
        """Next complete data message -> (opcode, payload bytes), reassembling fragments.
        Control frames: pong skipped; ping skipped (returned as a Frame if include_pings);
        close -> echo it and raise WSClosed."""
        deadline = _deadline(timeout)
        while True:
            f = self.recv_frame(_remaining(deadline))
            if f.opcode == OP_PING:
                if include_pings:
                    return f
                continue
            if f.opcode == OP_PONG:
                continue
            if f.opcode == OP_CLOSE:
                self._echo_close()
                raise WSClosed(*self.close_received)
            if f.opcode in (OP_TEXT, OP_BINARY):
                if f.fin:
                    return f.opcode, f.payload
                self._frag_op, self._frag = f.opcode, bytearray(f.payload)
                continue
            if f.opcode == OP_CONT and self._frag_op is not None:
                self._frag += f.payload
                if f.fin:
                    op, data = self._frag_op, bytes(self._frag)
                    self._frag_op, self._frag = None, bytearray()
                    return op, data
                continue
            raise WSError("unexpected frame from server: %r" % (f,))

    def recv_json(self, timeout=5.0, include_pings=False):
        """Next text message parsed as JSON (pings skipped unless include_pings, then the
        ping Frame is returned)."""
        m = self.recv_message(timeout, include_pings)
        if isinstance(m, Frame):
            return m
        op, data = m
        if op != OP_TEXT:
            raise WSError("expected a text message, got opcode %#x: %r" % (op, data[:100]))
        return json.loads(data.decode("utf-8"))

    def _echo_close(self):
        if not self.close_sent:
            code, _ = self.close_received
            try:
                if code in (None, 1005, 1006):
                    self.send_frame(OP_CLOSE, True, b"")
                else:
                    self.send_frame(OP_CLOSE, True, struct.pack("!H", code))
            except OSError:
                self.close_sent = True

    def wait_closed(self, timeout=5.0, eof_grace=2.0):
        """Read (discarding data) until the server's close frame -> (code, reason), echoing
        it, then wait up to eof_grace s for the TCP close.  A TCP close without a close frame
        -> (1006, "").  Raises WSTimeout if neither happens in time."""
        deadline = _deadline(timeout)
        if self.close_received is None:
            while True:
                try:
                    f = self.recv_frame(_remaining(deadline))
                except WSEOF:
                    return 1006, ""
                if f.opcode == OP_CLOSE:
                    break
                if f.opcode in (OP_TEXT, OP_BINARY, OP_CONT):
                    self.discarded.append(f)
        self._echo_close()
        self.wait_eof(eof_grace)
        return self.close_received

    def wait_eof(self, timeout):
        """True once the peer has closed TCP (data read is discarded)."""
        deadline = _deadline(timeout)
        while not self.eof:
            try:
                chunk = _recv_some(self.sock, deadline)
            except WSTimeout:
                return False
            except OSError:
                chunk = b""
            if not chunk:
                self.eof = True
        return True

    def close(self, code=1000, reason="", timeout=5.0):
        """Client-initiated close handshake -> the server's (code, reason)."""
        if self.close_received is None and not self.close_sent:
            try:
                self.send_close(code, reason)
            except OSError:
                pass
        try:
            return self.wait_closed(timeout)
        finally:
            self.abort()

    def abort(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def is_open(self):
        """No close frame and no EOF seen so far (non-blocking peek)."""
        if self.eof or self.close_received is not None:
            return False
        try:
            if isinstance(self.sock, ssl.SSLSocket):
                data = self.sock.recv(65536)     # TLS cannot peek: keep what was read
                self.buf += data
            else:
                data = self.sock.recv(65536, socket.MSG_PEEK)
            if data == b"":
                return False
        except (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            pass
        except OSError:
            return False
        return True

    def fileno(self):
        return self.sock.fileno()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.abort()


def _ws_key():
    return base64.b64encode(os.urandom(16)).decode("ascii")


def accept_for(key):
    return base64.b64encode(hashlib.sha1(key.encode("ascii") + WS_GUID).digest()).decode("ascii")


class _Pending:
    def __init__(self, sock, key, deadline):
        self.sock, self.key, self.deadline = sock, key, deadline


def _upgrade_request(host, port, path, headers):
    """-> (request text, Sec-WebSocket-Key). headers override the defaults; a value of
    None removes a default header."""
    key = _ws_key()
    h = {
        "Host": "%s:%d" % (host, port),
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": key,
        "Sec-WebSocket-Version": "13",
    }
    for k, v in (headers or {}).items():
        for dk in list(h):
            if dk.lower() == k.lower():
                del h[dk]
        h[k] = v
    req = "GET %s HTTP/1.1\r\n" % path + "".join(
        "%s: %s\r\n" % (k, v) for k, v in h.items() if v is not None) + "\r\n"
    return req, h.get("Sec-WebSocket-Key")


def start_handshake(host, port, path="/ws", headers=None, timeout=5.0, ssl_context=None):
    """Open TCP and send the upgrade request. headers override the defaults; a value of
    None removes a default header."""
    deadline = _deadline(timeout)
    req, key = _upgrade_request(host, port, path, headers)
    s = _connect_tcp(host, port, timeout, ssl_context)
    try:
        _sendall(s, req.encode("latin-1"), deadline)
    except BaseException:
        s.close()
        raise
    return _Pending(s, key, deadline)


def start_handshake_from(host, port, src_port, path="/ws", headers=None, timeout=5.0):
    """start_handshake over plain TCP from source port src_port of 127.0.0.1 (None: any),
    retried while the port is still being released (TIME_WAIT, a reset in flight)."""
    deadline = _deadline(timeout)
    req, key = _upgrade_request(host, port, path, headers)
    for _ in range(50):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            if src_port:
                s.bind(("127.0.0.1", src_port))
            s.settimeout(timeout)
            s.connect((host, port))
            break
        except OSError:
            s.close()
            time.sleep(0.05)
    else:
        raise AssertionError("cannot connect from port %r" % src_port)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.setblocking(False)
    try:
        _sendall(s, req.encode("latin-1"), deadline)
    except BaseException:
        s.close()
        raise
    return _Pending(s, key, deadline)


def reset(c):
    """Close c with a TCP reset: no TIME_WAIT keeps its source port."""
    try:
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    c.abort()


def collect_closes(conns, want, deadline, step=0.01):
    """Read conns until want of them are closed or the deadline.
    -> {index in conns: (close code, reason)}, 1006 for a close without a frame."""
    closed = {}
    while time.monotonic() < deadline and len(closed) < want:
        for i, c in enumerate(conns):
            if i in closed:
                continue
            try:
                c.recv_message(step)
            except WSClosed as e:
                closed[i] = (e.code, e.reason)
            except WSEOF:
                closed[i] = (1006, "")
            except WSTimeout:
                pass
    return closed


def finish_handshake(p, auto_pong=True):
    """-> WSConnection on a valid 101, else HTTPResponse. Raises HandshakeError on a bad 101,
    WSEOF if the server closed without answering, WSTimeout."""
    try:
        head, rest = _read_head(p.sock, p.deadline)
        status, reason, hdrs = _parse_head(head)
        if status != 101:
            body = _read_body(p.sock, hdrs, rest, p.deadline)
            p.sock.close()
            return HTTPResponse(status, reason, hdrs, body, head)
        resp = HTTPResponse(status, reason, hdrs, b"", head)
        if hdrs.get("upgrade", "").lower() != "websocket":
            raise HandshakeError("101 without Upgrade: websocket: %r" % head)
        if "upgrade" not in [t.strip().lower() for t in hdrs.get("connection", "").split(",")]:
            raise HandshakeError("101 without Connection: Upgrade: %r" % head)
        if p.key is None or hdrs.get("sec-websocket-accept") != accept_for(p.key):
            raise HandshakeError("bad Sec-WebSocket-Accept %r for key %r" % (
                hdrs.get("sec-websocket-accept"), p.key))
        return WSConnection(p.sock, resp, rest, auto_pong)
    except BaseException:
        p.sock.close()
        raise


def connect(host, port, path="/ws", headers=None, timeout=5.0, auto_pong=True, ssl_context=None):
    """RFC 6455 client handshake (over TLS with ssl_context). -> WSConnection, or
    HTTPResponse when not upgraded."""
    return finish_handshake(start_handshake(host, port, path, headers, timeout, ssl_context),
                            auto_pong)


def connect_many(host, port, paths, timeout=10.0, batch=50):
    """Connect len(paths) clients, `batch` handshakes in flight at a time.
    -> list of WSConnection/HTTPResponse/Exception, in order."""
    out = []
    for i in range(0, len(paths), batch):
        pend = []
        for path in paths[i:i + batch]:
            try:
                pend.append(start_handshake(host, port, path, None, timeout))
            except Exception as e:      # noqa: BLE001 — reported per client
                pend.append(e)
        for p in pend:
            if isinstance(p, Exception):
                out.append(p)
                continue
            try:
                out.append(finish_handshake(p))
            except Exception as e:      # noqa: BLE001
                out.append(e)
    return out


# --------------------------------------------------------------------------- helpers

def free_port():
    """A port that was free a moment ago on 127.0.0.1 (never 0)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def b64url(data):
    if isinstance(data, str):
        data = data.encode("utf-8")
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


_DEFAULT = object()


def make_token(secret, user_id=1, email="user@example.com", exp=_DEFAULT, alg="HS256",
               extra=None, header=None, drop=(), sign=True):
    """An HS256 JWT.  exp: seconds since epoch (default now+3600; None = omit).
    user_id/email None = omit.  extra: claims added/overriding.  header: the whole JOSE
    header (default {"alg": alg, "typ": "JWT"}).  drop: claim names to remove.
    alg "none" (or sign=False) -> empty signature.  secret may be str or bytes."""
    claims = {}
    if user_id is not None:
        claims["user_id"] = user_id
    if email is not None:
        claims["email"] = email
    if exp is _DEFAULT:
        exp = int(time.time()) + 3600
    if exp is not None:
        claims["exp"] = exp
    claims.update(extra or {})
    for k in drop:
        claims.pop(k, None)
    hdr = header if header is not None else {"alg": alg, "typ": "JWT"}
    signing_input = b64url(json.dumps(hdr, separators=(",", ":"))) + "." + \
        b64url(json.dumps(claims, separators=(",", ":")))
    if not sign or str(hdr.get("alg", "")).lower() == "none":
        return signing_input + "."
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    sig = hmac.new(key, signing_input.encode("ascii"), hashlib.sha256).digest()
    return signing_input + "." + b64url(sig)


# --------------------------------------------------------------------------- daemon

LOG_RE = re.compile(
    r"^(?P<ts>\S+) wsnotifyd\[(?P<pid>\d+)\] (?P<level>\w+) \[(?P<role>master|worker (?P<slot>\d+)|[^\]]*)\]: (?P<msg>.*)$")
STARTED_RE = re.compile(r"worker (\d+) started, pid (\d+)")
CONNECTED_RE = re.compile(r"Client connected: UserID=(\d+), Total=(\d+)")
DISCONNECTED_RE = re.compile(r"Client disconnected: UserID=(\d+), Total=(\d+)")


class LogLine:
    __slots__ = ("raw", "ts", "pid", "level", "role", "slot", "msg")

    def __init__(self, raw):
        self.raw = raw
        m = LOG_RE.match(raw)
        if m:
            self.ts, self.pid, self.level, self.role = m["ts"], int(m["pid"]), m["level"], m["role"]
            self.slot = int(m["slot"]) if m["slot"] is not None else None
            self.msg = m["msg"]
        else:
            self.ts = self.pid = self.level = self.role = self.slot = None
            self.msg = raw

    def __repr__(self):
        return self.raw


_ALL_DAEMONS = []
# Reports that an ASan/UBSan build of the daemon wrote to its log (a crash is
# usually noticed by the tests; a leak or a recovered report would not be).
_SANITIZER_RE = re.compile(rb"ERROR: (?:Address|Leak)Sanitizer|runtime error: ")
_SANITIZER_REPORTS = []


def _collect_sanitizer_reports(d):
    try:
        with open(d.log_path, "rb") as f:
            text = f.read()
    except OSError:
        return
    m = _SANITIZER_RE.search(text)
    if m:
        _SANITIZER_REPORTS.append((d.log_path, text[max(0, m.start() - 200):m.start() + 3000]))


def _fail_on_sanitizer_reports():
    """At exit: any sanitizer report in a daemon log fails the whole test file."""
    if not _SANITIZER_REPORTS:
        return
    for path, excerpt in _SANITIZER_REPORTS:
        sys.stderr.write("\n==== sanitizer report in %s:\n%s\n" % (path, excerpt.decode(errors="replace")))
    sys.stderr.write("FAIL: the daemon reported %d sanitizer error(s)\n" % len(_SANITIZER_REPORTS))
    sys.stderr.flush()
    os._exit(1)


def _kill_all_daemons():
    for d in list(_ALL_DAEMONS):
        try:
            d.kill()
            _collect_sanitizer_reports(d)
        except Exception:       # noqa: BLE001 — best effort at exit
            pass


# atexit runs last-registered first: kill (and scan) the daemons, then judge.
atexit.register(_fail_on_sanitizer_reports)
atexit.register(_kill_all_daemons)


def _sigterm_exit(signum, frame):
    for d in list(_ALL_DAEMONS):
        try:
            d.cleanup()
        except Exception:       # noqa: BLE001 — best effort while dying
            pass
    os._exit(128 + signum)


for _sig in (signal.SIGTERM, signal.SIGHUP):
    try:
        if signal.getsignal(_sig) in (signal.SIG_DFL, None):
            signal.signal(_sig, _sigterm_exit)
    except (ValueError, OSError):
        pass


def _pid_alive(pid):
    """True if pid exists and is not a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            st = f.read()
        return st.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


class Daemon:
    """One wsnotifyd under test: own ports, own temp log file, always killed at exit."""

    def __init__(self, binary=None, workers=4, heartbeat=None, max_connections=None,
                 log_level=None, secret=None, extra_args=(), env=None, name="",
                 ssl_context=None):
        self.binary = binary or os.environ.get("WSNOTIFYD")
        self.workers = workers
        self.heartbeat = heartbeat
        self.max_connections = max_connections
        self.log_level = log_level or os.environ.get("WSN_E2E_LOG_LEVEL")
        self.secret = secret or ("e2e-secret-" + b64url(os.urandom(12)))
        self.extra_args = list(extra_args)
        self.extra_env = dict(env or {})
        self.name = name
        self.ssl_context = ssl_context    # set when the daemon speaks TLS (--tls-cert)
        self.host = "127.0.0.1"
        self.port = None
        self.grpc_port = None
        self.proc = None
        self.returncode = None
        self.tmpdir = tempfile.mkdtemp(prefix="wsn-e2e-")
        self.log_path = os.path.join(self.tmpdir, "wsnotifyd.log")
        self._log_f = None
        self.argv = None
        self._seen_pids = set()

    # ---- lifecycle
    def start(self, wait=True, timeout=10.0, attempts=3):
        last = None
        for _ in range(attempts):
            self.port = free_port()
            self.grpc_port = free_port()
            while self.grpc_port == self.port:
                self.grpc_port = free_port()
            self.argv = [self.binary, "--workers", str(self.workers), "--bind", self.host,
                         "--port", str(self.port), "--grpc-port", str(self.grpc_port)]
            if self.heartbeat is not None:
                self.argv += ["--heartbeat", str(self.heartbeat)]
            if self.max_connections is not None:
                self.argv += ["--max-connections", str(self.max_connections)]
            if self.log_level:
                self.argv += ["--log-level", self.log_level]
            self.argv += self.extra_args
            env = dict(os.environ)
            for k in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID"):
                env.pop(k, None)
            env["JWT_SECRET"] = self.secret
            env.update(self.extra_env)
            if self._log_f:
                self._log_f.close()
            self._log_f = open(self.log_path, "ab")
            self._log_f.write(("--- start: %s\n" % " ".join(self.argv)).encode())
            self._log_f.flush()
            self.returncode = None
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=self._log_f,
                                         stderr=self._log_f, env=env, start_new_session=True,
                                         close_fds=True)
            if self not in _ALL_DAEMONS:
                _ALL_DAEMONS.append(self)
            if not wait:
                return self
            try:
                self.wait_ready(timeout)
                return self
            except RuntimeError as e:
                last = e
                text = self.log_text()
                self.kill()
                if "in use" not in text:       # only retry port collisions
                    break
        raise last

    def wait_ready(self, timeout=10.0):
        """Poll /health until it answers healthy with workers == W."""
        deadline = _deadline(timeout)
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.returncode = self.proc.returncode
                raise RuntimeError("wsnotifyd exited with %s during start-up; log:\n%s" % (
                    self.proc.returncode, self.log_tail(30)))
            try:
                h = self.health(timeout=1.0)
                last = h
                if h.get("status") == "healthy" and h.get("workers") == self.workers:
                    return h
            except (OSError, WSError, ValueError) as e:
                last = e
            time.sleep(0.05)
        raise RuntimeError("wsnotifyd not ready within %.0fs (last /health: %r); log:\n%s" % (
            timeout, last, self.log_tail(30)))

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, timeout=10.0, sig=signal.SIGTERM):
        """SIGTERM the master and wait. -> exit code, or None if it had to be killed."""
        if self.proc is None:
            return self.returncode
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                return None
        self.returncode = self.proc.returncode
        return self.returncode

    def wait_exit(self, timeout):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def known_pids(self):
        pids = set(self._seen_pids)
        for ln in self.log_lines():
            if ln.pid:
                pids.add(ln.pid)
        if self.proc:
            pids.add(self.proc.pid)
        self._seen_pids = pids
        return pids

    def kill(self):
        """SIGKILL the master, its process group and every worker pid seen in the log."""
        if self.proc is None:
            return
        pids = self.known_pids()
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                pass
            try:
                self.proc.kill()
            except OSError:
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        else:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)   # leftover workers in the group
            except OSError:
                pass
        for pid in pids:
            if pid != os.getpid() and _pid_alive(pid):
                try:
                    with open("/proc/%d/cmdline" % pid, "rb") as f:
                        cmd = f.read()
                    if b"wsnotifyd" in cmd:
                        os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        self.returncode = self.proc.returncode

    def cleanup(self, keep_log=False):
        self.kill()
        _collect_sanitizer_reports(self)
        if self._log_f:
            self._log_f.close()
            self._log_f = None
        if self in _ALL_DAEMONS:
            _ALL_DAEMONS.remove(self)
        if not keep_log:
            shutil.rmtree(self.tmpdir, ignore_errors=True)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    # ---- HTTP
    def http(self, method="GET", path="/", headers=None, body=b"", timeout=5.0, raw=None):
        return http_request(self.host, self.port, method, path, headers, body, timeout, raw,
                            self.ssl_context)

    def health(self, timeout=3.0):
        r = self.http("GET", "/health", timeout=timeout)
        if r.status != 200:
            raise WSError("/health answered %d: %r" % (r.status, r.body[:200]))
        return r.json()

    def wait_health(self, pred, timeout=5.0, interval=0.05):
        """Poll /health until pred(h). -> (ok, last h)"""
        deadline = _deadline(timeout)
        h = None
        while True:
            try:
                h = self.health()
                if pred(h):
                    return True, h
            except (OSError, WSError, ValueError) as e:
                h = e
            if time.monotonic() >= deadline:
                return False, h
            time.sleep(interval)

    # ---- tokens and clients
    def token(self, user_id, email=None, **kw):
        if email is None:
            email = "user%d@example.com" % user_id
        return make_token(self.secret, user_id, email, **kw)

    def connect(self, path="/ws", headers=None, timeout=5.0, auto_pong=True):
        return connect(self.host, self.port, path, headers, timeout, auto_pong, self.ssl_context)

    def connect_user(self, user_id, email=None, timeout=5.0, auto_pong=True, **kw):
        return self.connect("/ws?token=" + self.token(user_id, email, **kw), None, timeout, auto_pong)

    # ---- log
    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_lines(self):
        return [LogLine(l) for l in self.log_text().splitlines() if l and not l.startswith("--- start")]

    def log_tail(self, n=40):
        return "\n".join(self.log_text().splitlines()[-n:])

    def worker_started(self):
        """[(slot, pid)] in log order."""
        out = []
        for ln in self.log_lines():
            if ln.role == "master":
                m = STARTED_RE.search(ln.msg)
                if m:
                    out.append((int(m.group(1)), int(m.group(2))))
        return out

    def worker_pids(self):
        """{slot: latest pid} from the master's `worker N started, pid P` lines."""
        return dict(self.worker_started())

    def _client_events(self, regex):
        """[(user_id, slot, total)] from the workers' lines regex matches."""
        out = []
        for ln in self.log_lines():
            m = regex.search(ln.msg)
            if m and ln.slot is not None:
                out.append((int(m.group(1)), ln.slot, int(m.group(2))))
        return out

    def connected_events(self):
        """[(user_id, slot, total)] from the workers' `Client connected` lines."""
        return self._client_events(CONNECTED_RE)

    def disconnected_events(self):
        """[(user_id, slot, total)] from the workers' `Client disconnected` lines."""
        return self._client_events(DISCONNECTED_RE)

    def worker_of(self, user_id, nth=0, timeout=3.0):
        """Slot of the worker that logged the nth (0-based; -1 = last) `Client connected`
        for user_id; waits for the line up to timeout.  None if it never appears."""
        deadline = _deadline(timeout)
        while True:
            slots = [s for (u, s, _) in self.connected_events() if u == user_id]
            if nth < 0 and slots:
                return slots[nth]
            if 0 <= nth < len(slots):
                return slots[nth]
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.02)

    def wait_log(self, pred, timeout=5.0, start=0):
        """First LogLine (index >= start) with pred(line) true, polling up to timeout."""
        deadline = _deadline(timeout)
        while True:
            lines = self.log_lines()
            for ln in lines[start:]:
                if pred(ln):
                    return ln
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.05)


def _main(argv):
    """Command line: python3 tests/e2e/wsnclient.py ws[s]://HOST:PORT/ws?token=JWT
    (wss: TLS, verified against the system's CAs, or the PEM file in $SSL_CERT_FILE)
    Connects, prints every message the server sends (one JSON per line), and
    answers the server's pings, until the connection closes or Ctrl-C."""
    import sys
    import urllib.parse
    if len(argv) != 2 or not argv[1].startswith(("ws://", "wss://")):
        print("usage: wsnclient.py ws[s]://HOST:PORT/ws?token=JWT", file=sys.stderr)
        return 2
    tls = ssl.create_default_context() if argv[1].startswith("wss://") else None
    url = urllib.parse.urlsplit(argv[1])
    path = url.path or "/"
    if url.query:
        path += "?" + url.query
    result = connect(url.hostname, url.port or (443 if tls else 80), path=path, ssl_context=tls)
    if isinstance(result, HTTPResponse):
        print(f"HTTP {result.status}: {result.body.decode(errors='replace')}", file=sys.stderr)
        return 1
    try:
        while True:
            try:
                _, payload = result.recv_message(timeout=3600)
                print(payload.decode(errors="replace"), flush=True)
            except WSTimeout:
                continue
    except WSClosed as e:
        print(f"closed: {e.code} {e.reason}", file=sys.stderr)
    except (WSEOF, KeyboardInterrupt):
        pass
    return 0


if __name__ == "__main__":
    import sys as _sys
    _sys.exit(_main(_sys.argv))
