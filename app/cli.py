"""The ``chorus`` command line: ``serve`` runs the server, ``models`` lists models.

Output to a pipe that closes early (``chorus ask --json … | head -1``) ends the command
quietly with status 141, as a Unix tool killed by SIGPIPE would (``quiet_broken_pipe``).

``chorus serve`` refuses a non-loopback address unless API keys are configured, because a
keyless Chorus would let anyone on the network spend the upstream keys. On SIGINT/SIGTERM it
refuses new streams, stops the live ones (``model.stopped`` with reason ``shutdown``), lets
their responses finish and exits 0. ``chorus serve --workers N`` runs N such processes on
the one port, under a supervisor (``app.workers``).
"""

from __future__ import annotations

import argparse
import gc
import ipaddress
import logging
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Sequence
from functools import partial

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.config import Sockets
from quart_trio import QuartTrio

from app import workers
from app.autodetect import with_local_ollama
from app.config import Config, ConfigError, ServerConfig, load_config
from app.logs import configure_logging, fields

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


DESCRIPTION = ("Chorus streams several LLMs' answers side by side: serve them over HTTP "
               "and SSE with a browser page, or ask and chat in the terminal.")
BROKEN_PIPE = 128 + signal.SIGPIPE  # the status a shell shows for a tool SIGPIPE ended


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="chorus", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve", help="run the server and the browser UI")
    p.add_argument("--config", help="TOML config file (default: $CHORUS_CONFIG, else none)")
    p.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port to listen on (default 8000)")
    p.add_argument("--workers", type=positive, default=1, metavar="N",
                   help='processes serving the one port (default 1; more than 1 needs '
                        '[state] backend = "redis")')
    p = sub.add_parser("models", help="list the configured models")
    p.add_argument("--config", help="TOML config file")
    for extend in EXTENSIONS:
        extend(sub)
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except ConfigError as exc:
        print(f"chorus: config error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except (BrokenPipeError, BaseExceptionGroup) as exc:
        if not _only_broken_pipes(exc):
            raise
        return quiet_broken_pipe()


def _only_broken_pipes(exc: BaseException) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return all(_only_broken_pipes(e) for e in exc.exceptions)
    return isinstance(exc, BrokenPipeError)


def quiet_broken_pipe() -> int:
    """The reader of standard output has gone: point stdout at /dev/null so that the
    interpreter's last flush at exit has nowhere to fail, and end with 141.
    https://docs.python.org/3/library/signal.html#note-on-sigpipe"""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return BROKEN_PIPE


# Other modules (e.g. a terminal client) add sub-commands here: f(subparsers) -> None.
EXTENSIONS: list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]] = []


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 up, not {text!r}")
    return value


def serve(args: argparse.Namespace) -> int:
    config = with_local_ollama(load_config(args.config), dict(os.environ))
    host = args.host or config.server.host
    port = config.server.port if args.port is None else args.port
    if not config.api_keys and not is_loopback(host):
        print(f"chorus: refusing to listen on {host} with no API keys configured: anyone who "
              f"can reach it could use your providers. Set {config.server.api_keys_env} "
              f"(comma-separated bearer keys) or listen on 127.0.0.1.", file=sys.stderr)
        return 2
    if (why := workers.refusal(config, args.workers)) is not None:
        print(f"chorus: {why}", file=sys.stderr)
        return 2
    configure_logging(config.server.log_level)
    if config.state.backend == "redis":
        from app.state import check

        why = trio.run(check, config.state.redis_url)
        if why is not None:
            print(f"chorus: [state] backend is \"redis\", but Redis at "
                  f"{config.state.redis_url} does not answer ({why}). Start Redis, fix "
                  f"[state] redis_url (or $CHORUS_REDIS_URL), or use backend = \"memory\".",
                  file=sys.stderr)
            return 2
    if args.workers > 1:
        return workers.serve_workers(config, host, port, args.workers)
    trio.run(run_server, config, host, port)
    logging.getLogger("chorus").info("shutdown.done", extra=fields())
    return 0


async def wait_for_signal() -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            return


async def run_server(
    config: Config, host: str, port: int,
    *, stop: Callable[[], Awaitable[None]] = wait_for_signal, app: QuartTrio | None = None,
    fd: int | None = None, task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` (by default ``create_app(config)``) until ``stop()`` returns (on
    SIGINT/SIGTERM); then shut down in order: no new stream, every live one stopped (reason
    ``shutdown``, bounded by ``SHUTDOWN_WAIT``), no new connection, open responses finished
    (Hypercorn's ``graceful_timeout``). With ``fd``, it serves that inherited listening
    socket (``--workers``) instead of binding ``host:port``."""
    from hypercorn.trio import serve as hypercorn_serve

    from app import SHUTDOWN_WAIT, create_app

    app = app or create_app(config)
    # Everything alive now (modules, the app, its config) lives as long as the process.
    # Frozen, the collector stops walking it: a full collection of a started server
    # otherwise stops every stream for ~25 ms (60k objects). Streams' own objects are
    # collected as before.
    gc.freeze()
    hc = hypercorn_config(config.server, host, port, fd=fd)

    async def shutdown_trigger() -> None:
        await stop()
        hub = app.extensions["chorus"].hub
        logging.getLogger("chorus").info("shutdown.start", extra=fields(streams=hub.active))
        with trio.move_on_after(SHUTDOWN_WAIT):
            await hub.shutdown()

    async with trio.open_nursery() as nursery:
        binds = await nursery.start(
            partial(hypercorn_serve, app, hc, shutdown_trigger=shutdown_trigger)
        )
        names = ", ".join(sorted(config.providers))
        print(f"Chorus is listening on {binds[0]}  (providers: {names})", flush=True)
        task_status.started(binds)


GRACEFUL_TIMEOUT = 1.0  # seconds open responses get to finish once streams have ended


def hypercorn_config(server: ServerConfig, host: str, port: int, *, fd: int | None = None,
                     ) -> HypercornConfig:
    hc = _HypercornConfig()
    if fd is not None:
        hc.bind = [f"fd://{fd}"]
    else:
        hc.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    hc.accesslog = None
    hc.errorlog = None  # our own line says where we listen
    # By the time Hypercorn's graceful phase begins, the shutdown trigger has ended every
    # stream (``hub.shutdown``): what is left is writing their last events, and requests
    # that take moments. And Hypercorn's trio worker under quart-trio never closes a
    # keep-alive connection that sits idle (its idle task does not start once a response
    # has been sent), so each one holds the exit for the whole graceful timeout: keep it
    # short.
    hc.graceful_timeout = GRACEFUL_TIMEOUT
    hc.keep_alive_timeout = 75.0
    hc.stall_timeout = server.stall_timeout
    return hc


class _HypercornConfig(HypercornConfig):
    """Hypercorn's config, plus kernel timeouts on every accepted connection.

    Hypercorn has no write timeout and shields its socket writes, so a client that keeps
    its connection open and stops reading would pin its response for ever. With
    ``TCP_USER_TIMEOUT`` (Linux; set on the listening socket, inherited by every accepted
    one) the kernel aborts a connection whose sent data stays unacknowledged, or whose
    peer's receive window stays shut, for ``stall_timeout``; the write then fails and the
    response ends. A slow reader opens its window now and then and is not cut.
    https://man7.org/linux/man-pages/man7/tcp.7.html

    TCP keep-alive probes reap a connection whose peer vanished while its request is
    being worked on and nothing is sent to it, or while it sits idle between requests
    (Hypercorn's own idle timer does not run under quart-trio: ``docs/operations.md``).
    """

    stall_timeout = 0.0

    def create_sockets(self) -> Sockets:
        sockets = super().create_sockets()
        for sock in (*sockets.secure_sockets, *sockets.insecure_sockets):
            if sock.family not in (socket.AF_INET, socket.AF_INET6):
                continue
            options = [(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)]
            for name, value in (("TCP_KEEPIDLE", 60), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 3),
                                ("TCP_USER_TIMEOUT", int(self.stall_timeout * 1000))):
                option = getattr(socket, name, None)
                if option is not None and value > 0:
                    options.append((socket.IPPROTO_TCP, option, value))
            for level, option, value in options:
                sock.setsockopt(level, option, value)
        return sockets


def models(args: argparse.Namespace) -> int:
    """Every configured provider's models; 1, with each failing provider's reason on
    stderr, when one cannot list them (down, no key), so that a script never takes a
    short list for the whole one."""
    from app.catalog import Catalog
    from providers import ProviderError

    config = load_config(args.config)
    failed: dict[str, str] = {}
    found: dict[str, list[str]] = {}
    simulated: set[str] = set()

    async def listing() -> None:
        catalog = Catalog(config)

        async def one(name: str) -> None:
            provider = catalog.providers[name]
            if provider.simulated:
                simulated.add(name)
            try:
                found[name] = await provider.list_models()
            except ProviderError as exc:
                failed[name] = exc.message

        try:
            async with trio.open_nursery() as nursery:
                for name in catalog.providers:
                    nursery.start_soon(one, name)
        finally:
            await catalog.aclose()

    trio.run(listing)
    for name in config.providers:
        note = "  (simulated)" if name in simulated else ""
        for model in found.get(name, ()):
            print(f"{name}/{model}{note}")
    for alias, target in config.aliases.items():
        print(f"{alias}  (alias of {target})")
    for line in Catalog(config).notes():  # on stderr: the list stays one model a line
        print(f"note: {line}", file=sys.stderr)
    for name, why in failed.items():
        print(f"chorus models: provider {name!r} cannot list its models: {why}",
              file=sys.stderr)
    return 1 if failed else 0


COMMANDS.update({"serve": serve, "models": models})

# The terminal client adds ``ask``, ``chat``, ``logs``, and ``--server`` and ``default`` to
# ``models``.
import app.agent_cli  # noqa: E402  (``chorus agent``)
import app.terminal.chat  # noqa: E402
import app.terminal.commands  # noqa: E402
import app.terminal.logview  # noqa: E402, F401
