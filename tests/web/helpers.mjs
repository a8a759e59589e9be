// helpers.mjs — what tests/web/*.test.mjs share: the environment that
// tests/e2e/e2e_web.py sets, wsnotifyctl (token, send, status), the driver's
// control server, the npm packages, and bounded waiting.
//
// Environment (set by e2e_web.py):
//   WSN_WS_URL, WSN_HTTP_URL   the daemon's ws://…/ws and http://… (same port)
//   WSN_GRPC                   HOST:PORT of its gRPC port (wsnotifyctl --server)
//   JWT_SECRET, WSNOTIFYCTL    to mint tokens and send with build/wsnotifyctl
//   WSN_CONTROL_URL            the driver: GET /connections?user=U, POST /kill-worker?user=U
//   WSN_WEB_DIR                scripts/web
//   WSN_NODE_MODULES           a node_modules with ws and playwright-core
//   WSN_CHROMIUM               the browser (default /usr/bin/chromium)
//   WSN_DEMO                   "1": the daemon has --demo (serves the page) and a users file
//   WSN_LOGIN_EMAIL, WSN_LOGIN_PASSWORD, WSN_LOGIN_USER_ID   that users file's one user
//   WSN_USER_BASE              first user id this file may use
//   WSN_SCREENSHOT             where page.test.mjs saves its screenshot

import { execFile } from "node:child_process";
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";
import path from "node:path";

export const env = process.env;
for (const k of ["WSN_WS_URL", "WSN_HTTP_URL", "WSN_GRPC", "JWT_SECRET", "WSNOTIFYCTL",
  "WSN_CONTROL_URL", "WSN_WEB_DIR", "WSN_NODE_MODULES"]) {
  if (!env[k]) throw new Error(`${k} is not set: run these tests through tests/e2e/e2e_web.py`);
}

// ws and playwright-core from WSN_NODE_MODULES (ES modules ignore NODE_PATH).
export const requireDep = createRequire(path.join(env.WSN_NODE_MODULES, "noop.js"));

export async function importClient() {
  return import(pathToFileURL(path.join(env.WSN_WEB_DIR, "wsnotify-client.js")).href);
}

let nextUser = Number(env.WSN_USER_BASE || 4200000);
export const newUser = () => nextUser++;

function ctl(args, { allowFail = false } = {}) {
  return new Promise((resolve, reject) => {
    execFile(env.WSNOTIFYCTL, args, { timeout: 15000, env }, (err, stdout, stderr) => {
      if (err && !allowFail) reject(new Error(`wsnotifyctl ${args[0]} failed: ${err.message} ${stderr}`));
      else resolve({ ok: !err, code: err ? err.code : 0, stdout: stdout.trim(), stderr: stderr.trim() });
    });
  });
}

export async function token(user, email = `user${user}@example.com`) {
  return (await ctl(["token", "--user-id", String(user), "--email", email, "--ttl", "600"])).stdout;
}

/** SendNotification through wsnotifyctl -> {notification_id, delivered}; {refused} if it failed. */
export async function send(user, { type = "test", title = "t", message = "m", link, push = true } = {}) {
  const args = ["send", "--server", env.WSN_GRPC, "--user-id", String(user), "--type", type,
    "--title", title, "--message", message];
  if (link !== undefined) args.push("--link", link);
  if (!push) args.push("--no-push");
  const r = await ctl(args, { allowFail: link !== undefined });
  if (!r.ok) return { refused: true, stderr: r.stderr };
  return JSON.parse(r.stdout);
}

export async function state(user, id) {
  const r = await ctl(["status", "--server", env.WSN_GRPC, "--user-id", String(user), "--id", String(id)],
    { allowFail: true });
  return r.ok ? JSON.parse(r.stdout).state : "NOT_FOUND";
}

/** Waits until every id is ACKED (acks are committed asynchronously). */
export async function waitAcked(user, ids, ms = 5000) {
  let last = {};
  const ok = await waitFor(async () => {
    for (const id of ids) last[id] = await state(user, id);
    return ids.every((id) => last[id] === "ACKED");
  }, ms, 100);
  if (!ok) throw new Error("not all acked: " + JSON.stringify(last));
}

export async function control(method, what, user) {
  const r = await fetch(`${env.WSN_CONTROL_URL}/${what}?user=${user}`, { method });
  const body = await r.json();
  if (!r.ok) throw new Error(`control ${what}: ${body.error}`);
  return body;
}

export const connections = async (user) => (await control("GET", "connections", user)).count;
export const killWorkerOf = (user) => control("POST", "kill-worker", user);

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls pred (sync or async) until true or ms pass. -> whether it became true */
export async function waitFor(pred, ms = 5000, every = 25) {
  const end = Date.now() + ms;
  for (;;) {
    if (await pred()) return true;
    if (Date.now() >= end) return false;
    await sleep(every);
  }
}
