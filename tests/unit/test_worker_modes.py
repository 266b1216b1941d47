"""What a segment_processor is from its settings: remote or not, and which job functions it takes."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from server.config import Config, database_configured
from server.core.jobs import PACKAGE_VIDEO, TRANSCODE_SEGMENT
from server.worker.processor import Plan, Refused, plan
from tests.harness.services import ROOT

GEARMAN = ("127.0.0.1:4730",)
REMOTE = {"GEARMAN_SERVERS": GEARMAN, "API_URL": "http://origin:8000", "WORKER_TOKEN": "t" * 43}


def test_a_worker_with_the_database_takes_every_function_or_what_only_names() -> None:
    config = Config.from_env(GEARMAN_SERVERS=GEARMAN)
    assert plan(config, None, database=True) == Plan(False, (TRANSCODE_SEGMENT, PACKAGE_VIDEO))
    assert plan(config, "package", database=True) == Plan(False, (PACKAGE_VIDEO,))
    assert plan(config, "transcode", database=True) == Plan(False, (TRANSCODE_SEGMENT,))


def test_api_url_and_token_without_a_database_is_a_remote_transcoder() -> None:
    config = Config.from_env(**REMOTE)
    assert plan(config, None, database=False) == Plan(True, (TRANSCODE_SEGMENT,))
    assert plan(config, "transcode", database=False) == Plan(True, (TRANSCODE_SEGMENT,))
    assert plan(config, None, database=True).remote is False  # the database wins: it keeps working as before


@pytest.mark.parametrize(
    ("settings", "only", "words"),
    [
        (REMOTE, "package", "--only package needs DATABASE_URL"),
        ({"GEARMAN_SERVERS": GEARMAN, "API_URL": "http://origin:8000"}, None, "needs both API_URL and WORKER_TOKEN"),
        ({"GEARMAN_SERVERS": ()}, None, "GEARMAN_SERVERS is not set"),
    ],
)
def test_settings_that_cannot_work_are_refused_in_one_line(settings: dict, only: str | None, words: str) -> None:
    with pytest.raises(Refused, match=words):
        plan(Config.from_env(**settings), only, database=False)


def test_database_configured_reads_only_the_environment() -> None:
    assert database_configured({"DATABASE_URL": "mysql+pymysql://x@db/y"})
    assert not database_configured({"DATABASE_URL": "  "})
    assert not database_configured({})


def test_the_refusal_is_one_line_and_exit_status_2(tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(GEARMAN_SERVERS=GEARMAN[0], API_URL="http://origin:8000", WORKER_TOKEN="t" * 43, MEDIA_ROOT=str(tmp_path))
    done = subprocess.run(
        [sys.executable, "-m", "server.segment_processor", "--only", "package"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "--only package needs DATABASE_URL" in lines[0]
