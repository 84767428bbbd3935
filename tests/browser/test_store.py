"""How the page keeps conversations in localStorage (store.js), run in Chromium: a head and
one entry per turn, a save writing only what changed, and a conversation read back exactly
as it was, images' data left out."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import BrowserThread
from .static_page import run_js

pytestmark = pytest.mark.browser

# Helpers in the page: a conversation of two panes (three ended turns each, the second
# with an attached image and an earlier version, and one turn still running in pane 0),
# what a whole JSON encoding of it holds (the format's meaning: images without their data),
# and the storage keys written by a call.
SETUP = """
  const conv = await import('/static/conversation.js');
  const image = {name: 'cat.png', type: 'image/png', size: 3,
                 dataUrl: 'data:image/png;base64,AAAA'};
  const ended = (user, answer) => {
    const t = conv.newTurn(user);
    conv.applyEvent(t, 'delta', {text: answer}, 10);
    conv.applyEvent(t, 'model.done', {usage: {output_tokens: 2}}, 20);
    return t;
  };
  const c = conv.newConversation('c1', ['demo/a', 'demo/b']);
  c.title = 'Sorting';
  for (const [p, pane] of c.panes.entries()) {
    pane.turns.push(ended('one', 'first ' + p));
    const second = conv.nextVersion(ended('two', 'old ' + p), 'two');
    second.versions[0].images = [image];
    second.images = [image];
    conv.applyEvent(second, 'delta', {text: 'new ' + p}, 30);
    conv.applyEvent(second, 'model.done', {}, 40);
    pane.turns.push(second, ended('three', 'third ' + p));
  }
  const running = conv.newTurn('four');
  conv.applyEvent(running, 'delta', {text: 'so far'}, 50);
  c.panes[0].turns.push(running);
  c.picks[1] = {pane: 1, shared: false};
  const plain = (x) => JSON.parse(JSON.stringify(x, (k, v) => (k === 'dataUrl' ? undefined : v)));
  const writes = (f) => {
    const keys = [];
    const setItem = Storage.prototype.setItem;
    Storage.prototype.setItem = function (k, v) { keys.push(k); return setItem.call(this, k, v); };
    try { f(); } finally { Storage.prototype.setItem = setItem; }
    return keys.sort();
  };
  const same = () =>
    JSON.stringify(plain(store.loadConversation('c1'))) === JSON.stringify(plain(c));
  localStorage.clear();
"""


def store_js(browser_thread: BrowserThread, body: str) -> Any:
    return run_js(browser_thread, SETUP + body, module="store.js", name="store")


def test_a_conversation_reads_back_as_it_was_without_image_data(
        browser_thread: BrowserThread) -> None:
    result = store_js(browser_thread, """
      store.saveConversation(c);
      const back = store.loadConversation('c1');
      const raw = Object.keys(localStorage).map((k) => localStorage.getItem(k)).join();
      return {same: JSON.stringify(back) === JSON.stringify(plain(c)),
              keys: Object.keys(localStorage).sort(), hasData: raw.includes('base64'),
              images: back.panes[1].turns[1].images,
              version: back.panes[1].turns[1].versions[0].answer,
              index: store.listConversations().map((s) => [s.id, s.title, s.models])};
    """)
    assert result["same"]
    assert result["keys"] == sorted(
        ["chorus:conv:c1", "chorus:convs"]
        + [f"chorus:turn:c1:0:{t}" for t in range(4)] + [f"chorus:turn:c1:1:{t}" for t in range(3)])
    assert not result["hasData"]
    assert result["images"] == [{"name": "cat.png", "type": "image/png", "size": 3}]
    assert result["version"] == "old 1"
    assert result["index"] == [["c1", "Sorting", ["demo/a", "demo/b"]]]


def test_a_save_writes_only_the_turns_that_changed(browser_thread: BrowserThread) -> None:
    result = store_js(browser_thread, """
      const out = {};
      out.first = writes(() => store.saveConversation(c)).length;
      out.unchanged = writes(() => store.saveConversation(c));
      conv.applyEvent(running, 'delta', {text: ' and more'}, 60);
      out.grew = writes(() => store.saveConversation(c));
      out.grewSame = same();
      c.panes[1].turns[1].shown = 0;  // the earlier version put on screen
      out.shown = writes(() => store.saveConversation(c));
      out.shownSame = same();
      conv.applyEvent(c.panes[1].turns[2], 'model.done', {usage: {output_tokens: 9}}, 70);
      out.late = writes(() => store.saveConversation(c));
      out.lateSame = same();
      c.panes[0].turns[2] = conv.nextVersion(c.panes[0].turns[2], 'three again');
      out.version = writes(() => store.saveConversation(c));
      out.versionSame = same();
      return out;
    """)
    head = ["chorus:conv:c1", "chorus:convs"]
    assert result["first"] == 7 + 2
    assert result["unchanged"] == head
    assert result["grew"] == sorted([*head, "chorus:turn:c1:0:3"])
    assert result["shown"] == sorted([*head, "chorus:turn:c1:1:1"])
    assert result["late"] == sorted([*head, "chorus:turn:c1:1:2"])
    assert result["version"] == sorted([*head, "chorus:turn:c1:0:2"])
    for check in ("grewSame", "shownSame", "lateSame", "versionSame"):
        assert result[check], check


def test_turns_removed_lose_their_entries_and_deleting_leaves_nothing(
        browser_thread: BrowserThread) -> None:
    result = store_js(browser_thread, """
      store.saveConversation(c);
      c.panes[0].turns.pop();
      store.saveConversation(c);
      const afterPop = Object.keys(localStorage).filter((k) => k.startsWith('chorus:turn:c1:0:'));
      const popSame = same();
      store.deleteConversation('c1');
      return {afterPop: afterPop.sort(), popSame, left: Object.keys(localStorage).sort(),
              index: store.listConversations()};
    """)
    assert result["afterPop"] == [f"chorus:turn:c1:0:{t}" for t in range(3)]
    assert result["popSame"]
    assert result["left"] == ["chorus:convs"]
    assert result["index"] == []


def test_a_conversation_saved_whole_still_loads_and_is_kept_in_entries_after(
        browser_thread: BrowserThread) -> None:
    result = store_js(browser_thread, """
      // As earlier versions of the page wrote it: one entry, turns inline.
      localStorage.setItem('chorus:conv:c1', JSON.stringify(plain(c)));
      const old = store.loadConversation('c1');
      const oldSame = JSON.stringify(old) === JSON.stringify(plain(c));
      store.saveConversation(old);
      const again = store.loadConversation('c1');
      return {oldSame, again: JSON.stringify(again) === JSON.stringify(plain(old)),
              head: JSON.parse(localStorage.getItem('chorus:conv:c1')).panes.map((p) => p.turns)};
    """)
    assert result["oldSame"]
    assert result["again"]
    assert result["head"] == [4, 3]


def test_a_missing_turn_entry_reads_as_an_error_in_its_place(
        browser_thread: BrowserThread) -> None:
    result = store_js(browser_thread, """
      store.saveConversation(c);
      localStorage.removeItem('chorus:turn:c1:1:1');
      const back = store.loadConversation('c1');
      return back.panes[1].turns.map((t) => [t.state, t.error?.type ?? null, t.answer]);
    """)
    assert result == [["done", None, "first 1"], ["error", "storage", ""],
                      ["done", None, "third 1"]]
