/**
 * The conversation as plain data (saved to localStorage as JSON) and the pure functions
 * that change it: one pane per slot, each with its own turns; a turn is one prompt and
 * one model's answer, reasoning, state and figures. No DOM here.
 */

/** States in which a turn may still change. */
export const ACTIVE = new Set(["waiting", "streaming", "retrying"]);

const ENDINGS = { "model.done": "done", "model.error": "error", "model.stopped": "stopped" };

export function newConversation(id, models) {
  const now = Date.now();
  return {
    id,
    title: "",
    created: now,
    updated: now,
    system: "",
    panes: models.map((model) => ({ model, turns: [] })),
    runs: [], // streams still followed: {id, eventsUrl, stopUrl, panes, turns, lastEventId}
    picks: [], // per turn index: {pane, shared} once an answer is marked the best, or null
    blind: [], // per turn index: the shuffled pane order of a blind round, or null
  };
}

export function newTurn(user) {
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

/** The versions of a turn, oldest first: earlier answers (Regenerate, an edited prompt),
 * then the turn itself, the newest, which is the one a stream writes to. */
export const versionsOf = (turn) => [...(turn.versions ?? []), turn];

/** The version on screen; a pane's history is built from it. */
export const shownVersion = (turn) => versionsOf(turn)[turn.shown ?? Infinity] ?? turn;

/** A new version of a turn for `user`, keeping the turn and its versions behind it. */
export function nextVersion(turn, user) {
  const { versions = [], shown: _shown, ...old } = turn;
  const next = newTurn(user);
  next.versions = [...versions, old];
  return next;
}

export const hasTurns = (c) => c.panes.some((p) => p.turns.length > 0);
export const isBusy = (c) => c.panes.some((p) => p.turns.some((t) => ACTIVE.has(t.state)));

/**
 * True when the only turns still running have not sent a token while some pane's last
 * turn has ended: a model that never starts must not hold the others back for its whole
 * first-token timeout. A new message may then be sent; it stops those turns first (they
 * have no text, so nothing is lost, and their upstream requests are closed).
 */
export function isStalled(c) {
  const last = c.panes.map((p) => p.turns[p.turns.length - 1]).filter(Boolean);
  if (!last.some((t) => !ACTIVE.has(t.state))) return false;
  const active = c.panes.flatMap((p) => p.turns.filter((t) => ACTIVE.has(t.state)));
  return active.length > 0 && active.every((t) => !t.answer && !t.reasoning);
}

/** The turn a stream's slot writes to. */
export const turnOf = (c, run, slot) => c.panes[run.panes[slot]]?.turns[run.turns[slot]] ?? null;

/**
 * The messages a slot is sent for its turn `upTo`: the system prompt, then its own earlier
 * turns, leaving out turns with no answer. From the last turn whose best answer was
 * chosen to "continue with" (a shared pick), every pane is sent that answer's history
 * instead of its own, then its own turns after it.
 */
export function historyOf(c, pane, upTo) {
  const system = pane.system ?? c.system;
  return [...(system ? [{ role: "system", content: system }] : []), ...turnsOf(c, pane, upTo)];
}

function turnsOf(c, pane, upTo) {
  const picks = c.picks ?? [];
  let messages = [];
  let from = 0;
  for (let i = Math.min(upTo, picks.length) - 1; i >= 0; i--) {
    const pick = picks[i];
    const chosen = pick?.shared ? c.panes[pick.pane] : null;
    if (!chosen?.turns[i]) continue;
    messages = [...turnsOf(c, chosen, i), ...exchange(chosen.turns[i])];
    from = i + 1;
    break;
  }
  for (const turn of pane.turns.slice(from, upTo)) messages.push(...exchange(turn));
  return messages;
}

function exchange(turn) {
  const { user, answer, images, imagesRefused } = shownVersion(turn);
  if (!answer) return [];
  const content = userContent(user, imagesRefused ? [] : images);
  return [{ role: "user", content }, { role: "assistant", content: answer }];
}

/**
 * A user message's content: its text alone, or with the images the pane was sent, as
 * OpenAI-style parts. Images are kept only in memory (see store.js), so a turn reopened
 * after a reload has lost their data, and is sent as text (its view says so).
 */
export function userContent(text, images) {
  const kept = (images ?? []).filter((image) => image.dataUrl);
  if (!kept.length) return text;
  return [
    { type: "text", text },
    ...kept.map((image) => ({ type: "image_url", image_url: { url: image.dataUrl } })),
  ];
}

/** Applies one slot event (DESIGN.md, "SSE events") to its turn; false if not one. */
export function applyEvent(turn, type, data, now = Date.now()) {
  switch (type) {
    case "model.start":
      return true;
    case "delta":
    case "reasoning":
      turn.first ??= now;
      if (type === "delta") turn.answer += data.text;
      else turn.reasoning += data.text;
      turn.state = "streaming";
      turn.retry = null;
      return true;
    case "model.retry":
      turn.state = "retrying";
      turn.retry = { attempt: data.attempt, reason: data.reason, model: data.model };
      return true;
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
      return true;
    default:
      return false;
  }
}

/** Takes an ended slot's state from a snapshot; text is only ever extended, never repeated. */
export function applySnapshotSlot(turn, s) {
  if (!ACTIVE.has(turn.state) || ACTIVE.has(s.state) || s.state === "queued") return false;
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
  turn.stopping = false;
  turn.ended = Date.now();
  return true;
}

/** Ends a turn that can no longer be followed. */
export function failTurn(turn, error) {
  turn.state = "error";
  turn.error = error;
  turn.stopping = false;
  turn.ended ??= Date.now();
}

/** Turns left active with no stream to follow (the page closed while one was starting). */
export function settleOrphans(c) {
  c.runs ??= [];
  c.panes.forEach((pane, p) =>
    pane.turns.forEach((turn, t) => {
      turn.stopping = false;
      if (!ACTIVE.has(turn.state)) return;
      if (c.runs.some((r) => r.panes.some((q, s) => q === p && r.turns[s] === t))) return;
      failTurn(turn, {
        type: "connection",
        message: "Interrupted: the page closed before the answer started.",
      });
    }),
  );
}
