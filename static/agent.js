// The test agent: streams /stream/{user}/{profile} with fetch (which, unlike EventSource, lets
// it decide when to reconnect and when to stop), shows live counters, and says plainly why it
// is not streaming — from a JSON refusal's status, or from the `refused` event the service
// answers with instead to clients that accept only an event stream, as this one does.
// Reconnects at once when its instance hands the stream off (rebalance) or stops (shutdown),
// and after a lost lock or a dropped connection; counts its reconnects.
"use strict";

// The last two segments, so /index/{user}/{profile}/ (trailing slash) works as well; the page
// served there sets its base one level up, so the relative URLs below resolve the same.
const [user, profile] = location.pathname.split("/").filter(Boolean).slice(-2);
const streamUrl = `../../stream/${user}/${profile}`;
const $ = (id) => document.getElementById(id);
$("user").textContent = user;
$("profile").textContent = profile;

const totals = { messages: 0, bytes: 0, gaps: 0, reconnects: 0 };
let lastSeq = null;
let window_ = { messages: 0, bytes: 0 };

function status(text, kind) {
  const el = $("status");
  el.textContent = text;
  el.className = kind || "";
}

function countdown(seconds, text, then) {
  let left = Math.max(1, Math.ceil(seconds));
  const tick = () => {
    if (left <= 0) return then();
    status(`${text} Retrying in ${left} s.`, "wait");
    left -= 1;
    setTimeout(tick, 1000);
  };
  tick();
}

function showMessage(event) {
  const msg = JSON.parse(event.data);
  if (lastSeq !== null && msg.seq > lastSeq + 1) totals.gaps += msg.seq - lastSeq - 1;
  lastSeq = msg.seq;
  totals.messages += 1;
  totals.bytes += event.data.length;
  window_.messages += 1;
  window_.bytes += event.data.length;
  $("host").textContent = msg.host;
  const row = document.createElement("tr");
  for (const text of [msg.seq, msg.host, msg.timestamp, msg.message.slice(0, 40) + "…"]) {
    const cell = document.createElement("td");
    cell.textContent = text;
    row.appendChild(cell);
  }
  const body = $("messages");
  body.insertBefore(row, body.firstChild);
  while (body.children.length > 15) body.removeChild(body.lastChild);
}

setInterval(() => {
  $("rate").textContent = window_.messages;
  $("kbits").textContent = Math.round((window_.bytes * 8) / 1000).toLocaleString();
  $("count").textContent = totals.messages.toLocaleString();
  $("gaps").textContent = totals.gaps.toLocaleString();
  $("reconnects").textContent = totals.reconnects.toLocaleString();
  window_ = { messages: 0, bytes: 0 };
}, 1000);

// Splits an SSE byte stream into events ({event, data, id}).
async function* events(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const event = { event: "message", data: "", id: null, retry: null };
      for (const line of block.split("\n")) {
        if (line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const val = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "data") event.data += val;
        else if (field === "event") event.event = val;
        else if (field === "id") event.id = val;
        else if (field === "retry" && /^\d+$/.test(val)) event.retry = Number(val);
      }
      if (event.data) yield event;
    }
  }
}

// Back on the stream after `ms`, counted: the service asked for it (it moved or stopped).
function reconnect(ms, text) {
  totals.reconnects += 1;
  status(text, "wait");
  setTimeout(connect, ms);
}

// The HTTP status a refusal stands for, from the error code a `refused` event carries.
const STATUS_OF = { invalid_id: 400, not_bound: 403, not_found: 404, locked: 409, bad_gateway: 502, gateway_timeout: 504 };

// Says why the stream was refused, and tries again when that can help, after `wait` seconds.
function explain(code, body, wait) {
  const why = body.message || `HTTP ${code}`;
  // An instance draining to its share, or stopping: another one takes the stream, at once.
  if (code === 503 && (body.error === "rebalancing" || body.error === "shutting_down")) {
    return reconnect(body.retry_after_ms || 200, `This instance is ${body.error.replace("_", " ")}; trying another…`);
  }
  switch (code) {
    case 409:
      // The lock outlives a closed tab by up to its TTL; the service says when it expires.
      return countdown(wait, "Locked: this user and profile are streaming somewhere else.", connect);
    case 403:
      return status(`Not bound: ${why}. Nothing to stream for this pair.`, "bad");
    case 404:
      return status(`Unknown profile: ${why}.`, "bad");
    case 400:
      return status(`Invalid address: ${why}.`, "bad");
    default:
      return countdown(wait, `Unavailable (${code}): ${why}.`, connect);
  }
}

async function refused(response) {
  const body = await response.json().catch(() => ({}));
  explain(response.status, { message: response.statusText, ...body }, Number(response.headers.get("Retry-After")) || 5);
}

async function connect() {
  status("Connecting…");
  let response;
  try {
    response = await fetch(streamUrl, { headers: { Accept: "text/event-stream" }, cache: "no-store" });
  } catch (e) {
    return countdown(3, `Cannot reach the service (${e.message}).`, connect);
  }
  if (!response.ok) return refused(response);
  status("Connected…");
  lastSeq = null;
  try {
    for await (const event of events(response)) {
      const data = event.event === "message" ? null : JSON.parse(event.data || "{}");
      switch (event.event) {
        case "message":
          // Said at the first message, not at the answer: a refusal is a 200 answer too.
          if ($("status").textContent !== "Streaming.") status("Streaming.", "ok");
          showMessage(event);
          break;
        case "refused":
          return explain(STATUS_OF[data.error] ?? 503, data, (event.retry ?? 5000) / 1000);
        case "lock-lost":
          return countdown(5, `Lock lost: ${data.reason}.`, connect);
        case "unbound":
          return status(`Not bound any more: ${data.reason}.`, "bad");
        case "shutdown":
          return reconnect(data.reconnect_after_ms || 500, "This instance is shutting down; reconnecting to another…");
        case "rebalance":
          return reconnect(data.reconnect_after_ms || 250, "This instance hands the stream to a less busy one; reconnecting…");
      }
    }
  } catch (e) {
    return countdown(3, `Connection broken (${e.message}).`, connect);
  }
  countdown(3, "The stream ended.", connect);
}

connect();
