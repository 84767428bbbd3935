"""A sans-IO NDJSON line decoder: bytes in, complete lines (as text) out.

NDJSON (https://github.com/ndjson/ndjson-spec §3.1): each JSON text is followed by ``\\n``,
which may be preceded by ``\\r``; JSON texts never contain a raw newline. Ollama's native
API streams this way (https://docs.ollama.com/api/streaming).
"""

from __future__ import annotations

from .errors import ProtocolError

MAX_LINE_BYTES = 8 * 1024 * 1024  # bounds memory against an upstream that never ends a line


class NDJSONDecoder:
    """Feed it any split of a stream; it returns the lines completed so far.

    Lines are split on bytes, not text: ``\\n`` (0x0A) never occurs inside a multibyte
    UTF-8 sequence, so a character split across reads stays whole in the held partial line
    and is decoded only once its line is complete. Invalid UTF-8 becomes U+FFFD; empty and
    blank lines are skipped.
    """

    def __init__(self) -> None:
        self._partial = bytearray()
        self._error: ProtocolError | None = None

    def feed(self, data: bytes) -> list[str]:
        """A line over ``MAX_LINE_BYTES`` is a ``ProtocolError``; the lines completed before
        it in the same read are returned first, and the error is raised by the next call."""
        if self._error is not None:
            raise self._error
        *complete, rest = data.split(b"\n")
        lines: list[str] = []
        try:
            for raw in complete:
                self._partial += raw
                self._check()
                self._emit(bytes(self._partial), lines)
                self._partial.clear()
            self._partial += rest
            self._check()
        except ProtocolError as exc:
            self._error = exc
            if not lines:
                raise
        return lines

    def flush(self) -> list[str]:
        """End of stream: a last line without its ``\\n`` is returned as it is; whether it
        holds a whole JSON text is for the caller to find out."""
        if self._error is not None:
            raise self._error
        lines: list[str] = []
        self._emit(bytes(self._partial), lines)
        self._partial.clear()
        return lines

    def _check(self) -> None:
        if len(self._partial) > MAX_LINE_BYTES:
            raise ProtocolError("the upstream sent a line too long to buffer")

    @staticmethod
    def _emit(raw: bytes, lines: list[str]) -> None:
        line = raw.removesuffix(b"\r").decode("utf-8", "replace")
        if line.strip():
            lines.append(line)
