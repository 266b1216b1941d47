"""Before a video's first segment is ready: the standard playlists hold the request, then ask to retry.

No worker runs here, so no segment ever becomes ready; tests/integration/test_playback.py has a held
request answered by a real encode.
"""

from __future__ import annotations

import threading
import time

import pytest

from server import create_app
from tests.harness.android import new_video_body

WAIT = 0.6
STANDARD = ("manifest.mpd", "HIGH/playlist.m3u8", "LOW/playlist.m3u8", "audio/playlist.m3u8")


@pytest.fixture
def app(make_config, gearmand):  # type: ignore[no-untyped-def]
    app = create_app(make_config(GEARMAN_SERVERS=(gearmand.address,), FIRST_SEGMENT_WAIT=WAIT, FIRST_SEGMENT_WAITERS=1))
    yield app
    app.extensions["team03"].close()


@pytest.fixture
def video_id(app) -> int:  # type: ignore[no-untyped-def]
    response = app.test_client().post("/videos", json=new_video_body("not started"))
    assert response.status_code == 201, response.json
    return response.json["video_id"]


@pytest.mark.parametrize("path", STANDARD)
def test_a_standard_playlist_waits_then_asks_to_retry(app, video_id: int, path: str) -> None:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    response = app.test_client().get(f"/video_files/{video_id}/{path}")

    assert time.monotonic() - started >= WAIT  # held for FIRST_SEGMENT_WAIT, not refused at once
    assert response.status_code == 503 and response.headers["Retry-After"] == "1"
    assert response.headers["Access-Control-Allow-Origin"] == "*"  # web players may read it
    assert response.json["code"] == "not_ready"
    assert response.json["message"] == f"video {video_id} has no segment ready yet; retry shortly"
    assert "/" not in response.json["description"]  # no server path


def test_the_android_mpd_answers_at_once_with_nothing_listed(app, video_id: int) -> None:  # type: ignore[no-untyped-def]
    response = app.test_client().get(f"/live_mpd/{video_id}.mpd")

    assert response.status_code == 200
    assert response.headers["streamEnded"] == "false" and "lastSegmentId" not in response.headers
    assert b"<SegmentURL" not in response.data


def test_the_hls_master_playlist_answers_at_once(app, video_id: int) -> None:  # type: ignore[no-untyped-def]
    response = app.test_client().get(f"/video_files/{video_id}/master.m3u8")

    assert response.status_code == 200 and b"HIGH/playlist.m3u8" in response.data
    assert app.extensions["team03"].holds.held == 0


def test_past_the_held_requests_allowed_the_answer_is_at_once(app, video_id: int) -> None:  # type: ignore[no-untyped-def]
    # FIRST_SEGMENT_WAITERS=1: one request holds a thread; the next is told to retry without waiting.
    holds = app.extensions["team03"].holds
    first: dict[str, int] = {}
    thread = threading.Thread(
        target=lambda: first.update(status=app.test_client().get(f"/video_files/{video_id}/LOW/playlist.m3u8").status_code)
    )
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while holds.held == 0:
            assert time.monotonic() < deadline, "the first request was never held"
            time.sleep(0.01)
        second = app.test_client().get(f"/video_files/{video_id}/manifest.mpd")
        assert holds.held == 1  # the second one was not held
    finally:
        thread.join(timeout=10)

    assert second.status_code == 503 and second.headers["Retry-After"] == "1"
    assert first == {"status": 503} and holds.held == 0


def test_an_unknown_video_is_not_found_at_once(app) -> None:  # type: ignore[no-untyped-def]
    response = app.test_client().get("/video_files/999999/master.m3u8")

    assert response.status_code == 404 and response.json["code"] == "not_found"
