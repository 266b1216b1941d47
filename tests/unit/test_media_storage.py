"""Temp files a dead process left are found; real files never are."""

from server.store import MediaStore


def test_temp_files_lists_what_a_writer_left_and_never_a_real_file(tmp_path):
    # The reaper deletes those of them untouched long enough (server/ops/purge.py stale_temps; test_cli_stream).
    media = MediaStore(tmp_path)
    rung = media.rendition_dir(1, "HIGH")
    rung.mkdir(parents=True)
    left, other, real = rung / ".000003.mp4.tmp-aa", rung / ".000004.mp4.tmp-bb", rung / "000003.mp4"
    for path in (left, other, real):
        path.write_bytes(b"x")
    assert sorted(media.temp_files()) == [left, other]


def test_attempt_staging_directories_are_listed_by_video_and_attempt(tmp_path):
    media = MediaStore(tmp_path)
    staged = media.attempt_dir(7, 42)
    staged.mkdir(parents=True)
    (media.video_dir(7) / "attempts" / "not-an-attempt").mkdir()
    assert media.attempt_dirs() == [(7, 42, staged)]
