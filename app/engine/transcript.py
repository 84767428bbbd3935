"""What each speaker of a conversation is sent, and what its manager is asked: pure.

A speaker hears the conversation from its own seat: its own turns as ``assistant``, every
other speaker's as ``user`` text that starts with the speaker's name, so a model that only
knows two roles can still tell three voices apart. Reasoning never enters a transcript:
only answer text is said aloud.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from providers import Message

MANAGER_EXCERPT = 400  # characters of each turn the manager reads: enough to judge, short


@dataclass(frozen=True, slots=True)
class Said:
    """One ended turn's answer text (possibly cut short by a stop or an error)."""

    slot: int
    name: str
    text: str


def speaker_messages(speaker: int, system: str | None, opening: Sequence[Message],
                     turns: Sequence[Said]) -> tuple[Message, ...]:
    """The history sent to ``speaker``: its system, the opening, then every turn so far."""
    out = [Message("system", system)] if system else []
    out.extend(opening)
    for said in turns:
        if not said.text:
            continue  # a turn that said nothing adds nothing to hear
        if said.slot == speaker:
            out.append(Message("assistant", said.text))
        else:
            out.append(Message("user", f"{said.name}: {said.text}"))
    return tuple(out)


DEFAULT_MANAGER_SYSTEM = (
    "You moderate a conversation between several participants. Read it and decide who "
    "should speak next. Answer with exactly one participant's name and nothing else.")


def manager_messages(system: str | None, names: Sequence[str], opening: Sequence[Message],
                     turns: Sequence[Said]) -> tuple[Message, ...]:
    """One short request: the conversation as text (each turn cut to an excerpt, so the
    manager's cost stays flat however long the answers are) and the names to choose from."""
    lines = [f"{m.role}: {m.content}" for m in opening if m.role != "system"]
    for said in turns:
        text = said.text if len(said.text) <= MANAGER_EXCERPT else (
            said.text[:MANAGER_EXCERPT] + " …")
        lines.append(f"{said.name}: {text}")
    ask = ("Conversation so far:\n" + "\n".join(lines) + "\n\nParticipants: "
           + ", ".join(names) + "\nWho speaks next? Answer with just the name.")
    return (Message("system", system or DEFAULT_MANAGER_SYSTEM), Message("user", ask))


def _plain(text: str) -> str:
    return re.sub(r"[\W_]+", " ", text).strip().casefold()


def named(answer: str, names: Sequence[str]) -> int | None:
    """The index of the one name ``answer`` gives (its whole text, or the only name found
    in it); ``None`` when it names nobody, or more than one."""
    plain = _plain(answer)
    for i, name in enumerate(names):
        if _plain(name) == plain:
            return i
    found = {i for i, name in enumerate(names)
             if _plain(name) and re.search(rf"\b{re.escape(_plain(name))}\b", plain)}
    return found.pop() if len(found) == 1 else None
