"""The fault suite's system: production processes on private dependencies (tests/faults/system.py)."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.faults.system import System
from tests.harness import s3
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
    "S3_TIMEOUT": 2.0,  # a frozen store is a 503 within about S3_TIMEOUT x S3_MAX_ATTEMPTS, not a hung request
    "S3_MAX_ATTEMPTS": 2,
}


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    """Three phone-like 2 s segments (H.264 + AAC, moov first), made by ffmpeg."""
    folder = tmp_path_factory.mktemp("clips")
    return [make_segment(folder / f"clip{k}.mp4", seconds=2.0, size="640x360", offset=0).read_bytes() for k in range(3)]


@pytest.fixture
def system(make_tmpfs: Callable[..., Path], tmp_path: Path) -> Iterator[System]:
    """The production shape of issue 17: media in a bucket of a gateway of the test's own (to freeze), nginx's
    cache tier in front of it, and MEDIA_ROOT a small tmpfs holding only scratch (uploads, encodes), to fill."""
    with ExitStack() as stack:
        scratch = real.nginx_prefix()
        stack.callback(shutil.rmtree, scratch, ignore_errors=True)
        mariadb = real.MariaDB()
        stack.callback(mariadb.close)
        mariadb.start()
        host = stack.enter_context(TestHost("faults"))
        gearmand = real.Gearmand(host.host_address).start()
        stack.callback(gearmand.stop)
        memcached = real.Memcached().start()
        stack.callback(memcached.stop)
        s3.ensure_gateway()
        gateway = s3.SpareGateway(tmp_path / "rgw").start()
        stack.callback(gateway.stop)
        bucket = s3.new_bucket()
        stack.callback(s3.remove_bucket, bucket)
        prefix = f"f{uuid.uuid4().hex[:8]}/"
        s3.s3_objects(bucket).client.put_bucket_policy(Bucket=bucket, Policy=s3.read_policy(bucket, prefix))
        store = {"MEDIA_STORE": "s3", "S3_ENDPOINT_URL": gateway.endpoint, "S3_BUCKET": bucket, "S3_PREFIX": prefix}
        config = stack_config(
            mariadb.create_database(),
            make_tmpfs("160m", scratch),
            GEARMAN_SERVERS=(gearmand.address,),
            MEMCACHED_SERVERS=(memcached.address,),
            **store,
            **KNOBS,
        )
        system = System(config, Stack(config, gearmand), host, mariadb, memcached, tmp_path, gateway)
        stack.callback(system.close)
        system.start()
        yield system
