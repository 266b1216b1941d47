"""A full disk answers 507 and leaves neither a partial file nor a row (on a real, tiny tmpfs)."""

from __future__ import annotations

import pytest

from server import create_app
from server.core.errors import InsufficientStorage
from server.store import UploadFile
from tests.harness.services import fill_disk
from tests.harness.stack import upload
from tests.harness.tree import tree


def test_disk_full_is_507_and_nothing_is_half_written(make_config, gearmand, tiny_disk, segment_files):
    app = create_app(make_config(GEARMAN_SERVERS=(gearmand.address,), MEDIA_ROOT=tiny_disk))
    try:
        client = app.test_client()
        vid = client.post("/videos", json={"title": "full"}).json["video_id"]
        assert upload(client, vid, 0, segment_files[0].read_bytes()).status_code == 201  # ~2.6 MB of 4
        response = upload(client, vid, 1, segment_files[1].read_bytes())
        assert response.status_code == 507
        assert response.json["code"] == "insufficient_storage"
        assert "disk is full" in response.json["message"]
        assert [s["segment_id"] for s in client.get(f"/video_segment/{vid}").json] == [0]
        assert tree(app.extensions["team03"]).temp_files() == []
        stored = sorted(p.name for p in (tiny_disk / "videos" / str(vid) / "originals").iterdir())
        assert stored == ["000000.mp4"]
    finally:
        app.extensions["team03"].close()


def test_an_upload_cut_short_by_a_full_disk_leaves_no_temp_file(tiny_disk):
    """Closing the temp file flushes what the full disk refused, which fails again: the file is deleted anyway."""
    received = UploadFile(tiny_disk / "originals", 64 * 1024 * 1024)
    filler = fill_disk(tiny_disk)
    try:
        with pytest.raises(InsufficientStorage):
            for _ in range(100):  # the form parser's small chunks: some stay in the file's buffer
                received.write(b"x" * 1000)
        received.discard()
        assert list((tiny_disk / "originals").iterdir()) == []
    finally:
        filler.unlink()


def test_a_full_disk_found_when_the_form_parser_seeks_is_507_not_500(tiny_disk):
    """Werkzeug's parser writes small parts into Python's buffer, then seeks: the flush is where ENOSPC appears."""
    received = UploadFile(tiny_disk / "originals", 64 * 1024 * 1024)
    filler = fill_disk(tiny_disk)
    try:
        received.write(b"x" * 100)  # buffered: nothing reaches the disk yet
        with pytest.raises(InsufficientStorage):
            received.seek(0)
    finally:
        received.discard()
        filler.unlink()
    assert list((tiny_disk / "originals").iterdir()) == []
