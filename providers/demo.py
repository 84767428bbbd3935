"""Simulated models: the out-of-the-box default, and the engine's test double.

A demo model's behaviour is set by its name: a preset (``demo/fast``, ``demo/slow``,
``demo/thinker``, ``demo/flaky``, ``demo/hang``, ``demo/error-429`` …) or a spec written as
``key=value`` pairs, e.g. ``demo/ttft=0.2,rate=50,tokens=300,fail_after=40``. Config may add
named presets under ``[providers.NAME.options.presets]``. It sleeps with ``trio.sleep``, so
under ``trio.testing.MockClock`` its timing is exact. Demo models take images (unless the
provider's ``images`` setting says otherwise) and open their answer by saying how many.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from typing import Any

import trio

from .base import ChatRequest, ProviderConfig
from .errors import BadRequestError, UpstreamError, error_for_status
from .events import Finish, ProviderEvent, ReasoningDelta, TextDelta, Usage
from .images import check_images


@dataclass(frozen=True, slots=True)
class DemoSpec:
    ttft: float = 0.2  # seconds before the first token
    rate: float = 60.0  # tokens per second; 0 = as fast as the consumer takes them
    tokens: int = 120  # answer length in tokens
    reasoning: int = 0  # thinking tokens sent before the answer
    chunk: int = 1  # tokens per event
    fail_after: int | None = None  # raise after this many answer tokens
    error: int | None = None  # answer with this HTTP-like status instead of streaming
    hang: bool = False  # never send anything
    text: str = ""  # answer text to repeat; default: a short markdown demo answer


PRESETS: dict[str, DemoSpec] = {
    "fast": DemoSpec(ttft=0.15, rate=90, tokens=140),
    "slow": DemoSpec(ttft=1.0, rate=15, tokens=90),
    "thinker": DemoSpec(ttft=0.4, rate=45, tokens=110, reasoning=40),
    "flaky": DemoSpec(ttft=0.3, rate=40, tokens=200, fail_after=25),
    "instant": DemoSpec(ttft=0.0, rate=0.0, tokens=200),
    "hang": DemoSpec(hang=True),
    "error-401": DemoSpec(error=401),
    "error-429": DemoSpec(error=429),
    "error-500": DemoSpec(error=500),
}

_ANSWER = (
    "This is a **simulated** answer from Chorus's demo provider. It streams word by word, "
    "so you can watch several models side by side.\n\n"
    "- It starts after a set *time to first token*;\n"
    "- it writes at a set rate;\n"
    "- and it stops the moment you press stop.\n\n"
    "```python\nprint('hello from the demo model')\n```\n\n"
)
_THOUGHT = "Let me think about how a simulated model would answer this question. "

_FIELDS = {f.name: f.type for f in dataclasses.fields(DemoSpec)}


def parse_spec(name: str, presets: Mapping[str, DemoSpec] = PRESETS) -> DemoSpec:
    """A preset's spec, or one written in the model name; ``BadRequestError`` otherwise."""
    if name in presets:
        return presets[name]
    if "=" not in name:
        raise BadRequestError(f"unknown demo model {name!r}")
    values: dict[str, Any] = {}
    for part in name.split(","):
        key, _, raw = part.partition("=")
        key = key.strip()
        if key not in _FIELDS or key == "text":
            raise BadRequestError(f"unknown demo setting {key!r} in {name!r}")
        try:
            values[key] = _convert(key, raw.strip())
        except ValueError as exc:
            raise BadRequestError(f"bad value for {key} in demo model {name!r}") from exc
    return DemoSpec(**values)


def _convert(key: str, raw: str) -> Any:
    if key == "hang":
        return raw.lower() in ("1", "true", "yes")
    if key in ("ttft", "rate"):
        value = float(raw)
        if value < 0:
            raise ValueError(raw)
        return value
    number = int(raw)
    if number < 0:
        raise ValueError(raw)
    return number


def _words(text: str) -> list[str]:
    """Split keeping the spaces, so joining the tokens gives the text back."""
    out: list[str] = []
    word = ""
    for ch in text:
        word += ch
        if ch in " \n":
            out.append(word)
            word = ""
    if word:
        out.append(word)
    return out


def _seen(request: ChatRequest) -> str:
    """What a demo answer opens with when it was sent images: proof they arrived."""
    images = sum(len(m.images) for m in request.messages)
    if not images:
        return ""
    return f"I was given {images} image{'s' if images != 1 else ''}. "


class DemoProvider:
    simulated = True

    def __init__(self, config: ProviderConfig) -> None:
        self.config = config
        presets = dict(PRESETS)
        for name, values in (config.options.get("presets") or {}).items():
            presets[name] = DemoSpec(**values)
        self.presets = presets

    async def list_models(self) -> list[str]:
        return list(self.config.models or [n for n in self.presets if not n.startswith("error")])

    async def aclose(self) -> None:
        return None

    async def stream(self, request: ChatRequest) -> AsyncGenerator[ProviderEvent, None]:
        spec = parse_spec(request.model, self.presets)
        check_images(self.config, request)
        prompt_tokens = sum(len(m.content.split()) + 4 for m in request.messages)
        if spec.hang:
            await trio.sleep_forever()
        await trio.sleep(spec.ttft)
        if spec.error is not None:
            raise error_for_status(spec.error, f"simulated upstream error {spec.error}")
        max_tokens = request.params.get("max_tokens")
        limit = spec.tokens if not isinstance(max_tokens, int) else min(spec.tokens, max_tokens)
        gap = spec.chunk / spec.rate if spec.rate else 0.0
        thought = _words(_THOUGHT)
        for i in range(0, spec.reasoning, spec.chunk):
            end = min(i + spec.chunk, spec.reasoning)
            yield ReasoningDelta("".join(thought[j % len(thought)] for j in range(i, end)))
            await trio.sleep(gap)
        words = _words(spec.text or _ANSWER)
        opening = _words(_seen(request))
        sent = 0
        while sent < limit:
            if spec.fail_after is not None and sent >= spec.fail_after:
                raise UpstreamError(f"simulated failure after {sent} tokens", status=500)
            n = min(spec.chunk, limit - sent)
            yield TextDelta("".join(
                opening[i] if i < len(opening) else words[(i - len(opening)) % len(words)]
                for i in range(sent, sent + n)))
            sent += n
            if sent < limit:
                await trio.sleep(gap)
        yield Usage(prompt_tokens, sent)
        yield Finish("length" if limit < spec.tokens else "stop")
