/**
 * The event feed of a stream, read with fetch() and the parser in sse.js: the loop that
 * follows one stream, reconnecting with `Last-Event-ID` until `stream.done`. It uses no
 * DOM and no page state (the URL comes absolute, the headers ready-made), so the same code
 * runs in the feed worker (feed-worker.js) and, where no worker can start, in the page.
 *
 * fetch() rather than EventSource, because EventSource cannot send headers: with API keys
 * configured the server needs `Authorization`, and resuming sends `Last-Event-ID` the same
 * way on a reconnect and after a page reload.
 */

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

const sleep = (ms, signal) =>
  new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => (clearTimeout(timer), resolve()), { once: true });
  });

/**
 * Follows the stream at `url` (absolute) from after `lastEventId` (0: from the start),
 * sending `headers` with every request.
 *
 * `onEvent(type, data, id)` is called once per event id, in order, with the event's JSON
 * parsed: ids at or below the last one seen are dropped, so a replay that overlaps can
 * never repeat text. A dropped connection is reopened with `Last-Event-ID` (after the
 * server's `retry:` delay, doubling up to 10 s while it keeps failing). `onLost(status)` is
 * called when the feed is given up: the server refused it (4xx other than 429), or it
 * failed 8 times in a row. The feed ends after `stream.done`. Returns {close}.
 */
export function followFeed(url, lastEventId, headers, onEvent, onLost) {
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
    const sent = { Accept: "text/event-stream", ...headers };
    if (last > 0) sent["Last-Event-ID"] = String(last);
    const res = await fetch(url, { headers: sent, cache: "no-store", signal: stop.signal });
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
