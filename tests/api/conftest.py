"""An app on real MariaDB and a private gearmand with no worker: jobs wait in the queue to be counted."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from server import create_app
from tests.harness.android import new_video_body


@pytest.fixture
def app(make_config, gearmand):  # type: ignore[no-untyped-def]
    app = create_app(make_config(GEARMAN_SERVERS=(gearmand.address,), MAX_SEGMENT_BYTES=8 * 1024 * 1024))
    yield app
    app.extensions["team03"].close()


@pytest.fixture
def client(app) -> FlaskClient:  # type: ignore[no-untyped-def]
    return app.test_client()


@pytest.fixture
def video_id(client: FlaskClient) -> int:
    response = client.post("/videos", json=new_video_body("fixture video"))
    assert response.status_code == 201, response.json
    return response.json["video_id"]
