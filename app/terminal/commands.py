"""The terminal sub-commands, added to ``chorus``: ``ask``; ``--server`` and ``default``
for ``models``; and the options, the default model and the log that ``chat`` shares.

Exit codes: 0 every model done; 1 a model failed or the stream broke off; 2 a usage or
config error, or a request the server refused as given; 130 stopped with Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from typing import Any

import trio

from app.cli import COMMANDS, EXTENSIONS
from app.config import Config, load_config
from providers import Message

from .ask import View
from .home import SettingsError, default_models, log_path, logging_on, set_default_models
from .logstore import LogStore
from .sources import Where

KEY_ENV = "CHORUS_API_KEY"
SERVER_HELP = (f"a running Chorus, e.g. http://127.0.0.1:8000 (its key from ${KEY_ENV}); "
               "without it, the models run in this process with the local config")


class UsageError(Exception):
    pass


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "ask", help="stream several models' answers side by side in the terminal",
        description="Ask every model at once and watch the answers side by side. Ctrl-C "
                    "stops them all (the upstreams close) and prints what arrived.")
    add_model_options(p)
    p.add_argument("prompt", nargs="?", help="the question; '-' or none: read standard input")
    p.add_argument("--json", action="store_true",
                   help="print the raw events, one JSON object per line")
    p.add_argument("--reasoning", action="store_true", help="print the models' reasoning too")
    p.add_argument("--conversation", action="store_true",
                   help="the models answer each other in turns, printed as a thread")
    p.add_argument("--rounds", type=int, default=1, metavar="N",
                   help="with --conversation: how many times each model speaks (default 1)")
    p = sub.choices["models"]
    p.add_argument("--server", metavar="URL", help=SERVER_HELP)
    actions = p.add_subparsers(dest="models_action", metavar="default")
    d = actions.add_parser(
        "default", help="show or set the models used when -m is not given",
        description="With no MODEL, print the default models; with MODELs, store them as "
                    "the default (in settings.json beside the log).")
    d.add_argument("set", nargs="*", metavar="MODEL", help="a model ref such as demo/fast")


def add_model_options(p: argparse.ArgumentParser) -> None:
    """The options ``ask`` and ``chat`` share: which models, how, where, and the log."""
    p.add_argument("-m", "--model", dest="models", action="append", metavar="REF",
                   help="a model ref such as demo/fast; repeat for more (default: "
                        "'chorus models default')")
    p.add_argument("-s", "--system", help="a system message sent before the question")
    p.add_argument("-p", "--param", dest="params", action="append", default=[],
                   metavar="KEY=VALUE",
                   help="a model parameter, e.g. temperature=0 (the value is read as JSON "
                        "when it parses, else taken as a string); repeatable")
    p.add_argument("--server", metavar="URL", help=SERVER_HELP)
    p.add_argument("--config", help="TOML config file (default: $CHORUS_CONFIG, else none)")
    p.add_argument("--no-log", action="store_true",
                   help="keep nothing of this run in the local log")


def pick_models(given: list[str] | None, config: Config, command: str) -> list[str]:
    """``-m``'s models; else the default ones, saying so on standard error."""
    if given:
        return given
    chosen, origin = default_models(config.cli, os.environ)
    print(f"chorus {command}: no -m given: using {', '.join(chosen)} (the default, from "
          f"{origin}; 'chorus models default REF' sets it)", file=sys.stderr)
    return chosen


def hush_warnings(view: View) -> None:
    """On a live screen, a provider's logged warning would land in the middle of it."""
    if view.live:
        logging.getLogger().addHandler(logging.NullHandler())


def where(args: argparse.Namespace, config: Config) -> Where:
    return Where(config, args.server, os.environ.get(KEY_ENV))


def store(args: argparse.Namespace, config: Config) -> LogStore | None:
    """The log, unless ``--no-log``, ``CHORUS_LOG=0`` or ``[cli] log = false``."""
    if not logging_on(config.cli, os.environ, no_log=args.no_log):
        return None
    return LogStore(log_path(os.environ))


def parse_params(pairs: list[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--param takes KEY=VALUE, not {pair!r}")
        try:
            params[key.strip()] = json.loads(raw)
        except ValueError:
            params[key.strip()] = raw
    return params


def read_prompt(prompt: str | None) -> str:
    if prompt is None or prompt == "-":
        if sys.stdin is None or sys.stdin.isatty():
            raise UsageError("give a prompt, or pipe one into standard input")
        prompt = sys.stdin.read()
    if not prompt.strip():
        raise UsageError("the prompt is empty")
    return prompt


def ask(args: argparse.Namespace) -> int:
    from .ask import run
    from .logstore import exchange_of, new_id
    from .sources import RequestRefused, open_source, targets

    try:
        prompt = read_prompt(args.prompt)
        params = parse_params(args.params)
    except UsageError as exc:
        print(f"chorus ask: {exc}", file=sys.stderr)
        return 2
    config = load_config(args.config)
    models = pick_models(args.models, config, "ask")
    if args.conversation:
        return converse(args, config, models, prompt, params)
    messages = [Message("system", args.system)] if args.system else []
    messages.append(Message("user", prompt))
    tty = sys.stdout.isatty()
    view = View(live=tty, json=args.json, color=tty and "NO_COLOR" not in os.environ,
                reasoning=args.reasoning)
    if not view.json:
        hush_warnings(view)
    log = store(args, config)

    async def main() -> int:
        at = time.time()
        try:
            async with open_source(where(args, config), targets(models, messages),
                                   params) as source:
                outcome = await run(source, view, sys.stdout, sys.stderr)
        except RequestRefused as exc:
            print(f"chorus ask: {exc}", file=sys.stderr)
            return 2
        if log is not None and outcome.board.columns:
            log.record_or_warn(new_id(), models, args.system,
                               exchange_of(outcome.board, at, prompt), sys.stderr)
        return outcome.exit_code()

    return trio.run(main)


def converse(args: argparse.Namespace, config: Config, models: list[str], prompt: str,
             params: dict[str, Any]) -> int:
    """``ask --conversation``: the models take turns; the thread printed as it comes."""
    from .sources import RequestRefused, open_stream
    from .thread import conversation_body, run

    body = conversation_body(models, prompt, args.rounds, args.system, params)
    color = sys.stdout.isatty() and "NO_COLOR" not in os.environ

    async def main() -> int:
        try:
            async with open_stream(where(args, config), body) as source:
                return await run(source, sys.stdout, sys.stderr, color=color)
        except RequestRefused as exc:
            print(f"chorus ask: {exc}", file=sys.stderr)
            return 2

    return trio.run(main)


def models(args: argparse.Namespace) -> int:
    from app.cli import models as local_models

    from .sources import RequestRefused, SourceError, server_client, server_models

    if args.models_action == "default":
        return default_command(args)
    if not args.server:
        return local_models(args)

    async def listing() -> list[dict[str, Any]]:
        async with server_client(args.server, os.environ.get(KEY_ENV)) as client:
            return await server_models(client)

    try:
        found = trio.run(listing)
    except SourceError as exc:
        print(f"chorus models: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, RequestRefused) else 1
    for model in found:
        note = "  (simulated)" if model.get("simulated") else ""
        print(f"{model['id']}{note}")
    return 0


def default_command(args: argparse.Namespace) -> int:
    """``chorus models default [MODEL ...]``."""
    config = load_config(args.config)
    try:
        if not args.set:
            chosen, origin = default_models(config.cli, os.environ)
            print("\n".join(chosen))
            print(f"(from {origin})", file=sys.stderr)
            return 0
        bad = [ref for ref in args.set if "/" not in ref.strip("/")]
        if bad:
            print(f"chorus models default: {bad[0]!r} is not a model ref: write it as "
                  "'provider/model' ('chorus models' lists them)", file=sys.stderr)
            return 2
        path = set_default_models(args.set, os.environ)
    except SettingsError as exc:
        print(f"chorus models default: {exc}", file=sys.stderr)
        return 1
    print(f"default model{'s' if len(args.set) > 1 else ''}: {', '.join(args.set)} "
          f"(stored in {path})")
    return 0


EXTENSIONS.append(add_commands)
COMMANDS.update({"ask": ask, "models": models})
