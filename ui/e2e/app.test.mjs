// The desktop app end to end, through WebDriver against the real app binary.
import assert from "node:assert/strict";
import path from "node:path";
import { after, before, test } from "node:test";
import { byTest, caFile, clinic, expireSessions, root, startApp, startProxy, startServer, tempDir, typeInto, until } from "./harness.mjs";

let server, proxy, app, browser, cli;
const serverDir = tempDir("clinic-e2e-server-");
const appDir = tempDir("clinic-e2e-app-");
const cliDir = tempDir("clinic-e2e-cli-");
const shots = path.join(root, "docs", "screenshots");

async function screenshot(name) {
  if (process.env.SCREENSHOTS) await browser.saveScreenshot(path.join(shots, `${name}.png`));
}

const setInput = (id, value) => typeInto(browser, id, value);

/** The element's text, or "" while it is not on screen (a form may still be waiting for the server). */
async function textOf(id) {
  const el = await byTest(browser, id);
  return (await el.isExisting()) ? el.getText() : "";
}

async function connectionText() {
  return (await byTest(browser, "connection")).getText();
}

async function searchFor(text) {
  await (await byTest(browser, "nav-patients")).click();
  await setInput("patient-search", text);
}

async function patientRowsText() {
  // Read in one go: the virtual list may re-render between finding a row and reading it.
  return browser.execute(() => [...document.querySelectorAll('[data-testid="patient-row"]')].map((r) => r.innerText));
}

/** Sets a native date/time picker as a user's pick would: value, then an input event. */
async function pick(id, value) {
  const el = await byTest(browser, id);
  await el.waitForExist({ timeout: 10000 });
  await browser.execute((testId, v) => {
    const input = document.querySelector(`[data-testid="${testId}"]`);
    const setter = Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, "value").set;
    setter.call(input, v);
    input.dispatchEvent(new Event("input", { bubbles: true }));
  }, id, value);
}

before(async () => {
  server = await startServer(serverDir);
  proxy = await startProxy(server.port);
  const ca = caFile(serverDir);
  clinic(cliDir, ["--server", server.url, "login", "--username", "admin", "--password-stdin"], "demo\n", ca);
  clinic(cliDir, ["sync"], undefined, ca);
  ({ browser, stop: app } = await startApp({ dataDir: appDir, server: proxy.url, ca }));
  cli = (args) => clinic(cliDir, args, undefined, ca);
});

after(async () => {
  await app?.();
  proxy?.close();
  await server?.kill();
});

test("signs in as reception", async () => {
  await until(browser, "the sign-in form", () => byTest(browser, "signin-form").then((e) => e.isExisting()));
  // CLINIC_SERVER pre-fills the server address (README).
  await until(browser, "the configured server", async () => (await (await byTest(browser, "signin-server")).getValue()) === proxy.url);
  await screenshot("sign-in");
  await setInput("signin-server", proxy.url);
  await setInput("signin-username", "reception");
  await setInput("signin-password", "demo");
  await (await byTest(browser, "signin-submit")).click();
  await until(browser, "the signed-in shell", async () => (await (await byTest(browser, "who")).isExisting()));
  assert.match(await (await byTest(browser, "who")).getText(), /Robin Reception · reception/);
  await until(browser, "live sync", async () => (await connectionText()) === "Live");
});

test("creates a patient and sees it in the list", async () => {
  await (await byTest(browser, "patient-new")).click();
  await setInput("patient-first_name", "Wendeline");
  await setInput("patient-last_name", "Okonkwo");
  await setInput("patient-date_of_birth", "1984-07-09");
  await setInput("patient-phone", "not a phone");
  await (await byTest(browser, "patient-save")).click();
  // The shared validation names the bad field inline; nothing is saved.
  await until(browser, "the inline phone error", () => byTest(browser, "error-phone").then((e) => e.isExisting()));
  await setInput("patient-phone", "+1 555 444 1234");
  await (await byTest(browser, "patient-save")).click();
  await until(browser, "the chart", async () => (await textOf("chart-name")) === "Wendeline Okonkwo");
  await searchFor("Okonkwo");
  await until(browser, "the new patient in the list", async () => (await patientRowsText()).some((t) => t.includes("Okonkwo, Wendeline")));
  await until(browser, "the change to be saved", async () => !(await (await byTest(browser, "pending")).isDisplayed()));
  await setInput("patient-search", "");
  await screenshot("patients");
});

test("a change made by another client appears without any action in the app", async () => {
  await searchFor("Zyxwvut");
  // The list follows the search as it runs: nobody by that name yet.
  await until(browser, "no Zyxwvut yet", async () => (await patientRowsText()).length === 0);
  cli(["patients", "add", "--first-name", "Ingrid", "--last-name", "Zyxwvut", "--date-of-birth", "1970-01-31"]);
  cli(["sync"]);
  await until(browser, "the CLI's patient in the app", async () => (await patientRowsText()).some((t) => t.includes("Zyxwvut, Ingrid")));
});

test("offline: changes queue with a pending count, then sync when the server is back", async () => {
  const port = server.port;
  await server.kill();
  await until(browser, "offline", async () => (await connectionText()).startsWith("Offline"), 30000);
  await (await byTest(browser, "patient-new")).click();
  await setInput("patient-first_name", "Offline");
  await setInput("patient-last_name", "Walkin");
  await setInput("patient-date_of_birth", "1999-12-01");
  await (await byTest(browser, "patient-save")).click();
  await until(browser, "the pending count", async () => /1 change waiting/.test(await textOf("pending")));
  await screenshot("offline");
  server = await startServer(serverDir, port);
  await until(browser, "synced again", async () => !(await (await byTest(browser, "pending")).isDisplayed()) && (await connectionText()) === "Live", 45000);
  const report = cli(["sync"]);
  assert.equal(report.pending, 0);
  const found = cli(["patients", "search", "Walkin"]);
  assert.equal(found.length, 1, "the offline patient reached the server and the other client");
});

test("booking a slot another client already took rolls back with the server's reason", async () => {
  const patient = cli(["patients", "search", "Okonkwo"])[0].id;
  const day = "2031-02-03";
  // The app is cut off, so it books without knowing the slot is gone.
  proxy.setUp(false);
  await until(browser, "offline", async () => (await connectionText()).startsWith("Offline"), 30000);
  await (await byTest(browser, "nav-schedule")).click();
  await pick("schedule-date", day);
  await (await byTest(browser, "book-open")).click();
  await setInput("book-patient-search", "Okonkwo");
  await until(browser, "the patient option", async () => (await browser.$$('[data-testid="book-patient"] option')).length > 1);
  await (await byTest(browser, "book-patient")).selectByIndex(1);
  await until(browser, "the doctors", async () => (await browser.$$('[data-testid="book-doctor"] option')).length > 0);
  await (await byTest(browser, "book-doctor")).selectByVisibleText("Dr. Dana Doyle");
  await pick("book-time", "10:00");
  await (await byTest(browser, "book-submit")).click();
  await until(browser, "the optimistic booking", async () => (await browser.$$('[data-testid="appointment"]')).length === 1);
  // Meanwhile another desk books the same doctor at the same time, and is first.
  cli(["sync"]);
  cli(["appointments", "book", "--patient", patient, "--doctor", "doctor", "--start", `${day}T10:00:00Z`, "--end", `${day}T10:30:00Z`]);
  cli(["sync"]);
  proxy.setUp(true);
  await until(browser, "the rejection", async () => (await (await byTest(browser, "rejected-count")).isDisplayed()), 45000);
  await (await byTest(browser, "rejected-count")).click();
  const reason = await (await byTest(browser, "rejected-reason")).getText();
  assert.match(reason, /Dana Doyle already has Wendeline Okonkwo at 10:00( AM)?–10:30( AM)?/);
  await screenshot("rejected");
  await (await byTest(browser, "nav-schedule")).click();
  await pick("schedule-date", day);
  // Only the other desk's booking remains; ours reverted.
  await until(browser, "the slot to revert", async () => {
    const rows = await browser.$$('[data-testid="appointment"]');
    return rows.length === 1 && !(await rows[0].getText()).includes("saving");
  });
});

test("reception never sees treatment records", async () => {
  // The demo clinic's completed visits have records; reception's mirror has none, and charts show none.
  await searchFor("a");
  const rows = await browser.$$('[data-testid="patient-row"]');
  assert.ok(rows.length > 0);
  for (const row of rows.slice(0, 5)) {
    await row.click();
    await until(browser, "the chart", () => byTest(browser, "patient-chart").then((e) => e.isExisting()));
    assert.equal(await (await byTest(browser, "records")).isExisting(), false);
  }
  await (await byTest(browser, "nav-schedule")).click();
  await pick("schedule-date", new Date().toISOString().slice(0, 10));
  await screenshot("schedule");
});

test("a user who signed in here before signs in again while the server is down", async () => {
  // Reception's sign-in expires (as after a week away): the app asks to sign in, and keeps the local data.
  expireSessions(serverDir);
  await until(browser, "the sign-in form", () => byTest(browser, "signin-form").then((e) => e.isExisting()), 45000);
  const port = server.port;
  await server.kill();
  await setInput("signin-username", "reception");
  await setInput("signin-password", "not-the-password");
  await (await byTest(browser, "signin-submit")).click();
  await until(browser, "the offline refusal", async () => /checked on this computer/.test(await textOf("signin-error")));
  await setInput("signin-password", "demo");
  await (await byTest(browser, "signin-submit")).click();
  await until(browser, "the signed-in shell", async () => (await (await byTest(browser, "who")).isExisting()));
  await until(browser, "offline", async () => /^(Offline|Reconnecting)/.test(await connectionText()), 30000);
  await (await byTest(browser, "patient-new")).click();
  await setInput("patient-first_name", "Signed");
  await setInput("patient-last_name", "Offlinesignin");
  await setInput("patient-date_of_birth", "1988-03-04");
  await (await byTest(browser, "patient-save")).click();
  await until(browser, "the pending count", async () => /1 change waiting/.test(await textOf("pending")));
  server = await startServer(serverDir, port);
  await until(browser, "signed in online and synced", async () => !(await (await byTest(browser, "pending")).isDisplayed()) && (await connectionText()) === "Live", 45000);
  // The week away expired the CLI's session too: it signs in again.
  clinic(cliDir, ["--server", server.url, "login", "--username", "admin", "--password-stdin"], "demo\n", caFile(serverDir));
  cli(["sync"]);
  assert.equal(cli(["patients", "search", "Offlinesignin"]).length, 1, "the change made after the offline sign-in reached the server");
});
