// wsnotify-client.js — a dependency-free ES module that keeps one WebSocket to
// wsnotifyd open: resume with last_id, ack, reconnect with back-off and jitter,
// stop after 4000. Works in browsers and in node (pass a WebSocket class there).
//
//   import { WsnotifyClient } from "./wsnotify-client.js";
//   const c = new WsnotifyClient({
//     url: "ws://localhost:8080/ws",  // default in a browser: ws(s)://<page host>/ws
//     token,                          // a JWT, or a function returning one (or a Promise of
//                                     //   one), called before every attempt: refresh it there
//     lastId,                         // optional: the id of the last notification shown;
//                                     //   default: storage.get()
//     storage,                        // optional {get() -> id|null, set(id)}; default:
//                                     //   localStorage["wsnotify:lastId:<user_id of the
//                                     //   token>"] where localStorage exists (a token function:
//                                     //   key "…:default", pass storage), null: memory only
//     WebSocket,                      // optional; default globalThis.WebSocket (node 20: the
//                                     //   npm `ws` package's WebSocket)
//     backoff: { initialMs: 500, maxMs: 30000, quickFailures: 4 },
//     autoAck: true,                  // ack each notification after the listeners ran
//     pingTimeoutMs: 10000,
//     random: Math.random,            // the jitter's source (tests pass a fixed one)
//   });
//   c.on("notification", (n) => show(n));  // on() returns a function that removes it
//   c.connect();
//
// Events (an EventTarget: addEventListener(type, e => e.detail), or on/off(type, fn(detail))):
//   "connected"     the `connected` message's data ({user_id, email, message[, recovered]})
//   "notification"  a notification's data ({id, title, message, notification_type, link,
//                   timestamp}); a notification already seen on an earlier connection of
//                   this client is not emitted again when the server replays the whole
//                   history (connected.recovered === false)
//   "status"        {status, code?, reason?, delayMs?, attempt?, message?}, status one of
//                   "connecting" (first attempt after connect()) | "open" | "reconnecting"
//                   (closed with code/reason; next attempt in delayMs, and while it runs) |
//                   "replaced" (4000: stopped) | "closed" (stopped: by close() or for the
//                   reason in message)
//   "error"         {message, code?, reason?, httpStatus?, serverMessage?}
// Methods:
//   connect()       open (no-op while connecting or open; while waiting to reconnect:
//                   try at once)
//   close()         close with 1000 and stop reconnecting; status "closed"
//   ping()          send {"type":"ping"} -> Promise of the round trip in ms (rejects when
//                   not open, on close, or after pingTimeoutMs)
//   ack(id)         send {"type":"ack","data":{"id":id}} -> true if sent (autoAck does this
//                   for you: acking twice counts against the server's ack-flood limit)
// Properties: status, lastId, userId (from the token, if it has one), closeCode, closeReason.
//
// Reconnecting: after a network error and after close 1000 (from the server), 1001, 1005,
// 1006, 1011, 1012, 1013 and 1014, in delayMs = random() * min(maxMs, initialMs * 2^n)
// ("full jitter", n = failed attempts since the last `connected`). Never after 4000 (another
// tab or device took over: status "replaced"), nor after any other code (1002, 1003, 1007,
// 1008, 1009, 1010, 4xxx...: a client bug or a policy; reconnecting would loop): status
// "closed" and an "error" that says why. A browser cannot see the HTTP status of a refused
// handshake (401 bad token, 429, 503: an error and close 1006), so after `quickFailures`
// attempts in a row that failed within 2 s without ever opening, the delay is
// maxMs/2 + random() * maxMs/2. Where the status is visible (node's `ws` reports
// "Unexpected server response: 401"), 400/401/403/404 with a fixed token stop at once.

export const RETRY_CODES = new Set([1000, 1001, 1005, 1006, 1011, 1012, 1013, 1014]);
export const REPLACED_CODE = 4000;
const QUICK_FAILURE_MS = 2000;
const SEEN_MAX = 1000; // ids remembered to drop a replay's duplicates

/** Full-jitter exponential back-off: the delay before retry number `attempt` (0-based). */
export function backoffDelay(attempt, { initialMs = 500, maxMs = 30000 } = {}, random = Math.random) {
  const cap = Math.min(maxMs, initialMs * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * cap);
}

/** The payload of a JWT (not verified: only to name the storage key), or null. */
export function jwtPayload(token) {
  try {
    const part = String(token).split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const bin = atob(part + "=".repeat((4 - (part.length % 4)) % 4));
    return JSON.parse(new TextDecoder().decode(Uint8Array.from(bin, (ch) => ch.charCodeAt(0))));
  } catch {
    return null;
  }
}

function closeExplanation(code, reason) {
  const why = reason ? ` (${reason})` : "";
  if (code === REPLACED_CODE) return "another tab or device connected as this user and took over; not reconnecting";
  if (code === 1008) return `closed by the server's policy${why}; not reconnecting`;
  if (code === 1002 || code === 1003 || code === 1007 || code === 1009)
    return `closed for a protocol error${why}: a client bug; not reconnecting`;
  return `closed with code ${code}${why}; not reconnecting`;
}

function defaultStorage(userId) {
  let ls = null;
  try {
    ls = globalThis.localStorage || null;
  } catch {
    ls = null; // a sandboxed page may refuse access
  }
  if (!ls) return null;
  const key = "wsnotify:lastId:" + (userId ?? "default");
  return {
    get: () => ls.getItem(key),
    set: (id) => {
      try {
        ls.setItem(key, String(id));
      } catch {
        /* quota or privacy mode: keep it in memory only */
      }
    },
  };
}

function validId(v) {
  if (v === null || v === undefined || v === "") return null;
  const n = Number(v);
  return Number.isSafeInteger(n) && n >= 0 ? n : null;
}

export class WsnotifyClient extends EventTarget {
  constructor(options = {}) {
    super();
    const o = options;
    this._tokenOpt = o.token;
    this._WS = o.WebSocket || globalThis.WebSocket;
    if (typeof this._WS !== "function")
      throw new Error("wsnotify-client: no WebSocket here: pass one as the WebSocket option (node: the npm ws package)");
    this.url = o.url || WsnotifyClient.defaultUrl();
    if (!this.url) throw new Error("wsnotify-client: the url option is required outside a browser");
    this.backoff = { initialMs: 500, maxMs: 30000, quickFailures: 4, ...(o.backoff || {}) };
    this.autoAck = o.autoAck !== false;
    this.pingTimeoutMs = o.pingTimeoutMs ?? 10000;
    this._random = o.random || Math.random;
    const p = typeof o.token === "string" ? jwtPayload(o.token) : null;
    this.userId = p ? (p.user_id ?? p.sub ?? null) : null;
    this._storage = o.storage === undefined ? defaultStorage(this.userId) : o.storage;
    this.lastId = validId(o.lastId) ?? (this._storage ? validId(this._storage.get()) : null);
    this.status = "closed";
    this.closeCode = null;
    this.closeReason = "";
    this._ws = null;
    this._timer = null;
    this._attempt = 0; // failed attempts since the last `connected`
    this._quick = 0; // consecutive attempts that failed fast without opening
    this._pings = [];
    this._seen = new Set();
    this._seenBefore = null;
    this._stopped = true;
    this._gen = 0; // counts attempts: a stale one (see _open) does nothing
    this._handlers = new Map(); // type -> Map(fn -> listener), for off()
  }

  /** ws(s)://<page host>/ws in a browser page served over http(s), else null. */
  static defaultUrl() {
    const loc = globalThis.location;
    if (!loc || !/^https?:$/.test(loc.protocol)) return null;
    return (loc.protocol === "https:" ? "wss://" : "ws://") + loc.host + "/ws";
  }

  on(type, fn) {
    const h = (e) => fn(e.detail);
    if (!this._handlers.has(type)) this._handlers.set(type, new Map());
    this.off(type, fn);
    this._handlers.get(type).set(fn, h);
    this.addEventListener(type, h);
    return () => this.off(type, fn);
  }

  off(type, fn) {
    const m = this._handlers.get(type);
    const h = m && m.get(fn);
    if (!h) return;
    this.removeEventListener(type, h);
    m.delete(fn);
  }

  connect() {
    if (!this._stopped) {
      if (this._timer === null) return; // connecting or open already
      clearTimeout(this._timer); // waiting to reconnect: try now
      this._timer = null;
      this._open();
      return;
    }
    this._stopped = false;
    this._attempt = 0;
    this._quick = 0;
    this._setStatus({ status: "connecting" });
    this._open();
  }

  close() {
    if (this._stopped && this.status === "closed") return;
    this._stopped = true;
    this._gen++;
    clearTimeout(this._timer);
    this._timer = null;
    const ws = this._ws;
    this._ws = null;
    this._failPings("closed by the client");
    if (ws) {
      try {
        ws.close(1000, "closed by the client");
      } catch {
        /* already closing */
      }
    }
    this.closeCode = 1000;
    this.closeReason = "closed by the client";
    this._setStatus({ status: "closed", code: 1000, reason: this.closeReason });
  }

  ping() {
    const ws = this._ws;
    if (!ws || ws.readyState !== 1) return Promise.reject(new Error("not connected"));
    return new Promise((resolve, reject) => {
      const p = { t0: now(), resolve, reject };
      p.timer = setTimeout(() => {
        this._pings = this._pings.filter((x) => x !== p);
        reject(new Error("no pong within " + this.pingTimeoutMs + " ms"));
      }, this.pingTimeoutMs);
      this._pings.push(p);
      ws.send('{"type":"ping"}');
    });
  }

  ack(id) {
    const ws = this._ws;
    if (!ws || ws.readyState !== 1 || !Number.isSafeInteger(id)) return false;
    ws.send(JSON.stringify({ type: "ack", data: { id } }));
    return true;
  }

  // ---- internals

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  _setStatus(detail) {
    this.status = detail.status;
    this._emit("status", detail);
  }

  async _open() {
    const gen = ++this._gen;
    let token;
    try {
      token = typeof this._tokenOpt === "function" ? await this._tokenOpt() : this._tokenOpt;
    } catch (e) {
      this._emit("error", { message: "getting a token failed: " + (e && e.message ? e.message : e) });
      token = null;
    }
    if (this._stopped || gen !== this._gen) return; // closed (or restarted) meanwhile
    let ws;
    const started = now();
    try {
      const u = new URL(this.url);
      if (token) u.searchParams.set("token", token);
      if (this.lastId !== null) u.searchParams.set("last_id", String(this.lastId));
      ws = new this._WS(u.href);
    } catch (e) {
      this._emit("error", { message: "cannot open " + this.url + ": " + (e && e.message ? e.message : e) });
      this._stopped = true;
      this._setStatus({ status: "closed", message: "bad url: " + this.url });
      return;
    }
    this._ws = ws;
    let opened = false;
    let httpStatus = null;
    ws.onopen = () => {
      if (this._ws !== ws) return;
      opened = true;
      this._quick = 0;
      this._setStatus({ status: "open" });
    };
    ws.onmessage = (e) => {
      if (this._ws === ws) this._message(e.data);
    };
    ws.onerror = (e) => {
      if (this._ws !== ws) return;
      const m = e && e.message ? String(e.message) : "";
      const s = /server response: (\d{3})/.exec(m); // node's ws tells the HTTP status
      if (s) httpStatus = Number(s[1]);
      this._emit("error", { message: m || "WebSocket error", httpStatus: httpStatus ?? undefined });
    };
    ws.onclose = (e) => {
      if (this._ws !== ws) return;
      this._ws = null;
      this._closed(e.code, e.reason || "", opened, now() - started, httpStatus);
    };
  }

  _message(raw) {
    let msg;
    try {
      msg = JSON.parse(raw);
    } catch {
      this._emit("error", { message: "the server sent a message that is not JSON" });
      return;
    }
    const data = (msg && msg.data) || {};
    switch (msg && msg.type) {
      case "connected":
        this._attempt = 0;
        // The whole history follows: drop what an earlier connection already showed.
        this._seenBefore = data.recovered === false ? new Set(this._seen) : null;
        this._emit("connected", data);
        break;
      case "notification": {
        const id = data.id;
        const dup = this._seenBefore !== null && this._seenBefore.has(id);
        this._remember(id);
        if (!dup) {
          this._emit("notification", data);
          if (this.autoAck) this.ack(id);
        }
        break;
      }
      case "pong": {
        const p = this._pings.shift();
        if (p) {
          clearTimeout(p.timer);
          p.resolve(now() - p.t0);
        }
        break;
      }
      case "error":
        this._emit("error", { message: "server: " + (data.message || "error"), serverMessage: data.message });
        break;
      default:
        break; // newer message types: ignored
    }
  }

  _remember(id) {
    if (!Number.isSafeInteger(id)) return;
    this.lastId = id;
    if (this._storage) this._storage.set(id);
    this._seen.add(id);
    if (this._seen.size > SEEN_MAX) this._seen.delete(this._seen.values().next().value);
  }

  _failPings(why) {
    for (const p of this._pings.splice(0)) {
      clearTimeout(p.timer);
      p.reject(new Error(why));
    }
  }

  _closed(code, reason, opened, lifeMs, httpStatus) {
    this.closeCode = code;
    this.closeReason = reason;
    this._failPings("connection closed");
    if (this._stopped) return;
    if (code === REPLACED_CODE) {
      this._stopped = true;
      const message = closeExplanation(code, reason);
      this._setStatus({ status: "replaced", code, reason, message });
      return;
    }
    const fixedToken = typeof this._tokenOpt !== "function";
    const refused = httpStatus !== null && [400, 401, 403, 404].includes(httpStatus) && fixedToken;
    if (!RETRY_CODES.has(code) || refused) {
      this._stopped = true;
      const message = refused
        ? `the server refused the connection with HTTP ${httpStatus}; not reconnecting`
        : closeExplanation(code, reason);
      this._emit("error", { message, code, reason, httpStatus: httpStatus ?? undefined });
      this._setStatus({ status: "closed", code, reason, message });
      return;
    }
    if (!opened && lifeMs < QUICK_FAILURE_MS) this._quick++;
    else if (opened) this._quick = 0;
    const b = this.backoff;
    let delayMs;
    let message;
    if (this._quick >= b.quickFailures) {
      delayMs = Math.floor(b.maxMs / 2 + this._random() * (b.maxMs / 2));
      message = `${this._quick} attempts in a row were refused at once (bad or expired token? server full?): slowing down`;
    } else {
      delayMs = backoffDelay(this._attempt, b, this._random);
    }
    this._attempt++;
    this._setStatus({ status: "reconnecting", code, reason, delayMs, attempt: this._attempt, message });
    this._timer = setTimeout(() => {
      this._timer = null;
      if (!this._stopped) this._open();
    }, delayMs);
  }
}

function now() {
  return globalThis.performance ? performance.now() : Date.now();
}

export default WsnotifyClient;
