/**
 * A Server-Sent Events parser, as the WHATWG spec words it
 * (https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation):
 * text in any split, events out. Pure; the fetch loop lives in api.js.
 */

export class SSEParser {
  /** onEvent({type, data, id}) per dispatched event; onRetry(ms) for a `retry:` field. */
  constructor(onEvent, onRetry = () => {}) {
    this.onEvent = onEvent;
    this.onRetry = onRetry;
    this.buffer = "";
    this.type = "";
    this.data = [];
    this.lastId = ""; // the spec's "last event ID buffer": kept across events
  }

  feed(text) {
    const buf = this.buffer + text;
    // A final "\r" may be the first half of "\r\n": keep it for the next chunk.
    const keep = buf.endsWith("\r") ? 1 : 0;
    const lines = buf.slice(0, buf.length - keep).split(/\r\n|\r|\n/);
    this.buffer = lines.pop() + buf.slice(buf.length - keep);
    for (const line of lines) this.line(line);
  }

  line(line) {
    if (line === "") {
      if (this.data.length) {
        this.onEvent({ type: this.type || "message", data: this.data.join("\n"), id: this.lastId });
      }
      this.type = "";
      this.data = [];
      return;
    }
    if (line[0] === ":") return; // a comment: the server's keep-alive ping
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value[0] === " ") value = value.slice(1);
    if (field === "event") this.type = value;
    else if (field === "data") this.data.push(value);
    else if (field === "id" && !value.includes("\0")) this.lastId = value;
    else if (field === "retry" && /^\d+$/.test(value)) this.onRetry(Number(value));
  }
}
