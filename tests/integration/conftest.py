"""The full pipeline on real services: the app in-process, workers as real subprocesses (tests.harness.stack)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

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
