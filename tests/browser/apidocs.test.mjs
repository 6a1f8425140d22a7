// main's browsable API page in Chromium, through the all-in-one's front door: swagger-ui
// renders every operation of the document from the files embedded in the binary (no request
// leaves the machine), and "Try it out" calls the API where the page is mounted.
//
//   KUBESCALER_BIN=target/debug/kubescaler node --test tests/browser/apidocs.test.mjs
//   (scripts/browser-test.sh apidocs sets everything up)
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { freePort, jsonAt, launchChromium, startSuite, testData, until } from "./support.mjs";

let suite, browser, url, json;

before(async () => {
  const port = await freePort();
  url = `http://127.0.0.1:${port}`;
  json = jsonAt(url);
  suite = await startSuite(port, { HOSTNAME: "apidocs-test" }, "kubescaler-apidocs");
  await testData(url, "profiles=2&users_per_profile=2&seed=11");
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  suite?.stop();
});

test("the API page renders every operation and calls the API where it is mounted", async () => {
  const page = await browser.newPage();
  const elsewhere = [];
  page.on("request", (request) => {
    if (!request.url().startsWith(url) && !request.url().startsWith("data:")) elsewhere.push(request.url());
  });
  const doc = await json("/main/openapi.json");
  const operations = Object.values(doc.paths).flatMap((item) =>
    Object.keys(item).filter((key) => ["get", "post", "put", "delete", "patch", "head"].includes(key)),
  ).length;

  // Deep-linked to GET /users (tag `data`, operation `users`), which swagger-ui opens itself.
  await page.goto(`${url}/main/docs#/data/users`);
  await until("swagger-ui to render the document", async () =>
    (await page.locator(".opblock").count()) === operations,
  );
  assert.match(await page.locator(".info .title").first().innerText(), /kubescaler main/);

  // Try GET /users from the page: the request goes to /main/users, as the servers list says.
  const block = page.locator("#operations-data-users");
  const tryIt = block.getByRole("button", { name: "Try it out" });
  // Open it by hand only if the deep link did not (a click on an open block would close it).
  await tryIt.waitFor({ state: "visible", timeout: 5000 }).catch(() => block.locator(".opblock-summary").click());
  await tryIt.click();
  const answer = page.waitForResponse((response) => new URL(response.url()).pathname === "/main/users");
  await block.getByRole("button", { name: "Execute" }).click();
  const response = await answer;
  assert.equal(response.status(), 200);
  assert.deepEqual(await response.json(), await json("/main/users"));
  await until("the answer shown on the page", async () =>
    (await block.locator(".responses-wrapper .live-responses-table").count()) > 0,
  );
  assert.deepEqual(elsewhere, [], "the page loads nothing from elsewhere");
  await page.close();
});
