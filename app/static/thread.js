/**
 * The conversation page: several models answering each other in turns, shown as one
 * thread. Each turn is a list item under its speaker's name, in the speaker's colour; the
 * status line says who speaks now; Skip ends the current turn, Stop the conversation.
 * Text is set as textContent: model output never reaches an HTML sink.
 */

import { createStream, followEvents, setApiKey, skipTurn, stopStream } from "./api.js";
import { el } from "./dom.js";
import { loadSettings } from "./store.js";

const $ = (id) => document.getElementById(id);
const ENDINGS = { "model.done": "done", "model.error": "error", "model.stopped": "stopped" };

let run = null; // {stopUrl, feed, turns: Map(turn -> {item, text, end})}

/** "Ada=demo/fast, demo/slow" → participants. */
export function parseParticipants(text) {
  return text.split(",").map((part) => part.trim()).filter(Boolean).map((part) => {
    const at = part.indexOf("=");
    return at > 0 ? { name: part.slice(0, at).trim(), model: part.slice(at + 1).trim() }
                  : { model: part };
  });
}

function busy(on) {
  $("start").hidden = on;
  $("skip").hidden = !on;
  $("stop").hidden = !on;
}

function onEvent(type, data) {
  const turns = run.turns;
  if (type === "turn.start") {
    const item = el("li", "thread-turn");
    item.dataset.slot = String(data.slot);
    item.dataset.state = "waiting";
    const text = el("p", "thread-text");
    const end = el("p", "thread-end");
    end.hidden = true;
    item.append(el("span", "thread-speaker", data.name), text, end);
    $("thread").append(item);
    turns.set(data.turn, { item, text, end });
    $("now").textContent = "Now speaking: " + data.name;
    return;
  }
  if (type === "stream.done") {
    $("now").textContent = "The conversation has ended.";
    busy(false);
    run.feed.close();
    return;
  }
  const turn = turns.get(data.turn);
  if (!turn) return;
  if (type === "delta") {
    turn.item.dataset.state = "streaming";
    turn.text.append(data.text);
  } else if (ENDINGS[type]) {
    turn.item.dataset.state = ENDINGS[type];
    if (type === "model.error") turn.end.textContent = "Error: " + data.error.message;
    if (type === "model.stopped") {
      turn.end.textContent = data.reason === "skip" ? "Skipped." : "Stopped.";
    }
    turn.end.hidden = !turn.end.textContent;
  }
}

async function start(event) {
  event.preventDefault();
  const topic = $("topic").value.trim();
  if (!topic) {
    $("now").textContent = "Give a topic first.";
    return;
  }
  $("thread").replaceChildren();
  busy(true);
  $("now").textContent = "Starting…";
  try {
    const created = await createStream({
      mode: "conversation",
      participants: parseParticipants($("participants").value),
      rounds: Number($("rounds").value) || 1,
      messages: [{ role: "user", content: topic }],
    });
    run = { stopUrl: created.stop_url, turns: new Map(), feed: null };
    run.feed = followEvents(created.events_url, 0, onEvent, () => {
      $("now").textContent = "The connection to the server was lost.";
      busy(false);
    });
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
}

main();
