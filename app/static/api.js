/**
 * The Chorus HTTP API as the page uses it: models, streams, stop, snapshot, and the event
 * feed of a stream.
 *
 * Feeds are read in a worker (feed-worker.js) so that the main thread only draws; where a
 * worker cannot start, the same loop (feed.js) runs in the page.
 */

import { EVENT_TYPES, followFeed } from "./feed.js";

export { EVENT_TYPES };

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

async function call(method, url, body) {
  const headers = authHeaders();
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let res;
  try {
    res = await fetch(url, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
    });
  } catch {
    throw new ApiError(0, "connection", "Cannot reach the Chorus server.");
  }
  let data = null;
  try {
    data = await res.json();
  } catch {
    data = null;
  }
  if (!res.ok) {
    const e = data?.error ?? {};
    const message = e.message ?? res.statusText;
    throw new ApiError(res.status, e.type ?? "http_" + res.status, message, e.param);
  }
  return data;
}

export function listModels() {
  return call("GET", "/v1/models");
}

export function createStream(body) {
  return call("POST", "/v1/streams", body);
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

/*
 * The feed worker. Its script URL is a Trusted Types sink: the page's policy
 * (`trusted-types chorus-feed`) allows one policy, which passes this one URL and no other.
 */

const WORKER_URL = new URL("./feed-worker.js", import.meta.url).href;
const feeds = new Map(); // feed id -> {url, last, onEvent, onLost, local}
let worker = null; // the worker; false where none could start
let nextFeed = 1;

function workerUrl() {
  const policy = globalThis.trustedTypes?.createPolicy("chorus-feed", {
    createScriptURL: (url) => {
      if (url !== WORKER_URL) throw new TypeError("Only the feed worker may be loaded.");
      return url;
    },
  });
  return policy ? policy.createScriptURL(WORKER_URL) : WORKER_URL;
}

/**
 * Starts the feed worker now, so that the first stream does not wait for it to load.
 * Returns it, or false where it cannot start (feeds are then read in the page).
 */
export function startFeeds() {
  if (worker !== null) return worker;
  try {
    worker = new Worker(workerUrl(), { type: "module", name: "chorus-feed" });
  } catch {
    worker = false;
    return worker;
  }
  worker.addEventListener("message", ({ data }) => {
    worker.postMessage({ ack: true }); // first: a throwing handler must not stall the feeds
    for (const [id, type, payload, n] of data.events) {
      const feed = feeds.get(id);
      if (!feed) continue; // closed meanwhile
      if (n) feed.last = n;
      feed.onEvent(type, payload, n);
    }
    for (const [id, status] of data.lost) {
      const feed = feeds.get(id);
      feeds.delete(id);
      feed?.onLost(status);
    }
  });
  // The worker failed to load or crashed: its feeds go on in the page from their last event.
  worker.addEventListener("error", () => {
    worker.terminate();
    worker = false;
    for (const [id, feed] of feeds) readInPage(id, feed);
  });
  return worker;
}

function readInPage(id, feed) {
  feed.local = followFeed(feed.url, feed.last, authHeaders(), (type, data, n) => {
    if (n) feed.last = n;
    feed.onEvent(type, data, n);
  }, (status) => {
    feeds.delete(id);
    feed.onLost(status);
  });
}

/**
 * Follows a stream's events from after `lastEventId` (0: from the start), as followFeed in
 * feed.js does: `onEvent(type, data, id)` once per event id, in order; `onLost(status)`
 * when the feed is given up. Returns {close}.
 */
export function followEvents(eventsUrl, lastEventId, onEvent, onLost) {
  const id = nextFeed++;
  const url = new URL(eventsUrl, location.href).href;
  const feed = { url, last: lastEventId, onEvent, onLost, local: null };
  feeds.set(id, feed);
  const w = startFeeds();
  if (w) w.postMessage({ follow: id, url, last: lastEventId, headers: authHeaders() });
  else readInPage(id, feed);
  return {
    close: () => {
      feeds.delete(id);
      if (feed.local) feed.local.close();
      else if (worker) worker.postMessage({ close: id });
    },
  };
}
