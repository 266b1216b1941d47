"""`python -m server.cli video link ID [--dash] [--ttl SECONDS] [--base-url URL]`: one URL alone on stdout (hints on
stderr) that plays the private video in the app on the same database, with the secret the database keeps when
LINK_SECRET is unset (the embedded default); an audit event says who minted it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import select

from server import create_app
from server.infra.models import Event
from tests.harness import watching
from tests.harness.services import ROOT
from tests.harness.watching import World


@pytest.fixture
def app(make_config) -> Iterator[Flask]:  # type: ignore[no-untyped-def]
    app = create_app(make_config())  # no LINK_SECRET: the one the database keeps
    yield app
    app.extensions["team03"].close()


@pytest.fixture
def world(app: Flask, segment_files: list[Path]) -> World:
    return watching.build_world(app, segment_files[0].read_bytes())


def video_link(app: Flask, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    config = app.extensions["team03"].config
    environ = {**os.environ, "DATABASE_URL": config.DATABASE_URL, "MEDIA_ROOT": str(config.MEDIA_ROOT), "LINK_SECRET": ""}
    environ |= {"MEMCACHED_SERVERS": "", "GEARMAN_SERVERS": "", "PUBLIC_URL": "", **env}
    argv = [sys.executable, "-m", "server.cli", "video", "link", *args]
    return subprocess.run(argv, cwd=ROOT, env=environ, capture_output=True, text=True, timeout=120)


def test_the_link_plays_the_private_video_and_nothing_else(app: Flask, world: World) -> None:
    private = world.values["X"]
    client = app.test_client()
    assert client.get(f"/video_files/{private}/master.m3u8").status_code == 404
    started = time.time()
    done = video_link(app, private)
    assert done.returncode == 0 and "until" in done.stderr, done.stderr
    url = done.stdout.removesuffix("\n")
    assert "\n" not in url and url.startswith("http://127.0.0.1:5000/s/") and url.endswith(f"/video_files/{private}/master.m3u8")
    path = urllib.parse.urlsplit(url).path
    expires = int(path.split("/")[3])
    assert started + 3600 - 1 <= expires <= time.time() + 3600 + 1  # LINK_TTL's default
    with client.get(path) as played:
        assert (played.status_code, played.get_data()) == (200, world.files[(int(private), "master.m3u8")])
    with client.get(path.replace("master.m3u8", "HIGH/000000.m4s")) as segment:
        assert segment.status_code == 200  # every file it names, under the same prefix
    other = path.replace(f"/video_files/{private}/", f"/video_files/{world.values['Y']}/")
    assert client.get(other).json["code"] == "link_refused"
    with app.extensions["team03"].sessions() as session:
        event = session.scalars(select(Event).where(Event.kind == "video.link")).one()
        data = json.loads(event.data or "{}")
        assert (event.video_id, data["by"], data["expires"]) == (int(private), "cli", expires)


def test_dash_ttl_and_the_base_url(app: Flask, world: World) -> None:
    private = world.values["X"]
    done = video_link(app, private, "--dash", "--ttl", "60", PUBLIC_URL="https://video.example.org/")
    url = done.stdout.removesuffix("\n")
    assert url.startswith("https://video.example.org/s/") and url.endswith(f"/video_files/{private}/manifest.mpd"), url
    assert int(url.split("/")[5]) <= time.time() + 61
    with app.test_client().get(urllib.parse.urlsplit(url).path) as played:
        assert (played.status_code, played.get_data()) == (200, world.files[(int(private), "manifest.mpd")])
    done = video_link(app, private, "--base-url", "http://10.0.0.5:8080", PUBLIC_URL="https://video.example.org")
    assert done.stdout.startswith("http://10.0.0.5:8080/s/"), done.stdout


@pytest.mark.parametrize(
    ("args", "status", "said"),
    [
        (["--ttl", "0"], 2, "from 1 to"),
        (["--ttl", "9999999999"], 2, "from 1 to"),
        (["--base-url", "ftp://x"], 2, "base URL"),
        (["--base-url", "http://x/?q"], 2, "base URL"),
    ],
)
def test_bad_options_are_refused(app: Flask, world: World, args: list[str], status: int, said: str) -> None:
    done = video_link(app, world.values["X"], *args)
    assert (done.returncode, done.stdout) == (status, "") and said in done.stderr, done.stderr


def test_a_missing_video_gets_no_link(app: Flask, world: World) -> None:
    done = video_link(app, world.values["M"])
    assert (done.returncode, done.stdout) == (1, "") and done.stderr.startswith("error: "), done.stderr
