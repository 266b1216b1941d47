"""Who may watch, on the embedded default (the Flask app alone): the hostile table of tests/harness/watching.py, and
the answer cache never answering before the check (memcached on, as in production)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from server import create_app
from server.core.states import Visibility
from server.domain import curation
from tests.harness import watching
from tests.harness.watching import World


@pytest.fixture
def watch_app(make_config) -> Iterator[Flask]:  # type: ignore[no-untyped-def]
    memcached = tuple(filter(None, os.environ.get("MEMCACHED_SERVERS", "127.0.0.1:11211").split(",")))
    app = create_app(make_config(LINK_SECRET=watching.SECRET, MEMCACHED_SERVERS=memcached))
    yield app
    app.extensions["team03"].close()


@pytest.fixture
def world(watch_app: Flask, segment_files: list[Path]) -> World:
    return watching.build_world(watch_app, segment_files[0].read_bytes())


def test_the_hostile_table_on_the_embedded_default(watch_app: Flask, world: World, segment_files: list[Path]) -> None:
    client = watch_app.test_client()

    def send(method: str, path: str, headers: dict[str, str], body: bytes | None) -> tuple[int, dict[str, str], bytes]:
        answer = client.open(path, method=method, headers=headers, data=body)
        try:
            return answer.status_code, dict(answer.headers), answer.get_data()
        finally:
            answer.close()  # a file's answer holds it open

    with watch_app.extensions["team03"].sessions() as session:
        watching.run_table(world, send, session, segment_files[0].read_bytes())


def test_a_video_made_private_is_hidden_at_once_though_its_answers_are_cached(watch_app: Flask, world: World) -> None:
    """The rendered Android MPD and the playlist files are cached or read without the database: the check comes first."""
    services = watch_app.extensions["team03"]
    client = watch_app.test_client()
    public = world.values["P"]
    paths = [f"/live_mpd/{public}.mpd", f"/video_files/{public}/master.m3u8", f"/video_files/{public}/HIGH/000000.m4s"]
    for path in paths * 2:  # the second time from memcached (the MPD) or the file
        with client.get(path) as answer:
            assert answer.status_code == 200, path
    with services.sessions() as session:
        curation.set_visibility(services, session, int(public), Visibility.PRIVATE, by="test")
    hidden = client.get(f"/video_files/{world.values['M']}/master.m3u8").json
    for path in paths:
        answer = client.get(path)
        assert answer.status_code == 404 and answer.json == hidden | {"message": f"video {public} does not exist"}, path
        with client.get(f"/k/{world.values['A']}{path}") as keyed:
            assert keyed.status_code == 200, path  # its own key still plays it
    with services.sessions() as session:
        curation.set_visibility(services, session, int(public), Visibility.UNLISTED, by="test")
    for path in paths:
        with client.get(path) as answer:
            assert answer.status_code == 200, path


def test_an_admin_plays_every_video_and_what_a_key_or_an_admin_sees_is_kept_private(
    watch_app: Flask, world: World, admin_auth: dict[str, str]
) -> None:
    """The dashboard's player plays private videos for its admin; no shared cache may keep those answers."""
    client = watch_app.test_client()
    private, public = world.values["X"], world.values["P"]
    files = ["master.m3u8", "HIGH/000000.m4s"]
    for name in files:
        with client.get(f"/video_files/{private}/{name}", headers=admin_auth) as answer:
            assert answer.status_code == 200, name
            assert answer.headers["Cache-Control"].startswith("private") and "public" not in answer.headers["Cache-Control"]
        with client.get(f"/k/{world.values['A']}/video_files/{private}/{name}") as keyed:
            assert keyed.status_code == 200 and keyed.headers["Cache-Control"].startswith("private"), name
        with client.get(f"/video_files/{public}/{name}", headers=admin_auth) as shared:
            assert shared.status_code == 200 and shared.headers["Cache-Control"].startswith("public"), name
        wrong = {"Authorization": admin_auth["Authorization"][:-4] + "AAAA"}
        assert client.get(f"/video_files/{private}/{name}", headers=wrong).status_code == 404, name
        assert client.get(f"/video_files/{private}/{name}", headers={"Cookie": "team03_session=forged"}).status_code == 404
