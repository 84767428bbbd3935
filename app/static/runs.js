/**
 * Streams as the page follows them ("runs"): create one for some panes, follow its events
 * into the conversation, stop some or all of its slots through the stop API, and, when
 * the browser loses it for good, settle what is left from the server's snapshot.
 *
 * A run is saved inside its conversation with the last event id applied, so after a reload
 * the page reattaches from exactly there (?last_event_id=N): no gap, no repeat.
 */

import * as api from "./api.js";
import { ACTIVE, applyEvent, applySnapshotSlot, failTurn, turnOf } from "./conversation.js";

export class Runs {
  /**
   * hooks: touched(c, pane, turn) — a turn's data changed; save(c, now) — persist;
   * changed(c) — a run or turn ended or began; params() — request params or null;
   * notify(message).
   */
  constructor(hooks) {
    this.hooks = hooks;
    this.live = new Map(); // conversation id -> conversation, while it has runs
    this.followers = new Map(); // stream id -> {close}
  }

  /** Creates a stream for `paneIdxs` (their last turns) with one target per pane. */
  async launch(c, paneIdxs, targets) {
    const turnIdxs = paneIdxs.map((p) => c.panes[p].turns.length - 1);
    this.live.set(c.id, c);
    this.hooks.changed(c);
    this.hooks.save(c, false);
    const body = { models: targets, mode: "parallel" };
    const params = this.hooks.params();
    if (params) body.params = params;
    let res;
    try {
      res = await api.createStream(body);
    } catch (err) {
      paneIdxs.forEach((p, s) => {
        const turn = c.panes[p].turns[turnIdxs[s]];
        if (!turn) return;
        failTurn(turn, { type: err.type, message: err.message, status: err.status || undefined });
        this.hooks.touched(c, p, turnIdxs[s]);
      });
      this.hooks.save(c, true);
      this.hooks.changed(c);
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
    this.hooks.save(c, true);
    this.attach(c, run);
    // Stop pressed while the stream was being created.
    const early = paneIdxs.map((_, s) => s).filter((s) => turnOf(c, run, s)?.stopping);
    if (early.length) this.stop(c, run, early.length === paneIdxs.length ? null : early);
  }

  /** Follows a run from its last applied event (0: from the start). */
  attach(c, run) {
    if (this.followers.has(run.id)) return;
    this.live.set(c.id, c);
    const follower = api.followEvents(
      run.eventsUrl,
      run.lastEventId,
      (type, data, id) => this.onEvent(c, run, type, data, id),
      () => this.onLost(c, run),
    );
    this.followers.set(run.id, follower);
  }

  onEvent(c, run, type, data, id) {
    if (id) run.lastEventId = id;
    this.hooks.save(c, false);
    if (type === "stream.done") {
      this.end(c, run, {
        type: "protocol",
        message: "The stream ended without a result for this model.",
      });
      return;
    }
    const turn = data && typeof data.slot === "number" ? turnOf(c, run, data.slot) : null;
    if (!turn || !applyEvent(turn, type, data)) return;
    this.hooks.touched(c, run.panes[data.slot], run.turns[data.slot]);
    if (!ACTIVE.has(turn.state)) this.hooks.changed(c);
  }

  /** Stops following a run; turns it left active end with `why`. */
  end(c, run, why) {
    this.followers.get(run.id)?.close();
    this.followers.delete(run.id);
    c.runs = c.runs.filter((r) => r !== run);
    run.panes.forEach((p, s) => {
      const turn = turnOf(c, run, s);
      if (!turn || !ACTIVE.has(turn.state)) return;
      failTurn(turn, why);
      this.hooks.touched(c, p, run.turns[s]);
    });
    this.hooks.save(c, true);
    if (!c.runs.length) this.live.delete(c.id);
    this.hooks.changed(c);
  }

  /** The browser gave up on the event stream (refused, or gone from the server). */
  async onLost(c, run) {
    this.followers.delete(run.id);
    let why = "";
    try {
      const snapshot = await api.getSnapshot(run.id);
      for (const s of snapshot.slots ?? []) {
        const turn = turnOf(c, run, s.slot);
        if (turn && applySnapshotSlot(turn, s)) {
          this.hooks.touched(c, run.panes[s.slot], run.turns[s.slot]);
        }
      }
    } catch (err) {
      why = err.status === 404 ? " It is no longer on the server." : " " + err.message;
    }
    this.end(c, run, { type: "connection", message: "Lost the connection to this stream." + why });
  }

  /** Asks the server to stop some slots of a run (null: all of them). */
  async stop(c, run, slots) {
    const targets = slots ?? run.panes.map((_, s) => s);
    const active = targets.filter((s) => ACTIVE.has(turnOf(c, run, s)?.state));
    if (!active.length) return;
    const mark = (stopping) => {
      for (const s of active) {
        turnOf(c, run, s).stopping = stopping;
        this.hooks.touched(c, run.panes[s], run.turns[s]);
      }
    };
    mark(true);
    try {
      await api.stopStream(run.stopUrl, slots === null ? null : active);
    } catch (err) {
      mark(false);
      this.hooks.notify("Could not stop: " + err.message);
    }
  }

  /** Stops every active turn of a conversation, including streams still being created. */
  stopAll(c) {
    for (const pane of c.panes) {
      const turn = pane.turns[pane.turns.length - 1];
      if (turn && ACTIVE.has(turn.state)) turn.stopping = true; // launch() looks at this
    }
    for (const run of c.runs) this.stop(c, run, null);
  }

  /** Stops one pane's running turn. */
  stopPane(c, p) {
    const t = c.panes[p].turns.length - 1;
    const turn = c.panes[p].turns[t];
    if (!turn || !ACTIVE.has(turn.state)) return;
    turn.stopping = true;
    this.hooks.touched(c, p, t);
    for (const run of c.runs) {
      const slot = run.panes.findIndex((q, s) => q === p && run.turns[s] === t);
      if (slot >= 0) this.stop(c, run, [slot]);
    }
  }
}
