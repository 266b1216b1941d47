"""Fixtures on real services: MariaDB, gearmand, memcached and ffmpeg on loopback."""

from __future__ import annotations

import base64
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session
from werkzeug.security import generate_password_hash

from server.config import Config
from server.infra.models import Admin
from tests.harness import services as real
from tests.harness.media import make_segment
from tests.harness.stack import stack_config


@pytest.fixture(scope="session")
def mysql_database() -> Iterator[str]:
    url = real.create_database()
    yield url
    real.drop_database(url)


@pytest.fixture
def database_url(mysql_database: str) -> str:
    real.truncate_all(mysql_database)
    return mysql_database


@pytest.fixture
def gearmand() -> Iterator[real.Gearmand]:
    server = real.Gearmand().start()
    yield server
    server.stop()


@pytest.fixture
def make_config(database_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    """Return a factory of Configs on the test database and a private media root."""

    def factory(**overrides: object) -> Config:
        return stack_config(database_url, tmp_path / "media", **{"REAPER_INTERVAL": 0.5, **overrides})

    return factory


@pytest.fixture
def admin_auth(database_url: str) -> dict[str, str]:
    engine = create_engine(database_url)
    with Session(engine) as session:
        session.add(Admin(name="root", password_hash=generate_password_hash("s3cret")))
        session.commit()
    engine.dispose()
    return {"Authorization": "Basic " + base64.b64encode(b"root:s3cret").decode()}


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("segments")


@pytest.fixture(scope="session")
def segment_files(media_dir: Path) -> list[Path]:
    """Four phone-like segments of slightly different durations, made once per run."""
    durations = [3.0, 2.9, 3.1, 3.0]
    return [make_segment(media_dir / f"seg{i}.mp4", seconds=d) for i, d in enumerate(durations)]


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("LOG_LEVEL", "WARNING")


@pytest.fixture
def make_tmpfs(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """Mount real tmpfs filesystems of a given size, to fill (the suite runs as root, as scripts/test.sh does)."""
    mounts: list[Path] = []

    def mount(size: str, parent: Path | None = None) -> Path:
        """Mount one in `parent` (default: the test's tmp_path, which only root may enter)."""
        where = (parent or tmp_path) / f"tmpfs{len(mounts)}"
        where.mkdir()
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True, text=True
        )
        if result.returncode != 0:
            pytest.fail(f"cannot mount a tmpfs to fill (run the suite as root, as scripts/test.sh does): {result.stderr}")
        mounts.append(where)
        return where

    yield mount
    for where in mounts:
        subprocess.run(["umount", "-l", str(where)], check=True)


@pytest.fixture
def tiny_disk(make_tmpfs: Callable[[str], Path]) -> Path:
    """A real 4 MiB filesystem: room for one test segment, not two."""
    return make_tmpfs("4m")
