// A browser's own EventSource, with no retry code of its own, against a pair that streams
// elsewhere: the service answers the refusal as an event stream (`retry:` until the lock can
// expire, one `refused` event), so EventSource keeps trying by itself — a non-200 answer would
// make it give up for good — and streams once the other client's lock has expired.
//
//   KUBESCALER_BIN=target/debug/kubescaler node --test tests/browser/eventsource.test.mjs
//   (scripts/browser-test.sh eventsource sets everything up)
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { freePort, jsonAt, launchChromium, startSuite, testData } from "./support.mjs";

const TTL_SECONDS = 3;

let suite, browser, url, json;

before(async () => {
  const port = await freePort();
  url = `http://127.0.0.1:${port}`;
  json = jsonAt(url);
  suite = await startSuite(
    port,
    {
      LOCK_TTL: `${TTL_SECONDS}s`,
      LOCK_REFRESH: "1s",
      // The pair stays locked after its client leaves, until the TTL passes.
      RELEASE_ON_DISCONNECT: "false",
      HOSTNAME: "eventsource-test",
    },
    "kubescaler-eventsource",
  );
  await testData(url, "profiles=2&users_per_profile=2&seed=7");
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  suite?.stop();
});

// A client that is not a browser streams the pair until `abort`; resolves once it has a message.
async function streamElsewhere(path, abort) {
  const response = await fetch(url + path, { signal: abort.signal, headers: { Accept: "text/event-stream" } });
  assert.equal(response.status, 200);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!/^id: /m.test(text)) {
    const { value, done } = await reader.read();
    assert.ok(!done, "the first client's stream ended before its first message");
    text += value;
  }
  // Keep reading, as a live client does, until it leaves.
  (async () => {
    try {
      while (!(await reader.read()).done) {}
    } catch {}
  })();
}

test("EventSource gets `refused` while the pair is locked, then streams by itself once the lock expired", async () => {
  const [profile] = await json("/main/profiles");
  const path = `/stream/${profile.users[0]}/${profile.id}`;
  const first = new AbortController();
  await streamElsewhere(path, first);

  const context = await browser.newContext();
  const page = await context.newPage();
  // Any page of the service: EventSource needs the same origin.
  await page.goto(`${url}/`);
  await page.evaluate((path) => {
    window.seen = [];
    window.source = new EventSource(path);
    const note = (entry) => window.seen.push({ ...entry, at: Date.now() });
    window.source.addEventListener("refused", (e) => note({ type: "refused", data: JSON.parse(e.data) }));
    window.source.addEventListener("message", (e) => {
      if (!window.seen.some((s) => s.type === "message")) note({ type: "message", data: JSON.parse(e.data) });
    });
    window.source.addEventListener("error", () => note({ type: "error", state: window.source.readyState }));
  }, path);
  await page.waitForFunction(() => window.seen.some((s) => s.type === "refused"), null, { timeout: 5000 });
  const [refused] = await page.evaluate(() => window.seen.filter((s) => s.type === "refused"));
  assert.equal(refused.data.error, "locked");
  assert.ok(refused.data.retry_after_ms > 0 && refused.data.retry_after_ms <= TTL_SECONDS * 1000, JSON.stringify(refused));

  first.abort();
  const left = Date.now();
  await page.waitForFunction(() => window.seen.some((s) => s.type === "message"), null, { timeout: (TTL_SECONDS + 6) * 1000 });
  const seen = await page.evaluate(() => window.seen);
  const message = seen.find((s) => s.type === "message");
  assert.equal(message.data.host, "eventsource-test");
  const firstRefused = seen.findIndex((s) => s.type === "refused");
  assert.ok(firstRefused >= 0 && firstRefused < seen.indexOf(message), "refused first, then messages");
  const waited = (message.at - left) / 1000;
  assert.ok(waited >= TTL_SECONDS - 1.5, `streamed ${waited} s after the first client left, before its lock expired`);
  // EventSource.CLOSED (2) would mean it gave up; every end of a refusal left it CONNECTING (0).
  assert.ok(seen.filter((s) => s.type === "error").every((s) => s.state === 0), JSON.stringify(seen.filter((s) => s.type === "error")));
  assert.equal(await page.evaluate(() => window.source.readyState), 1, "open and streaming");
  await page.evaluate(() => window.source.close());
  await context.close();
});
