/**
 * The Chorus page: picks models, sends each slot its own history, follows the stream's
 * events into the panes, stops (all, or one slot) through the stop API, keeps
 * conversations in localStorage and reattaches to a live stream after a reload.
 *
 * Data flows one way: an event changes the conversation (plain data, saved as JSON); the
 * turn is marked dirty; once per animation frame each dirty turn's view appends what it
 * has not shown yet.
 */

import * as api from "./api.js";
import { ACTIVE, PaneView } from "./pane.js";
import { Picker } from "./picker.js";
import * as store from "./store.js";

const ENDINGS = { "model.done": "done", "model.error": "error", "model.stopped": "stopped" };
const $ = (id) => document.getElementById(id);
const ui = {
  panes: $("panes"),
  composer: $("composer"),
  prompt: $("prompt"),
  send: $("send"),
  stopAll: $("stop-all"),
  newChat: $("new-chat"),
  historyBtn: $("history-btn"),
  history: $("history"),
  historyList: $("history-list"),
  settingsBtn: $("settings-btn"),
  settings: $("settings"),
  system: $("set-system"),
  temperature: $("set-temperature"),
  maxTokens: $("set-max-tokens"),
  toast: $("toast"),
};

const settings = store.loadSettings();
const live = new Map(); // conversation id -> conversation, while it has streams to follow
const followers = new Map(); // stream id -> {close}
const dirty = new Set(); // "pane:turn" keys of the open conversation awaiting a frame
const unsaved = new Set();
let conv = null;
let views = [];
let picker = null;
let frame = 0;
let saveTimer = 0;
let tickTimer = 0;
let toastTimer = 0;

function newConversation(models) {
  const now = Date.now();
  return {
    id: store.newId(),
    title: "",
    created: now,
    updated: now,
    system: "",
    panes: models.map((model) => ({ model, turns: [] })),
    runs: [],
  };
}

function newTurn(user) {
  return {
    user,
    answer: "",
    reasoning: "",
    state: "waiting",
    error: null,
    usage: null,
    timing: null,
    finish: null,
    retry: null,
    stopReason: null,
    stopping: false,
    started: Date.now(),
    first: null,
    ended: null,
  };
}

const hasTurns = (c) => c.panes.some((p) => p.turns.length > 0);
const isBusy = (c) => c.panes.some((p) => p.turns.some((t) => ACTIVE.has(t.state)));
const turnOf = (c, run, slot) => c.panes[run.panes[slot]]?.turns[run.turns[slot]] ?? null;

/** The messages a slot is sent: its own history, without turns that produced no answer. */
function historyOf(c, pane, upTo) {
  const messages = c.system ? [{ role: "system", content: c.system }] : [];
  for (const turn of pane.turns.slice(0, upTo)) {
    if (!turn.answer) continue;
    messages.push({ role: "user", content: turn.user }, { role: "assistant", content: turn.answer });
  }
  return messages;
}

function requestParams() {
  const params = {};
  if (settings.temperature !== null) params.temperature = settings.temperature;
  if (settings.maxTokens !== null) params.max_tokens = settings.maxTokens;
  return Object.keys(params).length ? params : null;
}

/* Rendering */

function touch(c, p, t) {
  if (c !== conv) return;
  dirty.add(p + ":" + t);
  if (!frame) frame = requestAnimationFrame(flushFrame);
}

function flushFrame() {
  frame = 0;
  for (const key of dirty) {
    const [p, t] = key.split(":").map(Number);
    views[p]?.syncTurn(t);
  }
  dirty.clear();
}

function renderPanes() {
  dirty.clear();
  views = conv.panes.map(
    (pane, i) =>
      new PaneView(i, pane, picker.info(pane.model), {
        stop: stopPane,
        regenerate,
        copy: copyText,
      }),
  );
  ui.panes.replaceChildren(...views.map((v) => v.root));
  ui.panes.dataset.count = String(conv.panes.length);
  if (!conv.panes.length) {
    const empty = document.createElement("div");
    empty.className = "panes-empty";
    const title = document.createElement("p");
    title.className = "panes-empty-title";
    title.textContent = "Pick one or more models to compare.";
    const more = document.createElement("p");
    more.textContent = "Each model gets its own pane; they all stream at once.";
    empty.append(title, more);
    ui.panes.append(empty);
  }
  refreshControls();
}

function refreshControls() {
  const busy = isBusy(conv);
  ui.send.hidden = busy;
  ui.stopAll.hidden = !busy;
  document.body.dataset.busy = String(busy);
  picker.setDisabled(busy);
  if (busy && !tickTimer) {
    tickTimer = setInterval(() => {
      for (const v of views) v.tick();
      if (!isBusy(conv)) {
        clearInterval(tickTimer);
        tickTimer = 0;
      }
    }, 250);
  }
}

/* Saving: a conversation is written at most once a second, and when the page is hidden. */

function saveSoon(c) {
  unsaved.add(c);
  if (!saveTimer) saveTimer = setTimeout(flushSaves, 1000);
}

function saveNow(c) {
  unsaved.add(c);
  flushSaves();
}

function flushSaves() {
  clearTimeout(saveTimer);
  saveTimer = 0;
  for (const c of unsaved) store.saveConversation(c);
  unsaved.clear();
}

/* Streams */

async function launch(c, paneIdxs, targets) {
  const turnIdxs = paneIdxs.map((p) => c.panes[p].turns.length - 1);
  live.set(c.id, c);
  refreshControls();
  saveSoon(c);
  const body = { models: targets, mode: "parallel" };
  const params = requestParams();
  if (params) body.params = params;
  let res;
  try {
    res = await api.createStream(body);
  } catch (err) {
    paneIdxs.forEach((p, s) => {
      const turn = c.panes[p].turns[turnIdxs[s]];
      if (!turn) return;
      turn.state = "error";
      turn.error = { type: err.type, message: err.message, status: err.status || undefined };
      turn.ended = Date.now();
      touch(c, p, turnIdxs[s]);
    });
    saveNow(c);
    if (c === conv) refreshControls();
    return;
  }
  const run = {
    id: res.id,
    eventsUrl: res.events_url,
    stopUrl: res.stop_url,
    panes: paneIdxs,
    turns: turnIdxs,
    lastEventId: 0,
  };
  c.runs.push(run);
  saveNow(c);
  attach(c, run);
  const early = paneIdxs.map((_, s) => s).filter((s) => turnOf(c, run, s)?.stopping);
  if (early.length) requestStop(c, run, early.length === paneIdxs.length ? null : early);
}

function attach(c, run) {
  live.set(c.id, c);
  const follower = api.followEvents(
    run.eventsUrl,
    run.lastEventId,
    (type, data, id) => onEvent(c, run, type, data, id),
    () => onLost(c, run),
  );
  followers.set(run.id, follower);
}

function onEvent(c, run, type, data, id) {
  if (id) run.lastEventId = id;
  saveSoon(c);
  if (type === "stream.done") {
    finishRun(c, run);
    return;
  }
  if (type === "stream.start") return;
  const slot = data.slot;
  const turn = turnOf(c, run, slot);
  if (!turn) return;
  const now = Date.now();
  switch (type) {
    case "model.start":
      break;
    case "delta":
      turn.first ??= now;
      turn.answer += data.text;
      turn.state = "streaming";
      turn.retry = null;
      break;
    case "reasoning":
      turn.first ??= now;
      turn.reasoning += data.text;
      turn.state = "streaming";
      turn.retry = null;
      break;
    case "model.retry":
      turn.state = "retrying";
      turn.retry = { attempt: data.attempt, reason: data.reason, model: data.model };
      break;
    case "model.done":
    case "model.error":
    case "model.stopped":
      turn.state = ENDINGS[type];
      turn.usage = data.usage ?? null;
      turn.timing = data.timing ?? null;
      turn.finish = data.finish_reason ?? null;
      turn.error = data.error ?? null;
      turn.stopReason = data.reason ?? null;
      turn.stopping = false;
      turn.retry = null;
      turn.ended = now;
      break;
    default:
      return;
  }
  touch(c, run.panes[slot], run.turns[slot]);
  if (c === conv && !ACTIVE.has(turn.state)) refreshControls();
}

function endRun(c, run, why) {
  followers.get(run.id)?.close();
  followers.delete(run.id);
  c.runs = c.runs.filter((r) => r !== run);
  run.panes.forEach((p, s) => {
    const turn = turnOf(c, run, s);
    if (!turn || !ACTIVE.has(turn.state)) return;
    turn.state = "error";
    turn.error = why;
    turn.stopping = false;
    turn.ended = Date.now();
    touch(c, p, run.turns[s]);
  });
  saveNow(c);
  if (!c.runs.length && c !== conv) live.delete(c.id);
  if (c === conv) refreshControls();
}

function finishRun(c, run) {
  endRun(c, run, { type: "protocol", message: "The stream ended without a result for this model." });
}

/** The browser gave up on the event stream (the server refused it or it is gone). */
async function onLost(c, run) {
  followers.delete(run.id);
  let snapshot = null;
  let why = "";
  try {
    snapshot = await api.getSnapshot(run.id);
  } catch (err) {
    why = err.status === 404 ? " It is no longer on the server." : " " + err.message;
  }
  if (snapshot) applySnapshot(c, run, snapshot);
  endRun(c, run, { type: "connection", message: "Lost the connection to this stream." + why });
}

/** Fills in what a snapshot says about slots that have ended; never repeats text. */
function applySnapshot(c, run, snapshot) {
  for (const s of snapshot.slots ?? []) {
    const turn = turnOf(c, run, s.slot);
    if (!turn || !ACTIVE.has(turn.state) || ACTIVE.has(s.state) || s.state === "queued") continue;
    if (typeof s.text === "string" && s.text.startsWith(turn.answer)) turn.answer = s.text;
    if (typeof s.reasoning === "string" && s.reasoning.startsWith(turn.reasoning)) {
      turn.reasoning = s.reasoning;
    }
    turn.state = s.state;
    turn.usage = s.usage ?? turn.usage;
    turn.timing = s.timing ?? turn.timing;
    turn.error = s.error ?? null;
    turn.finish = s.finish_reason ?? null;
    turn.stopReason = s.stop_reason ?? null;
    turn.ended = Date.now();
    touch(c, run.panes[s.slot], run.turns[s.slot]);
  }
}

async function requestStop(c, run, slots) {
  const targets = slots ?? run.panes.map((_, s) => s);
  const active = targets.filter((s) => ACTIVE.has(turnOf(c, run, s)?.state));
  if (!active.length) return;
  for (const s of active) {
    turnOf(c, run, s).stopping = true;
    touch(c, run.panes[s], run.turns[s]);
  }
  try {
    await api.stopStream(run.stopUrl, slots === null ? null : active);
  } catch (err) {
    for (const s of active) {
      turnOf(c, run, s).stopping = false;
      touch(c, run.panes[s], run.turns[s]);
    }
    toast("Could not stop: " + err.message);
  }
}

function stopAll(c = conv) {
  for (const pane of c.panes) {
    const turn = pane.turns[pane.turns.length - 1];
    if (turn && ACTIVE.has(turn.state)) turn.stopping = true; // seen by launch() if still starting
  }
  for (const run of c.runs) requestStop(c, run, null);
}

function stopPane(p) {
  const pane = conv.panes[p];
  const t = pane.turns.length - 1;
  const turn = pane.turns[t];
  if (!turn || !ACTIVE.has(turn.state)) return;
  turn.stopping = true;
  touch(conv, p, t);
  for (const run of conv.runs) {
    const slot = run.panes.findIndex((q, s) => q === p && run.turns[s] === t);
    if (slot >= 0) requestStop(conv, run, [slot]);
  }
}

/* User actions */

function send() {
  const text = ui.prompt.value.trim();
  if (!text) return;
  if (isBusy(conv)) {
    toast("Wait for the answers, or stop them with Esc.");
    return;
  }
  if (!conv.panes.length) {
    toast("Pick at least one model first.");
    picker.input.focus();
    return;
  }
  if (!hasTurns(conv)) {
    conv.title = text.length > 80 ? text.slice(0, 79) + "…" : text;
    conv.system = settings.system.trim();
  }
  const targets = conv.panes.map((pane) => ({
    model: pane.model,
    messages: [...historyOf(conv, pane, pane.turns.length), { role: "user", content: text }],
  }));
  conv.panes.forEach((pane, p) => {
    const turn = newTurn(text);
    pane.turns.push(turn);
    views[p].addTurn(turn);
  });
  ui.prompt.value = "";
  autosize();
  store.setCurrentConversation(conv.id);
  launch(
    conv,
    conv.panes.map((_, p) => p),
    targets,
  );
}

function regenerate(p) {
  const pane = conv.panes[p];
  const t = pane.turns.length - 1;
  const last = pane.turns[t];
  if (!last || ACTIVE.has(last.state)) return;
  const turn = newTurn(last.user);
  const messages = [...historyOf(conv, pane, t), { role: "user", content: last.user }];
  pane.turns[t] = turn;
  views[p].replaceLastTurn(turn);
  launch(conv, [p], [{ model: pane.model, messages }]);
}

function switchTo(next) {
  if (conv && isBusy(conv)) stopAll(conv); // its last events still land in it, and are saved
  flushSaves();
  conv = next;
  store.setCurrentConversation(conv.id);
  if (hasTurns(conv)) {
    settings.models = conv.panes.map((p) => p.model);
    store.saveSettings(settings);
  }
  picker.setSelection(conv.panes.map((p) => p.model));
  renderPanes();
  for (const run of conv.runs) if (!followers.has(run.id)) attach(conv, run);
}

function newChat() {
  switchTo(newConversation(settings.models ?? []));
  ui.prompt.focus();
}

function onSelectionChange(refs) {
  settings.models = refs;
  store.saveSettings(settings);
  if (hasTurns(conv)) {
    switchTo(newConversation(refs)); // changing models starts a new chat; the old one is kept
    toast("New chat with the new models. The previous one is in History.");
    return;
  }
  conv.panes = refs.map((model) => ({ model, turns: [] }));
  renderPanes();
}

async function copyText(text, btn) {
  let ok = false;
  try {
    await navigator.clipboard.writeText(text);
    ok = true;
  } catch {
    const area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "offscreen";
    document.body.append(area);
    area.select();
    ok = document.execCommand("copy");
    area.remove();
  }
  if (btn) {
    const label = btn.textContent;
    btn.textContent = ok ? "Copied" : "Copy failed";
    setTimeout(() => (btn.textContent = label), 1200);
  }
}

function toast(message) {
  ui.toast.textContent = message;
  ui.toast.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (ui.toast.hidden = true), 4000);
}

function autosize() {
  const area = ui.prompt;
  area.style.height = "auto";
  area.style.height = Math.min(area.scrollHeight, Math.round(window.innerHeight * 0.3)) + "px";
}

/* Drawers: history and settings */

function toggleDrawer(drawer, button, show) {
  for (const [d, b] of [
    [ui.history, ui.historyBtn],
    [ui.settings, ui.settingsBtn],
  ]) {
    const open = d === drawer ? show : false;
    d.hidden = !open;
    b.setAttribute("aria-expanded", String(open));
  }
  if (show && drawer === ui.history) renderHistory();
  if (show) drawer.querySelector("button, input, textarea")?.focus();
}

function renderHistory() {
  flushSaves();
  const items = store.listConversations().map((entry) => {
    const li = document.createElement("li");
    li.className = "history-item" + (entry.id === conv.id ? " current" : "");
    const open = document.createElement("button");
    open.type = "button";
    open.className = "history-open";
    const title = document.createElement("span");
    title.className = "history-title";
    title.textContent = entry.title || "Untitled";
    const meta = document.createElement("span");
    meta.className = "history-meta";
    meta.textContent = new Date(entry.updated).toLocaleString() + " · " + entry.models.join(", ");
    open.append(title, meta);
    open.addEventListener("click", () => {
      const next = live.get(entry.id) ?? store.loadConversation(entry.id);
      if (next) switchTo(next);
      toggleDrawer(ui.history, ui.historyBtn, false);
    });
    const del = document.createElement("button");
    del.type = "button";
    del.className = "btn ghost history-delete";
    del.textContent = "Delete";
    del.setAttribute("aria-label", "Delete " + (entry.title || "conversation"));
    del.addEventListener("click", () => {
      store.deleteConversation(entry.id);
      if (entry.id === conv.id) newChat();
      renderHistory();
    });
    li.append(open, del);
    return li;
  });
  if (!items.length) {
    const li = document.createElement("li");
    li.className = "history-none";
    li.textContent = "No saved conversations yet.";
    items.push(li);
  }
  ui.historyList.replaceChildren(...items);
}

function bindSettings() {
  ui.system.value = settings.system;
  ui.temperature.value = settings.temperature ?? "";
  ui.maxTokens.value = settings.maxTokens ?? "";
  const read = () => {
    settings.system = ui.system.value;
    const temp = parseFloat(ui.temperature.value);
    settings.temperature = Number.isFinite(temp) ? temp : null;
    const max = parseInt(ui.maxTokens.value, 10);
    settings.maxTokens = Number.isFinite(max) && max > 0 ? max : null;
    store.saveSettings(settings);
  };
  for (const input of [ui.system, ui.temperature, ui.maxTokens]) input.addEventListener("change", read);
}

/* Start-up */

/** Turns left active with no stream to follow (the page closed while one was starting). */
function settleOrphans(c) {
  c.panes.forEach((pane, p) =>
    pane.turns.forEach((turn, t) => {
      turn.stopping = false;
      if (!ACTIVE.has(turn.state)) return;
      const followed = c.runs.some((r) => r.panes.some((q, s) => q === p && r.turns[s] === t));
      if (followed) return;
      turn.state = "error";
      turn.error = { type: "connection", message: "Interrupted: the page closed before the answer started." };
      turn.ended = turn.ended ?? Date.now();
    }),
  );
}

function modelEntry(m) {
  const id = String(m.id);
  const provider = m.provider ? String(m.provider) : "";
  const ref = !provider || id.startsWith(provider + "/") ? id : provider + "/" + id;
  const simulated = m.simulated === true || m.type === "demo" || (m.simulated === undefined && provider === "demo");
  return { ref, provider, simulated };
}

async function loadModels() {
  try {
    const res = await api.listModels();
    const models = (res.data ?? []).map(modelEntry);
    picker.setModels(models, res.max_slots);
    if (settings.models === null && !hasTurns(conv)) {
      const refs = models.map((m) => m.ref);
      const preferred = ["demo/fast", "demo/thinker"].filter((r) => refs.includes(r));
      const picks = preferred.length === 2 ? preferred : refs.slice(0, 2);
      picker.setSelection(picks);
      onSelectionChange(picks);
    } else {
      renderPanes(); // now that we know which models are simulated or missing
    }
    document.body.dataset.models = "ready";
  } catch (err) {
    toast("Could not load the model list: " + err.message);
    picker.setModels([], null);
    document.body.dataset.models = "failed";
  }
}

function bindKeys() {
  ui.prompt.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      send();
    }
  });
  ui.prompt.addEventListener("input", autosize);
  ui.composer.addEventListener("submit", (e) => {
    e.preventDefault();
    send();
  });
  document.addEventListener("keydown", (e) => {
    if (e.key !== "Escape" || e.defaultPrevented) return;
    if (!ui.history.hidden || !ui.settings.hidden) {
      toggleDrawer(ui.history, ui.historyBtn, false);
      return;
    }
    if (isBusy(conv)) {
      e.preventDefault();
      stopAll();
    }
  });
  document.addEventListener("click", (e) => {
    const btn = e.target.closest?.(".md-code-copy");
    if (btn) copyText(btn.closest(".md-code").querySelector("code").textContent, btn);
  });
}

function main() {
  picker = new Picker($("picker"), onSelectionChange);
  const saved = store.currentConversationId();
  const loaded = saved ? store.loadConversation(saved) : null;
  conv = loaded ?? newConversation(settings.models ?? []);
  conv.runs ??= [];
  settleOrphans(conv);
  picker.setSelection(conv.panes.map((p) => p.model));
  renderPanes();
  for (const run of conv.runs) attach(conv, run);
  store.setCurrentConversation(conv.id);
  ui.stopAll.addEventListener("click", () => stopAll());
  ui.newChat.addEventListener("click", newChat);
  ui.historyBtn.addEventListener("click", () =>
    toggleDrawer(ui.history, ui.historyBtn, ui.history.hidden),
  );
  ui.settingsBtn.addEventListener("click", () =>
    toggleDrawer(ui.settings, ui.settingsBtn, ui.settings.hidden),
  );
  for (const close of document.querySelectorAll("[data-close-drawer]")) {
    close.addEventListener("click", () => toggleDrawer(ui.history, ui.historyBtn, false));
  }
  window.addEventListener("pagehide", flushSaves);
  document.addEventListener("visibilitychange", () => document.hidden && flushSaves());
  bindKeys();
  bindSettings();
  loadModels();
}

main();
