"""Where the server's CPU goes under a load: py-spy samples, grouped by library.

``python -m bench --profile`` records the Chorus process during the saturation run and
during the 50-stream latency run; the report shows the share of samples per group (the
deepest frame that belongs to a known library decides) and the hottest frames.
"""

from __future__ import annotations

import collections
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

_CLIENT = "httpx and its transport (upstream client)"
_PARSE = "parsing (SSE, OpenAI)"
_TRIO = "trio (scheduler, sockets)"
GROUPS = [
    ("httpcore", _CLIENT), ("httpx/", _CLIENT), ("providers/transport", _CLIENT),
    ("h11/", "h11 (HTTP/1.1 both sides)"),
    ("hypercorn/", "Hypercorn"), ("quart_trio/", "Quart"), ("quart/", "Quart"),
    ("werkzeug", "Quart"), ("prometheus", "metrics"), ("app/metrics", "metrics"),
    ("app/logs", "logging"), ("logging/", "logging"), ("providers/sse", _PARSE),
    ("providers/openai", _PARSE), ("providers/streaming", _PARSE), ("providers/think", _PARSE),
    ("codecs", _PARSE), ("json/", "JSON"), ("app/engine", "Chorus engine"),
    ("providers/http", "Chorus engine"), ("app/api", "Chorus API"), ("trio/", _TRIO),
    ("outcome", _TRIO), ("contextlib", "contextlib (library context managers)"),
]


def py_spy() -> str | None:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    return found if Path(found).exists() else None


def ensure_py_spy() -> str | None:
    if py_spy() is None:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "py-spy"], check=False,
                       timeout=600)
    return py_spy()


def start(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes] | None:
    exe = py_spy()
    if exe is None:
        return None
    return subprocess.Popen([exe, "record", "-p", str(pid), "-o", str(out), "-f", "raw", "-d",
                             str(max(1, round(seconds))), "-r", "250"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def summarise(raw: Path, top: int = 12) -> dict[str, Any]:
    groups: collections.Counter[str] = collections.Counter()
    frames: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        chain = stack.split(";")
        frames[chain[-1].split(" (")[0] + " (" + _short(chain[-1]) + ")"] += n
        group = "other"
        for frame in reversed(chain):
            group = next((name for key, name in GROUPS if key in frame), "other")
            if group != "other":
                break
        groups[group] += n
    if not total:
        return {"samples": 0}
    return {
        "samples": total,
        "groups": {g: round(100 * n / total, 1) for g, n in groups.most_common()},
        "hottest": [(f, round(100 * n / total, 1)) for f, n in frames.most_common(top)],
    }


def _short(frame: str) -> str:
    where = frame.rsplit("(", 1)[-1].rstrip(")")
    return where.split("site-packages/")[-1]
