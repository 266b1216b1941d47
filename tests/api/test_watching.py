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
