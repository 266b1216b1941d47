"""A full disk answers 507 and leaves neither a partial file nor a row (on a real, tiny tmpfs)."""

from __future__ import annotations

from server import create_app
from tests.harness.stack import upload


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
        assert app.extensions["team03"].media.temp_files() == []
        stored = sorted(p.name for p in (tiny_disk / "videos" / str(vid) / "originals").iterdir())
        assert stored == ["000000.mp4"]
    finally:
        app.extensions["team03"].close()
