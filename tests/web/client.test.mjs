// client.test.mjs — scripts/web/wsnotify-client.js under node: its back-off,
// close-code rules and bookkeeping against a fake WebSocket (no timers to wait
// for but tiny ones), then against the real wsnotifyd with the npm `ws`
// package: connect, notifications in order and acked, resume with last_id
// after the worker holding the connection was SIGKILLed (each notification
// exactly once), 4000 without a reconnect, 401, ping. Run by tests/e2e/e2e_web.py.

import { test, describe, after } from "node:test";
import assert from "node:assert/strict";
import { env, requireDep, importClient, newUser, token, send, waitAcked, connections,
  killWorkerOf, sleep, waitFor } from "./helpers.mjs";

const { WsnotifyClient, backoffDelay, jwtPayload, RETRY_CODES } = await importClient();
const WebSocket = requireDep("ws");

// ---------------------------------------------------------------- a fake WebSocket

class FakeWS {
  static all = [];
  constructor(url) {
    this.url = new URL(url);
    this.readyState = 0;
    this.sent = [];
    FakeWS.all.push(this);
  }
  send(s) { this.sent.push(JSON.parse(s)); }
  close() { this.readyState = 3; }
  // what the "server" does
  open() { this.readyState = 1; this.onopen?.({}); }
  msg(type, data) { this.onmessage?.({ data: JSON.stringify({ type, data }) }); }
  drop(code = 1006, reason = "") {
    this.readyState = 3;
    if (code === 1006) this.onerror?.({});
    this.onclose?.({ code, reason });
  }
}

const clients = new Set(); // closed after all tests, so a failed test leaves no reconnect loop
after(() => clients.forEach((c) => c.close()));

const memoryStorage = (v = null) => ({ v, get() { return this.v; }, set(id) { this.v = id; } });

/** A client on FakeWS that records its events. */
function fake(opts = {}) {
  FakeWS.all = [];
  const c = new WsnotifyClient({ url: "ws://gw.test/ws", token: "tok", WebSocket: FakeWS,
    storage: memoryStorage(), backoff: { initialMs: 20, maxMs: 200 }, ...opts });
  clients.add(c);
  const ev = { status: [], notification: [], connected: [], error: [] };
  for (const k of Object.keys(ev)) c.on(k, (d) => ev[k].push(d));
  return { c, ev, last: () => FakeWS.all[FakeWS.all.length - 1] };
}

const tick = () => new Promise((r) => setImmediate(r)); // lets _open's await run

describe("back-off and close codes (fake WebSocket)", () => {
  test("backoffDelay: exponential caps, full jitter", () => {
    const b = { initialMs: 500, maxMs: 30000 };
    const top = [0, 1, 2, 3, 4, 5, 6, 7, 20].map((n) => backoffDelay(n, b, () => 0.999999));
    assert.deepEqual(top, [499, 999, 1999, 3999, 7999, 15999, 29999, 29999, 29999]);
    assert.equal(backoffDelay(3, b, () => 0), 0);
    const samples = Array.from({ length: 200 }, () => backoffDelay(4, b));
    assert.ok(samples.every((d) => d >= 0 && d < 8000), "out of [0, 8000)");
    assert.ok(new Set(samples).size > 150, "no jitter: " + new Set(samples).size + " distinct");
    const mean = samples.reduce((a, d) => a + d, 0) / samples.length;
    assert.ok(mean > 2500 && mean < 5500, "mean " + mean + " is not about half the cap");
  });

  test("resume URL, remembered id, ack, growing delays, reset on connected", async () => {
    const { c, ev, last } = fake({ random: () => 0.99 });
    c.connect();
    await tick();
    assert.equal(last().url.searchParams.get("token"), "tok");
    assert.equal(last().url.searchParams.has("last_id"), false, "last_id before any notification");
    last().open();
    last().msg("connected", { user_id: 1, email: "", message: "Connected to notifications" });
    last().msg("notification", { id: 7, title: "a" });
    assert.deepEqual(last().sent, [{ type: "ack", data: { id: 7 } }]);
    assert.equal(c.lastId, 7);
    const delays = [];
    for (let i = 0; i < 6; i++) {
      last().open();
      last().drop(1006);
      const s = ev.status.at(-1);
      assert.equal(s.status, "reconnecting");
      delays.push(s.delayMs);
      await sleep(s.delayMs + 10);
      assert.equal(last().url.searchParams.get("last_id"), "7");
    }
    assert.deepEqual(delays, [19, 39, 79, 158, 198, 198]);
    last().open();
    last().msg("connected", { user_id: 1, recovered: true });
    last().drop(1001, "server shutting down");
    assert.equal(ev.status.at(-1).delayMs, 19, "the back-off did not restart after `connected`");
    assert.deepEqual(ev.status.slice(0, 2).map((s) => s.status), ["connecting", "open"]);
    c.close();
  });

  test("quick failures without opening slow down to the max back-off", async () => {
    const { c, ev, last } = fake({ random: () => 0.5 });
    c.connect();
    const delays = [];
    for (let i = 0; i < 5; i++) {
      await tick();
      last().drop(1006); // error + 1006 at once: what a browser shows for a 401
      delays.push(ev.status.at(-1).delayMs);
      if (i < 4) await sleep(delays[i] + 10);
    }
    assert.deepEqual(delays.slice(0, 3), [10, 20, 40]);
    assert.ok(delays[3] >= 100 && delays[4] >= 100, "not slowed down: " + delays);
    assert.match(ev.status.at(-1).message, /slowing down/);
    c.close();
    assert.equal(c.status, "closed");
  });

  test("4000: status replaced, never reconnects", async () => {
    const { c, ev, last } = fake();
    c.connect();
    await tick();
    last().open();
    last().drop(4000, "replaced by a newer connection");
    assert.equal(c.status, "replaced");
    assert.equal(ev.status.at(-1).code, 4000);
    assert.match(ev.status.at(-1).message, /another tab or device/);
    await sleep(450); // > twice maxMs
    assert.equal(FakeWS.all.length, 1, "reconnected after 4000");
    c.connect(); // the user asked for it
    await tick();
    assert.equal(FakeWS.all.length, 2);
    c.close();
  });

  test("1008, 1002, 1003, 1007, 1009 and 4xxx stop with an error that says why; the others retry", async () => {
    for (const code of [1008, 1002, 1003, 1007, 1009, 4001, 4403]) {
      const { c, ev, last } = fake();
      c.connect();
      await tick();
      last().open();
      last().drop(code, "because");
      assert.equal(c.status, "closed", "code " + code);
      assert.equal(ev.error.at(-1).code, code);
      assert.match(ev.error.at(-1).message, /not reconnecting/);
      await sleep(60);
      assert.equal(FakeWS.all.length, 1, "reconnected after " + code);
    }
    for (const code of [1001, 1006, 1011, 1012, 1013]) {
      assert.ok(RETRY_CODES.has(code));
      const { c, ev, last } = fake();
      c.connect();
      await tick();
      last().open();
      last().drop(code, "");
      assert.equal(ev.status.at(-1).status, "reconnecting", "code " + code);
      await sleep(40);
      assert.equal(FakeWS.all.length, 2, "no reconnect after " + code);
      c.close();
    }
  });

  test("recovered:false replays the whole history: what was shown is not shown again", async () => {
    const { c, ev, last } = fake();
    c.connect();
    await tick();
    last().open();
    last().msg("connected", {});
    for (const id of [1, 2, 3]) last().msg("notification", { id });
    last().msg("notification", { id: 90 }); // e.g. a broadcast: not in the history
    last().drop(1006);
    await sleep(30);
    assert.equal(last().url.searchParams.get("last_id"), "90");
    last().open();
    last().msg("connected", { recovered: false });
    for (const id of [1, 2, 3, 4]) last().msg("notification", { id });
    assert.deepEqual(ev.notification.map((n) => n.id), [1, 2, 3, 90, 4]);
    assert.deepEqual(last().sent, [{ type: "ack", data: { id: 4 } }]);
    assert.equal(c.lastId, 4);
    c.close();
  });

  test("ping resolves on the pong, rejects when closed; token functions; storage per user", async () => {
    let calls = 0;
    const { c, last } = fake({ token: () => Promise.resolve("t" + ++calls) });
    await assert.rejects(c.ping(), /not connected/);
    c.connect();
    await tick();
    assert.equal(last().url.searchParams.get("token"), "t1");
    last().open();
    const p = c.ping();
    assert.deepEqual(last().sent.at(-1), { type: "ping" });
    last().msg("pong", { status: "ok" });
    assert.ok((await p) >= 0);
    const q = c.ping();
    last().drop(1006);
    await assert.rejects(q, /closed/);
    await sleep(30);
    assert.equal(last().url.searchParams.get("token"), "t2", "the token function is called per attempt");
    c.close();

    const store = new Map();
    globalThis.localStorage = { getItem: (k) => store.get(k) ?? null, setItem: (k, v) => store.set(k, v) };
    try {
      const jwt = "e30." + Buffer.from(JSON.stringify({ user_id: 42 })).toString("base64url") + ".sig";
      assert.equal(jwtPayload(jwt).user_id, 42);
      store.set("wsnotify:lastId:42", "1234");
      const d = new WsnotifyClient({ url: "ws://gw.test/ws", token: jwt, WebSocket: FakeWS });
      assert.equal(d.lastId, 1234);
      d.connect();
      await tick();
      assert.equal(FakeWS.all.at(-1).url.searchParams.get("last_id"), "1234");
      FakeWS.all.at(-1).open();
      FakeWS.all.at(-1).msg("notification", { id: 1240 });
      assert.equal(store.get("wsnotify:lastId:42"), "1240");
      d.close();
    } finally {
      delete globalThis.localStorage;
    }
  });
});

// ---------------------------------------------------------------- against wsnotifyd

/** A real client of user, recording what it got. */
async function real(user, opts = {}) {
  const c = new WsnotifyClient({ url: env.WSN_WS_URL, token: await token(user), WebSocket,
    storage: memoryStorage(), backoff: { initialMs: 100, maxMs: 1000 }, ...opts });
  clients.add(c);
  const ev = { status: [], notification: [], connected: [], error: [] };
  for (const k of Object.keys(ev)) c.on(k, (d) => ev[k].push(d));
  return { c, ev };
}

async function openAndConnected(r, n = 1) {
  assert.ok(await waitFor(() => r.ev.connected.length >= n && r.c.status === "open", 5000),
    `no connected message (status ${r.c.status}, errors ${JSON.stringify(r.ev.error)})`);
}

async function sendMany(user, titles) {
  const ids = [];
  for (const title of titles) ids.push((await send(user, { title })).notification_id);
  return ids;
}

describe("against wsnotifyd (ws as WebSocket)", () => {
  test("connect, notifications in order, acked, ping", async () => {
    const user = newUser();
    const r = await real(user);
    r.c.connect();
    await openAndConnected(r);
    assert.equal(r.ev.connected[0].user_id, user);
    assert.equal("recovered" in r.ev.connected[0], false, "recovered without last_id");
    const ids = await sendMany(user, ["one", "two", "three"]);
    assert.ok(await waitFor(() => r.ev.notification.length >= 3, 5000), "notifications missing");
    assert.deepEqual(r.ev.notification.map((n) => n.id), ids);
    assert.deepEqual(r.ev.notification.map((n) => n.title), ["one", "two", "three"]);
    assert.equal(r.c.lastId, ids[2]);
    await waitAcked(user, ids);
    const rtt = await r.c.ping();
    assert.ok(rtt >= 0 && rtt < 2000, "rtt " + rtt);
    r.c.close();
  });

  test("worker SIGKILLed: reconnects with last_id, gets what was sent meanwhile exactly once, in order", async () => {
    const user = newUser();
    // A fixed 1.5 s delay before the reconnect, so the sends below happen while it is away.
    const r = await real(user, { backoff: { initialMs: 1500, maxMs: 3000 }, random: () => 1 });
    r.c.connect();
    await openAndConnected(r);
    const before = await sendMany(user, ["b1", "b2"]);
    assert.ok(await waitFor(() => r.ev.notification.length >= 2, 5000));
    const killed = await killWorkerOf(user);
    assert.ok(await waitFor(() => r.c.status === "reconnecting", 5000), "status " + r.c.status);
    const away = await sendMany(user, ["away1", "away2", "away3"]);
    await openAndConnected(r, 2);
    assert.equal(r.ev.connected[1].recovered, true, "resume did not use last_id: " +
      JSON.stringify(r.ev.connected[1]));
    const live = await sendMany(user, ["live"]);
    assert.ok(await waitFor(() => r.ev.notification.length >= 6, 5000),
      "got " + JSON.stringify(r.ev.notification.map((n) => n.title)));
    await sleep(300); // a duplicate would show here
    assert.deepEqual(r.ev.notification.map((n) => n.id), [...before, ...away, ...live],
      `(killed worker ${killed.slot})`);
    assert.equal(await connections(user), 2);
    await waitAcked(user, [...away, ...live]);
    r.c.close();
  });

  test("a new client resumes from the stored last id", async () => {
    const user = newUser();
    const storage = memoryStorage();
    const a = await real(user, { storage });
    a.c.connect();
    await openAndConnected(a);
    const first = await sendMany(user, ["s1"]);
    assert.ok(await waitFor(() => a.ev.notification.length >= 1, 5000));
    a.c.close();
    const later = await sendMany(user, ["s2", "s3"]);
    assert.equal(storage.get(), first[0]);
    const b = await real(user, { storage }); // e.g. the page loaded again
    b.c.connect();
    await openAndConnected(b);
    assert.equal(b.ev.connected[0].recovered, true);
    assert.ok(await waitFor(() => b.ev.notification.length >= 2, 5000));
    await sleep(200);
    assert.deepEqual(b.ev.notification.map((n) => n.id), later);
    b.c.close();
  });

  test("a second client of the user: the first gets 4000, status replaced, and never reconnects", async () => {
    const user = newUser();
    const a = await real(user);
    a.c.connect();
    await openAndConnected(a);
    const b = await real(user);
    b.c.connect();
    await openAndConnected(b);
    assert.ok(await waitFor(() => a.c.status === "replaced", 5000), "first client: " + a.c.status);
    const s = a.ev.status.at(-1);
    assert.deepEqual([s.code, s.reason], [4000, "replaced by a newer connection"]);
    await sleep(3000); // a's back-off is 100 ms..1 s: a reconnect would have happened
    assert.equal(a.c.status, "replaced");
    assert.equal(await connections(user), 2, "connections of the user (a reconnect?)");
    assert.equal(b.c.status, "open");
    const ids = await sendMany(user, ["to b"]);
    assert.ok(await waitFor(() => b.ev.notification.length >= 1, 5000));
    assert.deepEqual(b.ev.notification.map((n) => n.id), ids);
    assert.equal(a.ev.notification.length, 0);
    b.c.close();
  });

  test("a refused token (401) stops at once: no retry loop", async () => {
    const user = newUser();
    let attempts = 0;
    class Counting extends WebSocket {
      constructor(...a) { super(...a); attempts++; }
    }
    const bad = (await token(user)).replace(/.$/, (ch) => (ch === "A" ? "B" : "A")); // bad signature
    const r = await real(user, { token: bad, WebSocket: Counting });
    r.c.connect();
    assert.ok(await waitFor(() => r.c.status === "closed", 5000), "status " + r.c.status);
    assert.equal(r.ev.error.at(-1).httpStatus, 401);
    assert.match(r.ev.error.at(-1).message, /HTTP 401; not reconnecting/);
    await sleep(300);
    assert.equal(attempts, 1);
  });
});
