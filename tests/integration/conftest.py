"""The full pipeline on real services: the app in-process, workers as real subprocesses (tests.harness.stack)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from server.store.objects import LocalObjects, ObjectStore
from tests.harness import s3
from tests.harness.stack import Stack


@pytest.fixture
def stack(make_config, gearmand) -> Iterator[Stack]:  # type: ignore[no-untyped-def]
    config = make_config(
        GEARMAN_SERVERS=(gearmand.address,),
        REAPER_INTERVAL=0.5,
        PROCESSING_DEADLINE=20.0,
        LEASE_SECONDS=6.0,
        JOB_MAX_ATTEMPTS=3,
        RETRY_BACKOFF=0.3,
        GAP_TIMEOUT=4.0,
        FFMPEG_TIMEOUT=60.0,
    )
    s = Stack(config, gearmand)
    yield s
    s.close()


@pytest.fixture(scope="session")
def s3_bucket() -> Iterator[str]:
    """A fresh bucket on the test run's S3 gateway (started here if scripts/services.sh did not)."""
    started = s3.ensure_gateway()
    bucket = s3.new_bucket()
    yield bucket
    s3.remove_bucket(bucket)
    if started:
        s3.stop_gateway()


@pytest.fixture(params=["local", "s3"])
def objects(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    """Each ObjectStore backend in turn: a local tree, and a prefix of its own in the S3 bucket."""
    if request.param == "local":
        return LocalObjects(tmp_path / "objects")
    return s3.s3_objects(request.getfixturevalue("s3_bucket"), prefix=f"{uuid.uuid4().hex[:8]}/")
