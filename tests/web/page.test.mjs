// page.test.mjs — scripts/web/test_websocket.html in headless Chromium
// (playwright-core, /usr/bin/chromium, never a downloaded browser) against the
// real wsnotifyd: paste a token (and log in, when the daemon has --demo),
// connect, notifications listed in order and acked, ping, the worker SIGKILLed
// -> it reconnects with last_id and shows what was sent meanwhile once, a
// second tab of the user -> "replaced" and no reconnect; server data shown
// as text and javascript: links never clickable (also against a fake server
// that sends the nastiest data). Run by tests/e2e/e2e_web.py.
//
// Until the daemon has --demo (WSN_DEMO=1), the page is served by a static
// server of this file (with the headers the daemon should send, CSP included),
// and the login form (which needs the daemon's origin) is tried against a
// stand-in endpoint of that server. The fake-server test always uses it.

import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import fs from "node:fs";
import path from "node:path";
import { env, requireDep, newUser, token, send, waitAcked, connections, killWorkerOf,
  sleep, waitFor } from "./helpers.mjs";

const { chromium } = requireDep("playwright-core");
const { WebSocketServer } = requireDep("ws");
const DEMO = env.WSN_DEMO === "1";
const ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync"];

// The headers recommended for the daemon's GET /test_websocket.html and /wsnotify-client.js.
const CSP = "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'unsafe-inline'; " +
  "connect-src 'self' ws: wss: http: https:; img-src 'self'; base-uri 'none'; form-action 'none'; " +
  "frame-ancestors 'none'";
const TYPES = { ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8" };

function staticServer(dir) {
  const files = new Map(["test_websocket.html", "wsnotify-client.js"].map((f) => [
    "/" + f, { body: fs.readFileSync(path.join(dir, f)), type: TYPES[path.extname(f)] }]));
  const srv = http.createServer(async (req, res) => {
    if (req.url === "/api/v1/auth/login" && req.method === "POST") return standInLogin(req, res);
    const f = files.get(new URL(req.url, "http://x").pathname);
    if (!f || req.method !== "GET") {
      res.writeHead(404, { "Content-Type": "application/json" }).end('{"error":"not_found"}');
      return;
    }
    res.writeHead(200, { "Content-Type": f.type, "Content-Length": f.body.length,
      "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff",
      "Content-Security-Policy": CSP, "Referrer-Policy": "no-referrer" });
    res.end(f.body);
  });
  return new Promise((resolve) => srv.listen(0, "127.0.0.1", () => resolve(srv)));
}

// Until the daemon has --demo: SPEC's POST /api/v1/auth/login, for the page's form.
async function standInLogin(req, res) {
  let body = "";
  for await (const chunk of req) body += chunk;
  let j = {};
  try {
    j = JSON.parse(body);
  } catch {
    res.writeHead(400, { "Content-Type": "application/json" }).end('{"error":"bad_request"}');
    return;
  }
  if (j.email !== env.WSN_LOGIN_EMAIL || j.password !== env.WSN_LOGIN_PASSWORD) {
    res.writeHead(401, { "Content-Type": "application/json" }).end('{"error":"invalid_credentials"}');
    return;
  }
  const user = Number(env.WSN_LOGIN_USER_ID);
  res.writeHead(200, { "Content-Type": "application/json" }).end(JSON.stringify({
    access_token: await token(user, j.email), token_type: "Bearer", expires_in: 600, user_id: user }));
}

let browser, staticSrv, staticOrigin;
const pageOrigin = () => (DEMO ? env.WSN_HTTP_URL : staticOrigin);

before(async () => {
  staticSrv = await staticServer(env.WSN_WEB_DIR);
  staticOrigin = `http://127.0.0.1:${staticSrv.address().port}`;
  browser = await chromium.launch({ executablePath: env.WSN_CHROMIUM || "/usr/bin/chromium",
    args: ARGS, timeout: 20000 });
  console.log(DEMO ? `page served by wsnotifyd --demo at ${env.WSN_HTTP_URL}/test_websocket.html`
    : `not using wsnotifyd --demo (missing, or failed the driver's check): page served by this ` +
      `test at ${staticOrigin}; the login form is tested against a stand-in endpoint only`);
});

after(async () => {
  await browser?.close();
  staticSrv?.close();
});

/** A new browser context's page on the test page, recording dialogs, requests,
 *  console errors and every status the badge showed (window.__statuses). */
async function openPage(origin = pageOrigin()) {
  const ctx = await browser.newContext();
  const page = await ctx.newPage();
  page.setDefaultTimeout(10000);
  const rec = { dialogs: [], requests: [], errors: [] };
  page.on("dialog", (d) => { rec.dialogs.push(d.message()); d.dismiss().catch(() => {}); });
  page.on("request", (r) => rec.requests.push(r.url()));
  page.on("websocket", (w) => rec.requests.push(w.url()));
  page.on("pageerror", (e) => rec.errors.push(String(e)));
  const resp = await page.goto(`${origin}/test_websocket.html`);
  assert.equal(resp.status(), 200);
  await page.waitForFunction(() => document.getElementById("server-url").value !== "");
  await page.evaluate(() => {
    const s = document.getElementById("status");
    window.__statuses = [s.dataset.status];
    new MutationObserver(() => window.__statuses.push(s.dataset.status))
      .observe(s, { attributes: true, attributeFilter: ["data-status"] });
  });
  return { ctx, page, rec };
}

async function connectWith(page, tok, wsUrl = env.WSN_WS_URL) {
  await page.fill("#server-url", wsUrl);
  await page.fill("#token", tok);
  await page.click("#connect-btn");
  await waitStatus(page, "open");
}

const waitStatus = (page, s, timeout = 10000) =>
  page.waitForFunction((s) => document.getElementById("status").dataset.status === s, s, { timeout });

const listed = (page) => page.$$eval("#notifications li.notification", (lis) => lis.map((li) => ({
  id: Number(li.dataset.id), title: li.querySelector(".title").textContent,
  link: li.querySelector(".link") ? { tag: li.querySelector(".link").tagName,
    href: li.querySelector(".link").getAttribute("href"), text: li.querySelector(".link").textContent } : null,
})));

async function waitListed(page, n) {
  assert.ok(await waitFor(async () => (await listed(page)).length >= n, 10000),
    `the page lists ${(await listed(page)).length} notifications, not ${n}`);
  return listed(page);
}

describe("test_websocket.html in Chromium", () => {
  test(DEMO ? "log in with the form (wsnotifyd --demo --users-file), then connect with its token"
    : "log in with the form (a stand-in login endpoint: wsnotifyd has no --demo yet), then connect",
  async () => {
    const { ctx, page } = await openPage(DEMO ? env.WSN_HTTP_URL : staticOrigin);
    if (DEMO) assert.equal(await page.inputValue("#server-url"), env.WSN_WS_URL);
    else await page.fill("#server-url", `ws://127.0.0.1:${staticSrv.address().port}/ws`); // login there
    await page.fill("#email", env.WSN_LOGIN_EMAIL);
    await page.fill("#password", "wrong password");
    await page.click("#login-btn");
    await page.waitForFunction(() => /failed/.test(document.getElementById("login-result").textContent));
    assert.match(await page.textContent("#login-result"), /401/);
    await page.fill("#password", env.WSN_LOGIN_PASSWORD);
    await page.click("#login-btn");
    await page.waitForFunction(() => /logged in/.test(document.getElementById("login-result").textContent));
    const tok = await page.inputValue("#token");
    assert.ok(tok.split(".").length === 3, "no JWT in #token: " + tok);
    await page.fill("#server-url", env.WSN_WS_URL);
    await page.click("#connect-btn");
    await waitStatus(page, "open");
    await page.waitForFunction((u) => document.getElementById("connected-info").textContent
      .includes(`"user_id": ${u}`), Number(env.WSN_LOGIN_USER_ID));
    await ctx.close();
  });

  // One page of one user through the steps below (each test goes on from the one before).
  const user = newUser();
  let tok, one, page, rec, ids;

  test("paste a token and connect: badge open, the connected message", async () => {
    tok = await token(user);
    one = await openPage();
    ({ page, rec } = one);
    if (DEMO) assert.equal(await page.inputValue("#server-url"), env.WSN_WS_URL, "default server URL");
    await connectWith(page, tok);
    await page.waitForFunction((u) => document.getElementById("connected-info").textContent
      .includes(`"user_id": ${u}`), user);
    assert.ok(!(await page.textContent("#connected-info")).includes("recovered"));
  });

  test("three notifications: listed in order, acked", async () => {
    ids = [];
    for (const title of ["first", "second", "third"]) ids.push((await send(user, { title })).notification_id);
    const got = await waitListed(page, 3);
    assert.deepEqual(got.map((n) => [n.id, n.title]), [[ids[0], "first"], [ids[1], "second"], [ids[2], "third"]]);
    await waitAcked(user, ids);
    assert.equal(await page.textContent("#last-id"), String(ids[2]));
    assert.equal(await page.textContent("#count"), "3");
  });

  test("the ping button shows the pong", async () => {
    await page.click("#ping-btn");
    await page.waitForFunction(() => /^pong in \d/.test(document.getElementById("pong-result").textContent));
  });

  test("the worker holding it is SIGKILLed: reconnects by itself with last_id, shows what it missed once", async () => {
    await killWorkerOf(user);
    assert.ok(await waitFor(() => page.evaluate(() => window.__statuses.includes("reconnecting")), 5000),
      "never showed reconnecting");
    const away = (await send(user, { title: "while away" })).notification_id;
    await waitStatus(page, "open", 15000);
    await page.waitForFunction(() => document.getElementById("connected-info").textContent
      .includes('"recovered": true'));
    await waitListed(page, 4);
    await sleep(500); // a duplicate would show here
    const got = await listed(page);
    assert.deepEqual(got.map((n) => n.id), [...ids, away], "after the reconnect");
    await waitAcked(user, [away]);
  });

  test("links: a relative one is a link on the page's origin, javascript: never a link", async () => {
    const rel = (await send(user, { title: "relative link", link: "/orders/1" })).notification_id;
    const accepted = [];
    for (const link of ["javascript:alert(1)", "java\tscript:alert(2)", " JavaScript:alert(3)"]) {
      const r = await send(user, { title: "evil link", link });
      if (r.refused) console.log(`the daemon refused the link ${JSON.stringify(link)}: ${r.stderr}`);
      else accepted.push(r.notification_id);
    }
    const got = await waitListed(page, 5 + accepted.length);
    const relItem = got.find((n) => n.id === rel);
    assert.deepEqual([relItem.link.tag, relItem.link.href], ["A", `${pageOrigin()}/orders/1`]);
    for (const id of accepted) {
      const n = got.find((x) => x.id === id);
      assert.equal(n.link.tag, "SPAN", "a javascript: link is clickable: " + JSON.stringify(n));
      await page.click(`li[data-id="${id}"] .link`);
    }
    const protocols = await page.$$eval("a[href]", (as) => as.map((a) => a.protocol));
    assert.ok(protocols.every((p) => p === "http:" || p === "https:"), "links: " + protocols);
  });

  test("another tab of the user takes over: replaced, says why, never reconnects", async () => {
    const before = await connections(user);
    const two = await openPage();
    try {
      await connectWith(two.page, tok);
      await waitStatus(page, "replaced");
      assert.match(await page.textContent("#status-detail"), /4000.*another tab or device/);
      await sleep(3000);
      assert.equal(await page.getAttribute("#status", "data-status"), "replaced");
      assert.equal(await connections(user), before + 1, "the replaced page reconnected");
      assert.equal(await two.page.getAttribute("#status", "data-status"), "open");
      assert.equal(await page.isEnabled("#connect-btn"), true);
      const shot = env.WSN_SCREENSHOT || "/tmp/wsnotify-test-page.png";
      await page.screenshot({ path: shot, fullPage: true });
      console.log("screenshot: " + shot);
    } finally {
      await two.ctx.close();
    }
  });

  test("no dialog, no page error, no request off this machine", async () => {
    assert.deepEqual(rec.dialogs, []);
    assert.deepEqual(rec.errors, []);
    const hosts = new Set(rec.requests.map((u) => new URL(u).hostname));
    assert.deepEqual([...hosts], ["127.0.0.1"], "requests: " + rec.requests);
    await one.ctx.close();
  });

  test("server data is text, never markup or a javascript: link (fake server)", async () => {
    const wss = new WebSocketServer({ host: "127.0.0.1", port: 0 });
    await new Promise((r) => wss.once("listening", r));
    const acks = [];
    const nasty = [
      { id: 1, title: '<img src=x onerror="window.__xss=1">', message: "<b>bold</b><script>window.__xss=2</script>",
        notification_type: '"><svg onload=window.__xss=3>', link: "javascript:alert(1)",
        timestamp: "not a time" },
      { id: 2, title: "t2", message: "m", notification_type: "x", link: "java\nscript:alert(2)", timestamp: "2026-01-15T20:00:00Z" },
      { id: 3, title: "t3", message: "m", notification_type: "x", link: "data:text/html,<script>alert(3)</script>", timestamp: "2026-01-15T20:00:00Z" },
      { id: 4, title: "t4", message: "m", notification_type: "x", link: "vbscript:msgbox(4)", timestamp: "2026-01-15T20:00:00Z" },
      { id: 5, title: "t5", message: "m", notification_type: "x", link: "https://example.com/ok?a=1&b=<2>", timestamp: "2026-01-15T20:00:00Z" },
    ];
    wss.on("connection", (ws) => {
      ws.on("message", (m) => { const j = JSON.parse(m); if (j.type === "ack") acks.push(j.data.id); });
      ws.send(JSON.stringify({ type: "connected", data: { user_id: 1, email: "<i>e</i>", message: "hi" } }));
      for (const n of nasty) ws.send(JSON.stringify({ type: "notification", data: n }));
    });
    try {
      const { ctx, page, rec } = await openPage(staticOrigin);
      await connectWith(page, "a.b.c", `ws://127.0.0.1:${wss.address().port}/ws`);
      const got = await waitListed(page, nasty.length);
      assert.equal(got[0].title, nasty[0].title);
      assert.equal(await page.textContent('li[data-id="1"] .message'), nasty[0].message);
      assert.equal(await page.textContent('li[data-id="1"] .type'), nasty[0].notification_type);
      assert.equal(await page.$$eval("#notifications img, #notifications svg, #notifications script, #notifications b",
        (e) => e.length), 0);
      assert.deepEqual(got.map((n) => n.link.tag), ["SPAN", "SPAN", "SPAN", "SPAN", "A"]);
      assert.equal(got[4].link.href, "https://example.com/ok?a=1&b=%3C2%3E");
      for (const id of [1, 2, 3, 4]) await page.click(`li[data-id="${id}"] .link`);
      await sleep(200);
      assert.equal(await page.evaluate(() => window.__xss), undefined);
      assert.deepEqual(rec.dialogs, []);
      assert.ok(await waitFor(() => acks.length === nasty.length, 3000), "acks: " + acks);
      assert.deepEqual(acks, [1, 2, 3, 4, 5]);
      await ctx.close();
    } finally {
      for (const c of wss.clients) c.terminate();
      wss.close();
    }
  });
});
