"""Who may watch, through the shipped nginx (deploy/nginx/team03.conf) in front of gunicorn: the hostile table of
tests/harness/watching.py, sent byte for byte (no client normalizes its paths); a video made private stops playing
from the tree within the watch micro-cache's second; and good links play from the tree with the app down, where
anonymous playback fails closed."""

from __future__ import annotations

import http.client
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from flask import Flask

from server import create_app
from server.core.states import Visibility
from server.domain import curation
from tests.harness import s3, watching
from tests.harness import services as real
from tests.harness.watching import World


@dataclass
class Front:
    app: Flask  # in-process, on the same database and MEDIA_ROOT: the test's hands
    world: World
    port: int  # nginx's
    gunicorn: subprocess.Popen[bytes]

    segment: bytes

    def send(self, method: str, path: str, headers: dict[str, str], body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
        try:
            conn.request(method, path, body=body, headers=headers)
            answer = conn.getresponse()
            return answer.status, dict(answer.getheaders()), answer.read()
        finally:
            conn.close()


def _front(make_config, segment: bytes, *, link_secret: str | None, bucket: str | None = None) -> Iterator[Front]:  # type: ignore[no-untyped-def]
    """The world, gunicorn and the shipped nginx: reading the tree, or (`bucket`) team03-s3.conf reading the bucket."""
    folder = real.nginx_prefix()
    media_root = folder / "media"
    real.readable_by_all(media_root)
    memcached = tuple(filter(None, os.environ.get("MEMCACHED_SERVERS", "127.0.0.1:11211").split(",")))
    store: dict[str, object] = {}
    options: dict[str, object] = {"media_root": media_root}
    if bucket is not None:
        prefix = f"w{uuid.uuid4().hex[:8]}"
        store = {"MEDIA_STORE": "s3", "S3_ENDPOINT_URL": s3.ENDPOINT, "S3_BUCKET": bucket, "S3_PREFIX": prefix}
        objects = s3.s3_objects(bucket, prefix=prefix)
        objects.client.put_bucket_policy(Bucket=bucket, Policy=s3.read_policy(bucket, f"{prefix}/"))
        options["store"] = real.Store(s3.ENDPOINT.split("://", 1)[1].rstrip("/"), bucket, f"{prefix}/")
    config = make_config(MEDIA_ROOT=media_root, LINK_SECRET=watching.SECRET, MEMCACHED_SERVERS=memcached, **store)
    app = create_app(config)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        world = watching.build_world(app, segment)
        app_port, port = real.free_port(), real.free_port()
        env = {**os.environ, **config.to_env(), "LOG_LEVEL": "WARNING"}
        log = folder / "gunicorn.log"
        procs.append(real.start_gunicorn(env, app_port, log, "-w", "1", "--threads", "4", "--graceful-timeout", "5"))
        real.wait_http(f"http://127.0.0.1:{app_port}/ping", procs[0], log)
        conf = real.render_nginx(folder, app_port, port, link_secret=link_secret, **options)  # type: ignore[arg-type]
        procs.append(real.start_nginx(folder, conf))
        real.wait_http(f"http://127.0.0.1:{port}/ping", procs[1], folder / "nginx.out")
        yield Front(app, world, port, procs[0], segment)
    finally:
        real.stop_gracefully(procs, timeout=20)
        app.extensions["team03"].close()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def front(make_config, segment_files: list[Path]) -> Iterator[Front]:  # type: ignore[no-untyped-def]
    yield from _front(make_config, segment_files[0].read_bytes(), link_secret=watching.SECRET)


@pytest.fixture
def front_without_secret(make_config, segment_files: list[Path]) -> Iterator[Front]:  # type: ignore[no-untyped-def]
    yield from _front(make_config, segment_files[0].read_bytes(), link_secret=None)


@pytest.fixture
def bucket_front(make_config, segment_files: list[Path], s3_bucket: str, monkeypatch) -> Iterator[Front]:  # type: ignore[no-untyped-def]
    """MEDIA_STORE=s3 behind team03.conf + team03-s3.conf, on a bucket of its own (its policy is this test's)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.ACCESS_KEY)  # the app's and gunicorn's credentials, as boto3 reads them
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.SECRET_KEY)
    bucket = s3.new_bucket()
    try:
        yield from _front(make_config, segment_files[0].read_bytes(), link_secret=watching.SECRET, bucket=bucket)
    finally:
        s3.remove_bucket(bucket)


def test_the_hostile_table_through_the_shipped_nginx(front: Front) -> None:
    with front.app.extensions["team03"].sessions() as session:
        watching.run_table(front.world, front.send, session, front.segment)


def test_the_hostile_table_with_links_left_to_the_app(front_without_secret: Front) -> None:
    """No LINK_SECRET in nginx's conf: every link goes to the app, which opens exactly what nginx would."""
    with front_without_secret.app.extensions["team03"].sessions() as session:
        watching.run_table(front_without_secret.world, front_without_secret.send, session, front_without_secret.segment)


def test_the_hostile_table_through_the_bucket_tier(bucket_front: Front) -> None:
    with bucket_front.app.extensions["team03"].sessions() as session:
        watching.run_table(bucket_front.world, bucket_front.send, session, bucket_front.segment)


def test_a_video_made_private_stops_playing_from_the_tree_within_a_second(front: Front) -> None:
    services = front.app.extensions["team03"]
    public = front.world.values["P"]
    path = f"/video_files/{public}/HIGH/000000.m4s"
    assert front.send("GET", path, {})[0] == 200  # the app's "yes" is now in nginx's micro-cache
    with services.sessions() as session:
        curation.set_visibility(services, session, int(public), Visibility.PRIVATE, by="test")
    real.wait_for(lambda: front.send("GET", path, {})[0] == 404, 2.5, "the private video refused from the tree")
    status, _, body = front.send("GET", f"/k/{front.world.values['A']}{path}", {})
    assert (status, body) == (200, front.world.files[(int(public), "HIGH/000000.m4s")])  # its key still plays it


@pytest.mark.parametrize("which", ["front", "bucket_front"])
def test_links_play_from_the_media_with_the_app_down_and_anonymous_playback_fails_closed(which: str, request) -> None:  # type: ignore[no-untyped-def]
    """nginx alone serves a good link (from the tree, or the bucket) and refuses a bad one; without the app's answer
    no anonymous request is served, public or not."""
    front: Front = request.getfixturevalue(which)
    world = front.world
    real.stop_gracefully([front.gunicorn], timeout=20)
    for name in ("master.m3u8", "HIGH/playlist.m3u8", "HIGH/000000.m4s", "thumbnails/000000.jpg"):
        status, headers, body = front.send("GET", world.path(f"{{LX}}/video_files/{{X}}/{name}"), {})
        assert (status, body) == (200, world.files[(int(world.values["X"]), name)]), name
        assert headers["Access-Control-Allow-Origin"] == "*"
    for case in ("{LXforged}", "{LXexpired}", "{LP}"):
        status, headers, body = front.send("GET", world.path(case + "/video_files/{X}/master.m3u8"), {})
        assert (status, headers["Content-Type"]) == (403, "application/json") and b'"link_refused"' in body, case
    for path in ("/video_files/{P}/master.m3u8", "/video_files/{X}/master.m3u8", "/live_m3u8/{U}/root.m3u8"):
        status, headers, _ = front.send("GET", world.path(path), {})
        assert (status, headers["Content-Type"]) == (503, "application/json"), path  # the app's answer is needed
