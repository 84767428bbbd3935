/**
 * What the page keeps in localStorage: settings (picked models, system prompt, params, the
 * API key when the server needs one, the layout, blind mode), saved conversations, which
 * conversation is open, the blind-mode tally, the server notes already dismissed, and the
 * conversation-mode stream the thread page follows.
 *
 * A conversation is kept as a head and one entry per turn (see saveConversation), and
 * app.js saves it at most once a second while streaming (at once when the page is
 * hidden): saving never costs per chunk, and a save writes what changed since the last
 * one, so its cost does not grow with the conversation.
 */

import { newTurn } from "./conversation.js";

const PREFIX = "chorus:";
const MAX_CONVERSATIONS = 50;

function read(key, fallback) {
  try {
    const raw = localStorage.getItem(PREFIX + key);
    return raw === null ? fallback : JSON.parse(raw);
  } catch {
    return fallback;
  }
}

/**
 * Attached images are not written: localStorage holds about 5 MB per origin, so one photo
 * would push every saved conversation out. Their names and sizes are kept.
 */
const withoutImageData = (key, value) => (key === "dataUrl" ? undefined : value);

/** Writes, dropping the oldest conversations when storage is full. */
function write(key, value) {
  const raw = JSON.stringify(value, withoutImageData);
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      localStorage.setItem(PREFIX + key, raw);
      return;
    } catch {
      const index = listConversations();
      const oldest = index.pop();
      if (!oldest) return;
      forget(oldest.id);
      localStorage.setItem(PREFIX + "convs", JSON.stringify(index));
    }
  }
}

export function loadSettings() {
  const s = read("settings", {});
  return {
    models: Array.isArray(s.models) ? s.models.filter((m) => typeof m === "string") : null,
    system: typeof s.system === "string" ? s.system : "",
    temperature: typeof s.temperature === "number" ? s.temperature : null,
    maxTokens: typeof s.maxTokens === "number" ? s.maxTokens : null,
    apiKey: typeof s.apiKey === "string" ? s.apiKey : "",
    layout: s.layout === "aligned" ? "aligned" : "columns",
    blind: s.blind === true,
  };
}

export function saveSettings(settings) {
  write("settings", settings);
}

export function listConversations() {
  const list = read("convs", []);
  return Array.isArray(list) ? list : [];
}

/*
 * A conversation's entries: `conv:<id>`, its head (the conversation with each pane's turns
 * replaced by their count), and `turn:<id>:<pane>:<turn>`, one per turn. Written whole, a
 * 50-turn chat of 9 panes was 1.4 MB, and each save took the page's main thread 30-60 ms,
 * once a second while streaming. Now a save writes the head and the turns that changed
 * since they were written or read: a running turn as its text grows, an ended one once,
 * and again only if it changes (a late event, the version shown, a new version). A head
 * whose turns are an array is a conversation saved whole by an earlier version of the page.
 * Attached images' data is left out of turns as of everything written (withoutImageData).
 */
const written = new WeakMap(); // turn → its mark (turnMark) when last written or read
const epochs = new Map(); // conversation id → bumped when its entries are removed

const turnKey = (id, p, t) => `turn:${id}:${p}:${t}`;

const turnMark = (id, p, t, turn) =>
  [turnKey(id, p, t), epochs.get(id) ?? 0, turn.state, turn.answer?.length,
    turn.reasoning?.length, turn.shown, turn.ended, turn.versions?.length,
    turn.error?.type].join("|");

/** Each pane's number of turn entries, as a stored head gives it (none when saved whole). */
const turnCounts = (head) =>
  (head?.panes ?? []).map((pane) => (Number.isInteger(pane?.turns) && pane.turns > 0
    ? pane.turns : 0));

/** A turn whose entry is missing (storage was cleared in part): shown as an error. */
function unreadable() {
  const turn = newTurn("");
  turn.state = "error";
  turn.error = { type: "storage", message: "This turn could not be read back from storage." };
  turn.ended = Date.now();
  return turn;
}

export function loadConversation(id) {
  const conv = read("conv:" + id, null);
  if (!conv || !Array.isArray(conv.panes)) return null;
  if (conv.panes.some((pane) => Array.isArray(pane.turns))) {
    for (const pane of conv.panes) pane.turns = Array.isArray(pane.turns) ? pane.turns : [];
    return conv;
  }
  const counts = turnCounts(conv);
  conv.panes.forEach((pane, p) => {
    pane.turns = Array.from({ length: counts[p] }, (_, t) => {
      const turn = read(turnKey(id, p, t), null);
      if (!turn || typeof turn !== "object") return unreadable();
      written.set(turn, turnMark(id, p, t, turn));
      return turn;
    });
  });
  return conv;
}

export function currentConversationId() {
  return read("current", null);
}

export function setCurrentConversation(id) {
  write("current", id);
}

function summary(conv) {
  return {
    id: conv.id,
    title: conv.title,
    updated: conv.updated,
    models: conv.panes.map((p) => p.model),
  };
}

/** Writes the conversation's head and its changed turns (see loadConversation). */
export function saveConversation(conv) {
  if (!conv.panes.some((p) => p.turns.length)) return;
  conv.updated = Date.now();
  const id = conv.id;
  const stored = turnCounts(read("conv:" + id, null));
  conv.panes.forEach((pane, p) =>
    pane.turns.forEach((turn, t) => {
      const mark = turnMark(id, p, t, turn);
      if (written.get(turn) === mark) return;
      write(turnKey(id, p, t), turn);
      written.set(turn, mark);
    }),
  );
  removeTurns(id, stored, conv.panes.map((pane) => pane.turns.length));
  const panes = conv.panes.map((pane) => ({ ...pane, turns: pane.turns.length }));
  write("conv:" + id, { ...conv, panes });
  const index = listConversations().filter((c) => c.id !== id);
  index.unshift(summary(conv));
  for (const dropped of index.splice(MAX_CONVERSATIONS)) forget(dropped.id);
  write("convs", index);
}

/** Removes the turn entries of each pane past its first `keep[p]` (none kept by default),
 * of the `stored` counts (turnCounts). */
function removeTurns(id, stored, keep = []) {
  stored.forEach((n, p) => {
    for (let t = keep[p] ?? 0; t < n; t++) localStorage.removeItem(PREFIX + turnKey(id, p, t));
  });
}

/** Removes a conversation's entries (not its place in the index). */
function forget(id) {
  removeTurns(id, turnCounts(read("conv:" + id, null)));
  localStorage.removeItem(PREFIX + "conv:" + id);
  epochs.set(id, (epochs.get(id) ?? 0) + 1);
}

export function deleteConversation(id) {
  forget(id);
  write("convs", listConversations().filter((c) => c.id !== id));
}

/** The conversation the thread page shows ({id, eventsUrl, stopUrl}), or null. */
export function loadThread() {
  const saved = read("thread", null);
  return saved && typeof saved.eventsUrl === "string" && typeof saved.stopUrl === "string"
    ? saved : null;
}

export function saveThread(saved) {
  write("thread", saved);
}

export function forgetThread() {
  localStorage.removeItem(PREFIX + "thread");
}

/** Blind-mode results per model: {model: {picked, rounds}}. */
export function loadTally() {
  const t = read("tally", {});
  return t && typeof t === "object" && !Array.isArray(t) ? t : {};
}

/** Counts one blind round: every slot's model took part, `picked` won it. */
export function countBlindPick(models, picked) {
  const tally = loadTally();
  for (const m of models) {
    tally[m] ??= { picked: 0, rounds: 0 };
    tally[m].rounds += 1;
  }
  tally[picked].picked += 1;
  write("tally", tally);
  return tally;
}

export function resetTally() {
  localStorage.removeItem(PREFIX + "tally");
}

/** The notes of GET /v1/models the user has dismissed (by their text). */
export function dismissedNotes() {
  const notes = read("notes-dismissed", []);
  return Array.isArray(notes) ? notes : [];
}

export function dismissNotes(notes) {
  write("notes-dismissed", [...new Set([...dismissedNotes(), ...notes])]);
}

export function newId() {
  const bytes = crypto.getRandomValues(new Uint8Array(9));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
