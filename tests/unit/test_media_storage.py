"""Temp files a dead process left are found and removed; real files never are."""

import os
import time

from server.media import MediaStore


def test_stale_temp_files_are_swept_and_fresh_ones_kept(tmp_path):
    media = MediaStore(tmp_path)
    rung = media.rendition_dir(1, "HIGH")
    rung.mkdir(parents=True)
    stale, fresh, real = rung / ".000003.mp4.tmp-aa", rung / ".000004.mp4.tmp-bb", rung / "000003.mp4"
    for path in (stale, fresh, real):
        path.write_bytes(b"x")
    os.utime(stale, (time.time() - 600, time.time() - 600))
    assert media.sweep_temps(older_than=300) == 1
    assert media.temp_files() == [fresh] and real.exists()
    assert media.segment_temps(1, 4) == {fresh: (1, fresh.stat().st_mtime_ns)}
    assert media.segment_temps(1, 3) == {}  # a committed file is not a temp
