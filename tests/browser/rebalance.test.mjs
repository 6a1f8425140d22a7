// Rebalancing as a person sees it: two instances of the suite (all-in-one processes on the real
// Cassandra and Redis, so they share data, locks and the fleet) behind nginx set up as the stream
// Ingress is — round robin, no affinity. The test agent page streams from the first instance; a
// second one starts; the first hands streams off, and the page carries on from the second by
// itself.
//
//   KUBESCALER_BIN=target/debug/kubescaler CASSANDRA_NODES=127.0.0.1:9042 \
//     REDIS_URL=redis://127.0.0.1:6379 node --test tests/browser/rebalance.test.mjs
//   (scripts/browser-test.sh rebalance sets everything up; scripts/services.sh up first)
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, jsonAt, launchChromium, startSuite, until } from "./support.mjs";

const CASSANDRA = process.env.CASSANDRA_NODES ?? "127.0.0.1:9042";
const REDIS = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
// Streams beside the page on the first instance: with the page, 10; the fair share is then 5.
const OTHERS = 9;

const suites = [];
const children = [];
const readers = [];
let browser, url, work, json;

async function instance(port, host) {
  const env = {
    CASSANDRA_NODES: CASSANDRA,
    CASSANDRA_KEYSPACE: "kubescaler_browser",
    REDIS_URLS: REDIS,
    HOSTNAME: host,
    LOCK_REFRESH: "1s",
    REBALANCE_PERIOD: "1s",
    STREAM_MESSAGE_BYTES: "2000",
  };
  suites.push(await startSuite(port, env, "kubescaler-rebalance"));
}

// A stream read to its end in the background, like a client that is not a browser.
function read(user, profile) {
  const abort = new AbortController();
  readers.push(abort);
  fetch(`${url}/stream/${user}/${profile}`, { signal: abort.signal, headers: { Accept: "text/event-stream" } })
    .then(async (response) => {
      for await (const _ of response.body) {
      }
    })
    .catch(() => {});
}

before(async () => {
  work = mkdtempSync(join(tmpdir(), "kubescaler-rebalance-"));
  const [a, b, front] = [await freePort(), await freePort(), await freePort()];
  globalThis.ports = { a, b };
  url = `http://127.0.0.1:${front}`;
  json = jsonAt(url);
  // The stream Ingress's settings: no buffering, long reads, round robin, no affinity. An
  // instance not listening yet is skipped for that request only (max_fails=0).
  writeFileSync(
    join(work, "nginx.conf"),
    `worker_processes 1; pid ${work}/nginx.pid; error_log ${work}/error.log; daemon off;
     events { worker_connections 1024; }
     http {
       access_log off;
       client_body_temp_path ${work}; proxy_temp_path ${work}; fastcgi_temp_path ${work};
       uwsgi_temp_path ${work}; scgi_temp_path ${work};
       upstream suite { server 127.0.0.1:${a} max_fails=0; server 127.0.0.1:${b} max_fails=0; }
       server {
         listen 127.0.0.1:${front};
         location / {
           proxy_pass http://suite; proxy_http_version 1.1; proxy_set_header Connection "";
           proxy_buffering off; proxy_read_timeout 3600s;
         }
       }
     }`,
  );
  children.push(spawn("nginx", ["-p", work, "-c", join(work, "nginx.conf")], { stdio: "ignore" }));
  await instance(a, "agent-a");
  await until("nginx", async () => (await fetch(`${url}/readyz`)).ok);
  await json("/main/testdata", { method: "DELETE" });
  await json("/main/testdata?profiles=4&users_per_profile=3&seed=5", { method: "POST" });
  await until("test data", async () => (await json("/main/testdata")).state === "done");
  browser = await launchChromium();
});

after(async () => {
  for (const reader of readers) reader.abort();
  await browser?.close();
  for (const suite of suites) suite.stop();
  for (const child of children) child.kill("SIGTERM");
  if (work) rmSync(work, { recursive: true, force: true });
});

test("a page handed off by a busy instance carries on from the other one by itself", async () => {
  const profiles = await json("/main/profiles");
  const pairs = profiles.flatMap((p) => p.users.map((u) => [u, p.id]));
  assert.ok(pairs.length > OTHERS, `${pairs.length} pairs`);
  for (const [user, profile] of pairs.slice(0, OTHERS)) read(user, profile);
  const [user, profile] = pairs[OTHERS];

  const page = await (await browser.newContext()).newPage();
  await page.goto(`${url}/index/${user}/${profile}`);
  const host = () => page.locator("#host").textContent();
  await until("the page streaming from agent-a", async () => (await host()) === "agent-a");
  await page.waitForFunction(() => document.getElementById("status").textContent === "Streaming.");
  assert.equal(await page.locator("#reconnects").textContent(), "0");

  // The second instance starts: the first holds 10, the fair share is 5, and the page — the
  // stream it opened last — is among those it hands off.
  await instance(globalThis.ports.b, "agent-b");
  const started = Date.now();
  await until("the page streaming from agent-b", async () => (await host()) === "agent-b", 15000);
  const moved = (Date.now() - started) / 1000;
  await page.waitForFunction(() => document.getElementById("status").textContent === "Streaming.");
  // The counters are redrawn every second.
  await page.waitForFunction(() => Number(document.getElementById("reconnects").textContent) >= 1, null, { timeout: 3000 });
  const reconnects = Number(await page.locator("#reconnects").textContent());
  const before = Number((await page.locator("#count").textContent()).replaceAll(",", ""));
  await page.waitForFunction((n) => Number(document.getElementById("count").textContent.replaceAll(",", "")) > n + 5, before);
  console.log(`the page moved to agent-b ${moved.toFixed(1)} s after it started, in ${reconnects} reconnect(s)`);
});
