"""The terminal sub-commands, added to ``chorus``: ``ask``, and ``--server`` for ``models``.

Exit codes: 0 every model done; 1 a model failed or the stream broke off; 2 a usage or
config error, or a request the server refused as given; 130 stopped with Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any

import trio

from app.cli import COMMANDS, EXTENSIONS
from app.config import load_config
from providers import Message

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
    p.add_argument("-m", "--model", dest="models", action="append", required=True,
                   metavar="REF", help="a model ref such as demo/fast; repeat for more")
    p.add_argument("prompt", nargs="?", help="the question; '-' or none: read standard input")
    p.add_argument("-s", "--system", help="a system message sent before the question")
    p.add_argument("-p", "--param", dest="params", action="append", default=[],
                   metavar="KEY=VALUE",
                   help="a model parameter, e.g. temperature=0 (the value is read as JSON "
                        "when it parses, else taken as a string); repeatable")
    p.add_argument("--server", metavar="URL", help=SERVER_HELP)
    p.add_argument("--config", help="TOML config file for an in-process run")
    p.add_argument("--json", action="store_true",
                   help="print the raw events, one JSON object per line")
    p.add_argument("--reasoning", action="store_true", help="print the models' reasoning too")
    sub.choices["models"].add_argument("--server", metavar="URL", help=SERVER_HELP)


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
    from .ask import View, run
    from .sources import (
        RequestRefused,
        ServerSource,
        local_source,
        server_client,
        stream_body,
    )

    try:
        prompt = read_prompt(args.prompt)
        params = parse_params(args.params)
    except UsageError as exc:
        print(f"chorus ask: {exc}", file=sys.stderr)
        return 2
    messages = [Message("system", args.system)] if args.system else []
    messages.append(Message("user", prompt))
    tty = sys.stdout.isatty()
    view = View(live=tty, json=args.json, color=tty and "NO_COLOR" not in os.environ,
                reasoning=args.reasoning)
    config = None if args.server else load_config(args.config)
    if view.live and not view.json:
        # A provider's warning would land in the middle of the live screen.
        logging.getLogger().addHandler(logging.NullHandler())

    async def main() -> int:
        if args.server:
            body = stream_body(args.models, messages, params)
            async with server_client(args.server, os.environ.get(KEY_ENV)) as client:
                return await run(ServerSource(client, body), view, sys.stdout, sys.stderr)
        assert config is not None
        try:
            async with local_source(config, args.models, messages, params) as source:
                return await run(source, view, sys.stdout, sys.stderr)
        except RequestRefused as exc:
            print(f"chorus ask: {exc}", file=sys.stderr)
            return 2

    return trio.run(main)


def models(args: argparse.Namespace) -> int:
    from app.cli import models as local_models

    from .sources import RequestRefused, SourceError, server_client, server_models

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


EXTENSIONS.append(add_commands)
COMMANDS.update({"ask": ask, "models": models})
