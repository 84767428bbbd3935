"""LiteLLM's proxy, installed into its own venv (``bench/.venv-litellm``) and pointed at the
fake upstream, for the side-by-side figures.

The install is idempotent: a marker file records the pinned version, so a second run costs
nothing. 1.106.1 is the newest 1.106 release whose proxy extra resolves from PyPI here (the
later 1.106 patches pin a ``certifi`` that is not published).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from .procs import Proc, free_port

HERE = Path(__file__).resolve().parent
VENV = HERE / ".venv-litellm"
VERSION = "1.106.1"
SPEC = f"litellm[proxy]=={VERSION}"
MASTER_KEY = "sk-bench-master-key-0123456789abcdef"  # the proxy refuses to start without one

CONFIG = """\
model_list:
  - model_name: "*"
    litellm_params:
      model: "openai/*"
      api_base: "http://127.0.0.1:{upstream}/v1"
      api_key: "sk-fake"
litellm_settings:
  drop_params: true
  telemetry: false
"""


def ensure_installed(log: Path) -> tuple[bool, str]:
    """Install LiteLLM once; ``(ok, why not)``. Never raises: the run goes on without it."""
    marker = VENV / ".bench-installed"
    if marker.exists() and marker.read_text().strip() == SPEC:
        return True, ""
    with open(log, "ab") as out:
        try:
            if not (VENV / "bin" / "python").exists():
                subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True,
                               stdout=out, stderr=subprocess.STDOUT, timeout=300)
            subprocess.run([str(VENV / "bin" / "python"), "-m", "pip", "install", "-q", SPEC],
                           check=True, stdout=out, stderr=subprocess.STDOUT, timeout=900)
        except (subprocess.SubprocessError, OSError) as exc:
            return False, f"pip could not install {SPEC} ({type(exc).__name__}); see {log.name}"
    marker.write_text(SPEC + "\n")
    return True, ""


def litellm_proc(upstream_port: int, cores: set[int], workdir: Path) -> Proc:
    port = free_port()
    config = workdir / "litellm.yaml"
    config.write_text(CONFIG.format(upstream=upstream_port))
    env = {
        "LITELLM_MASTER_KEY": MASTER_KEY,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no fetch of the price list at start
        "LITELLM_LOG": "ERROR",
        "PYTHONUNBUFFERED": "1",
        "VIRTUAL_ENV": str(VENV),
        "PATH": f"{VENV / 'bin'}:{os.environ.get('PATH', '')}",
    }
    return Proc("litellm", [str(VENV / "bin" / "litellm"), "--config", str(config), "--host",
                            "127.0.0.1", "--port", str(port), "--num_workers", "1"],
                port, cores, workdir / "litellm.log", env)
