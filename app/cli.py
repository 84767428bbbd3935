"""The ``chorus`` command line: ``serve`` runs the server, ``models`` lists models.

``chorus serve`` refuses a non-loopback address unless API keys are configured, because a
keyless Chorus would let anyone on the network spend the upstream keys. On SIGINT/SIGTERM it
refuses new streams, stops the live ones (``model.stopped`` with reason ``shutdown``), lets
their responses finish and exits 0.
"""

from __future__ import annotations

import argparse
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

from app.autodetect import with_local_ollama
from app.config import Config, ConfigError, ServerConfig, load_config
from app.logs import configure_logging, fields

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="chorus", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve", help="run the server and the browser UI")
    p.add_argument("--config", help="TOML config file (default: $CHORUS_CONFIG, else none)")
    p.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port to listen on (default 8000)")
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


# Other modules (e.g. a terminal client) add sub-commands here: f(subparsers) -> None.
EXTENSIONS: list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]] = []


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def serve(args: argparse.Namespace) -> int:
    config = with_local_ollama(load_config(args.config), dict(os.environ))
    host = args.host or config.server.host
    port = config.server.port if args.port is None else args.port
    if not config.api_keys and not is_loopback(host):
        print(f"chorus: refusing to listen on {host} with no API keys configured: anyone who "
              f"can reach it could use your providers. Set {config.server.api_keys_env} "
              f"(comma-separated bearer keys) or listen on 127.0.0.1.", file=sys.stderr)
        return 2
    configure_logging(config.server.log_level)
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
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` (by default ``create_app(config)``) until ``stop()`` returns (on
    SIGINT/SIGTERM); then shut down in order: no new stream, every live one stopped (reason
    ``shutdown``, bounded by ``SHUTDOWN_WAIT``), no new connection, open responses finished
    (Hypercorn's ``graceful_timeout``)."""
    from hypercorn.trio import serve as hypercorn_serve

    from app import SHUTDOWN_WAIT, create_app, tcp

    tcp.install()

    app = app or create_app(config)
    hc = hypercorn_config(config.server, host, port)

    async def shutdown_trigger() -> None:
        await stop()
        hub = app.extensions["chorus"].hub
        logging.getLogger("chorus").info("shutdown.start", extra=fields(streams=hub.active))
        with trio.move_on_after(SHUTDOWN_WAIT):
            await hub.shutdown()

    async with trio.open_nursery() as nursery:
        binds = await nursery.start(
            partial(hypercorn_serve, app, hc, shutdown_trigger=shutdown_trigger)  # type: ignore[arg-type]
        )
        names = ", ".join(sorted(config.providers))
        print(f"Chorus is listening on {binds[0]}  (providers: {names})", flush=True)
        task_status.started(binds)


def hypercorn_config(server: ServerConfig, host: str, port: int) -> HypercornConfig:
    hc = _HypercornConfig()
    hc.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    hc.accesslog = None
    hc.errorlog = None  # our own line says where we listen
    hc.graceful_timeout = 5.0
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
    being worked on and nothing is sent to it. A connection idle between requests is closed
    after ``keep_alive_timeout``, and at once when the server shuts down (``app.tcp``).
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
    from app.catalog import Catalog

    config = load_config(args.config)

    async def listing() -> tuple[list[dict[str, object]], list[str]]:
        catalog = Catalog(config)
        try:
            return await catalog.list_models(), catalog.notes()
        finally:
            await catalog.aclose()

    found, notes = trio.run(listing)
    for model in found:
        note = "  (simulated)" if model.get("simulated") else ""
        print(f"{model['id']}{note}")
    for line in notes:  # on stderr, so the list itself stays one model a line
        print(f"note: {line}", file=sys.stderr)
    return 0


COMMANDS.update({"serve": serve, "models": models})

import app.terminal.commands  # noqa: E402, F401  (adds ``ask``, and ``--server`` to ``models``)
