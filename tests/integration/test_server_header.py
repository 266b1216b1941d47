"""No answer names the server software's version: the README's dev and production commands, as an operator runs them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.harness.services import ROOT, free_port, stop_gracefully, wait_port

VERSION = re.compile(r"\d+\.\d|/\s*\d|werkzeug|python", re.IGNORECASE)  # "Werkzeug/3.1.9 Python/3.11.7"


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("GEARMAN_SERVERS", "MEMCACHED_SERVERS", "DATABASE_URL")}
    env.update({"DATABASE_URL": f"sqlite:///{tmp_path / 'h.sqlite'}", "MEDIA_ROOT": str(tmp_path / "media")})
    return env


def _commands(port: int) -> dict[str, list[str]]:
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    return {
        "dev_run": [sys.executable, "dev_run.py", "--port", str(port)],
        "gunicorn": [gunicorn, "-w", "1", "-k", "gthread", "--threads", "2", "-b", f"127.0.0.1:{port}", "server:create_app()"],
    }


@pytest.mark.parametrize("server", ["dev_run", "gunicorn"])
def test_no_server_header_names_a_version(server, tmp_path):
    port = free_port()
    env = _env(tmp_path)
    subprocess.run([sys.executable, "-m", "server.cli", "db", "upgrade"], cwd=ROOT, env=env, check=True, capture_output=True)
    with (tmp_path / "server.log").open("wb") as log:
        proc = subprocess.Popen(_commands(port)[server], cwd=ROOT, env=env, stdout=log, stderr=log)
    try:
        wait_port(port, timeout=30)
        base = f"http://127.0.0.1:{port}"
        for response in (
            requests.get(f"{base}/time"),
            requests.get(f"{base}/video/77"),
            requests.post(f"{base}/videos", data="x"),
        ):
            value = response.headers.get("Server", "")  # several would be joined with ", "
            assert not VERSION.search(value), (response.url, value)
    finally:
        stop_gracefully([proc])
