"""Debian's ``nginx`` in front of Chorus instances, run with the deployment's own
``deploy/nginx.conf``: only its addresses and file paths are changed for a test (the
upstream servers, the listening port, the pid, logs and temporary files)."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

from bench.procs import Proc, free_port

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "deploy" / "nginx.conf"
NGINX = ("nginx", "/usr/sbin/nginx")
INSTALL = "apt-get install -y nginx"


def find_nginx() -> str | None:
    """nginx on the ``PATH``, else where Debian puts it (``/usr/sbin``, not on every
    user's ``PATH``)."""
    return next((found for name in NGINX if (found := shutil.which(name))), None)


def local_config(text: str, upstreams: Sequence[str], port: int, directory: Path) -> str:
    """``deploy/nginx.conf`` pointed at ``upstreams`` (``host:port``), listening on
    127.0.0.1:``port``, writing only inside ``directory``."""
    servers = "".join(f"        server {u};\n" for u in upstreams)
    text, n = re.subn(r"(?m)^\s*server chorus-\w+:\d+;\n", "", text)
    assert n == 2, "deploy/nginx.conf no longer names chorus-a and chorus-b"
    text = text.replace("upstream chorus {\n", "upstream chorus {\n" + servers)
    text = text.replace("listen 80;", f"listen 127.0.0.1:{port};")
    text = re.sub(r"(?m)^pid .*;$", f"pid {directory}/nginx.pid;", text)
    text = text.replace("worker_processes auto;", "worker_processes 1;")
    # Each request's path and the instance nginx gave it to, for a test to see both used.
    text = text.replace("access_log /dev/stdout;",
                        "log_format routed '$request_method $uri $upstream_addr';\n"
                        f"    access_log {directory}/access.log routed;")
    text = text.replace("error_log /dev/stderr warn;", f"error_log {directory}/error.log warn;")
    temps = "".join(f"    {kind}_temp_path {directory}/{kind};\n"
                    for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    text = text.replace("http {\n", "http {\n" + temps, 1)
    if os.geteuid() == 0:  # workers would otherwise run as nobody, shut out of directory
        text = "user root;\n" + text
    return text


class Nginx:
    """``nginx`` on a free loopback port in front of ``upstreams``; ``stop()`` ends it."""

    def __init__(self, upstreams: Sequence[str], directory: Path) -> None:
        binary = find_nginx()
        if binary is None:
            raise RuntimeError(f"nginx is not installed ({INSTALL})")
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        conf = directory / "nginx.conf"
        conf.write_text(local_config(CONFIG.read_text(), upstreams, port, directory))
        argv = [binary, "-p", str(directory), "-e", str(directory / "error.log"),
                "-c", str(conf), "-g", "daemon off;"]
        self.proc = Proc("nginx", argv, port, os.sched_getaffinity(0),
                         directory / "output.log").start(ready_timeout=10.0)

    def routed(self) -> list[tuple[str, str, str]]:
        """``(method, path, instance host:port)`` of each request nginx has finished."""
        path = self.directory / "access.log"
        lines = path.read_text().splitlines() if path.exists() else []
        return [(method, uri, upstream) for method, uri, upstream in
                (line.split(" ", 2) for line in lines)]

    def errors(self) -> str:
        path = self.directory / "error.log"
        return path.read_text() if path.exists() else ""

    def stop(self) -> None:
        self.proc.stop()
