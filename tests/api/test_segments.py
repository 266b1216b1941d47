"""POST /video_segment/<id> as the recorder sends it: durability, idempotence, and every refusal."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from sqlalchemy import create_engine, func, select, update
from sqlalchemy.orm import Session

from server.core.jobs import TRANSCODE_SEGMENT
from server.infra.models import Segment, SegmentState
from server.infra.queue import queue_status
from tests.harness.android import SEGMENT_KEYS
from tests.harness.stack import upload
from tests.harness.tree import tree


def _queued(gearmand) -> int:  # type: ignore[no-untyped-def]
    return queue_status((gearmand.address,)).total(TRANSCODE_SEGMENT)["queued"]


def _rows(database_url: str) -> int:
    engine = create_engine(database_url)
    with Session(engine) as session:
        count = session.scalar(select(func.count()).select_from(Segment)) or 0
    engine.dispose()
    return count


def _files(app, video_id: int) -> list[str]:  # type: ignore[no-untyped-def]
    root = tree(app.extensions["team03"]).video_dir(video_id)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_upload_stores_bytes_durably_and_answers_the_segment(client, app, video_id, segment_files):
    data = segment_files[0].read_bytes()
    response = upload(client, video_id, 0, data)
    assert response.status_code == 201, response.json
    body = response.json
    assert set(body) == SEGMENT_KEYS
    assert (body["video_id"], body["segment_id"], body["original_extension"]) == (video_id, 0, "mp4")
    assert body["original_path"] == "000000.mp4"  # no server path revealed
    assert (body["media_mpd"], body["media_m3u8"]) == ("000000.mp4", "000000.ts")
    assert body["status"] == "NIL"
    assert [body[f"repr_{i}_status"] for i in (1, 2, 3)] == ["NIL"] * 3
    stored = tree(app.extensions["team03"]).original(video_id, 0, "mp4")
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == hashlib.sha256(data).hexdigest()
    assert _files(app, video_id) == ["originals/000000.mp4"]
    video = client.get(f"/video/{video_id}").json
    assert video["status"] == "UPLOADING"
    assert client.get(f"/video_segment/{video_id}/0").json == body


def test_duration_is_probed_and_stored(client, video_id, segment_files, database_url):
    upload(client, video_id, 1, segment_files[1].read_bytes())
    engine = create_engine(database_url)
    with Session(engine) as session:
        segment = session.scalars(select(Segment)).one()
        assert abs(segment.duration_ms - 2900) <= 40
        assert segment.size == segment_files[1].stat().st_size
    engine.dispose()


def test_one_job_per_new_segment_and_none_on_a_retry(client, video_id, segment_files, gearmand):
    data = [p.read_bytes() for p in segment_files]
    for segment_id in (2, 0, 3, 1):  # out of order, as the recorder's retry queue delivers them
        assert upload(client, video_id, segment_id, data[segment_id]).status_code == 201
    assert _queued(gearmand) == 4
    again = upload(client, video_id, 2, data[2])  # a retry after a lost response
    assert again.status_code == 201
    assert again.json["segment_id"] == 2
    assert _queued(gearmand) == 4
    listed = client.get(f"/video_segment/{video_id}").json
    assert [s["segment_id"] for s in listed] == [0, 1, 2, 3]
    assert all(set(s) == SEGMENT_KEYS for s in listed)


def test_different_bytes_for_a_stored_segment_conflict(client, app, video_id, segment_files, gearmand):
    first = segment_files[0].read_bytes()
    upload(client, video_id, 0, first)
    response = upload(client, video_id, 0, segment_files[1].read_bytes())
    assert response.status_code == 409
    assert response.json["code"] == "conflict"
    stored = tree(app.extensions["team03"]).original(video_id, 0, "mp4")
    assert stored.read_bytes() == first  # the original survives
    assert _queued(gearmand) == 1
    assert _files(app, video_id) == ["originals/000000.mp4"]


def test_segment_after_the_end_conflicts_and_end_before_last_segments_is_fine(client, video_id, segment_files):
    data = [p.read_bytes() for p in segment_files]
    upload(client, video_id, 0, data[0])
    assert client.post(f"/video_end/{video_id}", data={"last_segment_id": "2"}).status_code == 200
    assert upload(client, video_id, 2, data[2]).status_code == 201  # after the end signal, still in range
    assert upload(client, video_id, 1, data[1]).status_code == 201
    response = upload(client, video_id, 3, data[3])
    assert response.status_code == 409
    assert "last" in response.json["message"]


def test_bad_uploads_store_nothing(client, app, video_id, segment_files, gearmand, database_url):
    good = segment_files[0].read_bytes()
    cases = [
        ("-1", good, "mp4", 400, "segment_id"),
        ("abc", good, "mp4", 400, "segment_id"),
        ("1.5", good, "mp4", 400, "segment_id"),
        ("0", good, "exe", 400, "original_extension"),
        ("0", good, "../mp4", 400, "original_extension"),
        ("0", good, None, 400, "original_extension"),
        ("0", None, "mp4", 400, "data"),
        ("0", b"", "mp4", 400, "data"),
        ("0", b"this is not a video at all" * 100, "mp4", 422, None),
    ]
    for segment_id, data, ext, status, field in cases:
        response = upload(client, video_id, segment_id, data, ext)
        assert response.status_code == status, (segment_id, ext, response.json)
        assert response.json["message"]
        if field:
            assert response.json["field"] == field
    assert _rows(database_url) == 0
    assert _queued(gearmand) == 0
    assert _files(app, video_id) == []


def test_audio_only_upload_is_unprocessable(client, app, video_id, tmp_path, database_url):
    import subprocess

    audio = tmp_path / "audio.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=duration=1", "-c:a", "aac", str(audio)], check=True)
    response = upload(client, video_id, 0, audio.read_bytes())
    assert response.status_code == 422
    assert "video" in response.json["message"]
    assert _rows(database_url) == 0
    assert _files(app, video_id) == []


def test_unknown_video_is_404_before_anything_is_stored(client, app, segment_files):
    response = upload(client, 4242, 0, segment_files[0].read_bytes())
    assert response.status_code == 404
    assert not tree(app.extensions["team03"]).video_dir(4242).exists()


def test_too_large_is_413_and_leaves_no_temp_file(client, app, video_id):
    big = b"\0" * (8 * 1024 * 1024 + 1)  # MAX_SEGMENT_BYTES is 8 MiB in these tests
    response = upload(client, video_id, 0, big)
    assert response.status_code == 413
    assert response.json["code"] == "payload_too_large"
    assert _files(app, video_id) == []
    assert tree(app.extensions["team03"]).temp_files() == []


def test_unknown_segment_is_404(client, video_id):
    assert client.get(f"/video_segment/{video_id}/7").status_code == 404
    assert client.get("/video_segment/999").status_code == 404


def test_a_failed_segment_is_replaced_by_new_bytes(client, app, video_id, segment_files, database_url):
    first, second = segment_files[0].read_bytes(), segment_files[1].read_bytes()
    upload(client, video_id, 0, first)
    engine = create_engine(database_url)
    with Session(engine) as session:  # its transcode failed for good
        failed = {"status": SegmentState.FAILED, "failed_at": datetime.now(UTC).replace(tzinfo=None)}  # as lifecycle writes it
        session.execute(update(Segment).values(**failed, attempts=4, error="FFmpegError: boom"))
        session.commit()
    response = upload(client, video_id, 0, second)
    assert response.status_code == 201
    assert response.json["status"] == "NIL" and response.json["repr_1_status"] == "NIL"
    with Session(engine) as session:
        segment = session.scalars(select(Segment)).one()
        assert (segment.attempts, segment.error, segment.sha256) == (0, None, hashlib.sha256(second).hexdigest())
        assert segment.queued_at is not None  # handed to gearmand again
    engine.dispose()
    assert tree(app.extensions["team03"]).original(video_id, 0, "mp4").read_bytes() == second
    assert _files(app, video_id) == ["originals/000000.mp4"]


def test_a_segment_id_far_past_the_highest_stored_is_refused_and_stores_nothing(
    client, app, video_id, segment_files, database_url
):
    # One anonymous upload of segment 999999 used to end someone else's live stream (issue 15 item 1).
    ahead = app.extensions["team03"].config.MAX_SEGMENT_AHEAD
    data = segment_files[0].read_bytes()
    refused = upload(client, video_id, ahead + 1, data)  # nothing stored yet: the window counts from 0
    assert refused.status_code == 409, refused.json
    assert refused.json["field"] == "segment_id" and str(ahead) in refused.json["message"]
    assert _rows(database_url) == 0 and _files(app, video_id) == []
    assert upload(client, video_id, ahead, data).status_code == 201  # the window's edge is accepted
    far = upload(client, video_id, 2 * ahead + 1, segment_files[1].read_bytes())
    assert far.status_code == 409 and far.json["field"] == "segment_id"
    assert _rows(database_url) == 1 and _files(app, video_id) == [f"originals/{ahead:06d}.mp4"]
    assert upload(client, video_id, 2 * ahead, segment_files[1].read_bytes()).status_code == 201
