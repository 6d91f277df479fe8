// End-to-end harness: the real clinic-server (demo clinic, SQLite in a temp
// dir), tauri-driver + WebKitWebDriver driving the real desktop app, the
// real `clinic` CLI as a second client, and a small TCP proxy that can cut
// the app off from the server. Every wait is bounded.
import { spawn, execFileSync } from "node:child_process";
import { existsSync, mkdtempSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { remote } from "webdriverio";

export const root = path.resolve(import.meta.dirname, "../..");
const targetDir = process.env.CARGO_TARGET_DIR ? path.resolve(root, process.env.CARGO_TARGET_DIR) : path.join(root, "target");
const bin = (name) => path.join(targetDir, "debug", name);

export function tempDir(prefix) {
  return mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** The clinic CA of a server's data dir (made by `tls init`), which the app and the CLI trust. */
export const caFile = (dataDir) => path.join(dataDir, "tls", "ca.pem");

/**
 * Starts clinic-server over TLS (a clinic CA from `tls init` on first start);
 * resolves with {url, port, stop(), kill()}.
 */
export async function startServer(dataDir, port = 0, extra = []) {
  if (!existsSync(caFile(dataDir))) {
    execFileSync(bin("clinic-server"), ["--data-dir", dataDir, "tls", "init"], { encoding: "utf8", timeout: 60000 });
  }
  const child = spawn(bin("clinic-server"), ["--data-dir", dataDir, "serve", "--demo", "--listen", `127.0.0.1:${port}`, ...extra], {
    stdio: ["ignore", "pipe", "inherit"],
    env: { ...process.env, RUST_LOG: "warn" },
  });
  const line = await new Promise((resolve, reject) => {
    const rl = createInterface({ input: child.stdout });
    const timer = setTimeout(() => reject(new Error("server did not start")), 20000);
    rl.once("line", (l) => { clearTimeout(timer); resolve(l); });
    child.once("exit", (code) => reject(new Error(`server exited ${code}`)));
  });
  child.stdout.resume();
  const url = line.replace("clinic-server listening on ", "").trim();
  const actualPort = Number(new URL(url).port);
  return {
    url,
    port: actualPort,
    child,
    kill: () => new Promise((resolve) => { child.once("exit", resolve); child.kill("SIGKILL"); }),
  };
}

/** A TCP proxy that forwards to 127.0.0.1:targetPort while `up` (TLS passes through it untouched). */
export async function startProxy(targetPort) {
  const sockets = new Set();
  let up = true;
  const server = net.createServer((inbound) => {
    if (!up) return inbound.destroy();
    const outbound = net.connect(targetPort, "127.0.0.1");
    sockets.add(inbound); sockets.add(outbound);
    inbound.pipe(outbound); outbound.pipe(inbound);
    const close = () => { inbound.destroy(); outbound.destroy(); sockets.delete(inbound); sockets.delete(outbound); };
    inbound.on("error", close); outbound.on("error", close); inbound.on("close", close); outbound.on("close", close);
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `https://127.0.0.1:${server.address().port}`,
    setUp(value) { up = value; if (!value) for (const s of sockets) s.destroy(); },
    close: () => { for (const s of sockets) s.destroy(); server.close(); },
  };
}

/** Runs the `clinic` CLI (JSON output) on its own data dir, trusting `ca` (a clinic CA file). */
export function clinic(dataDir, args, input, ca) {
  const out = execFileSync(bin("clinic"), ["--data-dir", dataDir, "--json", ...args], {
    input: input ?? "",
    encoding: "utf8",
    timeout: 60000,
    env: { ...process.env, ...(ca ? { CLINIC_CA_FILE: ca } : {}) },
  });
  return out.trim() ? JSON.parse(out) : null;
}

/** Expires every session in a server's database (what a week away does), with the sqlite3 tool. */
export function expireSessions(dataDir) {
  execFileSync("sqlite3", [path.join(dataDir, "clinic.db"), "PRAGMA busy_timeout = 5000; UPDATE sessions SET expires_at = '2000-01-01T00:00:00Z';"], {
    encoding: "utf8",
    timeout: 30000,
  });
}

/** Runs a `clinic-server` administration command on the server's data dir. */
export function serverAdmin(dataDir, args, input) {
  return execFileSync(bin("clinic-server"), ["--data-dir", dataDir, ...args], {
    input: input ?? "",
    encoding: "utf8",
    timeout: 60000,
  });
}

/** Whether something already listens on the port (another suite's tauri-driver). */
async function portInUse(port) {
  return new Promise((resolve) => {
    const s = net.connect(port, "127.0.0.1", () => { s.destroy(); resolve(true); });
    s.on("error", () => resolve(false));
  });
}

async function waitForPort(port, ms) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const ok = await new Promise((resolve) => {
      const s = net.connect(port, "127.0.0.1", () => { s.destroy(); resolve(true); });
      s.on("error", () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`port ${port} did not open`);
}

/**
 * Starts tauri-driver and a WebDriver session on the desktop app, trusting
 * `ca` (the clinic CA file IT hands out). A second desk at the same time
 * needs its own driver ports (`port`, `port + 1`); `env` adds to the app's
 * environment (TZ, CLINIC_LOGIN_USER, …).
 */
export async function startApp({ dataDir, server, ca, port = 4444, env = {} }) {
  const driverBin = process.env.TAURI_DRIVER ?? path.join(os.homedir(), ".cargo", "bin", "tauri-driver");
  // A driver already there belongs to another suite: its sessions would run our app with its environment.
  for (const p of [port, port + 1]) {
    if (await portInUse(p)) throw new Error(`port ${p} is in use (another WebDriver suite is running?); run the suites one after another`);
  }
  const driver = spawn(driverBin, ["--port", String(port), "--native-port", String(port + 1), "--native-driver", "/usr/bin/WebKitWebDriver"], {
    stdio: ["ignore", "ignore", "inherit"],
    // Its own process group: stopping it stops WebKitWebDriver and the app with it.
    detached: true,
    env: { ...process.env, CLINIC_DATA_DIR: dataDir, CLINIC_SERVER: server, ...(ca ? { CLINIC_CA_FILE: ca } : {}), ...env },
  });
  // Both ports: tauri-driver answers before WebKitWebDriver behind it does,
  // and a session asked for in between fails with a socket error that the
  // client retried, launching the app twice on one data dir (the second
  // window then stayed "Not syncing": the e2e flake of 2026-12-02).
  await waitForPort(port, 20000);
  await waitForPort(port + 1, 20000);
  const browser = await remote({
    hostname: "127.0.0.1",
    port,
    logLevel: "warn",
    connectionRetryTimeout: 60000,
    // Never ask twice: a second request starts a second app.
    connectionRetryCount: 0,
    capabilities: { "tauri:options": { application: process.env.CLINIC_DESKTOP_BIN ?? bin("clinic-desktop") } },
  });
  const stop = async () => {
    try { await browser.deleteSession(); } catch { /* the app may already be gone */ }
    const exited = new Promise((resolve) => { if (driver.exitCode !== null) resolve(); else driver.once("exit", resolve); });
    try { process.kill(-driver.pid, "SIGTERM"); } catch { /* already gone */ }
    await exited;
    // WebKitWebDriver may outlive tauri-driver for a moment: wait until the ports are free again.
    const deadline = Date.now() + 15000;
    while (Date.now() < deadline && ((await portInUse(port)) || (await portInUse(port + 1)))) await new Promise((r) => setTimeout(r, 100));
  };
  return { browser, stop };
}

/** Waits until `check()` returns a truthy value (polling the UI), or fails with `what`. */
export async function until(browser, what, check, timeout = 20000) {
  try {
    return await browser.waitUntil(check, { timeout, interval: 100, timeoutMsg: `timed out waiting for ${what}` });
  } catch (e) {
    // What the screen said when the wait gave up: the first thing to know in a CI log.
    const screen = await browser.execute(() => document.body?.innerText ?? "").catch(() => "(the app did not answer)");
    // The top (header, notices, forms) and the bottom (the status bar) of it.
    const all = String(screen);
    const shown = all.length > 2000 ? `${all.slice(0, 1200)}\n[…]\n${all.slice(-800)}` : all;
    e.message = `${e.message}\n--- on screen ---\n${shown}`;
    throw e;
  }
}

export const byTest = (browser, id) => browser.$(`[data-testid="${id}"]`);

/**
 * Sets a field as typing would: the value through the element's native
 * setter, then one input event (React's onChange). WebDriver's clear + send
 * keys is not safe on a controlled input: a re-render between the clear and
 * the first key writes the old value back, and the keys are appended to it.
 */
export async function typeInto(browser, id, value) {
  const el = await byTest(browser, id);
  await el.waitForExist({ timeout: 15000 });
  await browser.execute(
    (testId, v) => {
      const input = document.querySelector(`[data-testid="${testId}"]`);
      const proto = input instanceof HTMLTextAreaElement ? HTMLTextAreaElement.prototype : HTMLInputElement.prototype;
      const setter = Object.getOwnPropertyDescriptor(proto, "value").set;
      setter.call(input, v);
      input.dispatchEvent(new Event("input", { bubbles: true }));
    },
    id,
    value,
  );
}
