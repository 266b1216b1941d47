"""A secret the CLI prints is alone on stdout (`X=$(python -m server.cli ...)` captures just it); hints go to stderr."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from server import cli
from server.config import Config
from server.domain import registry
from server.infra.db import make_engine, make_sessionmaker
from server.infra.models import Webhook


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    cli.db_upgrade(Config.from_env(DATABASE_URL=url))
    return url


def run_cli(sqlite_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI as an operator's shell does, on `sqlite_url`."""
    env = {
        **os.environ,
        "DATABASE_URL": sqlite_url,
        "MEMCACHED_SERVERS": "",
        "GEARMAN_SERVERS": "",
        "WEBHOOK_ALLOW_PRIVATE": "true",
    }
    done = subprocess.run([sys.executable, "-m", "server.cli", *args], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done


def test_worker_token_prints_the_token_alone_on_stdout_and_its_hint_on_stderr(sqlite_url: str) -> None:
    done = run_cli(sqlite_url, "worker", "token", "w1")
    assert re.fullmatch(r"[A-Za-z0-9_-]{20,}\n", done.stdout), done.stdout
    engine = make_engine(sqlite_url)
    with make_sessionmaker(engine)() as session:
        assert registry.authenticate(session, done.stdout.removesuffix("\n")) is not None
    engine.dispose()
    assert "WORKER_TOKEN" in done.stderr and "shown only once" in done.stderr


def test_webhook_add_prints_the_signing_secret_alone_on_stdout_and_the_hook_on_stderr(sqlite_url: str) -> None:
    done = run_cli(sqlite_url, "webhook", "add", "http://127.0.0.1:9/hook", "--events", "video.vod")
    engine = make_engine(sqlite_url)
    with make_sessionmaker(engine)() as session:
        hook = session.scalars(select(Webhook)).one()
    engine.dispose()
    assert done.stdout == f"{hook.secret}\n"
    assert f"webhook {hook.id}: http://127.0.0.1:9/hook (video.vod)" in done.stderr and "shown only once" in done.stderr
