/**
 * Sends the page's large requests off its main thread (api.js). Creating a stream carries
 * every pane's history: at 50 turns of 9 panes about 1 MB of JSON, which the main thread
 * took 4-6 ms to encode and fetch() 8-30 ms more to take in, while the page could neither
 * draw nor answer input. Here both happen on the worker's thread; the main thread only
 * hands the body over (a structured clone, about 1 ms for that body).
 *
 * A message is {id, method, url, headers, body}; the reply is {id} and what send() answers.
 */
import { send } from "./request.js";

self.onmessage = async ({ data: { id, method, url, headers, body } }) => {
  self.postMessage({ id, ...(await send(method, url, headers, body)) });
};
