/**
 * One request to the API with a JSON body, answered as {status, statusText, data}: status
 * 0 when the server could not be reached, data its JSON answer or null. Used by api.js on
 * the main thread and by request-worker.js off it, so both send and read alike.
 */
export async function send(method, url, headers, body) {
  let res;
  try {
    res = await fetch(url, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
    });
  } catch {
    return { status: 0, statusText: "", data: null };
  }
  let data = null;
  try {
    data = await res.json();
  } catch {
    data = null;
  }
  return { status: res.status, statusText: res.statusText, data };
}
