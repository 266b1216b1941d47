"""Segment ids are six digits on every route, parsed by one rule; races are decided by the database, on every backend."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator

import pytest
from flask import Flask
from sqlalchemy import event

from server import create_app
from tests.harness.android import new_video_body
from tests.harness.services import migrate
from tests.harness.stack import upload

BAD_IDS = ["1000000", "١", "٣٤", "9" * 5000, "-1", "1.5", "+1", "1e3", ""]


@pytest.fixture
def app(make_config, gearmand):  # type: ignore[no-untyped-def]
    """The app with an id window as wide as the ids (MAX_SEGMENT_AHEAD), so the largest id can be stored."""
    application = create_app(make_config(GEARMAN_SERVERS=(gearmand.address,), MAX_SEGMENT_AHEAD=999_999))
    yield application
    application.extensions["team03"].close()


def test_ids_above_six_digits_are_refused_on_every_route(client, video_id, segment_files):
    data = segment_files[0].read_bytes()
    refused = upload(client, video_id, "1000000", data)
    assert (refused.status_code, refused.json["field"]) == (400, "segment_id")
    assert "999999" in refused.json["message"]
    assert upload(client, video_id, "999999", data).status_code == 201
    for raw in BAD_IDS:
        response = upload(client, video_id, raw, data)
        assert (response.status_code, response.json.get("field")) == (400, "segment_id"), raw[:20]
    assert client.get(f"/live_mpd/{video_id}.mpd", query_string={"last_segment_id": "999999"}).status_code == 200
    assert client.post(f"/video_end/{video_id}", data={"last_segment_id": "999999"}).status_code == 200


@pytest.mark.parametrize("raw", BAD_IDS)
def test_last_segment_id_is_parsed_by_one_rule_on_both_routes(client, video_id, raw):
    ended = client.post(f"/video_end/{video_id}", data={"last_segment_id": raw})
    polled = client.get(f"/live_mpd/{video_id}.mpd", query_string={"last_segment_id": raw})
    for response in (ended, polled):
        assert response.status_code == 400, (raw[:20], response.status_code)
        assert response.json["field"] == "last_segment_id"
    assert client.get(f"/video/{video_id}").json["segment_count"] == -1


# Races, on SQLite (the dev default, where SELECT ... FOR UPDATE is a no-op) and on MariaDB.


@pytest.fixture(params=["sqlite", "mariadb"])
def backend_app(request, make_config, gearmand, tmp_path) -> Iterator[Flask]:  # type: ignore[no-untyped-def]
    overrides: dict[str, object] = {"GEARMAN_SERVERS": (gearmand.address,)}
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'race.sqlite'}"
        migrate(url)
        overrides["DATABASE_URL"] = url
    app = create_app(make_config(**overrides))
    yield app
    app.extensions["team03"].close()


def _in_threads(app: Flask, calls: dict[str, tuple[str, dict]]) -> dict:  # type: ignore[type-arg]
    """POST each (path, form) from its own thread, all released at once; return the responses by name."""
    barrier = threading.Barrier(len(calls))
    results: dict = {}

    def run(name: str, path: str, form: dict) -> None:  # type: ignore[type-arg]
        client = app.test_client()
        barrier.wait()
        results[name] = client.post(path, data=form)

    threads = [threading.Thread(target=run, args=(name, *call)) for name, call in calls.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(results) == len(calls), "a request never answered"
    return results


def test_concurrent_ends_with_different_values_have_one_winner(backend_app):
    client = backend_app.test_client()
    for _ in range(3):
        vid = client.post("/videos", json=new_video_body("race")).json["video_id"]
        results = _in_threads(backend_app, {str(n): (f"/video_end/{vid}", {"last_segment_id": str(n)}) for n in range(10)})
        statuses = sorted(r.status_code for r in results.values())
        assert statuses == [200] + [409] * 9, statuses
        winner = next(int(n) for n, r in results.items() if r.status_code == 200)
        assert client.get(f"/video/{vid}").json["segment_count"] == winner + 1
        again = client.post(f"/video_end/{vid}", data={"last_segment_id": str(winner)})
        assert again.status_code == 200  # the app retries its end: the same value is still a success


def test_no_segment_lands_above_an_end_decided_while_it_was_stored(backend_app, segment_files):
    """The upload has checked the end (none yet) and is about to insert its row when the end arrives."""
    engine = backend_app.extensions["team03"].engine
    at_insert, end_began = threading.Event(), threading.Event()

    def hold_the_insert(conn, cursor, statement, *_args):  # type: ignore[no-untyped-def]
        name = threading.current_thread().name
        if name == "end":
            end_began.set()
        elif name == "upload" and re.match(r"\s*INSERT INTO segments\b", statement, re.IGNORECASE):
            at_insert.set()
            end_began.wait(60)  # let the end's first statement go first: it must wait for this upload

    event.listen(engine, "before_cursor_execute", hold_the_insert)
    try:
        for _ in range(3):
            at_insert.clear()
            end_began.clear()
            _upload_while_ending(backend_app, segment_files[0].read_bytes(), at_insert)
    finally:
        event.remove(engine, "before_cursor_execute", hold_the_insert)


def _upload_while_ending(app: Flask, data: bytes, at_insert: threading.Event) -> None:
    client = app.test_client()
    vid = client.post("/videos", json=new_video_body("race")).json["video_id"]
    results: dict = {}

    def store() -> None:
        results["upload"] = upload(app.test_client(), vid, 5, data)

    def end() -> None:
        results["end"] = app.test_client().post(f"/video_end/{vid}", data={"last_segment_id": "3"})

    uploader = threading.Thread(name="upload", target=store)
    uploader.start()
    assert at_insert.wait(120), "the upload never reached its insert"
    ender = threading.Thread(name="end", target=end)
    ender.start()
    uploader.join(120)
    ender.join(120)
    outcome = (results["upload"].status_code, results["end"].status_code)
    assert outcome in {(201, 409), (409, 200)}, outcome
    stored = [s["segment_id"] for s in client.get(f"/video_segment/{vid}").json]
    last = client.get(f"/video/{vid}").json["segment_count"] - 1
    assert last == -2 or all(k <= last for k in stored), (stored, last)
