"""The local log: every exchange of ``chorus ask`` and ``chorus chat``, in SQLite.

A conversation has models (one per slot) and an optional system message; an exchange is
one prompt and, per slot, the answer's text, how it ended (``done``, ``stopped``, ``error``,
or ``unfinished`` when no end was seen), usage and timing. ``chorus chat -c`` rebuilds each
model's own history from it.

The schema's version is SQLite's ``user_version``; a database from a newer Chorus is refused
rather than misread. Each write is one transaction, so a crash never leaves half an exchange.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from providers import Message

from .board import ENDED, Board

VERSION = 1
_SCHEMA = """
CREATE TABLE conversations (
    id TEXT PRIMARY KEY,
    created REAL NOT NULL,          -- Unix time of the first exchange
    models TEXT NOT NULL,           -- JSON list of model refs, one per slot
    system TEXT                     -- the system message, if any
);
CREATE TABLE exchanges (
    id INTEGER PRIMARY KEY,
    conversation TEXT NOT NULL REFERENCES conversations(id),
    at REAL NOT NULL,               -- Unix time the prompt was sent
    prompt TEXT NOT NULL,
    duration_ms REAL                -- from the prompt to the last answer's end
);
CREATE TABLE answers (
    exchange INTEGER NOT NULL REFERENCES exchanges(id),
    slot INTEGER NOT NULL,
    model TEXT NOT NULL,
    text TEXT NOT NULL,
    outcome TEXT NOT NULL,          -- done | stopped | error | unfinished
    reason TEXT,                    -- finish reason, stop reason, or the error
    input_tokens INTEGER,
    output_tokens INTEGER,
    ttft_ms REAL,
    duration_ms REAL,
    tokens_per_s REAL,
    PRIMARY KEY (exchange, slot)
);
CREATE INDEX exchanges_by_conversation ON exchanges (conversation, id);
"""


class LogError(Exception):
    """The log database cannot be opened, read or written; or no such conversation."""


@dataclass(frozen=True, slots=True)
class Answer:
    """One model's answer: its text as far as it went, and how it ended."""

    slot: int
    model: str
    text: str
    outcome: str
    reason: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    ttft_ms: float | None = None
    duration_ms: float | None = None
    tokens_per_s: float | None = None


@dataclass(frozen=True, slots=True)
class Exchange:
    """One prompt (sent at Unix time ``at``) and every model's answer to it."""

    at: float
    prompt: str
    answers: tuple[Answer, ...]
    duration_ms: float | None = None


@dataclass(frozen=True, slots=True)
class Conversation:
    """A conversation as logged: the models of its slots and its exchanges in order."""

    id: str
    created: float
    models: tuple[str, ...]
    system: str | None
    exchanges: tuple[Exchange, ...] = ()

    def history(self, slot: int) -> list[Message]:
        """What the model of ``slot`` has seen: each prompt with its own answer. An exchange
        where it gave no text at all (an error, a stop before the first token) is left out,
        so that it never sees a turn of its own that is empty."""
        messages = [Message("system", self.system)] if self.system else []
        for exchange in self.exchanges:
            answer = next((a for a in exchange.answers if a.slot == slot), None)
            if answer is not None and answer.text.strip():
                messages += [Message("user", exchange.prompt),
                             Message("assistant", answer.text)]
        return messages


@dataclass(frozen=True, slots=True)
class Summary:
    """One line of ``chorus logs``."""

    id: str
    created: float
    models: tuple[str, ...]
    first_prompt: str
    exchanges: int


def new_id() -> str:
    """Sortable by time (milliseconds, hex), then random so two at once never clash."""
    return f"{int(time.time() * 1000):011x}{secrets.token_hex(3)}"


def answers_of(board: Board) -> tuple[Answer, ...]:
    out = []
    for c in board.columns:
        outcome = c.state if c.state in ENDED else "unfinished"
        out.append(Answer(
            slot=c.slot, model=c.model, text=c.answer, outcome=outcome,
            reason=c.error or c.stop_reason or c.finish_reason,
            input_tokens=c.input_tokens, output_tokens=c.tokens, ttft_ms=c.ttft_ms,
            duration_ms=c.duration_ms, tokens_per_s=c.tokens_per_s))
    return tuple(out)


def exchange_of(board: Board, at: float, prompt: str) -> Exchange:
    """The exchange a board holds, for a prompt sent at Unix time ``at``."""
    took = None
    if board.started_at is not None and board.ended_at is not None:
        took = (board.ended_at - board.started_at) * 1000
    return Exchange(at, prompt, answers_of(board), took)


class LogStore:
    """The database at ``path``, made (with its directory) on first use."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @contextmanager
    def _connect(self, *, create: bool) -> Iterator[sqlite3.Connection]:
        try:
            if create:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            elif not self.path.exists():
                raise LogError(f"nothing is logged yet ({self.path} does not exist)")
            with closing(sqlite3.connect(self.path, timeout=5)) as db:
                db.execute("PRAGMA foreign_keys = ON")
                self._migrate(db)
                with db:  # one transaction: committed whole, or rolled back
                    yield db
        except (sqlite3.Error, OSError) as exc:
            raise LogError(f"the log {self.path}: {exc}") from exc

    def _migrate(self, db: sqlite3.Connection) -> None:
        (version,) = db.execute("PRAGMA user_version").fetchone()
        if version > VERSION:
            raise LogError(f"{self.path} was written by a newer Chorus (schema {version}; "
                           f"this one reads {VERSION})")
        if version == 0:
            with db:
                db.executescript(_SCHEMA + f"PRAGMA user_version = {VERSION};")

    def record(self, conversation: str, models: Sequence[str], system: str | None,
               exchange: Exchange) -> None:
        """Add ``exchange`` to ``conversation``, which is made if it is new."""
        with self._connect(create=True) as db:
            db.execute("INSERT OR IGNORE INTO conversations VALUES (?, ?, ?, ?)",
                       (conversation, exchange.at, json.dumps(list(models)), system))
            cursor = db.execute(
                "INSERT INTO exchanges (conversation, at, prompt, duration_ms) "
                "VALUES (?, ?, ?, ?)",
                (conversation, exchange.at, exchange.prompt, exchange.duration_ms))
            db.executemany(
                "INSERT INTO answers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(cursor.lastrowid, a.slot, a.model, a.text, a.outcome, a.reason,
                  a.input_tokens, a.output_tokens, a.ttft_ms, a.duration_ms, a.tokens_per_s)
                 for a in exchange.answers])

    def record_or_warn(self, conversation: str, models: Sequence[str], system: str | None,
                       exchange: Exchange, err: TextIO) -> None:
        """``record``, saying on ``err`` why not if it cannot: the answers were shown, and
        a log that cannot be written is no reason to fail the command."""
        try:
            self.record(conversation, models, system, exchange)
        except LogError as exc:
            err.write(f"chorus: not logged: {exc}\n")
            err.flush()

    def recent(self, limit: int) -> list[Summary]:
        """The ``limit`` conversations most recently added to, newest first."""
        if not self.path.exists():
            return []
        with self._connect(create=False) as db:
            rows = db.execute(
                "SELECT c.id, c.created, c.models, COUNT(e.id), MAX(e.id), "
                "(SELECT prompt FROM exchanges WHERE conversation = c.id ORDER BY id LIMIT 1) "
                "FROM conversations c JOIN exchanges e ON e.conversation = c.id "
                "GROUP BY c.id ORDER BY MAX(e.id) DESC LIMIT ?", (limit,)).fetchall()
        return [Summary(cid, created, tuple(json.loads(models)), first, count)
                for cid, created, models, count, _, first in rows]

    def latest(self) -> str:
        """The id of the conversation most recently added to."""
        found = self.recent(1)
        if not found:
            raise LogError("no conversation is logged yet")
        return found[0].id

    def conversation(self, cid: str) -> Conversation:
        """The whole conversation ``cid`` (or the only one whose id starts with it)."""
        with self._connect(create=False) as db:
            rows = db.execute("SELECT id, created, models, system FROM conversations "
                              "WHERE id = ? OR id LIKE ? ESCAPE '\\' LIMIT 2",
                              (cid, _escape_like(cid) + "%")).fetchall()
            exact = [r for r in rows if r[0] == cid]
            if len(rows) != 1 and not exact:
                why = "matches several conversations" if rows else "is not in the log"
                raise LogError(f"{cid!r} {why} (chorus logs lists them)")
            found, created, models, system = (exact or rows)[0]
            exchanges = []
            for eid, at, prompt, duration in db.execute(
                    "SELECT id, at, prompt, duration_ms FROM exchanges "
                    "WHERE conversation = ? ORDER BY id", (found,)).fetchall():
                answers = tuple(Answer(*row) for row in db.execute(
                    "SELECT slot, model, text, outcome, reason, input_tokens, output_tokens, "
                    "ttft_ms, duration_ms, tokens_per_s FROM answers WHERE exchange = ? "
                    "ORDER BY slot", (eid,)).fetchall())
                exchanges.append(Exchange(at, prompt, answers, duration))
        return Conversation(found, created, tuple(json.loads(models)), system, tuple(exchanges))


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
