/**
 * The Chorus page: wires the model picker, the panes, the composer and the drawers to the
 * conversation (conversation.js) and to the streams that fill it (runs.js).
 *
 * Data flows one way: an event changes the conversation (plain data, saved as JSON at
 * most once a second, see saveSoon); the turn is marked dirty; once per animation frame
 * each dirty turn's view appends what it has not shown yet.
 */

import * as api from "./api.js";
import {
  ACTIVE,
  hasTurns,
  historyOf,
  isBusy,
  isStalled,
  newConversation,
  newTurn,
  nextVersion,
  settleOrphans,
  shownVersion,
  userContent,
  versionsOf,
} from "./conversation.js";
import { AlignedLayout } from "./aligned.js";
import { Attachments } from "./attachments.js";
import { Drawers } from "./drawers.js";
import { closeGroupsWhenIdle, PaneView } from "./pane.js";
import { paneParams } from "./pane-settings.js";
import { Picker } from "./picker.js";
import { Runs } from "./runs.js";
import * as store from "./store.js";

const $ = (id) => document.getElementById(id);
const ui = {
  panes: $("panes"),
  composer: $("composer"),
  prompt: $("prompt"),
  send: $("send"),
  stopAll: $("stop-all"),
  editing: $("editing"),
  newChat: $("new-chat"),
  layout: $("layout-btn"),
  toast: $("toast"),
  attach: $("attach"),
  attachInput: $("attach-input"),
};

const settings = store.loadSettings();
const dirty = new Set(); // "pane:turn" keys of the open conversation awaiting a frame
const unsaved = new Set();
let conv = null;
let views = [];
let editing = false; // the composer holds an edited last prompt
let layout = null; // the aligned view, when it is on
let picker = null;
let attachments = null;
let drawers = null;
let frame = 0;
let saveTimer = 0;
let tickTimer = 0;
let toastTimer = 0;

const runs = new Runs({
  touched: touch,
  save: (c, now) => (now ? saveNow(c) : saveSoon(c)),
  changed: (c) => c === conv && refreshControls(),
  params: requestParams,
  notify: toast,
});

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
  layout?.scroll(ui.panes);
}

function renderPanes() {
  dirty.clear();
  const callbacks = {
    stop: (p) => runs.stopPane(conv, p),
    regenerate,
    copy: copyText,
    pick,
    share,
    edit,
    showVersion,
    tuned: () => saveNow(conv),
    pickOf: (t) => ({ pick: conv.picks?.[t] ?? null, last: t === lastTurn() }),
  };
  const aligned = settings.layout === "aligned" && conv.panes.length > 0;
  layout = aligned ? new AlignedLayout(conv.panes.length, edit) : null;
  views = conv.panes.map(
    (pane, i) => new PaneView(i, pane, picker.info(pane.model), callbacks, layout),
  );
  if (layout) {
    layout.setHeads(views.map((v) => v.root));
    ui.panes.replaceChildren(layout.root);
  } else {
    ui.panes.replaceChildren(...views.map((v) => v.root));
  }
  applyBlind();
  ui.panes.dataset.layout = aligned ? "aligned" : "columns";
  ui.layout.setAttribute("aria-pressed", String(settings.layout === "aligned"));
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

/** Busy: a turn is running that a new message must wait for (see isStalled). */
const mustWait = (c) => isBusy(c) && !isStalled(c);

function refreshControls() {
  const busy = mustWait(conv);
  ui.send.hidden = busy;
  ui.stopAll.hidden = !isBusy(conv);
  document.body.dataset.busy = String(busy);
  picker.setDisabled(busy);
  if (!isBusy(conv)) closeGroupsWhenIdle(() => !isBusy(conv));
  if (isBusy(conv) && !tickTimer) {
    tickTimer = setInterval(() => {
      for (const v of views) v.tick();
      if (!isBusy(conv)) {
        clearInterval(tickTimer);
        tickTimer = 0;
      }
    }, 250);
  }
}

/* Picking the best answer, and blind rounds */

const lastTurn = () => (conv.panes[0]?.turns.length ?? 0) - 1;

/** The pane order of the running blind round, or null: a blind round lasts until a pick. */
function blindRound() {
  const t = lastTurn();
  return t >= 0 && !conv.picks?.[t] ? conv.blind?.[t] ?? null : null;
}

/** Hides names and shuffles the panes during a blind round; shows them as they are after. */
function applyBlind() {
  const order = blindRound();
  views.forEach((v, p) => v.setBlind(order ? "Model " + String.fromCharCode(65 + order.indexOf(p)) : null));
  const seq = order ?? views.map((_, p) => p);
  if (layout) layout.setOrder(seq);
  else if (views.length) {
    // Moved only when the order changes: a moved pane is laid out and painted anew, its
    // whole conversation with it.
    const roots = seq.map((p) => views[p].root);
    const placed = [...ui.panes.children];
    if (roots.some((root, i) => placed[i] !== root)) ui.panes.append(...roots);
  }
  document.body.dataset.blind = String(!!order);
}

/** A shuffled pane order for a new round in blind mode, else null. */
const blindOrder = () =>
  settings.blind && conv.panes.length > 1 ? shuffled(conv.panes.length) : null;

function shuffled(n) {
  const order = [...Array(n).keys()];
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  return order;
}

/** Marks pane p's answer the best of turn t; the pick that ends a blind round counts. */
function pick(p, t) {
  conv.picks ??= [];
  if (conv.picks[t]?.pane === p) return;
  if (t === lastTurn() && blindRound()) {
    store.countBlindPick(conv.panes.map((pane) => pane.model), conv.panes[p].model);
    toast("Picked: " + conv.panes[p].model + ".");
  }
  conv.picks[t] = { pane: p, shared: false };
  saveNow(conv);
  applyBlind();
  for (const v of views) v.syncPicks();
}

/** Every pane's next turn is sent the picked answer's history instead of its own. */
function share(p, t) {
  if (conv.picks?.[t]?.pane !== p) return;
  conv.picks[t].shared = true;
  saveNow(conv);
  for (const v of views) v.syncPicks();
  toast("Every model now continues from this answer.");
}

/*
 * Saving: a conversation is written when the page is hidden, and otherwise at most once a
 * second, or less often once writing it takes longer: a write costs the whole conversation,
 * so the wait is SAVE_SHARE times the last write's duration, which keeps saving under 1 % of
 * the page's time however long the conversation grows.
 */

const SAVE_SHARE = 100;
let saveCost = 0; // ms the last write took

function saveSoon(c) {
  unsaved.add(c);
  if (!saveTimer) saveTimer = setTimeout(flushSaves, Math.max(1000, SAVE_SHARE * saveCost));
}

function saveNow(c) {
  unsaved.add(c);
  flushSaves();
}

function flushSaves() {
  clearTimeout(saveTimer);
  saveTimer = 0;
  if (!unsaved.size) return;
  const start = performance.now();
  for (const c of unsaved) store.saveConversation(c);
  unsaved.clear();
  saveCost = performance.now() - start;
}

/* User actions */

function send() {
  const text = ui.prompt.value.trim();
  if (!text) return;
  if (mustWait(conv)) {
    toast("Wait for the answers, or stop them with Esc.");
    return;
  }
  if (!conv.panes.length) {
    toast("Pick at least one model first.");
    picker.input.focus();
    return;
  }
  const missing = conv.panes.find((p) => picker.info(p.model) === null);
  if (missing) {
    toast(missing.model + " is not offered by this server. Remove it, or start a new chat.");
    return;
  }
  if (attachments.reading) {
    toast("Still reading the attached image: send again in a moment.");
    return;
  }
  const images = attachments.take();
  if (editing) {
    stopEditing();
    relaunch(conv.panes.map((_, p) => p), text, images);
    return;
  }
  if (!hasTurns(conv)) {
    conv.title = text.length > 80 ? text.slice(0, 79) + "…" : text;
    conv.system = settings.system.trim();
  }
  const targets = conv.panes.map((pane) =>
    target(pane, [...historyOf(conv, pane, pane.turns.length), prompt(pane, text, images)]),
  );
  if (isBusy(conv)) runs.stopAll(conv); // the stalled turns: they never sent a token
  const t = lastTurn() + 1;
  (conv.blind ??= [])[t] = blindOrder();
  conv.panes.forEach((pane, p) => {
    const turn = withImages(newTurn(text), pane, images, targets[p]);
    pane.turns.push(turn);
    views[p].addTurn(turn);
  });
  applyBlind();
  for (const v of views) v.syncPicks(t - 1); // the turn before stops being the last
  ui.prompt.value = "";
  autosize();
  store.setCurrentConversation(conv.id);
  launchSoon(conv.panes.map((_, p) => p), targets);
}

/**
 * Starts the stream for panes `ps` from a task of its own: encoding and handing a long
 * chat's history to fetch() took 40 ms at 50 turns of 9 panes, which with the new turns'
 * DOM made one task the page could not answer input or draw in for over 100 ms.
 */
function launchSoon(ps, targets) {
  const c = conv;
  setTimeout(() => runs.launch(c, ps, targets));
}

/** Whether pane's model is sent images (GET /v1/models says; unknown means yes). */
const takesImages = (pane) => picker.info(pane.model)?.images !== false;

/** The new user message for a pane: with the images if its model takes them. */
const prompt = (pane, text, images) => ({
  role: "user",
  content: userContent(text, takesImages(pane) ? images : []),
});

/**
 * Records on a new turn the images attached to its prompt, whether this pane's model
 * refused them (its view says so), and how much text it was sent, for a cost estimate.
 */
function withImages(turn, pane, images, sent) {
  if (images.length) {
    turn.images = images;
    turn.imagesRefused = !takesImages(pane);
  }
  turn.sentChars = sent.messages.reduce((n, m) => n + textOf(m.content).length, 0);
  return turn;
}

const textOf = (content) =>
  typeof content === "string" ? content : content.map((part) => part.text ?? "").join("");

/** A stream target for a pane: its model, its messages, and its own params if any. */
function target(pane, messages) {
  const params = paneParams(pane);
  return params ? { model: pane.model, messages, params } : { model: pane.model, messages };
}

/** Asks pane p's model again for its last turn; the earlier answer stays as a version. */
function regenerate(p) {
  const pane = conv.panes[p];
  const t = pane.turns.length - 1;
  const last = pane.turns[t];
  if (!last || ACTIVE.has(last.state)) return;
  const { user, images } = shownVersion(last);
  relaunch([p], user, (images ?? []).filter((image) => image.dataUrl));
}

/** New versions of the last turn of panes `ps` for `user`, sent with their histories. */
function relaunch(ps, user, images) {
  const t = lastTurn();
  const targets = ps.map((p) => {
    const pane = conv.panes[p];
    const sent = target(pane, [...historyOf(conv, pane, t), prompt(pane, user, images)]);
    pane.turns[t] = withImages(nextVersion(pane.turns[t], user), pane, images, sent);
    views[p].replaceLastTurn(pane.turns[t]);
    return sent;
  });
  if (ps.length === conv.panes.length) {
    // A new prompt for every pane: a new round to pick from (blind again, if it is on).
    if (conv.picks?.[t]) conv.picks[t] = null;
    (conv.blind ??= [])[t] = blindOrder();
    applyBlind();
  }
  for (const v of views) v.syncPicks(t); // only the last turn's pick can have changed
  launchSoon(ps, targets);
}

/** Puts the last prompt in the composer; sending then makes a new version of the turn. */
function edit() {
  const t = lastTurn();
  if (t < 0 || isBusy(conv)) {
    toast("Wait for the answers, or stop them with Esc, before editing.");
    return;
  }
  editing = true;
  ui.editing.hidden = false;
  const { user, images } = shownVersion(conv.panes[0].turns[t]);
  ui.prompt.value = user;
  attachments.set((images ?? []).filter((image) => image.dataUrl));
  autosize();
  ui.prompt.focus();
}

function stopEditing() {
  editing = false;
  ui.editing.hidden = true;
  ui.prompt.value = "";
  attachments.set([]);
  autosize();
}

/** Shows version i of pane p's turn t; that version is what the next turn's history uses. */
function showVersion(p, t, i) {
  const turn = conv.panes[p].turns[t];
  const count = versionsOf(turn).length;
  if (!turn || i < 0 || i >= count) return;
  const forward = i > versionsOf(turn).indexOf(shownVersion(turn));
  turn.shown = i === count - 1 ? undefined : i;
  views[p].showVersion(t);
  saveNow(conv);
  // The view was redrawn: focus the arrow pressed, or the other one at either end.
  const { prev, next } = views[p].turns[t].nav;
  (forward ? (next.disabled ? prev : next) : prev.disabled ? next : prev).focus();
}

function switchTo(next) {
  if (editing) stopEditing();
  if (conv && isBusy(conv)) runs.stopAll(conv); // its last events still land in it, and are saved
  flushSaves();
  conv = next;
  store.setCurrentConversation(conv.id);
  if (hasTurns(conv)) {
    settings.models = conv.panes.map((p) => p.model);
    store.saveSettings(settings);
  }
  picker.setSelection(conv.panes.map((p) => p.model));
  renderPanes();
  for (const run of conv.runs) runs.attach(conv, run);
}

function newChat() {
  switchTo(newConversation(store.newId(), settings.models ?? []));
  ui.prompt.focus();
}

function onSelectionChange(refs) {
  settings.models = refs;
  store.saveSettings(settings);
  if (hasTurns(conv)) {
    // Changing models starts a new chat; the old one is kept in History.
    switchTo(newConversation(store.newId(), refs));
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
    // Not a secure context (plain http on a LAN address): the older way still works.
    const area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "offscreen";
    document.body.append(area);
    area.select();
    ok = document.execCommand("copy");
    area.remove();
  }
  const target = btn?.querySelector(".btn-label") ?? btn;
  if (target) {
    const label = target.textContent;
    target.textContent = ok ? "Copied" : "Copy failed";
    setTimeout(() => (target.textContent = label), 1200);
  }
}

function toast(message) {
  ui.toast.textContent = message;
  ui.toast.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (ui.toast.hidden = true), 4000);
}

/** Where the browser cannot size the prompt to its text in CSS (style.css), it is done here. */
const SIZED_BY_CSS = CSS.supports("field-sizing", "content");

function autosize() {
  if (SIZED_BY_CSS) return;
  const area = ui.prompt;
  area.style.height = "auto";
  area.style.height = Math.min(area.scrollHeight, Math.round(window.innerHeight * 0.3)) + "px";
}

/* Start-up */

function modelEntry(m) {
  const id = String(m.id);
  const provider = m.provider ? String(m.provider) : "";
  const ref = !provider || id.startsWith(provider + "/") ? id : provider + "/" + id;
  const price = m.pricing;
  return {
    ref,
    provider,
    simulated: m.simulated === true,
    images: m.images !== false,
    pricing: Number.isFinite(price?.input) && Number.isFinite(price?.output) ? price : null,
    context: Number.isInteger(m.context_length) ? m.context_length : null,
    description: typeof m.description === "string" ? m.description : "",
  };
}

async function loadModels() {
  try {
    const res = await api.listModels();
    const models = (res.data ?? []).map(modelEntry);
    picker.setModels(models, res.max_slots, res.notes ?? []);
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
    toast(
      err.status === 401
        ? "This server needs an API key: add it in Settings."
        : "Could not load the model list: " + err.message,
    );
    picker.setModels([], null);
    document.body.dataset.models = "failed";
  }
}

/** Images come in by the file picker, by pasting into the prompt, or dropped on the composer. */
function bindAttachments() {
  attachments = new Attachments($("attachments"), toast);
  ui.attach.addEventListener("click", () => ui.attachInput.click());
  ui.attachInput.addEventListener("change", async () => {
    await attachments.add([...ui.attachInput.files]);
    ui.attachInput.value = "";
  });
  ui.prompt.addEventListener("paste", (e) => {
    const files = [...(e.clipboardData?.files ?? [])];
    if (!files.length) return;
    e.preventDefault();
    attachments.add(files);
  });
  ui.composer.addEventListener("dragover", (e) => {
    if (e.dataTransfer?.types.includes("Files")) e.preventDefault();
  });
  ui.composer.addEventListener("drop", (e) => {
    const files = [...(e.dataTransfer?.files ?? [])];
    if (!files.length) return;
    e.preventDefault();
    attachments.add(files);
  });
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
    if (drawers.close(true)) return;
    if (editing) {
      stopEditing();
      return;
    }
    if (isBusy(conv)) {
      e.preventDefault();
      runs.stopAll(conv);
    }
  });
  document.addEventListener("click", (e) => {
    const copy = e.target.closest?.(".md-code-copy");
    if (copy) copyText(copy.closest(".md-code").querySelector("code").textContent, copy);
    // On a narrow screen the panes are a strip: a chip brings its pane into view.
    const chip = e.target.closest?.(".chip");
    if (chip && !e.target.closest(".chip-remove")) {
      const index = [...chip.parentElement.children].indexOf(chip);
      views[index]?.root.scrollIntoView({ behavior: "smooth", block: "nearest", inline: "start" });
    }
  });
}

function main() {
  api.setApiKey(settings.apiKey);
  picker = new Picker($("picker"), onSelectionChange, store);
  bindAttachments();
  const saved = store.currentConversationId();
  conv = (saved && store.loadConversation(saved)) || newConversation(store.newId(), settings.models ?? []);
  settleOrphans(conv);
  picker.setSelection(conv.panes.map((p) => p.model));
  renderPanes();
  for (const run of conv.runs) runs.attach(conv, run);
  store.setCurrentConversation(conv.id);
  ui.stopAll.addEventListener("click", () => runs.stopAll(conv));
  $("edit-cancel").addEventListener("click", stopEditing);
  ui.newChat.addEventListener("click", newChat);
  ui.layout.addEventListener("click", () => {
    settings.layout = settings.layout === "aligned" ? "columns" : "aligned";
    store.saveSettings(settings);
    renderPanes();
  });
  ui.panes.addEventListener("scroll", () => layout?.scrolled(ui.panes));
  drawers = new Drawers(settings, {
    currentId: () => conv.id,
    beforeList: flushSaves,
    open: (id) => {
      const next = runs.live.get(id) ?? store.loadConversation(id);
      if (next) switchTo(next);
    },
    deleted: (id) => id === conv.id && newChat(),
    keyChanged: () => {
      api.setApiKey(settings.apiKey);
      loadModels();
    },
  });
  window.addEventListener("pagehide", flushSaves);
  document.addEventListener("visibilitychange", () => document.hidden && flushSaves());
  bindKeys();
  loadModels();
}

main();
