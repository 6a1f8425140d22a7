// What every browser test needs: all-in-one processes on free ports, test data, and a headless
// Chromium set up alike, so the tests differ only in what they check.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

export const BIN = process.env.KUBESCALER_BIN ?? "target/debug/kubescaler";
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";

export async function freePort() {
  return new Promise((resolve) => {
    const server = createServer().listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/// Polls `check` every 50 ms until it holds; fails the test after `ms`.
export async function until(what, check, ms = 15000) {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      if (await check()) return;
    } catch {}
    assert.ok(Date.now() < deadline, `${what} not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/// A JSON client for the suite at `url`: every answer must be a success.
export function jsonAt(url) {
  return async (path, init) => {
    const response = await fetch(url + path, init);
    assert.ok(response.ok, `${path}: ${response.status}`);
    return response.status === 204 ? null : response.json();
  };
}

/// The all-in-one process on `port` with `env` on top of this process's environment; ready when
/// this resolves. `dataDir` is made (and removed by `stop`) unless the env names one.
export async function startSuite(port, env, name = "kubescaler-browser") {
  const dataDir = env.DATA_DIR ?? mkdtempSync(join(tmpdir(), `${name}-`));
  const child = spawn(BIN, [], {
    env: { ...process.env, PORT: String(port), DATA_DIR: dataDir, RUST_LOG: "warn", ...env },
    stdio: ["ignore", "ignore", "inherit"],
  });
  await until(`the all-in-one process on ${port}`, async () => (await fetch(`http://127.0.0.1:${port}/readyz`)).ok, 60000);
  return {
    stop() {
      child.kill("SIGTERM");
      if (!env.DATA_DIR) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/// Creates test data through main and waits until the generation is done.
export async function testData(url, query) {
  const json = jsonAt(url);
  await json(`/main/testdata?${query}`, { method: "POST" });
  await until("test data", async () => {
    const progress = await json("/main/testdata");
    if (progress.state === "running") return false;
    assert.equal(progress.state, "done");
    return true;
  });
}

export async function launchChromium() {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", "--no-first-run",
    ],
  });
}
