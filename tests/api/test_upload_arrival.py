"""A segment arrives when its upload request began, not when its probe let it commit (issue 15 item 12).

Under a burst ffprobe waited 13 s for the CPU; the skip rule read the commit time, so a segment sent in
time was skipped from the live list for good. Real MariaDB and ffprobe; time on a FakeClock. The commit
is held back by the test holding the video's row lock, as a queued probe would hold it back.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update

from server import create_app
from server.core.clock import epoch
from server.domain.publishing import snapshot
from server.infra.models import Segment, SegmentArrival, SegmentState, Video
from server.infra.services import Services
from tests.harness.android import new_video_body
from tests.harness.clock import FakeClock
from tests.harness.services import wait_for
from tests.harness.stack import upload

T0 = datetime(2026, 1, 1, 12, 0, 0)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def services(make_config, gearmand, clock) -> Iterator[Services]:  # type: ignore[no-untyped-def]
    services = Services.build(make_config(GEARMAN_SERVERS=(gearmand.address,)))
    services.clock = clock
    yield services
    services.close()


@pytest.fixture
def client(services: Services) -> FlaskClient:
    app: Flask = create_app(services.config, services=services)
    return app.test_client()


def _packaged(services: Services, video_id: int, k: int, at: datetime) -> None:
    """Mark stored segment k encoded and packaged at `at`, at its nominal place on the timeline."""
    with services.sessions() as db:
        db.execute(
            update(Segment)
            .where(Segment.video_id == video_id, Segment.segment_id == k)
            .values(status=SegmentState.PACKAGED, ready_at=at, packaged_at=at, start_ticks=k * 270_000, duration_ticks=270_000)
        )
        db.commit()


def _listed(services: Services, video_id: int) -> list[int]:
    """The ids players are given now (the publisher's rule, on a fresh read)."""
    with services.sessions() as db:
        snap = snapshot(db, video_id, services.config.MAX_SEGMENT_AHEAD)
        return [p.segment_id for p in snap.published(services.clock.time(), services.config.GAP_TIMEOUT)]


def _arrivals(services: Services, video_id: int) -> list[tuple[int, datetime]]:
    with services.sessions() as db:
        rows = db.scalars(select(SegmentArrival).where(SegmentArrival.video_id == video_id))
        return [(a.segment_id, a.started_at) for a in rows]


def test_a_segment_whose_commit_waits_counts_from_its_request_start(client, services, clock, segment_files):
    video_id = client.post("/videos", json=new_video_body("burst")).json["video_id"]
    for k in (0, 2):
        assert upload(client, video_id, k, segment_files[k].read_bytes()).status_code == 201
        _packaged(services, video_id, k, T0)
    started = clock.advance(1)
    answers: list[int] = []
    with services.sessions() as held:  # holds the commit back, as 13 s in ffprobe's queue did
        held.execute(select(Video.id).where(Video.id == video_id).with_for_update())
        sender = threading.Thread(
            target=lambda: answers.append(upload(client, video_id, 1, segment_files[1].read_bytes()).status_code)
        )
        sender.start()
        wait_for(lambda: _arrivals(services, video_id) == [(1, started)], 30, "the upload of 1 recorded its arrival")
        clock.advance(30)  # segment 2 has been ready for 31 s: a segment that never came would be skipped
        assert _listed(services, video_id) == [0]  # 1 arrived at T0 + 1: the list waits for it
        held.rollback()
    sender.join(30)
    assert answers == [201]
    with services.sessions() as db:
        segment = db.scalars(select(Segment).where(Segment.video_id == video_id, Segment.segment_id == 1)).one()
        assert segment.uploaded_at == started
    assert _arrivals(services, video_id) == []
    _packaged(services, video_id, 1, clock.advance(1))
    assert _listed(services, video_id) == [0, 1, 2]


def test_a_refused_upload_leaves_no_arrival_and_the_hole_is_skipped(client, services, clock, segment_files):
    video_id = client.post("/videos", json=new_video_body("refused")).json["video_id"]
    for k in (0, 2):
        assert upload(client, video_id, k, segment_files[k].read_bytes()).status_code == 201
        _packaged(services, video_id, k, T0)
    clock.advance(30)
    assert upload(client, video_id, 1, b"not a video").status_code == 422
    assert _arrivals(services, video_id) == []
    assert _listed(services, video_id) == [0, 2]


def test_an_arrival_after_the_skip_is_not_recorded(client, services, clock, segment_files):
    video_id = client.post("/videos", json=new_video_body("late")).json["video_id"]
    for k in (0, 2):
        assert upload(client, video_id, k, segment_files[k].read_bytes()).status_code == 201
        _packaged(services, video_id, k, T0)
    clock.advance(30)
    assert _listed(services, video_id) == [0, 2]  # 1 was skipped at T0 + 10
    assert upload(client, video_id, 1, segment_files[1].read_bytes()).status_code == 201
    assert _listed(services, video_id) == [0, 2]  # and stays skipped: the list only grows at its end
    with services.sessions() as db:
        segment = db.scalars(select(Segment).where(Segment.video_id == video_id, Segment.segment_id == 1)).one()
        assert epoch(segment.uploaded_at) == clock.time()
