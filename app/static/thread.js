/**
 * The conversation page: several models answering each other in turns, shown as one
 * thread. Each turn is a list item under its speaker's name, in the speaker's colour, with
 * the manager's pick beside the name and the turn's figures under its text; the status
 * line says who speaks now; Skip ends the current turn, Stop the conversation.
 *
 * Answers are rendered by MarkdownStream, as in the main page's panes: model output never
 * reaches an HTML sink. As there, text is drawn once per animation frame, however many
 * deltas came in it. The running conversation is kept in localStorage (`store.js`), so a
 * reload rebuilds the thread from the stream's events (replayed from the first, onto an
 * empty thread, so nothing is shown twice) and goes on following it live.
 */

import { watchCode } from "./a11y.js";
import { createStream, followEvents, setApiKey, skipTurn, stopStream } from "./api.js";
import { el, setSlotHue } from "./dom.js";
import { MarkdownStream } from "./markdown.js";
import { formatMs, turnFigures } from "./pane.js";
import { forgetThread, loadSettings, loadThread, saveThread } from "./store.js";

const $ = (id) => document.getElementById(id);
const ENDINGS = { "model.done": "done", "model.error": "error", "model.stopped": "stopped" };
const PICKS = {
  false: "picked by the manager",
  true: "round-robin: the pick fell back",
};

let run = null; // {id, stopUrl, feed, picks: Map(turn -> fallback), turns: Map(turn -> TurnView)}

/** "Ada=demo/fast, demo/slow" → participants. */
export function parseParticipants(text) {
  return text.split(",").map((part) => part.trim()).filter(Boolean).map((part) => {
    const at = part.indexOf("=");
    return at > 0 ? { name: part.slice(0, at).trim(), model: part.slice(at + 1).trim() }
                  : { model: part };
  });
}

/** "TTFT 150 ms · 88 tok/s · 140 tokens", each "–" until known, "≈" while estimated. */
export function figuresText(f) {
  const rate = f.rate === null ? "– tok/s"
    : (f.rateEstimated ? "≈" : "") + f.rate.toFixed(f.rate < 10 ? 1 : 0) + " tok/s";
  const out = f.output === null ? "–" : (f.estimated ? "≈" : "") + f.output;
  return ["TTFT " + formatMs(f.ttft), rate, out + " tokens"].join(" · ");
}

/** One turn of the thread: the data turnFigures reads, and the nodes that show it. */
class TurnView {
  constructor(data, fallback) {
    this.item = el("li", "thread-turn");
    this.item.dataset.slot = String(data.slot);
    setSlotHue(this.item, data.slot);
    this.item.dataset.turn = String(data.turn);
    const head = el("p", "thread-head");
    head.append(el("span", "thread-speaker", data.name));
    if (fallback !== undefined) {
      const pick = el("span", "thread-pick", PICKS[fallback]);
      pick.dataset.fallback = String(fallback);
      head.append(pick);
    }
    this.text = el("div", "thread-text md");
    watchCode(this.text);
    this.md = new MarkdownStream(this.text);
    this.end = el("p", "thread-end");
    this.end.hidden = true;
    this.figures = el("p", "thread-figures");
    this.item.append(head, this.text, this.end, this.figures);
    this.turn = { state: "waiting", answer: "", reasoning: "", started: Date.now(),
                  first: null, ended: null, usage: null, timing: null };
    this.frame = 0;
    this.shown = 0; // how much of the answer the renderer has been given
    this.sync();
  }

  set state(state) {
    this.turn.state = state;
    if (this.item.dataset.state !== state) this.item.dataset.state = state;
  }

  delta(text) {
    this.turn.first ??= Date.now();
    this.turn.state = "streaming"; // shown at the next frame, with the text (draw)
    this.turn.answer += text;
    this.frame ||= requestAnimationFrame(() => this.sync());
  }

  finish(type, data) {
    if (this.frame) cancelAnimationFrame(this.frame);
    this.draw();
    this.state = ENDINGS[type];
    this.turn.ended = Date.now();
    this.turn.usage = data.usage ?? null;
    this.turn.timing = data.timing ?? null;
    this.md.end();
    if (type === "model.error") this.end.textContent = "Error: " + data.error.message;
    if (type === "model.stopped") {
      this.end.textContent = data.reason === "skip" ? "Skipped." : "Stopped.";
    }
    this.end.hidden = !this.end.textContent;
    this.showFigures();
  }

  /** Gives the renderer what came since the last frame. */
  draw() {
    this.frame = 0;
    if (this.shown < this.turn.answer.length) {
      this.md.push(this.turn.answer.slice(this.shown));
      this.shown = this.turn.answer.length;
    }
    this.state = this.turn.state;
  }

  sync() {
    this.draw();
    this.showFigures();
  }

  showFigures() {
    const text = figuresText(turnFigures(this.turn));
    if (this.figures.textContent !== text) this.figures.textContent = text;
  }
}

function busy(on) {
  $("start").hidden = on;
  $("skip").hidden = !on;
  $("stop").hidden = !on;
}

function onEvent(type, data) {
  const turns = run.turns;
  if (type === "manager.pick") {
    run.picks.set(data.turn, data.fallback === true);
    return;
  }
  if (type === "turn.start") {
    const view = new TurnView(data, run.picks.get(data.turn));
    $("thread").append(view.item);
    turns.set(data.turn, view);
    $("now").textContent = "Now speaking: " + data.name;
    return;
  }
  if (type === "stream.done") {
    $("now").textContent = "The conversation has ended.";
    busy(false);
    run.feed.close();
    return;
  }
  const view = turns.get(data.turn);
  if (!view) return;
  if (type === "delta") view.delta(data.text);
  else if (ENDINGS[type]) view.finish(type, data);
}

/** Shows the conversation `saved` ({id, eventsUrl, stopUrl}), replaying its events. */
function follow(saved) {
  run = { id: saved.id, stopUrl: saved.stopUrl, turns: new Map(), picks: new Map(), feed: null };
  $("thread").replaceChildren();
  busy(true);
  const mine = run;
  run.feed = followEvents(saved.eventsUrl, 0, onEvent, (status) => {
    if (run !== mine) return;
    if (status === 404) {
      forgetThread();
      $("now").textContent = "That conversation is no longer on the server.";
    } else {
      $("now").textContent = "The connection to the server was lost.";
    }
    busy(false);
  });
}

async function start(event) {
  event.preventDefault();
  const topic = $("topic").value.trim();
  if (!topic) {
    $("now").textContent = "Give a topic first.";
    return;
  }
  run?.feed?.close();
  $("thread").replaceChildren();
  busy(true);
  $("now").textContent = "Starting…";
  const body = {
    mode: "conversation",
    participants: parseParticipants($("participants").value),
    rounds: Number($("rounds").value) || 1,
    messages: [{ role: "user", content: topic }],
  };
  const manager = $("manager").value.trim();
  if (manager) body.manager = { model: manager };
  try {
    const created = await createStream(body);
    const saved = { id: created.id, eventsUrl: created.events_url, stopUrl: created.stop_url };
    saveThread(saved);
    follow(saved);
  } catch (err) {
    $("now").textContent = err.message;
    busy(false);
  }
}

function main() {
  setApiKey(loadSettings().apiKey);
  $("talk").addEventListener("submit", start);
  $("skip").addEventListener("click", () => run && skipTurn(run.stopUrl).catch(() => {}));
  $("stop").addEventListener("click", () => run && stopStream(run.stopUrl).catch(() => {}));
  const saved = loadThread();
  if (saved) follow(saved);
  document.body.dataset.ready = "true"; // the form is Chorus's now, not the browser's
}

main();
