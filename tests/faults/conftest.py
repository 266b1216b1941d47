"""The fault suite's system: production processes on private dependencies (tests/faults/system.py)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.faults.system import System
from tests.harness import services as real
from tests.harness.media import make_segment
from tests.harness.netns import TestHost
from tests.harness.stack import Stack, stack_config

# The app's own knobs, set so recovery fits the suite's ~3 minutes (docs/testing.md "Fault suite" says why each).
KNOBS: dict[str, object] = {
    "LADDER": "HIGH:480x320:500k,MEDIUM:320x240:250k,LOW:240x160:120k",  # small rungs: 2 cores encode 3 recordings
    "LEASE_SECONDS": 8.0,  # a killed or cut-off worker's attempt comes back within seconds
    "REAPER_INTERVAL": 0.5,
    "PROCESSING_DEADLINE": 20.0,  # jobs lost with gearmand's restart are submitted again after this
    "RETRY_BACKOFF": 0.3,
    "GAP_TIMEOUT": 4.0,
    "FFMPEG_TIMEOUT": 60.0,
    "BODY_READ_TIMEOUT": 10.0,
}


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    """Three phone-like 2 s segments (H.264 + AAC, moov first), made by ffmpeg."""
    folder = tmp_path_factory.mktemp("clips")
    return [make_segment(folder / f"clip{k}.mp4", seconds=2.0, size="640x360", offset=0).read_bytes() for k in range(3)]


@pytest.fixture
def system(make_tmpfs: Callable[..., Path], tmp_path: Path) -> Iterator[System]:
    with ExitStack() as stack:
        # The media tree where nginx's workers (nobody) can read it: they serve playlists and media from it.
        public = real.nginx_prefix()
        stack.callback(shutil.rmtree, public, ignore_errors=True)
        mariadb = real.MariaDB()
        stack.callback(mariadb.close)
        mariadb.start()
        host = stack.enter_context(TestHost("faults"))
        gearmand = real.Gearmand(host.host_address).start()
        stack.callback(gearmand.stop)
        memcached = real.Memcached().start()
        stack.callback(memcached.stop)
        config = stack_config(
            mariadb.create_database(),
            make_tmpfs("160m", public),
            GEARMAN_SERVERS=(gearmand.address,),
            MEMCACHED_SERVERS=(memcached.address,),
            **KNOBS,
        )
        system = System(config, Stack(config, gearmand), host, mariadb, memcached, tmp_path)
        stack.callback(system.close)
        system.start()
        yield system
