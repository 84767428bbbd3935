"""Recorded upstream bodies, the parser for each, and the ways the tests feed them.

The bodies live in ``../shared/fixtures`` beside the repository; their README says where
each comes from and what it holds. ``feed`` runs a parser over a body cut into pieces and
returns everything it produced, the error included, so two runs compare with ``==``.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from providers import anthropic, gemini, ollama, openai
from providers.base import StreamParser
from providers.errors import ProviderError
from providers.events import Finish, ProviderEvent, ReasoningDelta, TextDelta, ToolCall, Usage

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures"
NOT_BODIES = {"README.md", "MANIFEST.json"}

# Which parser reads which recording, by file name prefix; the first match wins.
PARSERS: list[tuple[str, Callable[[], StreamParser]]] = [
    ("anthropic_", anthropic.parser),
    ("gemini_stream_array_", gemini.array_parser),
    ("gemini_", gemini.parser),
    ("ollama_", ollama.parser),
    ("", openai.parser),
]


def bodies() -> list[str]:
    return sorted(
        p.name
        for p in FIXTURES.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.name not in NOT_BODIES
    )


def parser_for(name: str) -> Callable[[], StreamParser]:
    return next(make for prefix, make in PARSERS if name.startswith(prefix))


def bodies_for(make: Callable[[], StreamParser]) -> list[str]:
    return [name for name in bodies() if parser_for(name) is make]


def body(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


SPLITS = ["whole", "bytes-1", "bytes-2", "random-1", "random-2", "random-3"]


def pieces(data: bytes, split: str) -> list[bytes]:
    """``data`` cut as ``split`` says; random cuts are seeded, so a failure reproduces."""
    if split == "whole":
        return [data]
    kind, _, arg = split.partition("-")
    if kind == "bytes":
        step = int(arg)
        return [data[i : i + step] for i in range(0, len(data), step)]
    rng = random.Random(int(arg))
    cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, 40)))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


def cut(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    """``data`` cut at the given offsets (taken modulo its length; for property tests)."""
    bounds = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


@dataclass(frozen=True)
class Run:
    """Everything one parse produced; ``error`` as (type, message, status, retryable)."""

    events: list[ProviderEvent]
    error: tuple[type[ProviderError], str, int | None, bool] | None = None

    @property
    def text(self) -> str:
        return "".join(e.text for e in self.events if isinstance(e, TextDelta))

    @property
    def reasoning(self) -> str:
        return "".join(e.text for e in self.events if isinstance(e, ReasoningDelta))

    @property
    def usage(self) -> Usage | None:
        return next((e for e in reversed(self.events) if isinstance(e, Usage)), None)

    @property
    def finish(self) -> Finish | None:
        """The one ``Finish``, which must be the last event."""
        finishes = [e for e in self.events if isinstance(e, Finish)]
        assert len(finishes) <= 1
        assert not finishes or self.events[-1] is finishes[0]
        return finishes[0] if finishes else None

    @property
    def error_type(self) -> type[ProviderError] | None:
        return self.error[0] if self.error else None

    @property
    def error_status(self) -> int | None:
        return self.error[2] if self.error else None


def feed(parser: StreamParser, chunks: Iterable[bytes]) -> Run:
    events: list[ProviderEvent] = []
    try:
        for chunk in chunks:
            events += parser.feed(chunk)
        events += parser.close()
    except ProviderError as exc:
        return Run(events, (type(exc), exc.message, exc.status, exc.retryable))
    return Run(events)


def run(name: str, split: str = "whole") -> Run:
    return feed(parser_for(name)(), pieces(body(name), split))


@dataclass(frozen=True)
class Text:
    """Expected joined text: its start, its end and its length (recordings can be long)."""

    start: str
    end: str = ""
    length: int | None = None

    def check(self, text: str) -> None:
        assert text.startswith(self.start), text[:200]
        assert text.endswith(self.end), text[-200:]
        assert self.length is None or len(text) == self.length


@dataclass(frozen=True)
class Expect:
    """What a recording must parse to. ``finish=None`` means it ends in ``error``."""

    text: Text | str = ""
    reasoning: Text | str = ""
    usage: Usage | None = None
    finish: str | None = "stop"
    tool_calls: Sequence[ToolCall] = field(default=())
    error: tuple[type[ProviderError], int | None, str] | None = None  # type, status, message

    def check(self, got: Run) -> None:
        for want, have in ((self.text, got.text), (self.reasoning, got.reasoning)):
            if isinstance(want, Text):
                want.check(have)
            else:
                assert have == want
        assert got.usage == self.usage
        if self.error is None:
            assert got.error is None, got.error
            assert got.finish == Finish(self.finish or "", tuple(self.tool_calls))
        else:
            assert got.finish is None
            assert got.error is not None
            kind, message, status, _ = got.error
            assert (kind, status, message) == self.error
