"""Every route that reads a body reads it under BODY_READ_TIMEOUT before touching the database: 408, nothing stored."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from server import create_app
from server.domain import ingest
from server.infra.models import Segment, Video
from tests.harness.android import new_video_body, segment_upload
from tests.harness.tree import tree


@pytest.fixture
def expired(make_config, gearmand):  # type: ignore[no-untyped-def]
    """An app whose body deadline has always passed: any read of a body is refused."""
    app = create_app(make_config(GEARMAN_SERVERS=(gearmand.address,), BODY_READ_TIMEOUT=0.0))
    yield app
    app.extensions["team03"].close()


def test_every_body_past_its_deadline_gets_408_and_stores_nothing(expired, admin_auth, segment_files: list[Path]) -> None:  # type: ignore[no-untyped-def]
    services = expired.extensions["team03"]
    with services.sessions() as db:
        video_id = ingest.create_video(services, db, "kept").id
    client = expired.test_client()
    body, content_type = segment_upload(0, segment_files[0].read_bytes())
    answers = [
        client.post("/videos", json=new_video_body("late")),
        client.put(f"/video/{video_id}", json={"title": "renamed"}, headers=admin_auth),
        client.post(f"/video_segment/{video_id}", data=body, content_type=content_type),
        client.post(f"/video_end/{video_id}", data={"last_segment_id": "0"}),
    ]
    for response in answers:
        assert response.status_code == 408, response.json
        assert response.json["code"] == "request_timeout"
        assert "BODY_READ_TIMEOUT" in response.json["message"]
    with services.sessions() as db:
        assert [v.title for v in db.scalars(select(Video))] == ["kept"]
        assert db.scalar(select(func.count()).select_from(Segment)) == 0
        assert db.get(Video, video_id).last_segment_id is None
    assert tree(services).temp_files() == []
    # Requests without a body are not affected.
    assert client.get("/ping").status_code == 200
    assert client.get(f"/video/{video_id}").status_code == 200


def test_an_upload_to_a_missing_video_is_refused_before_its_body_is_read(client, app) -> None:  # type: ignore[no-untyped-def]
    body, content_type = segment_upload(0, b"x" * 1000)
    response = client.post("/video_segment/999", data=body, content_type=content_type)
    assert response.status_code == 404, response.json
    assert not (tree(app.extensions["team03"]).video_dir(999)).exists()
