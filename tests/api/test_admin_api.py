"""The admin API (docs/admin-api.md) on real MariaDB and a private gearmand with no worker, time on a FakeClock."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from server import create_app
from server.core.transcode.ladder import SourceInfo
from server.domain import ingest, lifecycle
from server.domain.eventlog import record
from server.infra.models import Attempt, AttemptOutcome, Event, Segment, SegmentRendition, SegmentState, Video, VideoType, Worker
from server.infra.services import Services
from server.web import eventfeed
from server.web.api import admin
from tests.harness.clock import FakeClock
from tests.harness.services import wait_for
from tests.harness.sse import END, Message, SseClient
from tests.harness.stack import http_server, upload
from tests.harness.tree import tree

T0 = datetime(2026, 1, 1, 12, 0, 0)
VIDEO_ROW = {
    *("id", "title", "type", "status", "created_at", "ended_at", "finished_at", "duration", "segment_count"),
    *("segments_failed", "revision", "thumbnail_url", "storyboard_url", "mpd_url", "m3u8_url", "health"),
    *("visibility", "pinned", "key"),
}
SEGMENT_ROW = {
    *("segment_id", "state", "size", "duration", "uploaded_at", "upload_seconds", "queued_at", "ready_at"),
    *("packaged_at", "failed_at", "latency", "error", "rungs", "attempts"),
}
ATTEMPT_ROW = {"id", "worker", "started_at", "finished_at", "progress", "outcome", "error", "lease_expires_at"}
HEALTH = {
    *("last_segment_age", "stalled", "upload_ratio", "drift", "missing", "missing_count", "duplicates"),
    *("out_of_order", "probe"),
}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def app(make_config, gearmand, clock) -> Iterator[Flask]:  # type: ignore[no-untyped-def]
    config = make_config(GEARMAN_SERVERS=(gearmand.address,), ADMIN_STREAM_SECONDS=30.0, ADMIN_STREAMS=2)
    services = Services.build(config)
    services.clock = clock
    app = create_app(config, services=services)
    yield app
    services.close()


@pytest.fixture
def services(app: Flask) -> Services:
    return app.extensions["team03"]


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def new_video(services: Services, title: str = "v") -> int:
    with services.sessions() as db:
        return ingest.create_video(services, db, title).id


def add_segment(
    services: Services,
    video_id: int,
    k: int,
    *,
    at: float,
    state: SegmentState = SegmentState.PACKAGED,
    duration: float = 3.0,
    took: float | None = 1.0,
    duplicates: int = 0,
    latency: float | None = None,
    info: SourceInfo | None = None,
) -> int:
    """A segment row as if uploaded `at` seconds after T0 (and packaged `latency` seconds later)."""
    with services.sessions() as db:
        video = db.get(Video, video_id)
        assert video is not None
        uploaded = T0 + timedelta(seconds=at)
        segment = Segment(
            video_id=video_id,
            segment_id=k,
            original_extension="mp4",
            size=1000 + k,
            sha256=hashlib.sha256(str(k).encode()).hexdigest(),
            duration_ms=round(duration * 1000),
            uploaded_at=uploaded,
            status=state,
            upload_ms=None if took is None else round(took * 1000),
            duplicates=duplicates,
            attempts=4 if state is SegmentState.FAILED else 0,
            source_info=None if info is None else info.to_json(),
        )
        if state is SegmentState.FAILED:
            segment.failed_at, segment.error = uploaded, "ffmpeg exited with 1"
        if state.encoded:  # what the playlist rules require of an encoded segment
            segment.ready_at, segment.duration_ticks = uploaded + timedelta(seconds=1), round(duration * 90_000)
        if state is SegmentState.PACKAGED:
            segment.start_ticks = round(k * duration * 90_000)
            segment.audio_start_ticks, segment.audio_duration_ticks = round(k * duration * 48_000), round(duration * 48_000)
        if latency is not None:
            segment.packaged_at = uploaded + timedelta(seconds=latency)
        segment.renditions = [SegmentRendition(rendition_id=r.id, status=state, size=10 * r.position) for r in video.renditions]
        db.add(segment)
        db.commit()
        return segment.id


def events(services: Services, after: int = 0) -> list[tuple[str, int | None]]:
    with services.sessions() as db:
        return [(e.kind, e.segment_id) for e in db.scalars(select(Event).where(Event.id > after).order_by(Event.id))]


def newest_event(services: Services) -> int:
    with services.sessions() as db:
        return max(db.scalars(select(Event.id)), default=0)


# -- access -----------------------------------------------------------------------------------------

ROUTES = [
    ("GET", "/api/admin/videos"),
    ("GET", "/api/admin/videos/1"),
    ("PATCH", "/api/admin/videos/1"),
    ("DELETE", "/api/admin/videos/1"),
    ("POST", "/api/admin/videos/1/end"),
    ("POST", "/api/admin/videos/1/segments/0/retry"),
    ("POST", "/api/admin/videos/1/retry"),
    ("GET", "/api/admin/workers"),
    ("POST", "/api/admin/attempts/1/cancel"),
    ("GET", "/api/admin/system"),
    ("GET", "/api/admin/events"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_every_admin_route_needs_an_admin(client: FlaskClient, services: Services, method: str, path: str) -> None:
    new_video(services)
    response = client.open(path, method=method, json={"title": "x"})
    assert response.status_code == 401
    assert response.json is not None and response.json["code"] == "unauthorized" and response.json["message"]
    assert events(services)[-1] == ("video.created", None)  # nothing changed


@pytest.mark.parametrize(("method", "path"), [r for r in ROUTES if "/1" in r[1]])
def test_unknown_ids_are_404(client: FlaskClient, admin_auth: dict[str, str], method: str, path: str) -> None:
    response = client.open(path.replace("/1", "/99"), method=method, json={"title": "x"}, headers=admin_auth)
    assert response.status_code == 404, response.json
    assert response.json is not None and response.json["code"] == "not_found"


# -- videos -----------------------------------------------------------------------------------------


def test_the_video_list_pages_newest_first(client: FlaskClient, services: Services, admin_auth: dict[str, str]) -> None:
    ids = [new_video(services, f"video {i}") for i in range(5)]
    first = client.get("/api/admin/videos?limit=2", headers=admin_auth)
    assert first.status_code == 200 and first.headers["Cache-Control"] == "no-store"
    assert [v["id"] for v in first.json["videos"]] == [ids[4], ids[3]]
    assert first.json["next_before"] == ids[3]
    rest = client.get(f"/api/admin/videos?limit=2&before={ids[3]}", headers=admin_auth).json
    last = client.get(f"/api/admin/videos?limit=2&before={rest['next_before']}", headers=admin_auth).json
    assert [v["id"] for v in rest["videos"] + last["videos"]] == [ids[2], ids[1], ids[0]]
    assert last["next_before"] is None
    row = first.json["videos"][0]
    assert set(row) == VIDEO_ROW
    assert row["created_at"] == "2026-01-01T12:00:00.000000Z"
    assert (row["type"], row["status"], row["segment_count"], row["thumbnail_url"]) == ("LIVE", "EMPTY", -1, None)
    assert row["mpd_url"] == f"/video_files/{ids[4]}/manifest.mpd" and row["m3u8_url"] == f"/video_files/{ids[4]}/master.m3u8"
    assert set(row["health"]) == HEALTH  # live: health, with no upload yet
    assert row["health"]["last_segment_age"] is None and row["health"]["missing"] == []


def test_search_and_filters(client: FlaskClient, services: Services, admin_auth: dict[str, str]) -> None:
    cat, dog, both = new_video(services, "alpha cat"), new_video(services, "beta dog"), new_video(services, "Alpha 100% dog")
    with services.sessions() as db:
        db.get(Video, dog).type = VideoType.VOD  # type: ignore[union-attr]
        db.commit()
    add_segment(services, cat, 0, at=1, state=SegmentState.FAILED)

    def ids(query: str) -> list[int]:
        response = client.get(f"/api/admin/videos?{query}", headers=admin_auth)
        assert response.status_code == 200, response.json
        return [v["id"] for v in response.json["videos"]]

    assert ids("q=alpha") == [both, cat]  # case-insensitive, every word
    assert ids("q=alpha+dog") == [both]
    assert ids("q=100%25") == [both]  # % is a character, not a wildcard
    assert ids("q=_") == []
    assert ids("filter=vod") == [dog]
    assert ids("filter=live") == [both, cat]
    assert ids("filter=failed") == [cat]
    assert ids("filter=failed&q=beta") == []
    vod = client.get("/api/admin/videos?filter=vod", headers=admin_auth).json["videos"][0]
    assert vod["health"] is None  # VOD: no ingest health
    failed = client.get("/api/admin/videos?filter=failed", headers=admin_auth).json["videos"][0]
    assert (failed["segments_failed"], failed["duration"]) == (1, 3.0)


@pytest.mark.parametrize(
    ("query", "field"),
    [("limit=0", "limit"), ("limit=201", "limit"), ("limit=x", "limit"), ("before=-1", "before"), ("filter=all", "filter")],
)
def test_bad_list_parameters_are_named(client: FlaskClient, admin_auth: dict[str, str], query: str, field: str) -> None:
    response = client.get(f"/api/admin/videos?{query}", headers=admin_auth)
    assert response.status_code == 400
    assert response.json["field"] == field and response.json["code"] == "invalid_input"


def test_a_video_in_detail(client: FlaskClient, services: Services, admin_auth: dict[str, str]) -> None:
    video_id = new_video(services)
    add_segment(services, video_id, 1, at=6, latency=2.5)
    add_segment(services, video_id, 0, at=3, latency=2.7)
    add_segment(services, video_id, 2, at=9, state=SegmentState.RECEIVED, took=None)
    with services.sessions() as db:
        claim = lifecycle.start_attempt(services, db, video_id, 2, lifecycle.WorkerRef(None, "host-1"))
    assert isinstance(claim, lifecycle.Claim)
    body = client.get(f"/api/admin/videos/{video_id}", headers=admin_auth).json
    assert set(body) == VIDEO_ROW | {"renditions", "segments"}
    assert [r["name"] for r in body["renditions"]] == ["HIGH", "MEDIUM", "LOW"]
    assert set(body["renditions"][0]) == {"name", "width", "height", "bandwidth"}
    segments = body["segments"]
    assert [s["segment_id"] for s in segments] == [0, 1, 2]
    assert all(set(s) == SEGMENT_ROW for s in segments)
    zero = segments[0]
    assert (zero["state"], zero["size"], zero["duration"], zero["upload_seconds"], zero["latency"]) == (
        "PACKAGED",
        1000,
        3.0,
        1.0,
        2.7,
    )
    assert zero["uploaded_at"] == "2026-01-01T12:00:03.000000Z" and zero["packaged_at"] == "2026-01-01T12:00:05.700000Z"
    assert zero["rungs"] == [{"name": "HIGH", "state": "PACKAGED", "size": 10}, {"name": "MEDIUM", "state": "PACKAGED", "size": 20},
                             {"name": "LOW", "state": "PACKAGED", "size": 30}]  # fmt: skip
    running = segments[2]
    assert (running["state"], running["upload_seconds"], running["latency"]) == ("RUNNING", None, None)
    (attempt,) = running["attempts"]
    assert set(attempt) == ATTEMPT_ROW
    assert (attempt["id"], attempt["worker"], attempt["outcome"], attempt["progress"]) == (claim.attempt_id, "host-1", None, 0.0)
    assert attempt["lease_expires_at"] == "2026-01-01T12:00:30.000000Z"


def test_rename(client: FlaskClient, services: Services, admin_auth: dict[str, str]) -> None:
    video_id = new_video(services, "old")
    before = newest_event(services)
    response = client.patch(f"/api/admin/videos/{video_id}", json={"title": " new "}, headers=admin_auth)
    assert response.status_code == 200
    assert set(response.json) == VIDEO_ROW
    assert (response.json["title"], response.json["revision"]) == ("new", 1)
    assert events(services, before) == [("video.renamed", None)]
    for body in ({"title": ""}, {"title": "x" * 201}, {"name": "x"}, ["x"]):
        bad = client.patch(f"/api/admin/videos/{video_id}", json=body, headers=admin_auth)
        assert bad.status_code == 400 and bad.json["field"] in ("title", "body"), body


def test_delete(client: FlaskClient, services: Services, admin_auth: dict[str, str]) -> None:
    video_id = new_video(services)
    add_segment(services, video_id, 0, at=3)
    services.media.put(services.media.file(video_id, "HIGH", 0, "mp4"), b"encoded")
    response = client.delete(f"/api/admin/videos/{video_id}", headers=admin_auth)
    assert response.status_code == 204
    assert not tree(services).video_dir(video_id).exists()
    assert client.get(f"/api/admin/videos/{video_id}", headers=admin_auth).status_code == 404
    assert events(services)[-1] == ("video.deleted", None)
    assert client.delete(f"/api/admin/videos/{video_id}", headers=admin_auth).status_code == 404


def test_ending_a_stuck_live_video(client: FlaskClient, services: Services, admin_auth: dict[str, str], clock: FakeClock) -> None:
    video_id, empty = new_video(services), new_video(services)
    add_segment(services, video_id, 0, at=3)
    add_segment(services, video_id, 2, at=9, state=SegmentState.QUEUED)
    clock.advance(60)
    response = client.post(f"/api/admin/videos/{video_id}/end", headers=admin_auth)
    assert response.status_code == 200, response.json
    assert set(response.json) == VIDEO_ROW
    assert (response.json["segment_count"], response.json["ended_at"]) == (3, "2026-01-01T12:01:00.000000Z")
    assert response.json["type"] == "LIVE"  # segment 2 is still queued: not over yet
    assert ("video.ended", None) in events(services)
    again = client.post(f"/api/admin/videos/{video_id}/end", headers=admin_auth)
    assert again.status_code == 409 and again.json["code"] == "conflict"
    assert client.post(f"/api/admin/videos/{empty}/end", headers=admin_auth).status_code == 409  # nothing to end at


def test_retrying_a_failed_segment(client: FlaskClient, services: Services, admin_auth: dict[str, str]) -> None:
    video_id = new_video(services)
    add_segment(services, video_id, 0, at=3, state=SegmentState.FAILED)
    add_segment(services, video_id, 1, at=6)
    before = newest_event(services)
    response = client.post(f"/api/admin/videos/{video_id}/segments/0/retry", headers=admin_auth)
    assert response.status_code == 200, response.json
    assert set(response.json) == SEGMENT_ROW
    assert (response.json["state"], response.json["error"], response.json["failed_at"]) == ("QUEUED", None, None)
    assert {r["state"] for r in response.json["rungs"]} == {"QUEUED"}
    # ... and who asked (the audit trail, tests/api/test_admin_doors.py)
    assert events(services, before) == [("segment.received", 0), ("segment.queued", 0), ("video.retried", None)]
    with services.sessions() as db:
        assert db.scalars(select(Segment.attempts).where(Segment.video_id == video_id, Segment.segment_id == 0)).one() == 0
    for k in (0, 1):  # queued now, packaged: not FAILED
        conflict = client.post(f"/api/admin/videos/{video_id}/segments/{k}/retry", headers=admin_auth)
        assert conflict.status_code == 409 and "not FAILED" in conflict.json["message"]
    assert client.post(f"/api/admin/videos/{video_id}/segments/7/retry", headers=admin_auth).status_code == 404


def test_retrying_every_failed_segment_of_a_video(client: FlaskClient, services: Services, admin_auth: dict[str, str]) -> None:
    video_id, other = new_video(services), new_video(services)
    for k in (0, 2):
        add_segment(services, video_id, k, at=3 * k, state=SegmentState.FAILED)
    add_segment(services, video_id, 1, at=3)
    add_segment(services, other, 0, at=3, state=SegmentState.FAILED)
    response = client.post(f"/api/admin/videos/{video_id}/retry", headers=admin_auth)
    assert (response.status_code, response.json) == (200, {"retried": 2})
    assert client.post(f"/api/admin/videos/{video_id}/retry", headers=admin_auth).json == {"retried": 0}
    with services.sessions() as db:
        states = dict(db.execute(select(Segment.video_id, Segment.status).where(Segment.segment_id == 0)).all())
    assert states == {video_id: SegmentState.QUEUED, other: SegmentState.FAILED}


def test_cancelling_a_running_attempt(
    client: FlaskClient, services: Services, admin_auth: dict[str, str], clock: FakeClock
) -> None:
    video_id = new_video(services)
    add_segment(services, video_id, 0, at=3, state=SegmentState.QUEUED, took=None)
    with services.sessions() as db:
        db.add(Worker(name="host-1", concurrency=1, started_at=T0, last_heartbeat_at=T0))
        db.commit()
        worker_id = db.scalars(select(Worker.id)).one()
        claim = lifecycle.start_attempt(services, db, video_id, 0, lifecycle.WorkerRef(worker_id, "host-1"))
    assert isinstance(claim, lifecycle.Claim)
    clock.advance(5)
    before = newest_event(services)
    response = client.post(f"/api/admin/attempts/{claim.attempt_id}/cancel", headers=admin_auth)
    assert response.status_code == 200, response.json
    assert set(response.json) == ATTEMPT_ROW | {"video_id", "segment_id"}
    assert (response.json["outcome"], response.json["finished_at"]) == ("cancelled", "2026-01-01T12:00:05.000000Z")
    assert (response.json["video_id"], response.json["segment_id"]) == (video_id, 0)
    # One attempt event; the segment is retried now (RECEIVED, then handed to the queue again).
    assert events(services, before) == [("attempt.cancelled", 0), ("segment.received", 0), ("segment.queued", 0)]
    with services.sessions() as db:
        segment = db.scalars(select(Segment).where(Segment.video_id == video_id)).one()
        assert (segment.status, segment.attempts, segment.retry_at) == (SegmentState.QUEUED, 0, T0 + timedelta(seconds=5))
        assert db.get(Worker, worker_id).attempts_failed == 0  # type: ignore[union-attr]  # the operator's act, not the worker's
        with pytest.raises(lifecycle.AttemptGone):  # the worker's next heartbeat: it stops ffmpeg
            lifecycle.renew_lease(services, db, claim.attempt_id, 0.5)
    again = client.post(f"/api/admin/attempts/{claim.attempt_id}/cancel", headers=admin_auth)
    assert again.status_code == 409 and "not running" in again.json["message"]


def test_health_numbers_of_a_live_video(
    client: FlaskClient, services: Services, admin_auth: dict[str, str], clock: FakeClock
) -> None:
    video_id = new_video(services)
    info = SourceInfo(1080, 720, 3.0, 30.0, True, "h264", 1.0)
    # Arrival order 0, 1, 3, 2 (2 came late), 5; 4 never came; 1 was sent twice; the last upload took 2.8 s of 3.
    add_segment(services, video_id, 0, at=3, took=0.5)
    add_segment(services, video_id, 1, at=6, took=0.6, duplicates=1)
    add_segment(services, video_id, 3, at=12, took=1.2)
    add_segment(services, video_id, 2, at=13, took=3.3)
    add_segment(services, video_id, 5, at=20, took=2.8, info=info)
    clock.advance(29)
    health = client.get(f"/api/admin/videos/{video_id}", headers=admin_auth).json["health"]
    assert health == {
        "last_segment_age": 9.0,
        "stalled": False,
        "upload_ratio": {"last": 0.933, "max": 1.1, "level": "warn"},
        "drift": 5.0,  # 17 s from the first upload to the last, 12 s of media received after the first
        "missing": [4],
        "missing_count": 1,
        "duplicates": 1,
        "out_of_order": 1,
        "probe": {"width": 1080, "height": 720, "fps": 30.0, "keyframe_interval": 1.0, "audio": True},
    }
    clock.advance(0.01)  # more than 3 segment durations since the last upload
    assert client.get(f"/api/admin/videos/{video_id}", headers=admin_auth).json["health"]["stalled"] is True


def test_uploads_measure_their_time_and_count_repeats(
    client: FlaskClient, services: Services, admin_auth: dict[str, str], segment_files: list[Path]
) -> None:
    video_id = new_video(services)
    data = segment_files[0].read_bytes()
    assert upload(client, video_id, 0, data).status_code == 201
    with services.sessions() as db:
        revision = db.get(Video, video_id).revision  # type: ignore[union-attr]
    before = newest_event(services)
    assert upload(client, video_id, 0, data).status_code == 201  # the same bytes again: a lost answer
    assert upload(client, video_id, 0, data).status_code == 201
    with services.sessions() as db:
        segment = db.scalars(select(Segment).where(Segment.video_id == video_id)).one()
        assert segment.duplicates == 2
        assert segment.upload_ms is not None and 0 <= segment.upload_ms < 30_000
        assert db.get(Video, video_id).revision == revision  # type: ignore[union-attr]  # not a state change
        info = SourceInfo.from_json(segment.source_info or "")
    assert events(services, before) == []
    assert info.keyframe_interval == 1.0  # the test segments have a keyframe every 30 frames at 30 fps
    row = client.get(f"/api/admin/videos/{video_id}", headers=admin_auth).json
    assert row["health"]["duplicates"] == 2 and row["segments"][0]["upload_seconds"] == segment.upload_ms / 1000


# -- workers ----------------------------------------------------------------------------------------


def test_workers_and_the_queue(
    client: FlaskClient, services: Services, admin_auth: dict[str, str], clock: FakeClock, gearmand
) -> None:  # type: ignore[no-untyped-def]
    video_id = new_video(services)
    add_segment(services, video_id, 0, at=0, state=SegmentState.QUEUED)
    clock.advance(600)
    now = clock.now()
    with services.sessions() as db:
        alive = Worker(name="alive", host="h1", version="1", concurrency=2, functions="team03.transcode_segment,team03.package_video",
                       started_at=now - timedelta(hours=2), last_heartbeat_at=now - timedelta(seconds=1), attempts_ok=7)  # fmt: skip
        silent = Worker(name="silent", concurrency=1, started_at=now, last_heartbeat_at=now - timedelta(seconds=91))
        stopped = Worker(name="stopped", concurrency=1, started_at=now, last_heartbeat_at=now, stopped_at=now)
        db.add_all([alive, silent, stopped])
        db.commit()
        segment_pk = db.scalars(select(Segment.id)).one()
        # Two encodes done within the last 10 minutes (3 s of media in 1.5 s each), one failure an hour ago.
        for minutes_ago, outcome in (
            (2, AttemptOutcome.OK),
            (4, AttemptOutcome.OK),
            (50, AttemptOutcome.FAILED),
            (70, AttemptOutcome.FAILED),
        ):
            finished = now - timedelta(minutes=minutes_ago)
            db.add(Attempt(segment_pk=segment_pk, video_id=video_id, worker_id=alive.id, worker_name="alive", outcome=outcome,
                           started_at=finished - timedelta(seconds=1.5), finished_at=finished, lease_expires_at=finished))  # fmt: skip
        db.commit()
        claim = lifecycle.start_attempt(services, db, video_id, 0, lifecycle.WorkerRef(alive.id, "alive"))
    assert isinstance(claim, lifecycle.Claim)
    body = client.get("/api/admin/workers", headers=admin_auth).json
    rows = {w["name"]: w for w in body["workers"]}
    assert [rows[n]["alive"] for n in ("alive", "silent", "stopped")] == [True, False, False]
    row = rows["alive"]
    assert row["functions"] == ["team03.transcode_segment", "team03.package_video"]
    assert (row["heartbeat_age"], row["segments_per_minute"], row["x_realtime"], row["errors_last_hour"]) == (1.0, 0.2, 2.0, 1)
    assert (row["attempts_ok"], row["concurrency"]) == (7, 2)
    (running,) = row["attempts"]
    assert set(running) == ATTEMPT_ROW | {"video_id", "segment_id"}
    assert (running["id"], running["video_id"], running["segment_id"]) == (claim.attempt_id, video_id, 0)
    assert rows["silent"]["heartbeat_age"] == 91.0 and rows["silent"]["x_realtime"] is None
    (server,) = body["queue"]["servers"]
    assert (server["server"], server["ok"], server["error"]) == (gearmand.address, True, None)
    assert set(body["queue"]["total"]) >= {"team03.transcode_segment", "team03.package_video"}
    assert body["queue"]["total"]["team03.transcode_segment"]["workers"] == 0  # no worker runs in this test
    assert body["banner"] is None
    # gearmand is asked at most every 2 s: a stopped one is still reported up until the cached answer expires.
    gearmand.stop()
    assert client.get("/api/admin/workers", headers=admin_auth).json["queue"]["servers"][0]["ok"] is True
    wait_for(
        lambda: not client.get("/api/admin/workers", headers=admin_auth).json["queue"]["servers"][0]["ok"],
        10,
        "gearmand reported down",
    )


def test_banner_when_no_worker_is_alive_or_the_queue_grows(
    services: Services, client: FlaskClient, admin_auth: dict[str, str]
) -> None:
    from server.web.admin_views import banner

    alive = [{"alive": True, "concurrency": 2}]
    assert banner([{"alive": False, "concurrency": 1}], 0, 0) == "no worker is alive"
    assert banner([], 3, 0) == "no worker is alive"
    assert banner([], 0, 0) is None
    assert banner(alive, 20, 2) is None
    assert banner(alive, 21, 2) == "the queue is growing: 21 segments waiting"
    with services.sessions() as db:
        db.add(Worker(name="gone", concurrency=1, started_at=T0, last_heartbeat_at=T0 - timedelta(minutes=5)))
        db.commit()
    assert client.get("/api/admin/workers", headers=admin_auth).json["banner"] == "no worker is alive"


# -- system -----------------------------------------------------------------------------------------


def test_system(client: FlaskClient, services: Services, admin_auth: dict[str, str], clock: FakeClock, gearmand) -> None:  # type: ignore[no-untyped-def]
    video_id = new_video(services)
    add_segment(services, video_id, 0, at=0, latency=2.0)
    add_segment(services, video_id, 1, at=3, latency=4.0)
    add_segment(services, video_id, 2, at=70, latency=3.0)
    segment_pk = add_segment(services, video_id, 3, at=75, state=SegmentState.FAILED)
    with services.sessions() as db:
        for outcome in (AttemptOutcome.FAILED, AttemptOutcome.EXPIRED, AttemptOutcome.OK):
            done = T0 + timedelta(seconds=80)
            db.add(Attempt(segment_pk=segment_pk, video_id=video_id, worker_name="w", outcome=outcome, started_at=done,
                           finished_at=done, lease_expires_at=done))  # fmt: skip
        db.commit()
    clock.advance(90)  # 12:01:30
    body = client.get("/api/admin/system", headers=admin_auth).json
    assert set(body) == {"disk", "services", "failures_last_hour", "series"}
    assert body["disk"]["path_hint"] == "MEDIA_ROOT" and body["disk"]["total"] >= body["disk"]["free"] > 0
    assert body["services"] == {
        "database": {"ok": True},
        "queue": {"ok": True, "kind": "gearman"},
        "cache": {"ok": True, "kind": "local"},
    }
    assert body["failures_last_hour"] == 2
    series = body["series"]
    assert series["minutes"][-2:] == ["2026-01-01T12:00:00.000000Z", "2026-01-01T12:01:00.000000Z"]
    assert series["segments_per_minute"][-2:] == [2, 1]
    assert (series["latency_p50"][-2], series["latency_p95"][-2], series["latency_p50"][-1]) == (2.0, 4.0, 3.0)
    assert all(len(v) == 60 for v in series.values())


# -- events -----------------------------------------------------------------------------------------


@pytest.fixture
def base_url(app: Flask) -> Iterator[str]:
    with http_server(app) as url:
        yield url


def rename(services: Services, video_id: int, title: str) -> None:
    with services.sessions() as db:
        ingest.rename_video(services, db, video_id, title, by="test")


def test_the_stream_starts_after_the_newest_event_and_carries_new_ones(
    base_url: str, services: Services, admin_auth: dict[str, str]
) -> None:
    video_id = new_video(services, "old")
    stream = SseClient(f"{base_url}/api/admin/events", admin_auth)
    try:
        assert stream.status == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        assert stream.headers["cache-control"] == "no-store" and stream.headers["x-accel-buffering"] == "no"
        rename(services, video_id, "new")
        (message,) = stream.events(1, timeout=5)  # not video.created: nothing old is replayed
        assert (message.event, message.id) == ("video.renamed", newest_event(services))
        assert message.data == {"id": message.id, "at": "2026-01-01T12:00:00.000000Z", "kind": "video.renamed",
                                "video_id": video_id, "segment_id": None, "worker_id": None, "data": {"title": "new", "by": "test"}}  # fmt: skip
    finally:
        stream.close()


def test_resuming_loses_and_repeats_nothing(base_url: str, services: Services, admin_auth: dict[str, str]) -> None:
    video_id = new_video(services)
    start = newest_event(services)
    seen: list[Message] = []
    stream = SseClient(f"{base_url}/api/admin/events?after={start}", admin_auth)
    for i in range(5):
        rename(services, video_id, f"a{i}")
    seen += stream.events(3, timeout=5)
    stream.close()  # hung up mid-way: two events were sent or are on their way, unread
    for i in range(4):
        rename(services, video_id, f"b{i}")  # written while no stream is open
    resumed = SseClient(f"{base_url}/api/admin/events?after={start}", {**admin_auth, "Last-Event-ID": str(seen[-1].id)})
    try:
        for i in range(3):
            rename(services, video_id, f"c{i}")  # written while the resumed stream is open
        seen += resumed.events(9, timeout=5)
        with services.sessions() as db:
            written = list(db.scalars(select(Event.id).where(Event.id > start).order_by(Event.id)))
        assert [m.id for m in seen] == written  # every one, once, in order
        assert [m.data["data"]["title"] for m in seen] == [*(f"a{i}" for i in range(5)), *(f"b{i}" for i in range(4)),
                                                           *(f"c{i}" for i in range(3))]  # fmt: skip
    finally:
        resumed.close()


def test_a_committed_event_behind_a_later_one_is_not_skipped(
    base_url: str, services: Services, admin_auth: dict[str, str]
) -> None:
    video_id = new_video(services)
    stream = SseClient(f"{base_url}/api/admin/events", admin_auth)
    slow = services.sessions()  # a transaction that takes its event's id now and commits later
    try:
        held = record(slow, "video.renamed", at=T0, video_id=video_id, title="slow")
        slow.flush()
        rename(services, video_id, "fast")
        assert newest_event(services) > held.id  # committed first, with the higher id
        # Three polls see "fast" committed behind the open "slow": the stream holds it back, sends nothing.
        with pytest.raises(AssertionError, match="no event-stream message"):
            stream.next(timeout=3 * eventfeed.POLL_SECONDS)
        slow.commit()
        messages = stream.events(2, timeout=5)
        assert [m.data["data"]["title"] for m in messages] == ["slow", "fast"]
    finally:
        slow.close()  # an open transaction would hold the events table's locks past the test
        stream.close()


def test_keep_alive_and_the_end_of_a_stream(
    monkeypatch: pytest.MonkeyPatch,
    make_config,
    gearmand,
    admin_auth: dict[str, str],  # type: ignore[no-untyped-def]
) -> None:
    monkeypatch.setattr(admin, "KEEPALIVE_SECONDS", 0.3)
    app = create_app(make_config(GEARMAN_SERVERS=(gearmand.address,), ADMIN_STREAM_SECONDS=1.5))
    try:
        with http_server(app) as url:
            stream = SseClient(f"{url}/api/admin/events", admin_auth)
            comments, ended = 0, False
            try:
                while not ended:
                    message = stream.next(timeout=5)
                    ended = message == END
                    comments += isinstance(message, Message) and message.comment == "keep-alive"
                assert comments >= 2  # at 0.3 s, 0.6 s, ... of a 1.5 s stream
            finally:
                stream.close()
    finally:
        app.extensions["team03"].close()


def test_streams_per_process_are_capped(base_url: str, services: Services, admin_auth: dict[str, str]) -> None:
    first, second = (SseClient(f"{base_url}/api/admin/events", admin_auth) for _ in range(2))  # ADMIN_STREAMS=2
    third = SseClient(f"{base_url}/api/admin/events", admin_auth)
    try:
        assert (first.status, second.status, third.status) == (200, 200, 503)
        assert third.headers["retry-after"] == "5"
        assert b"too_many_streams" in third.response.read()
    finally:
        third.close()
        second.close()
    # The slot comes back when a client hangs up, noticed at the stream's next writes (events here).
    video_id = new_video(services)

    def released() -> bool:
        rename(services, video_id, "ping")
        return services.streams.held < 2

    wait_for(released, 10, "the closed stream's slot released")
    fourth = SseClient(f"{base_url}/api/admin/events", admin_auth)
    try:
        assert fourth.status == 200
    finally:
        fourth.close()
        first.close()


def test_open_streams_share_one_reader_of_the_log(make_config, gearmand, admin_auth: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    """However many streams are open, one thread of the process reads the event log for them all (server/web/eventfeed.py)."""
    tabs = 10
    services = Services.build(make_config(GEARMAN_SERVERS=(gearmand.address,), ADMIN_STREAMS=tabs))
    readers: list[int] = []  # the thread of each read of the log after an id (a stream's start reads the newest id)

    def count(_conn, _cursor, statement: str, *_args) -> None:  # type: ignore[no-untyped-def]
        if "FROM events WHERE events.id >" in " ".join(statement.split()):
            readers.append(threading.get_ident())

    sqlalchemy.event.listen(services.engine, "before_cursor_execute", count)
    try:
        with http_server(create_app(services.config, services=services)) as url:
            streams = [SseClient(f"{url}/api/admin/events", admin_auth) for _ in range(tabs)]
            try:
                video_id = new_video(services)
                for stream in streams:  # every stream follows the log
                    (message,) = stream.events(1, timeout=5)
                    assert (message.event, message.data["video_id"]) == ("video.created", video_id)  # type: ignore[index]
                readers.clear()
                wait_for(lambda: len(readers) >= 6, 30, "6 reads of the log")  # each stream would read every 0.5 s
                assert len(set(readers)) == 1, f"{len(set(readers))} threads read the log for {tabs} streams"
            finally:
                for stream in streams:
                    stream.close()
    finally:
        services.close()


@pytest.mark.parametrize("query", ["after=x", "after=-1", "after=99999999999999999999"])
def test_a_bad_resume_point_is_400(client: FlaskClient, admin_auth: dict[str, str], query: str) -> None:
    response = client.get(f"/api/admin/events?{query}", headers=admin_auth)
    assert response.status_code == 400 and response.json["field"] == "after"
    response = client.get("/api/admin/events", headers={**admin_auth, "Last-Event-ID": "abc"})
    assert response.status_code == 400 and response.json["field"] == "Last-Event-ID"
