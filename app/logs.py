"""Structured logs: one ``key=value`` line per record, each with the request id it came from.

Every line reads ``ts=… level=… logger=… request_id=… event=… k=v …``. Our own records
name an ``event`` and carry fields (``extra={"fields": {...}}``); anyone else's carry
``msg="…"``. Values with spaces, quotes or ``=`` are quoted, and newlines escaped, so one
record is always one line. The request id is a context variable set per request
(``X-Request-ID`` in, or a fresh one) and inherited by the tasks a request starts, so a
stream's lines carry the id of the request that made it.

At INFO, Chorus writes one line per stream and one per slot outcome (``LogObserver``);
nothing per chunk. Keys are never logged: not ours, not the upstreams'.
"""

from __future__ import annotations

import functools
import logging
import re
import secrets
import sys
import time
from contextvars import ContextVar
from typing import Any

from app.engine import SlotState, Stream
from app.engine.events import Counts, ModelDone, ModelError, ModelRetry, Terminal

request_id: ContextVar[str] = ContextVar("request_id", default="-")

log = logging.getLogger("chorus.stream")

# Libraries that log once per upstream request at INFO (httpx names the URL, which for
# some APIs holds a key) or per frame at DEBUG: quiet unless they have something wrong.
QUIET = ("httpx", "httpcore", "hpack", "h2", "h11", "hypercorn.access", "coredis")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_BARE = re.compile(r"^[^\s\"=\\]+$")


def new_request_id(given: str | None) -> str:
    """The client's ``X-Request-ID`` when it is a sane token, else a fresh random one."""
    if given and _REQUEST_ID.match(given):
        return given
    return secrets.token_hex(8)


def fields(**values: Any) -> dict[str, Any]:
    """``extra=`` for a structured record: ``log.info("slot.end", extra=fields(slot=1))``."""
    return {"fields": values}


def quote(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):  # bool too: a number is never quoted
        return str(value)
    if isinstance(value, float):
        return str(round(value, 3))
    text = str(value)
    if text and _BARE.match(text):
        return text
    text = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + text.replace("\n", "\\n").replace("\r", "\\r") + '"'


@functools.lru_cache(maxsize=4)
def _second(epoch: int) -> str:
    """The timestamp's date and time to the second, formatted once per second."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch))


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        parts = [f"ts={_second(int(record.created))}.{int(record.msecs):03d}Z",
                 f"level={record.levelname.lower()}", f"logger={record.name}",
                 f"request_id={quote(request_id.get())}"]
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            parts.append(f"event={quote(record.getMessage())}")
            parts += [f"{k}={quote(v)}" for k, v in extra.items()]
        else:
            parts.append(f"msg={quote(record.getMessage())}")
        if record.exc_info:
            parts.append(f"exc={quote(self.formatException(record.exc_info))}")
        return " ".join(parts)


def configure_logging(level: str = "info", stream: Any = None) -> logging.Handler:
    """Send every record to stderr (or ``stream``) as one key=value line; return the
    handler. Replaces handlers set earlier, so calling it twice does not double lines."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(KeyValueFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # None of these is on a line: don't gather them for every record. ``_srcfile = None``
    # skips the walk up the stack for the caller's file and line (the logging HOWTO's
    # "Optimization" section); the flags skip the thread, process and multiprocessing
    # lookups. They were a third of a record's cost: a stream's two lines, 256k
    # instructions before, 175k after (``bench/findings.md``).
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)
    return handler


class LogObserver:
    """The engine's observer that writes the INFO lines: one per slot outcome and one per
    stream (retries at DEBUG; the outcome line counts them); a stalled reader, rare and
    worth knowing, gets one too."""

    def __init__(self) -> None:
        self._retries: dict[tuple[str, int], int] = {}

    def stream_started(self, stream: Stream) -> None:
        log.debug("stream.start", extra=fields(
            stream=stream.id, slots=len(stream.slots),
            models=",".join(s.model for s in stream.slots)))

    def slot_event(self, stream: Stream, state: SlotState, event: ModelRetry | Terminal
                   ) -> None:
        key = (stream.id, state.slot)
        if isinstance(event, ModelRetry):
            self._retries[key] = self._retries.get(key, 0) + 1
            log.debug("slot.retry", extra=fields(
                stream=stream.id, slot=state.slot, model=event.model,
                attempt=event.attempt, reason=event.reason))
            return
        values: dict[str, Any] = {
            "stream": stream.id, "slot": state.slot, "model": state.model,
            "outcome": event.outcome,
        }
        if isinstance(event, ModelDone):
            values["finish"] = event.finish_reason
        elif isinstance(event, ModelError):
            values["error"] = event.error.type
            if event.error.status is not None:
                values["status"] = event.error.status
        else:
            values["reason"] = event.reason
        values.update(
            ttft_ms=event.timing.ttft_ms, duration_ms=event.timing.duration_ms,
            tokens_in=event.usage.input_tokens, tokens_out=event.usage.output_tokens,
            retries=self._retries.pop(key, 0),
        )
        log.info("slot.end", extra=fields(**values))

    def stream_ended(self, stream: Stream, counts: Counts) -> None:
        duration = None
        if stream.ended_at is not None:
            duration = round((stream.ended_at - stream.started_at) * 1000, 1)
        log.info("stream.end", extra=fields(
            stream=stream.id, slots=len(stream.slots), **counts.data(), duration_ms=duration))

    def reader_cut(self, stream: Stream, stalled_for: float) -> None:
        log.info("reader.stalled", extra=fields(stream=stream.id, stalled_s=stalled_for))
