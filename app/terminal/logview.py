"""``chorus logs``: the logged conversations, for people or (``--json``) for scripts.

    chorus logs [-n N]        the N most recent conversations (id, time, models, first prompt)
    chorus logs show ID       one conversation whole (an unambiguous start of its id will do)
    chorus logs path          where the log database is
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys

from app.cli import COMMANDS, EXTENSIONS

from .board import clean
from .home import log_path
from .logstore import LogError, LogStore

PROMPT_WIDTH = 60  # characters of the first prompt shown in the list


def add_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("logs", help="list the conversations logged by ask and chat",
                       description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-n", type=int, default=10, metavar="N",
                   help="how many conversations to list (default 10)")
    p.add_argument("--json", action="store_true", help="print JSON, for scripts")
    actions = p.add_subparsers(dest="logs_action", metavar="{show,path}")
    show = actions.add_parser("show", help="print one conversation whole")
    show.add_argument("cid", metavar="ID", help="the conversation's id, or its start")
    # SUPPRESS: a --json given before 'show' is not reset by this parser's default.
    show.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                      help="print JSON, for scripts")
    show.add_argument("--raw", action="store_true",
                      help="print the answers as they came, not rendered as Markdown")
    actions.add_parser("path", help="print where the log database is")


def logs(args: argparse.Namespace) -> int:
    from .transcript import when  # rich: loaded when it is used

    path = log_path(os.environ)
    if args.logs_action == "path":
        print(path)
        return 0
    log = LogStore(path)
    try:
        if args.logs_action == "show":
            return _show(log, args)
        if args.n < 1:
            print("chorus logs: -n takes a number of conversations, 1 or more",
                  file=sys.stderr)
            return 2
        found = log.recent(args.n)
    except LogError as exc:
        print(f"chorus logs: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps([dataclasses.asdict(s) for s in found], ensure_ascii=False, indent=2))
        return 0
    if not found:
        print(f"chorus logs: nothing is logged yet (in {path})", file=sys.stderr)
    for s in found:
        first = " ".join(clean(s.first_prompt).split())
        if len(first) > PROMPT_WIDTH:
            first = first[: PROMPT_WIDTH - 1] + "…"
        print(f"{s.id}  {when(s.created)}  {', '.join(s.models)}  ({s.exchanges})  {first}")
    return 0


def _show(log: LogStore, args: argparse.Namespace) -> int:
    from .transcript import console, print_conversation

    conversation = log.conversation(args.cid)
    if args.json:
        print(json.dumps(dataclasses.asdict(conversation), ensure_ascii=False, indent=2))
        return 0
    tty = sys.stdout.isatty()
    print_conversation(console(sys.stdout, color=tty and "NO_COLOR" not in os.environ),
                       conversation, raw=args.raw)
    return 0


EXTENSIONS.append(add_command)
COMMANDS["logs"] = logs
