"""Limits on what anyone can do: source size and length, and request rates (shared through memcached)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

from server import create_app
from server.jobs import TRANSCODE_SEGMENT
from server.jobs.queue import queue_status
from server.models import Segment, Video
from tests.android import new_video_body
from tests.api.conftest import upload
from tests.services import Memcached


def _queued(gearmand) -> int:  # type: ignore[no-untyped-def]
    return queue_status((gearmand.address,)).get(TRANSCODE_SEGMENT, {}).get("queued", 0)


def _count(database_url: str, model: type) -> int:
    engine = create_engine(database_url)
    with Session(engine) as session:
        count = session.scalar(select(func.count()).select_from(model)) or 0
    engine.dispose()
    return count


@pytest.fixture
def make_app(make_config, gearmand):  # type: ignore[no-untyped-def]
    apps = []

    def factory(**overrides: object):  # type: ignore[no-untyped-def]
        app = create_app(make_config(GEARMAN_SERVERS=(gearmand.address,), **overrides))
        apps.append(app)
        return app

    yield factory
    for app in apps:
        app.extensions["team03"].close()


@pytest.fixture
def memcached() -> Iterator[Memcached]:
    server = Memcached().start()
    yield server
    server.stop()


@pytest.mark.parametrize(
    ("overrides", "limit"),
    [({"MAX_SEGMENT_SECONDS": 2.5}, "MAX_SEGMENT_SECONDS"), ({"MAX_SOURCE_PIXELS": 1079 * 720}, "MAX_SOURCE_PIXELS")],
)
def test_a_segment_beyond_the_source_limits_is_422_naming_the_limit_and_stores_nothing(
    make_app, overrides, limit, segment_files, gearmand, database_url
):
    client = make_app(**overrides).test_client()
    vid = client.post("/videos", json=new_video_body()).json["video_id"]
    response = upload(client, vid, 0, segment_files[0].read_bytes())  # 3.0 s of 1080x720
    assert response.status_code == 422, response.json
    assert limit in response.json["message"]
    assert _count(database_url, Segment) == 0
    assert _queued(gearmand) == 0
    assert client.get(f"/video/{vid}").json["status"] == "EMPTY"


def test_a_segment_within_the_source_limits_is_stored(make_app, segment_files):
    client = make_app(MAX_SEGMENT_SECONDS=3.2, MAX_SOURCE_PIXELS=1080 * 720).test_client()
    vid = client.post("/videos", json=new_video_body()).json["video_id"]
    assert upload(client, vid, 0, segment_files[0].read_bytes()).status_code == 201
