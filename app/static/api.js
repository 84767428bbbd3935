/**
 * The Chorus HTTP API as the page uses it: models, streams, stop, snapshot, and the SSE
 * event feed (EventSource, reattached with ?last_event_id=N after a reload).
 */

export const EVENT_TYPES = [
  "stream.start",
  "model.start",
  "delta",
  "reasoning",
  "model.retry",
  "model.done",
  "model.error",
  "model.stopped",
  "stream.done",
];

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
  let res;
  try {
    res = await fetch(url, {
      method,
      headers: body === undefined ? {} : { "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
    });
  } catch (err) {
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
    throw new ApiError(res.status, e.type ?? "http_" + res.status, e.message ?? res.statusText, e.param);
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

export function getSnapshot(streamId) {
  return call("GET", "/v1/streams/" + encodeURIComponent(streamId));
}

/**
 * Follows a stream's events. `onEvent(type, data, id)` is called once per event id: ids at
 * or below the last one seen are dropped, so a replay that overlaps can never duplicate
 * text. EventSource resends Last-Event-ID on its own reconnects; after a page reload the
 * caller passes the stored id, sent as ?last_event_id= since EventSource cannot set headers.
 * `onLost()` is called when the browser gives up (the stream is gone or refused).
 */
export function followEvents(eventsUrl, lastEventId, onEvent, onLost) {
  const url = new URL(eventsUrl, location.href);
  if (lastEventId > 0) url.searchParams.set("last_event_id", String(lastEventId));
  const source = new EventSource(url);
  let last = lastEventId;
  const handle = (type) => (e) => {
    const id = Number(e.lastEventId) || 0;
    if (id && id <= last) return;
    if (id) last = id;
    let data;
    try {
      data = JSON.parse(e.data);
    } catch {
      return;
    }
    onEvent(type, data, id);
    if (type === "stream.done") source.close();
  };
  for (const type of EVENT_TYPES) source.addEventListener(type, handle(type));
  source.onerror = () => {
    if (source.readyState === EventSource.CLOSED) onLost();
  };
  return { close: () => source.close() };
}
