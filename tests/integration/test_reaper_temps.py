"""The reaper looks for what dead writers left only in the folders of videos written lately; the whole tree rarely.

Time is a FakeClock moved by the test; the temp files are made old on disk (their mtime), as a dead writer's are.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from server.domain import ingest
from server.infra.services import Services
from server.ops import reaper
from tests.harness.clock import FakeClock
from tests.harness.tree import tree


@pytest.fixture
def services(make_config) -> Iterator[Services]:  # type: ignore[no-untyped-def]
    config = make_config(TEMP_SWEEP_INTERVAL=3600.0, PROCESSING_DEADLINE=10.0, LEASE_SECONDS=5.0, LIVE_IDLE_TIMEOUT=1e6)
    built = Services.build(config)
    built.clock = FakeClock()
    yield built
    built.close()


def _dead_writers_left(services: Services, video_id: int) -> list[Path]:
    """A temp file and an attempt's staged output, untouched for long (their writers died)."""
    rung = tree(services).rendition_dir(video_id, "HIGH")
    staged = tree(services).attempt_dir(video_id, 990000 + video_id) / "HIGH.mp4"
    rung.mkdir(parents=True, exist_ok=True)
    staged.parent.mkdir(parents=True)
    staged.write_bytes(b"encoded")
    temp = rung / ".000000.m4s.tmp-dead"
    temp.write_bytes(b"half")
    for path in (temp, staged):
        os.utime(path, (time.time() - 10_000, time.time() - 10_000))
    return [temp, staged]


def test_a_pass_looks_only_in_the_folders_of_videos_written_lately(services: Services, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    with services.sessions() as session:
        quiet, busy = (ingest.create_video(services, session, title).id for title in ("quiet", "busy"))
    sweep = reaper.TempSweep(services.config)
    reaper.reap(services, sweep)  # the first pass searches the whole tree
    services.clock.advance(120)
    reaper.reap(services, sweep)  # the videos' creation is within this pass's look-back, not the next one's
    left = {video_id: _dead_writers_left(services, video_id) for video_id in (quiet, busy)}
    with services.sessions() as session:
        ingest.rename_video(services, session, busy, "busy, renamed", by="test")  # a write to busy's folder, logged now
    services.clock.advance(services.config.REAPER_INTERVAL)
    searched: list[Path] = []
    rglob = Path.rglob
    monkeypatch.setattr(Path, "rglob", lambda self, pattern: searched.append(self) or rglob(self, pattern))
    reaper.reap(services, sweep)
    assert [path.exists() for path in left[busy]] == [False, False]
    assert [path.exists() for path in left[quiet]] == [True, True]  # not looked at this pass
    scratch = services.media.scratch_root  # this machine's in-flight work only: searched every pass
    assert searched and all(p.is_relative_to(tree(services).video_dir(busy)) or p == scratch for p in searched), searched
    services.clock.advance(3600)  # TEMP_SWEEP_INTERVAL: the whole tree again
    reaper.reap(services, sweep)
    assert [path.exists() for path in left[quiet]] == [False, False]


def test_reap_without_a_sweep_searches_the_whole_tree(services: Services) -> None:
    """The operator's and the tests' one-off pass (reaper.reap(services)) leaves nothing anywhere."""
    with services.sessions() as session:
        video_id = ingest.create_video(services, session, "old").id
    left = _dead_writers_left(services, video_id)
    services.clock.advance(100_000)
    reaper.reap(services)
    assert [path.exists() for path in left] == [False, False]
