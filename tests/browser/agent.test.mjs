// The test agent page as a person sees it, in headless Chromium (Debian's package) driven by
// playwright-core, against the all-in-one process started with a short lock TTL.
//
//   KUBESCALER_BIN=target/debug/kubescaler node --test tests/browser/
//   (scripts/browser-test.sh sets everything up; SCREENSHOT=path saves the streaming page)
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { freePort, jsonAt, launchChromium, startSuite, testData } from "./support.mjs";

const TTL_SECONDS = 3;

let suite, browser, url, json;

before(async () => {
  const port = await freePort();
  url = `http://127.0.0.1:${port}`;
  json = jsonAt(url);
  suite = await startSuite(port, { LOCK_TTL: `${TTL_SECONDS}s`, LOCK_REFRESH: "1s", HOSTNAME: "agent-test" });
  await testData(url, "profiles=3&users_per_profile=2&seed=11");
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  suite?.stop();
});

async function pairs() {
  const [first] = await json("/main/profiles");
  const users = await json("/main/users");
  const stranger = users.map((u) => u.id).find((id) => !first.users.includes(id));
  assert.ok(stranger, "test data has a user outside the first profile");
  return { user: first.users[0], profile: first.id, stranger };
}

async function page() {
  // A context of its own: its own cookies and connections, like another browser.
  const context = await browser.newContext({ viewport: { width: 1100, height: 720 } });
  return context.newPage();
}

test("streams, locks, hands over after the TTL, and refuses an unbound pair", async () => {
  const { user, profile, stranger } = await pairs();
  const agent = `${url}/index/${user}/${profile}`;

  const first = await page();
  await first.goto(agent);
  await first.waitForFunction(() => document.getElementById("status").textContent === "Streaming.", null, { timeout: 5000 });
  await first.waitForFunction(() => document.querySelectorAll("#messages tr").length >= 3, null, { timeout: 5000 });
  const row = await first.locator("#messages tr").first().locator("td").allTextContents();
  assert.equal(row[1], "agent-test", "the host that served the message");
  assert.match(row[2], /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/, "its time");
  const count = Number((await first.locator("#count").textContent()).replaceAll(",", ""));
  await first.waitForFunction((n) => Number(document.getElementById("count").textContent.replaceAll(",", "")) > n, count, { timeout: 3000 });
  await first.waitForFunction(() => Number(document.getElementById("rate").textContent) > 0, null, { timeout: 3000 });
  if (process.env.SCREENSHOT) await first.screenshot({ path: process.env.SCREENSHOT });

  const second = await page();
  await second.goto(agent);
  await second.waitForFunction(() => /^Locked: .*Retrying in \d+ s\.$/.test(document.getElementById("status").textContent), null, { timeout: 5000 });

  await first.context().close();
  const closed = Date.now();
  await second.waitForFunction(() => document.getElementById("status").textContent === "Streaming.", null, { timeout: (TTL_SECONDS + 6) * 1000 });
  const waited = (Date.now() - closed) / 1000;
  assert.ok(waited >= TTL_SECONDS - 1.5, `connected ${waited} s after the first page closed, before the TTL`);
  await second.waitForFunction(() => document.querySelectorAll("#messages tr").length >= 1, null, { timeout: 3000 });
  await second.context().close();

  const unbound = await page();
  await unbound.goto(`${url}/index/${stranger}/${profile}`);
  await unbound.waitForFunction(() => document.getElementById("status").textContent.startsWith("Not bound"), null, { timeout: 5000 });
  await unbound.context().close();
});

test("the page at /index/{user}/{profile}/ (trailing slash, the original's form) streams too", async () => {
  const [first] = await json("/main/profiles");
  const agent = await page();
  await agent.goto(`${url}/index/${first.users[1]}/${first.id}/`);
  await agent.waitForFunction(() => document.getElementById("status").textContent === "Streaming.", null, { timeout: 5000 });
  await agent.waitForFunction(() => document.querySelectorAll("#messages tr").length >= 1, null, { timeout: 3000 });
  assert.equal(await agent.locator("#user").textContent(), first.users[1]);
  assert.equal(await agent.locator("#profile").textContent(), first.id);
  await agent.context().close();
});
