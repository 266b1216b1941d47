"""Temp files a dead process left are found; real files never are; staged attempts are listed by their keys."""

from server.store import MediaStore
from server.store.objects import LocalObjects


def test_temp_files_lists_what_a_writer_left_and_never_a_real_file(tmp_path):
    # The reaper deletes those of them untouched long enough (server/ops/purge.py stale_temps; test_cli_stream).
    media = MediaStore(LocalObjects(tmp_path), tmp_path)
    rung = tmp_path / "videos" / "1" / "HIGH"
    rung.mkdir(parents=True)
    left, other, real = rung / ".000003.mp4.tmp-aa", rung / ".000004.mp4.tmp-bb", rung / "000003.mp4"
    for path in (left, other, real):
        path.write_bytes(b"x")
    upload = media.scratch("uploads") / ".upload-0a1b2c"  # a request that died mid-body
    upload.write_bytes(b"half")
    assert sorted(media.temp_files()) == sorted([left, other, upload])
    assert sorted(media.temp_files([1])) == sorted([left, other, upload])  # scratch is searched every time
    assert media.temp_files([2]) == [upload]


def test_staged_attempts_are_listed_by_video_and_attempt(tmp_path):
    media = MediaStore(LocalObjects(tmp_path), tmp_path)
    media.put(media.attempt_output(7, 42, "HIGH.mp4"), b"staged")
    media.put("videos/7/attempts/not-an-attempt/HIGH.mp4", b"stray")
    assert media.attempts() == [(7, 42)]
    assert media.attempts([7, 8]) == [(7, 42)]
    media.remove_attempt(7, 42)
    assert media.attempts() == [] and not (tmp_path / "videos" / "7" / "attempts" / "42").exists()
