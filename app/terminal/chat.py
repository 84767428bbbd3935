"""``chorus chat``: a prompt loop with the same models, each keeping its own history.

Every turn sends each model the conversation as it saw it (its own earlier answers as
``assistant``), runs one stream for all of them, draws it live as ``chorus ask`` does and
then prints the finished answers, rendered as Markdown. Ctrl-C while they answer stops
every upstream and comes back to the prompt with what arrived kept (in the history and the
log); Ctrl-D, ``exit`` or ``quit`` at the prompt ends the chat.

Each turn runs in its own ``trio.run``: the prompt is read by ``input()`` (with line
editing) between turns, when nothing else is running.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

import trio

from app.cli import COMMANDS, EXTENSIONS
from app.config import load_config
from providers import Message

from .ask import Outcome, View, ending, follow
from .board import Board
from .commands import (
    UsageError,
    add_model_options,
    hush_warnings,
    parse_params,
    pick_models,
    store,
    where,
)
from .home import log_path
from .logstore import (
    Answer,
    Conversation,
    LogError,
    LogStore,
    answers_of,
    exchange_of,
    new_id,
)
from .sources import RequestRefused, SourceError, Target, Where, expand_groups, open_source

ENDS = ("exit", "quit")


@dataclass(slots=True)
class Session:
    """The conversation held in memory: its models and what each one has seen."""

    models: list[str]
    system: str | None
    cid: str = field(default_factory=new_id)
    histories: list[list[Message]] = field(default_factory=list)
    turns: int = 0

    def __post_init__(self) -> None:
        if not self.histories:
            start = [Message("system", self.system)] if self.system else []
            self.histories = [list(start) for _ in self.models]

    @classmethod
    def resume(cls, conversation: Conversation, system: str | None) -> Session:
        """Carry on ``conversation``: its models, and each one's history. A ``system``
        given now replaces the one it had."""
        if system is not None:
            conversation = Conversation(conversation.id, conversation.created,
                                        conversation.models, system, conversation.exchanges)
        histories = [conversation.history(slot) for slot in range(len(conversation.models))]
        return cls(list(conversation.models), conversation.system, conversation.id,
                   histories, len(conversation.exchanges))

    def targets(self, prompt: str) -> list[Target]:
        return [Target(model, (*history, Message("user", prompt)))
                for model, history in zip(self.models, self.histories, strict=True)]

    def keep(self, prompt: str, answers: tuple[Answer, ...]) -> None:
        """Add the exchange to the history of every model that answered something; a
        stopped answer is kept as far as it went."""
        for answer in answers:
            if answer.text.strip():
                self.histories[answer.slot] += [Message("user", prompt),
                                                Message("assistant", answer.text)]
        self.turns += 1


@dataclass(frozen=True, slots=True)
class Terminal:
    """What a chat reads from and writes to."""

    view: View
    raw: bool
    out: TextIO
    err: TextIO
    read: Callable[[str], str] = input


async def _turn(where: Where, slots: list[Target], params: dict[str, Any],
                view: View, out: TextIO) -> Outcome:
    try:
        async with open_source(where, slots, params) as source:
            return await follow(source, view, out)
    except RequestRefused as exc:  # refused before any stream (an in-process run)
        return Outcome(Board(), failure=exc)


def chat(session: Session, where: Where, params: dict[str, Any], term: Terminal,
         store: LogStore | None) -> int:
    """Read prompts until the end; 0, or 2 if the very first request is refused."""
    from .transcript import console, print_answers  # rich: loaded when it is used

    con = console(term.out, color=term.view.color)
    while True:
        try:
            prompt = term.read("> ")
        except EOFError:
            term.out.write("\n")
            break
        except KeyboardInterrupt:
            term.out.write("\n(Ctrl-D or 'exit' ends the chat)\n")
            continue
        if prompt.strip() in ENDS:
            break
        if not prompt.strip():
            continue
        at = time.time()
        try:
            outcome = trio.run(_turn, where, session.targets(prompt), params, term.view,
                               term.out)
        except KeyboardInterrupt:  # before the turn could listen for Ctrl-C itself
            outcome = Outcome(Board(), interrupted=True)
        answers = answers_of(outcome.board)
        if answers:
            print_answers(con, answers, session.models, raw=term.raw)
        ending(outcome, term.err)
        if isinstance(outcome.failure, RequestRefused) and session.turns == 0:
            return 2
        if not answers:
            continue
        session.keep(prompt, answers)
        if store is not None:
            store.record_or_warn(session.cid, session.models, session.system,
                                 exchange_of(outcome.board, at, prompt), term.err)
    if store is not None and session.turns:
        term.err.write(f"chorus: logged as conversation {session.cid} "
                       f"(chorus chat --cid {session.cid} continues it)\n")
    return 0


def add_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "chat", help="talk with one or more models, turn after turn",
        description="A prompt loop: each model keeps its own history, and every exchange "
                    "is logged (chorus logs). Ctrl-C stops the answers; Ctrl-D, 'exit' or "
                    "'quit' ends the chat.")
    add_model_options(p)
    p.add_argument("-c", "--continue", dest="resume", action="store_true",
                   help="continue the most recent conversation (its models and history)")
    p.add_argument("--cid", metavar="ID", help="continue the conversation ID (chorus logs)")
    p.add_argument("--raw", action="store_true",
                   help="print the answers as they came, not rendered as Markdown")


def chat_command(args: argparse.Namespace) -> int:
    try:
        params = parse_params(args.params)
        if (args.resume or args.cid) and args.models:
            raise UsageError("-c and --cid carry on with the conversation's own models; "
                             "leave out -m (or start a new chat)")
    except UsageError as exc:
        print(f"chorus chat: {exc}", file=sys.stderr)
        return 2
    config = load_config(args.config)
    if args.resume or args.cid:
        try:
            log = LogStore(log_path(os.environ))
            conversation = log.conversation(args.cid or log.latest())
        except LogError as exc:
            print(f"chorus chat: cannot continue: {exc}", file=sys.stderr)
            return 1
        session = Session.resume(conversation, args.system)
        print(f"Continuing conversation {session.cid} ({session.turns} exchanges) with "
              f"{', '.join(session.models)}.")
    else:
        try:
            models = trio.run(expand_groups, where(args, config),
                              pick_models(args.models, config, "chat"))
        except SourceError as exc:
            print(f"chorus chat: {exc}", file=sys.stderr)
            return 2 if isinstance(exc, RequestRefused) else 1
        session = Session(models, args.system)
        print(f"Chatting with {', '.join(session.models)}.")
    print("Type 'exit' or 'quit' (or Ctrl-D) to end; Ctrl-C stops the answers.")
    tty = sys.stdout.isatty()
    term = Terminal(View(live=tty, color=tty and "NO_COLOR" not in os.environ),
                    raw=args.raw, out=sys.stdout, err=sys.stderr)
    hush_warnings(term.view)
    if sys.stdin.isatty():
        import readline  # noqa: F401  (line editing and history for input())
    return chat(session, where(args, config), params, term, store(args, config))


EXTENSIONS.append(add_command)
COMMANDS["chat"] = chat_command
