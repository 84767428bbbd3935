/**
 * One pane per slot: its model, state, turns (prompt, reasoning, answer, figures), and
 * its own buttons. A view only reads the conversation data; app.js changes the data and
 * calls sync(), at most once per animation frame per turn.
 */

import { watchCode } from "./a11y.js";
import { imageChip } from "./attachments.js";
import { ACTIVE, shownVersion, versionsOf } from "./conversation.js";
import { el, setSlotHue, whenIdle } from "./dom.js";
import { MarkdownStream } from "./markdown.js";
import { isTuned, PaneSettings } from "./pane-settings.js";
import { VersionNav } from "./versions.js";

const STATE_TEXT = {
  ready: "ready",
  waiting: "waiting",
  streaming: "streaming",
  retrying: "retrying",
  done: "done",
  stopped: "stopped",
  error: "error",
};

const STAT_TITLES = {
  ttft: "Time to first token",
  cost: "Cost at the configured price (≈: estimated, about 4 characters a token)",
};

function button(className, text, label, icon) {
  const b = el("button", "btn " + className);
  b.type = "button";
  if (icon) b.append(el("span", "btn-icon", icon));
  b.append(el("span", "btn-label", text));
  if (label) {
    b.setAttribute("aria-label", label);
    b.title = label;
  }
  return b;
}

export function formatMs(ms) {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return "–";
  if (ms < 1000) return Math.round(ms) + " ms";
  if (ms < 60000) return (ms / 1000).toFixed(ms < 10000 ? 2 : 1) + " s";
  const m = Math.floor(ms / 60000);
  return m + " min " + Math.round((ms % 60000) / 1000) + " s";
}

/** Characters per token when the page estimates a count (a common rule of thumb). */
const CHARS_PER_TOKEN = 4;

/**
 * The figures of a turn: the server's once the slot has ended; before that, measured or
 * estimated in the page (output tokens from the text's length, the rate from them and the
 * time since the first token), and flagged `estimated`.
 */
export function turnFigures(turn, now = Date.now()) {
  const t = turn.timing ?? {};
  const live = ACTIVE.has(turn.state);
  const ttft = t.ttft_ms ?? (turn.first && turn.started ? turn.first - turn.started : null);
  const duration = t.duration_ms ?? (turn.started ? (live ? now : turn.ended ?? now) - turn.started : null);
  const u = turn.usage;
  const chars = turn.answer.length + turn.reasoning.length;
  const guess = live && !u && chars ? Math.ceil(chars / CHARS_PER_TOKEN) : null;
  const since = turn.first ? (now - turn.first) / 1000 : 0;
  return {
    ttft,
    duration,
    rate: t.tokens_per_s ?? (guess !== null && since > 0 ? guess / since : null),
    input: u?.input_tokens ?? null,
    output: u?.output_tokens ?? guess,
    estimated: !!u?.estimated || guess !== null,
    rateEstimated: t.tokens_per_s == null && guess !== null,
  };
}

/**
 * What an answer cost in USD at `pricing` (USD per million tokens), or null. From the
 * server's usage once it has one; while streaming, from the estimated output and the text
 * the pane was sent (about 4 characters a token), flagged `estimated`.
 */
export function turnCost(turn, pricing, figures = turnFigures(turn)) {
  if (!pricing) return null;
  const input = figures.input ?? (turn.sentChars ? Math.ceil(turn.sentChars / CHARS_PER_TOKEN) : null);
  if (input === null && figures.output === null) return null;
  const usd = ((input ?? 0) * pricing.input + (figures.output ?? 0) * pricing.output) / 1e6;
  return { usd, estimated: figures.estimated || figures.input === null };
}

/** Dollars with two significant digits below a cent, cents above. */
export function formatUsd(usd) {
  if (usd === 0) return "$0";
  return "$" + (usd < 0.01 ? usd.toPrecision(2) : usd.toFixed(2));
}

class TurnView {
  /** `head`: the pane's turn (its newest version); the view shows shownVersion(head). */
  constructor(head, slot, callbacks, pricing) {
    const turn = shownVersion(head);
    this.pricing = pricing;
    this.head = head;
    this.turn = turn;
    this.callbacks = callbacks;
    this.root = el("article", "turn");
    this.root.dataset.slot = String(slot);
    const user = el("div", "prompt-line");
    const text = el("div", "user-msg");
    text.textContent = turn.user;
    this.editBtn = button("edit", "Edit", "Edit this prompt and send it again", "✎");
    this.editBtn.addEventListener("click", () => callbacks.edit());
    user.append(this.editBtn, text);
    const images = this.imagesOf(turn);
    const reply = el("div", "reply");
    this.reasoning = null; // built when the first reasoning text arrives
    this.answer = el("div", "answer md");
    this.typing = el("div", "typing");
    this.typing.setAttribute("role", "img");
    this.typing.setAttribute("aria-label", "Waiting for the first token");
    this.typing.append(el("span"), el("span"), el("span"));
    this.note = el("div", "turn-note");
    this.errorBox = el("div", "error-box");
    this.errorBox.setAttribute("role", "alert");
    this.footer = el("footer", "turn-foot");
    this.stats = el("div", "stats");
    this.copy = button("copy", "Copy", "Copy answer");
    this.copy.addEventListener("click", () => callbacks.copy(this.turn.answer, this.copy));
    this.pickBtn = button("pick", "Best", "Mark as the best answer to this prompt", "☆");
    this.pickBtn.addEventListener("click", () => callbacks.pick(slot, this.index));
    this.shareBtn = button("share", "Continue with this one",
      "Send this answer as every model's history from now on");
    this.shareBtn.addEventListener("click", () => callbacks.share(slot, this.index));
    this.nav = new VersionNav((i) => callbacks.showVersion(slot, this.index, i));
    const count = versionsOf(head).length;
    this.nav.set(versionsOf(head).indexOf(turn), count);
    const tools = el("div", "turn-tools");
    tools.append(this.nav.root, this.pickBtn, this.shareBtn, this.copy);
    this.footer.append(this.stats, tools);
    this.slot = slot;
    this.index = 0; // its turn's index in the pane, set by the pane
    reply.append(this.answer, this.typing, this.note, this.errorBox, this.footer);
    this.reply = reply;
    this.root.append(user, ...images, reply);
    watchCode(this.answer);
    this.md = new MarkdownStream(this.answer);
    this.reasoningMd = null;
    this.shownAnswer = 0;
    this.shownReasoning = 0;
    this.reasoningWords = 0;
    this.closed = false;
    this.sync();
  }

  /** The prompt's images as chips, and a note when the model was not sent them. */
  imagesOf(turn) {
    const images = turn.images ?? [];
    if (!images.length) return [];
    const list = el("ul", "turn-images");
    list.setAttribute("aria-label", "Images attached to this prompt");
    list.append(...images.map((image) => imageChip(image)));
    const n = images.length + " image" + (images.length === 1 ? "" : "s");
    let why = "";
    if (turn.imagesRefused) why = "This model takes no images: it was sent the prompt without the " + n + ".";
    else if (images.some((image) => !image.dataUrl)) {
      why = "Images are not kept after a reload: later turns send this prompt without them.";
    }
    return why ? [list, el("p", "images-note", why)] : [list];
  }

  ensureReasoning() {
    if (this.reasoning) return;
    const details = el("details", "reasoning");
    const summary = el("summary");
    this.reasoningLabel = el("span", "reasoning-label", "Reasoning");
    this.reasoningSize = el("span", "reasoning-size");
    summary.append(this.reasoningLabel, this.reasoningSize);
    const body = el("div", "reasoning-body md");
    details.append(summary, body);
    this.reply.prepend(details);
    this.reasoning = details;
    this.reasoningMd = new MarkdownStream(body);
  }

  /** Brings the DOM up to the turn's data; appends only text not yet shown. */
  sync() {
    const turn = this.turn;
    const active = ACTIVE.has(turn.state);
    if (turn.reasoning.length > this.shownReasoning) {
      this.ensureReasoning();
      const added = turn.reasoning.slice(this.shownReasoning);
      this.reasoningMd.push(added);
      // Counted per chunk, so the cost does not grow with the reasoning: a word split
      // across two chunks is counted once.
      const joined = this.shownReasoning > 0 && /\S/.test(turn.reasoning[this.shownReasoning - 1])
        && /^\S/.test(added);
      this.reasoningWords += countWords(added) - (joined ? 1 : 0);
      this.shownReasoning = turn.reasoning.length;
    }
    if (turn.answer.length > this.shownAnswer) {
      this.md.push(turn.answer.slice(this.shownAnswer));
      this.shownAnswer = turn.answer.length;
    }
    if (this.reasoning) {
      const thinking = active && !turn.answer;
      setText(this.reasoningLabel, thinking ? "Thinking…" : "Reasoning");
      setText(this.reasoningSize, " · " + this.reasoningWords + " words");
      if (this.reasoning.classList.contains("live") !== thinking) {
        this.reasoning.classList.toggle("live", thinking);
      }
    }
    if (!active && !this.closed) {
      this.endAnswer();
      this.reasoningMd?.end();
      this.closed = true;
    }
    // Unchanged values are not written again: a write restyles what depends on it
    // ([data-state] selectors), even when the value is the same.
    setAttr(this.root, "data-state", turn.state);
    setHidden(this.typing, !(active && !turn.answer && !turn.reasoning));
    setText(this.note, noteFor(turn));
    setHidden(this.note, !this.note.textContent);
    const error = turn.state === "error" ? turn.error : null;
    if (this.errorShown !== error) {
      this.errorShown = error;
      this.errorBox.replaceChildren();
      if (error) {
        const type = el("strong", "error-type", error.type || "error");
        const status = error.status ? " " + error.status : "";
        this.errorBox.append(type, document.createTextNode(status + " — " + (error.message || "")));
      }
    }
    setHidden(this.errorBox, !error);
    setHidden(this.copy, !turn.answer);
    this.syncStats();
    if (this.pickedFor !== turn.state) this.syncPick(); // its buttons change with the state only
    this.pickedFor = turn.state;
  }

  /**
   * The Best and Continue buttons, from the turn's pick (callbacks.pickOf). A send or a pick
   * calls this for every turn of every pane, so it writes only what changed: rewriting
   * equal text or attributes made the browser restyle and lay out every turn again.
   */
  syncPick() {
    const { pick, last } = this.callbacks.pickOf(this.index);
    setHidden(this.editBtn, !last || ACTIVE.has(this.head.state));
    const mine = pick?.pane === this.slot;
    const ended = !ACTIVE.has(this.turn.state);
    if (this.root.classList.contains("picked") !== mine) this.root.classList.toggle("picked", mine);
    setHidden(this.pickBtn, !ended || !this.turn.answer);
    setAttr(this.pickBtn, "aria-pressed", String(mine));
    setText(this.pickBtn.querySelector(".btn-icon"), mine ? "★" : "☆");
    setText(this.pickBtn.querySelector(".btn-label"), mine ? "Preferred" : "Best");
    setHidden(this.shareBtn, !mine || !(last || pick.shared));
    setAttr(this.shareBtn, "aria-pressed", String(!!pick?.shared));
    if (this.shareBtn.disabled !== !!pick?.shared) this.shareBtn.disabled = !!pick?.shared;
    setText(this.shareBtn.querySelector(".btn-label"), pick?.shared
      ? "Every model continues from this one"
      : "Continue with this one");
  }

  /**
   * Closes the answer. One cut off mid-line (error, stop) may end in a line of bare markup
   * ("- ", "##") that the stream held back; closing it as is would leave an empty bullet or
   * heading, so the answer is drawn once more without it.
   */
  endAnswer() {
    const shown = shownAnswer(this.turn);
    if (shown.length === this.turn.answer.length) {
      this.md.end();
      return;
    }
    this.answer.replaceChildren();
    this.md = new MarkdownStream(this.answer);
    this.md.push(shown);
    this.md.end();
  }

  syncStats() {
    const f = turnFigures(this.turn);
    const count = (n) => (n === null ? "–" : (f.estimated ? "≈" : "") + n);
    const parts = [
      ["state", STATE_TEXT[this.turn.state] ?? this.turn.state],
      ["ttft", "TTFT " + formatMs(f.ttft)],
      ["duration", formatMs(f.duration)],
      ["rate", f.rate === null ? "– tok/s"
        : (f.rateEstimated ? "≈" : "") + f.rate.toFixed(f.rate < 10 ? 1 : 0) + " tok/s"],
      ["tokens", "in " + count(f.input) + " · out " + count(f.output)],
    ];
    const cost = turnCost(this.turn, this.pricing, f);
    if (cost) parts.push(["cost", (cost.estimated ? "≈" : "") + formatUsd(cost.usd)]);
    this.statNodes ??= {};
    for (const [key] of parts) {
      if (this.statNodes[key]) continue;
      this.statNodes[key] = el("span", "stat stat-" + key);
      this.statNodes[key].title = STAT_TITLES[key] ?? "";
      this.stats.append(this.statNodes[key]);
    }
    const guess = f.rateEstimated ? "Estimated while streaming (about 4 characters a token)" : "";
    if (this.statNodes.rate.title !== guess) this.statNodes.rate.title = guess;
    for (const [key, text] of parts) {
      setText(this.statNodes[key], text);
    }
    setAttr(this.statNodes.state, "data-state", this.turn.state);
  }
}

/** A trailing partial line made only of Markdown markers (list, heading, quote, fence…). */
const HELD_MARKUP = /(^|\n)([ \t]*([-*+>#`~=_|:]|\d+[.)])[ \t]*)+$/;

/** The answer as the page shows it once the turn has ended (see TurnView.endAnswer). */
export function shownAnswer(turn) {
  if (turn.state === "done" || ACTIVE.has(turn.state)) return turn.answer;
  return turn.answer.replace(HELD_MARKUP, "$1");
}

/**
 * Sets a node's text only when it changes: writing textContent replaces the text node even
 * when equal, which makes the browser lay the node's ancestors out again, every frame.
 */
function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

function setHidden(node, hidden) {
  if (node.hidden !== hidden) node.hidden = hidden;
}

function setAttr(node, name, value) {
  if (node.getAttribute(name) !== value) node.setAttribute(name, value);
}

function countWords(text) {
  let n = 0;
  for (const _ of text.matchAll(/\S+/g)) n++;
  return n;
}

function noteFor(turn) {
  if (turn.state === "retrying" && turn.retry) {
    const model = turn.retry.model ? " with " + turn.retry.model : "";
    return "Retrying" + model + " (attempt " + turn.retry.attempt + "): " + (turn.retry.reason || "");
  }
  if (turn.stopping && ACTIVE.has(turn.state)) return "Stopping…";
  if (turn.state === "stopped") {
    const why = { user: "", disconnect: " (client left)", shutdown: " (server shut down)" };
    return "Stopped" + (why[turn.stopReason] ?? "") + ".";
  }
  if (turn.state === "done" && turn.finish === "length") return "Cut off: the token limit was reached.";
  return "";
}

const TURNS_PER_GROUP = 8;

/**
 * Full groups waiting to become one skipped box (class `closed`, style.css). A group that
 * turns into such a box makes Chromium lay out the conversations again: done on the send
 * that starts the next group, it made that send's frame over 50 ms at 40 turns of 9 panes;
 * done while answers stream, it lengthened a streaming frame as much. So the full groups
 * are closed together, once no answer is running and the page is idle (app.js), at the
 * cost of one layout. An open group's turns are skipped one by one until then.
 *
 * Closed on the send, it also threw each pane 8,344 px off its end (the benchmark's
 * answers, turn 9), so the pane stopped following the new answer for that turn and the
 * next. Closed while idle, no pane moved (checked at every turn to 11).
 */
const closing = [];
let closer = 0;

function closeLater(group) {
  if (group.isConnected) closing.push(group);
  else group.classList.add("closed"); // still being built: nothing is laid out yet
}

/** Closes the full groups at the page's next idle moment, if `quiet()` says so then. */
export function closeGroupsWhenIdle(quiet) {
  if (closer || !closing.length) return;
  closer = whenIdle(() => {
    closer = 0;
    if (!quiet()) return; // the next time no answer is running
    for (const group of closing.splice(0)) group.classList.add("closed");
  }, { timeout: 1000 });
}

export class PaneView {
  /**
   * callbacks: stop(index), regenerate(index), copy(text, button). `layout`: null for a
   * column of its own, or the aligned view that places each turn (aligned.js).
   */
  constructor(index, pane, info, callbacks, layout = null) {
    this.index = index;
    this.layout = layout;
    this.pane = pane;
    this.callbacks = callbacks;
    this.pricing = info?.pricing ?? null;
    this.turns = [];
    this.root = el("section", "pane");
    this.root.dataset.slot = String(index);
    this.root.tabIndex = -1;
    this.root.setAttribute("aria-label", "Slot " + (index + 1) + ": " + pane.model);
    setSlotHue(this.root, index);
    const head = el("header", "pane-head");
    const title = el("div", "pane-title");
    const slot = el("span", "slot-no", String(index + 1));
    const name = el("span", "model-name", pane.label || pane.model);
    name.title = pane.model;
    title.append(slot, name);
    if (info?.simulated) title.append(el("span", "tag sim", "simulated"));
    if (info === null) title.append(el("span", "tag missing", "not available"));
    this.title = title;
    this.name = name;
    this.blindName = el("span", "model-name blind-name");
    this.blindName.hidden = true;
    title.append(this.blindName);
    this.stateBadge = el("span", "state-badge");
    this.stateBadge.setAttribute("aria-live", "polite");
    const actions = el("div", "pane-actions");
    this.stopBtn = button("stop", "Stop", "Stop this model");
    this.stopBtn.addEventListener("click", () => {
      // The button is disabled, then hidden: keep focus in this pane rather than let it
      // fall to the page's start.
      this.root.focus();
      callbacks.stop(this.index);
    });
    this.regenBtn = button("regen", "Regenerate", "Regenerate this answer", "↻");
    this.regenBtn.addEventListener("click", () => callbacks.regenerate(this.index));
    this.tuneBtn = button("tune", "", "", "⚙");
    this.tuneBtn.setAttribute("aria-expanded", "false");
    this.settings = new PaneSettings(pane, () => {
      this.syncTune();
      callbacks.tuned(this.index);
    });
    this.tuneBtn.addEventListener("click", () => {
      this.settings.root.hidden = !this.settings.root.hidden;
      this.tuneBtn.setAttribute("aria-expanded", String(!this.settings.root.hidden));
      if (!this.settings.root.hidden) this.settings.root.querySelector("input").focus();
    });
    this.syncTune();
    actions.append(this.stopBtn, this.regenBtn, this.tuneBtn);
    head.append(title, this.stateBadge, actions);
    // The body is kept at its end while the reader is there (follow()).
    this.body = el("div", "pane-body");
    this.body.tabIndex = 0;
    this.body.setAttribute("aria-label", "Answers from " + pane.model);
    this.content = el("div", "pane-content");
    this.empty = el("p", "pane-empty", "Answers from this model appear here.");
    this.content.append(this.empty);
    this.body.append(this.content);
    // Whether the reader is at the end, noted on scroll events (the layout is current
    // then), so following the text reads no geometry.
    this.atBottom = true;
    this.body.addEventListener("scroll", () => {
      const body = this.body;
      this.atBottom = body.scrollHeight - body.scrollTop - body.clientHeight < 48;
    });
    this.root.append(head, this.settings.root);
    if (!layout) this.root.append(this.body);
    for (const turn of pane.turns) this.addTurn(turn);
    this.syncHead();
  }

  addTurn(turn) {
    const view = new TurnView(turn, this.index, this.callbacks, this.pricing);
    view.index = this.turns.length;
    this.turns.push(view);
    view.syncPick();
    if (this.layout) this.layout.place(this.index, this.turns.length - 1, view);
    else this.groupFor().append(view.root);
    this.empty.hidden = true;
    this.syncHead();
    this.scroll();
    return view;
  }

  /**
   * The group the next turn goes in. Turns are kept in groups of TURNS_PER_GROUP, and the
   * browser skips a finished group out of view as one box (style.css): each
   * `content-visibility: auto` box is checked against the viewport every frame, so one per
   * turn made every frame's cost grow with the conversation.
   */
  groupFor() {
    const last = this.content.lastElementChild;
    const open = last?.classList.contains("turn-group") ? last : null;
    if (open && open.childElementCount < TURNS_PER_GROUP) return open;
    if (open) closeLater(open);
    const group = el("div", "turn-group");
    this.content.append(group);
    return group;
  }

  replaceLastTurn(turn) {
    const old = this.turns.pop();
    if (!this.layout) old?.root.remove();
    return this.addTurn(turn);
  }

  /** Redraws turn `t` in place for the version its data says to show (turn.shown). */
  showVersion(t) {
    const old = this.turns[t];
    if (!old) return;
    const view = new TurnView(this.pane.turns[t], this.index, this.callbacks, this.pricing);
    view.index = t;
    this.turns[t] = view;
    old.root.replaceWith(view.root);
    view.syncPick();
  }

  syncTurn(index) {
    this.turns[index]?.sync();
    this.syncHead();
    this.follow();
  }

  /** Blind mode: `label` ("Model B") stands for the model, whose name, slot number and
   * colour are hidden until a pick reveals them; null shows them again. */
  setBlind(label) {
    const blind = label !== null;
    this.root.classList.toggle("blind", blind);
    for (const node of this.title.children) node.hidden = blind ? node !== this.blindName : node === this.blindName;
    this.blindName.textContent = label ?? "";
    const who = blind ? label : "Slot " + (this.index + 1) + ": " + this.pane.model;
    this.root.setAttribute("aria-label", who);
    this.body.setAttribute("aria-label", "Answers from " + (blind ? label : this.pane.model));
  }

  /** The settings button says whether the pane has settings of its own. */
  syncTune() {
    const tuned = isTuned(this.pane);
    const label = "Settings for this pane" + (tuned ? " (its own are set)" : "");
    this.tuneBtn.setAttribute("aria-label", label);
    this.tuneBtn.title = label;
    this.tuneBtn.classList.toggle("tuned", tuned);
  }

  /** Redraws the Best / Continue buttons of turns `from` on: every turn when a pick
   * changed, the last two on a send (the turn before stops being the last). */
  syncPicks(from = 0) {
    for (const view of this.turns.slice(Math.max(0, from))) view.syncPick();
  }

  tick() {
    for (const view of this.turns) if (ACTIVE.has(view.turn.state)) view.syncStats();
  }

  syncHead() {
    const last = this.pane.turns[this.pane.turns.length - 1];
    const state = last ? last.state : "ready";
    const active = ACTIVE.has(state);
    setAttr(this.root, "data-state", state);
    setAttr(this.root, "aria-busy", String(active));
    setText(this.stateBadge, last?.stopping && active ? "stopping" : STATE_TEXT[state] ?? state);
    setAttr(this.stateBadge, "data-state", state);
    setHidden(this.stopBtn, !active);
    if (this.stopBtn.disabled !== !!last?.stopping) this.stopBtn.disabled = !!last?.stopping;
    setHidden(this.regenBtn, active || !last);
  }

  /** Brings the newest turn into view (a new turn was added), even if the reader scrolled up. */
  scroll() {
    this.atBottom = true;
    this.follow();
  }

  /** Keeps the newest text in view while the reader is at the end: once the frame's
   * changes to every pane are in, so all panes are laid out once, not once a pane. */
  follow() {
    if (this.layout || !this.atBottom) return;
    if (!following.size) queueMicrotask(followAll);
    following.add(this);
  }
}

// The panes to bring to their end when the task that changed them is done (follow()).
const following = new Set();

function followAll() {
  for (const view of following) view.body.scrollTop = view.body.scrollHeight;
  following.clear();
}

