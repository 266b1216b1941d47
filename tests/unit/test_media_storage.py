"""Temp files a dead process left are found and removed; real files never are."""

import os
import time

from server.store import MediaStore


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


def test_attempt_staging_directories_are_listed_by_video_and_attempt(tmp_path):
    media = MediaStore(tmp_path)
    staged = media.attempt_dir(7, 42)
    staged.mkdir(parents=True)
    (media.video_dir(7) / "attempts" / "not-an-attempt").mkdir()
    assert media.attempt_dirs() == [(7, 42, staged)]
