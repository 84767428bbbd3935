/**
 * The feed worker: reads and parses every stream the page follows, off the page's main
 * thread, and hands the events over in batches.
 *
 * On the main thread each network read was a task of its own (a promise, the SSE parser,
 * JSON.parse), about 1800 a second with nine fast models, competing with layout and paint
 * for the same thread; and while the page was drawing, the reads waited. Here the reads
 * run as they come, and the page gets one message carrying everything that arrived since
 * the last one. One batch is in flight at a time: the next is posted when the page says
 * it has taken the last (`ack`), so a busy page gets fewer, larger batches and an idle one
 * gets each event at once.
 *
 * Messages in: {follow, url, last, headers} starts feed `follow`; {close} ends one;
 * {ack} takes the next batch. Out: {events: [[feed, type, data, id]…], lost: [[feed,
 * status]…]}, a feed's events always before its loss.
 */

import { followFeed } from "./feed.js";

const feeds = new Map(); // feed id -> {close}
let events = [];
let lost = [];
let inFlight = false;
let queued = false;

/** Posts once the current read's events are all in: a chunk of several events is one batch. */
function soon() {
  if (queued) return;
  queued = true;
  queueMicrotask(() => {
    queued = false;
    post();
  });
}

function post() {
  if (!events.length && !lost.length) return;
  self.postMessage({ events, lost });
  events = [];
  lost = [];
}

self.addEventListener("message", ({ data }) => {
  if (data.ack) {
    inFlight = false;
    post();
  } else if (data.follow) {
    const id = data.follow;
    const feed = followFeed(
      data.url,
      data.last,
      data.headers,
      (type, payload, n) => {
        events.push([id, type, payload, n]);
        soon();
      },
      (status) => {
        feeds.delete(id);
        lost.push([id, status]);
        soon();
      },
    );
    feeds.set(id, feed);
  } else if (data.close) {
    feeds.get(data.close)?.close();
    feeds.delete(data.close);
  }
});
