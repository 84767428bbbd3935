"""The page's small pure modules, run in Chromium: the SSE parser (sse.js) and the
conversation data functions (conversation.js): events, histories (own, shared from a
pick, from the version on screen), versions and stalls."""

from __future__ import annotations

import pytest

from .conftest import BrowserThread
from .static_page import run_js

pytestmark = pytest.mark.browser

WIRE = (
    ": ping\n\n"
    "id: 1\nevent: stream.start\ndata: {\"a\": 1}\n\n"
    "retry: 1500\n"
    "id: 2\r\nevent: delta\r\ndata: {\"slot\": 0,\r\ndata:  \"text\": \"hé\"}\r\n\r\n"
    "event: model.done\rdata:{}\r\r"
    "data\n\n"
    "id: 3\nevent: ignored-without-data\n\n"
    "id: 4\nevent: stream.done\ndata: {}\n\n"
    "id: 5\nevent: cut-off\ndata: {}"
)
EXPECTED = {
    "events": [
        {"type": "stream.start", "data": '{"a": 1}', "id": "1"},
        {"type": "delta", "data": '{"slot": 0,\n "text": "hé"}', "id": "2"},
        {"type": "model.done", "data": "{}", "id": "2"},  # the last id carries over
        {"type": "message", "data": "", "id": "2"},
        {"type": "stream.done", "data": "{}", "id": "4"},
    ],
    "retry": [1500],
}


def test_sse_parser_gives_the_same_events_for_any_split(browser_thread: BrowserThread) -> None:
    results = run_js(browser_thread, """
      const parse = (pieces) => {
        const events = [], retry = [];
        const p = new sse.SSEParser((e) => events.push(e), (ms) => retry.push(ms));
        for (const piece of pieces) p.feed(piece);
        return {events, retry};
      };
      const text = arg;
      const splits = [[text], [...text]];
      for (let at = 1; at < text.length; at++) splits.push([text.slice(0, at), text.slice(at)]);
      return splits.map(parse);
    """, WIRE, module="sse.js", name="sse")
    assert len(results) == len(WIRE) + 1
    for result in results:
        assert result == EXPECTED


def test_conversation_events_history_and_snapshots(browser_thread: BrowserThread) -> None:
    result = run_js(browser_thread, """
      const c = conv.newConversation('x', ['demo/a', 'demo/b']);
      const t = conv.newTurn('Hi');
      c.panes[0].turns.push(t);
      conv.applyEvent(t, 'reasoning', {slot: 0, text: 'hmm '}, 100);
      conv.applyEvent(t, 'delta', {slot: 0, text: 'Hel'}, 200);
      conv.applyEvent(t, 'delta', {slot: 0, text: 'lo'}, 300);
      const streaming = {state: t.state, first: t.first, answer: t.answer};
      conv.applyEvent(t, 'model.stopped', {slot: 0, reason: 'user',
        usage: {input_tokens: null, output_tokens: 2, estimated: true},
        timing: {ttft_ms: 10, duration_ms: 20, tokens_per_s: 100}}, 400);
      const failed = conv.newTurn('Again');
      c.panes[0].turns.push(failed);
      conv.applyEvent(failed, 'model.error', {slot: 0, error: {type: 'rate_limit'}});
      c.system = 'Be brief.';
      const history = conv.historyOf(c, c.panes[0], 2);
      const live = conv.newTurn('More');
      live.answer = 'Par';
      const snapshotTaken = conv.applySnapshotSlot(live,
        {slot: 0, state: 'done', text: 'Partial answer', reasoning: '', usage: null});
      const stale = conv.newTurn('Other');
      stale.answer = 'Different';
      conv.applySnapshotSlot(stale, {slot: 0, state: 'done', text: 'Not a continuation'});
      c.panes[1].turns.push(conv.newTurn('orphan'));
      conv.settleOrphans(c);
      return {streaming, stopped: [t.state, t.stopReason, t.usage.output_tokens],
              history, snapshotTaken, live: [live.state, live.answer], stale: stale.answer,
              orphan: [c.panes[1].turns[0].state, c.panes[1].turns[0].error.type],
              busy: conv.isBusy(c)};
    """, module="conversation.js", name="conv")
    assert result == {
        "streaming": {"state": "streaming", "first": 100, "answer": "Hello"},
        "stopped": ["stopped", "user", 2],
        # The failed turn gave no answer, so it is left out of the slot's history.
        "history": [{"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "Hi"},
                    {"role": "assistant", "content": "Hello"}],
        "snapshotTaken": True,
        "live": ["done", "Partial answer"],
        "stale": "Different",  # a snapshot never replaces text it does not extend
        "orphan": ["error", "connection"],
        "busy": False,
    }


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


def test_a_stall_shared_picks_and_versions(browser_thread: BrowserThread) -> None:
    result = run_js(browser_thread, """
      const done = (user, answer) => Object.assign(conv.newTurn(user), {answer, state: 'done'});
      const c = conv.newConversation('x', ['demo/a', 'demo/b', 'demo/c']);
      c.system = 'Chat prompt.';
      c.panes[0].turns.push(done('Q1', 'a1'), done('Q2', 'a2'));
      c.panes[1].turns.push(done('Q1', 'b1'), done('Q2', 'b2'));
      c.panes[2].turns.push(done('Q1', 'c1'), done('Q2', 'c2'));
      c.panes[2].system = 'Own prompt.';
      const own = conv.historyOf(c, c.panes[2], 2);
      c.picks[0] = {pane: 1, shared: true};   // continue with b1 from turn 0
      c.picks[1] = {pane: 0, shared: false};  // a preference only
      const shared = conv.historyOf(c, c.panes[2], 2);

      // Versions: a regenerated turn keeps the old one; the shown one is the history.
      const v2 = conv.nextVersion(c.panes[1].turns[0], 'Q1');
      v2.answer = 'b1 again';
      v2.state = 'done';
      c.panes[1].turns[0] = v2;
      const newest = conv.historyOf(c, c.panes[0], 1);
      v2.shown = 0;
      const older = conv.historyOf(c, c.panes[0], 1);
      const versions = conv.versionsOf(v2).map((v) => [v.answer, 'versions' in v]);

      // A stall: the only running turn has no token while another pane has ended.
      const s = conv.newConversation('y', ['demo/a', 'demo/b']);
      s.panes[0].turns.push(done('Q', 'x'));
      s.panes[1].turns.push(conv.newTurn('Q'));
      const stalled = conv.isStalled(s);
      s.panes[1].turns[0].reasoning = 'hmm';
      const writing = conv.isStalled(s);
      const allWaiting = conv.newConversation('z', ['demo/a', 'demo/b']);
      allWaiting.panes.forEach((p) => p.turns.push(conv.newTurn('Q')));
      return {own, shared, newest, older, versions, stalled, writing,
              starting: conv.isStalled(allWaiting)};
    """, module="conversation.js", name="conv")
    own_system = {"role": "system", "content": "Own prompt."}
    chat_system = {"role": "system", "content": "Chat prompt."}
    assert result == {
        "own": [own_system, user("Q1"), assistant("c1"), user("Q2"), assistant("c2")],
        # From the shared pick on turn 0, pane 2 is sent b1, then its own turn 1.
        "shared": [own_system, user("Q1"), assistant("b1"), user("Q2"), assistant("c2")],
        "newest": [chat_system, user("Q1"), assistant("b1 again")],
        "older": [chat_system, user("Q1"), assistant("b1")],
        "versions": [["b1", False], ["b1 again", True]],
        "stalled": True,
        "writing": False,  # reasoning is a token: that model is writing
        "starting": False,  # nobody has ended: this is every model's first-token wait
    }
