/**
 * The Chorus HTTP API as the page uses it: models, streams, stop, snapshot, and the event
 * feed of a stream.
 *
 * The feed is read with fetch() and the parser in sse.js rather than EventSource, because
 * EventSource cannot send headers: with API keys configured the server needs
 * `Authorization`, and resuming sends `Last-Event-ID` the same way on a reconnect and
 * after a page reload.
 */

import { whenIdle } from "./dom.js";
import { send } from "./request.js";
import { SSEParser } from "./sse.js";

export const EVENT_TYPES = new Set([
  "stream.start",
  "model.start",
  "delta",
  "reasoning",
  "model.retry",
  "model.done",
  "model.error",
  "model.stopped",
  "stream.done",
  "turn.start", // a conversation's (thread.js)
  "manager.pick",
]);

const MAX_RETRY_MS = 10_000;
const GIVE_UP_AFTER = 8; // consecutive failed connections before the feed is lost

let apiKey = "";

/** The bearer key sent with every request ("" for none). */
export function setApiKey(key) {
  apiKey = (key || "").trim();
}

function authHeaders() {
  return apiKey ? { Authorization: "Bearer " + apiKey } : {};
}

/** An HTTP error from the API, carrying the server's `{"error": {type, message}}`. */
export class ApiError extends Error {
  constructor(status, type, message, param) {
    super(message);
    this.status = status;
    this.type = type;
    this.param = param;
  }
}

/** The request's headers: the key, and the type of a body if it has one. */
function headersFor(body) {
  const headers = authHeaders();
  if (body !== undefined) headers["Content-Type"] = "application/json";
  return headers;
}

async function call(method, url, body) {
  return answered(await send(method, url, headersFor(body), body));
}

/** The data of an answer {status, statusText, data}, or the ApiError it stands for. */
function answered({ status, statusText, data }) {
  if (status === 0) throw new ApiError(0, "connection", "Cannot reach the Chorus server.");
  if (status < 200 || status > 299) {
    const e = data?.error ?? {};
    throw new ApiError(status, e.type ?? "http_" + status, e.message ?? statusText, e.param);
  }
  return data;
}

const WORKER_URL = "/static/request-worker.js";
let worker;
const pending = new Map(); // request id -> its promise's resolve
let nextId = 1;

/**
 * The worker that sends large requests (request-worker.js), or null where none can run.
 * The page's Trusted Types policy admits this one script URL and nothing else.
 */
function requestWorker() {
  if (worker !== undefined) return worker;
  worker = null;
  try {
    const policy = globalThis.trustedTypes?.createPolicy("chorus-worker", {
      createScriptURL: (url) => {
        if (url !== WORKER_URL) throw new TypeError("not the request worker: " + url);
        return url;
      },
    });
    const script = policy ? policy.createScriptURL(WORKER_URL) : WORKER_URL;
    const w = new Worker(script, { type: "module" });
    w.onmessage = ({ data }) => {
      pending.get(data.id)?.(data);
      pending.delete(data.id);
    };
    // A worker that failed to load answers nothing: what waits on it is sent again here.
    w.onerror = () => {
      worker = null;
      for (const resolve of pending.values()) resolve(null);
      pending.clear();
    };
    worker = w;
  } catch {
    worker = null;
  }
  return worker;
}

// Started at the page's first idle moment: loading it on the first send made that request
// leave about 20 ms later than the next ones.
whenIdle(() => requestWorker());

/** `call` with the body encoded and sent from the request worker where there is one. */
async function callOffThread(method, url, body) {
  const w = requestWorker();
  if (!w) return call(method, url, body);
  const id = nextId++;
  const answer = await new Promise((resolve) => {
    pending.set(id, resolve);
    // The worker resolves a relative URL against its own script's, so it gets it whole.
    const whole = new URL(url, location.href).href;
    w.postMessage({ id, method, url: whole, headers: headersFor(body), body });
  });
  return answer ? answered(answer) : call(method, url, body);
}

export function listModels() {
  return call("GET", "/v1/models");
}

export function createStream(body) {
  return callOffThread("POST", "/v1/streams", body);
}

export function stopStream(stopUrl, slots) {
  return call("POST", stopUrl, slots ? { slots } : {});
}

/** A conversation: end the current turn; the next begins. */
export function skipTurn(stopUrl) {
  return call("POST", stopUrl, { skip: true });
}

export function getSnapshot(streamId) {
  return call("GET", "/v1/streams/" + encodeURIComponent(streamId));
}

const sleep = (ms, signal) =>
  new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => (clearTimeout(timer), resolve()), { once: true });
  });

/**
 * Follows a stream's events from after `lastEventId` (0: from the start).
 *
 * `onEvent(type, data, id)` is called once per event id, in order: ids at or below the
 * last one seen are dropped, so a replay that overlaps can never repeat text. A dropped
 * connection is reopened with `Last-Event-ID` (after the server's `retry:` delay, doubling
 * up to 10 s while it keeps failing). `onLost(status)` is called when the feed is given up:
 * the server refused it (4xx other than 429), or it failed 8 times in a row. The feed ends
 * after `stream.done`. Returns {close}.
 */
export function followEvents(eventsUrl, lastEventId, onEvent, onLost) {
  const url = new URL(eventsUrl, location.href);
  const stop = new AbortController();
  let last = lastEventId;
  let finished = false;
  let retryMs = 1000;

  const deliver = ({ type, data, id }) => {
    const n = Number(id) || 0;
    if (finished || !EVENT_TYPES.has(type) || (n && n <= last)) return;
    let parsed;
    try {
      parsed = JSON.parse(data);
    } catch {
      return;
    }
    if (n) last = n;
    if (type === "stream.done") finished = true;
    onEvent(type, parsed, n);
  };

  async function readOnce() {
    const headers = { Accept: "text/event-stream", ...authHeaders() };
    if (last > 0) headers["Last-Event-ID"] = String(last);
    const res = await fetch(url, { headers, cache: "no-store", signal: stop.signal });
    if (!res.ok || !res.body) return res.status;
    const parser = new SSEParser(deliver, (ms) => (retryMs = ms));
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done || finished) break;
        parser.feed(value);
      }
    } finally {
      reader.cancel().catch(() => {});
    }
    return 200;
  }

  (async () => {
    let failures = 0;
    while (!finished && !stop.signal.aborted) {
      let status = 0;
      const before = last;
      try {
        status = await readOnce();
      } catch {
        status = 0; // network error, before or during the body
      }
      if (finished || stop.signal.aborted) return;
      if (status >= 400 && status < 500 && status !== 429) {
        onLost(status);
        return;
      }
      failures = status === 200 && last > before ? 0 : failures + 1;
      if (failures >= GIVE_UP_AFTER) {
        onLost(status);
        return;
      }
      await sleep(Math.min(retryMs * 2 ** Math.max(0, failures - 1), MAX_RETRY_MS), stop.signal);
    }
  })();

  return { close: () => stop.abort() };
}
