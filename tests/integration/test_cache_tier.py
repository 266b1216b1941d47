"""Players' files from object storage through nginx's cache: deploy/nginx/team03-s3.conf (MEDIA_STORE=s3).

A real video's tree, made by the pipeline on the local store, is copied into a fresh bucket with `python -m
server.cli media migrate`, as an operator does; the bucket lets loopback read its media prefix anonymously
(the bucket policy of docs/operations.md). Then every player URL is asked of three servers: the shipped nginx
reading the bucket (team03.conf with its `include team03-s3.conf;` uncommented), the shipped nginx reading the
tree (as today) and the app. The store is a second radosgw of the test cluster (tests/harness/s3.py), so the
requests that reach it are counted in its own access log.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from server import create_app
from server.store.s3 import S3Objects
from tests.harness import s3
from tests.harness import services as real
from tests.harness.services import burst
from tests.harness.stack import Stack, http_server

PLAYLISTS = ("manifest.mpd", "master.m3u8", "HIGH/playlist.m3u8", "audio/playlist.m3u8", "HIGH/vod.m3u8", "storyboard.vtt")
LEGACY = ("root.m3u8", "LOW/stream.m3u8")
SERVED = re.compile(
    r"^(?:manifest\.mpd|master\.m3u8|storyboard\.vtt|(?:[A-Z0-9_]{1,16}|audio)/(?:playlist\.m3u8|vod\.m3u8|init\.mp4)"
    r"|[A-Z0-9_]{1,16}/[0-9]{6}\.(?:mp4|m4s|ts)|audio/[0-9]{6}\.m4s|(?:thumbnails|storyboard)/[0-9]{6}\.jpg)$"
)  # deploy/nginx/team03.conf's list of the layout's names


class StoreLog:
    """The requests the store received, from its access log (radosgw's `beast:` lines)."""

    def __init__(self, gateway: s3.SpareGateway, bucket: str) -> None:
        self.gateway, self.bucket = gateway, bucket

    def gets(self, key: str) -> int:
        """How many GETs of `key` (under the bucket) the store has answered, once every earlier one is logged."""
        marker = f"/{self.bucket}/team03-marker-{uuid.uuid4().hex}"
        requests.get(self.gateway.endpoint + marker, timeout=10)  # asked after the others: logged after them
        real.wait_for(lambda: marker in self.gateway.log.read_text(), 10, f"{marker} in the store's log")
        return len(
            re.findall(
                rf'beast: \S+ \S+ - \S+ \[[^]]+\] "GET /{re.escape(self.bucket)}/{re.escape(key)} HTTP',
                self.gateway.log.read_text(),
            )
        )


@dataclass
class Tier:
    store: str  # nginx: team03.conf + team03-s3.conf, reading the bucket through the spare gateway
    tree: str  # nginx: team03.conf as today, reading MEDIA_ROOT
    app: str
    bucket: str
    prefix: str  # S3_PREFIX, ending in /
    objects: S3Objects
    log: StoreLog
    root: Path  # MEDIA_ROOT, the tree the pipeline wrote


@pytest.fixture
def store_bucket(s3_bucket: str) -> Iterator[str]:
    """A fresh bucket of its own (its policy is the test's), on the gateway `s3_bucket` made sure of."""
    name = s3.new_bucket()
    yield name
    s3.remove_bucket(name)


def migrate(env: dict[str, str]) -> None:
    """`python -m server.cli media migrate`, as the operator runs it (docs/operations.md "Moving media to object storage")."""
    argv = [sys.executable, "-m", "server.cli", "media", "migrate"]
    done = subprocess.run(argv, cwd=real.ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "conflicts 0" in done.stdout, done.stdout + done.stderr


def start_front(folder: Path, app_port: int, **options: object) -> tuple[str, subprocess.Popen[bytes]]:
    """The shipped nginx config (render_nginx's `media_root` or `store`) on a free port; return its URL and process."""
    port = real.free_port()
    proc = real.start_nginx(folder, real.render_nginx(folder, app_port, port, **options))  # type: ignore[arg-type]
    try:
        real.wait_port(port)  # not an HTTP probe: /ping would be the app's
    except RuntimeError:
        real.stop_gracefully([proc])
        raise RuntimeError((folder / "nginx.out").read_text(errors="replace")[-3000:]) from None
    return f"http://127.0.0.1:{port}", proc


@pytest.fixture
def gateway(s3_bucket: str, tmp_path: Path) -> Iterator[s3.SpareGateway]:
    """The store nginx reads: a radosgw of its own on the test cluster, whose access log counts what reaches it."""
    spare = s3.SpareGateway(tmp_path / "rgw").start()
    yield spare
    spare.stop()


@pytest.fixture
def tier(
    make_config, gearmand, store_bucket: str, gateway: s3.SpareGateway, segment_files, tmp_path
) -> Iterator[tuple[Tier, int]]:  # type: ignore[no-untyped-def]
    """A VOD video the pipeline made in MEDIA_ROOT and `media migrate` copied to a fresh bucket and prefix; the app,
    and the shipped nginx in front of it twice: reading the bucket, and reading the tree."""
    folders = [real.nginx_prefix() for _ in range(2)]  # nginx's workers (nobody) read these, and MEDIA_ROOT
    media_root = folders[1] / "media"
    real.readable_by_all(media_root)
    config = make_config(GEARMAN_SERVERS=(gearmand.address,), MEDIA_ROOT=media_root, KEEP_ORIGINALS=True, FFMPEG_TIMEOUT=60.0)
    stack = Stack(config, gearmand)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        stack.start_workers(1, tmp_path / "worker.log")
        vid = stack.new_video("cache tier")
        for k, path in enumerate(segment_files[:2]):
            stack.upload(vid, k, path.read_bytes())
        stack.end(vid, 1)
        stack.wait_vod(vid)
        stack.stop_workers()
        prefix = f"t{uuid.uuid4().hex[:8]}"
        migrate({
            "MEDIA_STORE": "s3", "S3_ENDPOINT_URL": s3.ENDPOINT, "S3_BUCKET": store_bucket, "S3_PREFIX": prefix,
            "AWS_ACCESS_KEY_ID": s3.ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": s3.SECRET_KEY,
            "MEDIA_ROOT": str(media_root), "DATABASE_URL": config.DATABASE_URL, "GEARMAN_SERVERS": "",
        })  # fmt: skip
        objects = s3.s3_objects(store_bucket, prefix=prefix)
        objects.client.put_bucket_policy(Bucket=store_bucket, Policy=s3.read_policy(store_bucket, f"{prefix}/"))
        app = stack.serve()
        app_port = int(app.rsplit(":", 1)[1])
        store = real.Store(f"127.0.0.1:{gateway.port}", store_bucket, f"{prefix}/")
        urls = []
        for folder, options in zip(folders, ({"store": store}, {"media_root": media_root}), strict=True):
            url, proc = start_front(folder, app_port, **options)
            urls.append(url)
            procs.append(proc)
        yield Tier(urls[0], urls[1], app, store_bucket, f"{prefix}/", objects, StoreLog(gateway, store_bucket), media_root), vid
    finally:
        real.stop_gracefully(procs, timeout=20)
        stack.close()
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)


def _served_names(root: Path, vid: int) -> list[str]:
    """Every file of the video's folder a player may ask for (the layout's names), as the pipeline wrote them."""
    folder = root / "videos" / str(vid)
    names = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    return [name for name in names if SERVED.match(name)]


def _from_the_store(answer: requests.Response, path: str) -> None:
    """The bucket's bytes (the store's ETag is their MD5), with none of the store's own headers."""
    leaked = [name for name in answer.headers if name.lower().startswith(("x-amz", "x-rgw"))]
    assert not leaked and answer.headers["Server"] == "nginx", (path, leaked, answer.headers.get("Server"))
    if answer.status_code == 200 and answer.request.method == "GET":
        assert answer.headers["ETag"] == f'"{hashlib.md5(answer.content, usedforsecurity=False).hexdigest()}"', path


def _key(t: Tier, path: str) -> str:
    """The bucket's key (after the bucket) that a player URL names."""
    if path.startswith("/video_files/"):
        return f"{t.prefix}videos/{path.removeprefix('/video_files/')}"
    vid, name = path.removeprefix("/live_m3u8/").split("/", 1)
    return f"{t.prefix}videos/{vid}/live_m3u8/{name}"


def _headers(answer: requests.Response) -> dict[str, str]:
    """Every header but those each server sets for itself and the validators, whose values are the store's."""
    own = {"date", "connection", "etag", "last-modified"}
    return {name: value for name, value in answer.headers.items() if name.lower() not in own}


def _ask(bases: tuple[str, ...], method: str, path: str, headers: dict[str, str] | None = None) -> list[requests.Response]:
    return [requests.request(method, base + path, headers=headers or {}, timeout=10) for base in bases]


def test_every_player_file_from_the_bucket_answers_as_from_the_tree(tier) -> None:  # type: ignore[no-untyped-def]
    t, vid = tier
    names = _served_names(t.root, vid)
    assert {*PLAYLISTS, "HIGH/init.mp4", "HIGH/000001.m4s", "audio/000000.m4s", "thumbnails/000000.jpg"} <= set(names)
    assert {name.rsplit(".", 1)[1] for name in names} == {"mpd", "m3u8", "vtt", "mp4", "m4s", "ts", "jpg"}, names
    paths = [f"/video_files/{vid}/{name}" for name in names] + [f"/live_m3u8/{vid}/{name}" for name in LEGACY]
    for path in paths:
        started = time.time()
        store, tree, app = _ask((t.store, t.tree, t.app), "GET", path)
        assert store.status_code == tree.status_code == app.status_code == 200, (path, store.status_code, store.content[:300])
        assert store.content == tree.content == app.content, path
        _from_the_store(store, path)
        assert t.log.gets(_key(t, path)) == 1, path  # asked of the store once
        # Every header as the tree's nginx sends it (Content-Type, Cache-Control, Content-Length, Accept-Ranges,
        # CORS, nosniff), but that the tree's legacy location sends no nosniff (the app does, on every player path).
        ours, theirs = _headers(store), _headers(tree)
        if path.startswith("/live_m3u8/"):
            assert ours.pop("X-Content-Type-Options") == app.headers["X-Content-Type-Options"] == "nosniff", path
        assert ours == theirs, path
        assert {"ETag", "Last-Modified"} <= set(store.headers), path
        for header in ("Content-Type", "Cache-Control", "Access-Control-Allow-Origin", "Access-Control-Expose-Headers"):
            assert store.headers[header] == app.headers[header], (path, header)
        head, tree_head = _ask((t.store, t.tree), "HEAD", path)
        assert (head.status_code, head.content, _headers(head)) == (200, b"", ours | _legacy_sniff(path, head)), path
        assert _headers(tree_head) == theirs, path
        for asked in ({"If-None-Match": store.headers["ETag"]}, {"If-Modified-Since": store.headers["Last-Modified"]}):
            again = requests.get(t.store + path, headers=asked, timeout=10)
            theirs_again = requests.get(
                t.tree + path,
                headers={k: tree.headers[{"If-None-Match": "ETag"}.get(k, "Last-Modified")] for k in asked},
                timeout=10,
            )
            assert (again.status_code, again.content) == (theirs_again.status_code, theirs_again.content) == (304, b""), (
                path,
                asked,
            )
            assert _headers(again) == _headers(theirs_again) | _legacy_sniff(path, again), (path, asked)
        other = requests.get(t.store + path, headers={"If-None-Match": '"other"'}, timeout=10)
        assert (other.status_code, other.content) == (200, store.content), path
        for spec in ("bytes=0-9", "bytes=-5", "bytes=3-", "bytes=0-1,4-5", "bytes=999999999-"):
            part, tree_part = _ask((t.store, t.tree), "GET", path, {"Range": spec})
            assert (part.status_code, part.content) == (tree_part.status_code, tree_part.content), (path, spec)
            if part.status_code != 416:  # nginx's HTML page for a range past the end: its Content-Type differs (report)
                assert _headers(part) == _headers(tree_part) | _legacy_sniff(path, part), (path, spec)
        # All of that from nginx's copy: media's for good, a playlist's for the wall-clock second it was fetched in.
        kept = 1 if not path.endswith((".m3u8", ".mpd", ".vtt")) else int(time.time()) - int(started) + 1
        assert 1 <= t.log.gets(_key(t, path)) <= kept, path

    origin = {"Origin": "http://player.example", "Access-Control-Request-Headers": "range"}
    preflight, tree_preflight = _ask((t.store, t.tree), "OPTIONS", f"/video_files/{vid}/HIGH/000001.m4s", origin)
    assert (preflight.status_code, _headers(preflight)) == (204, _headers(tree_preflight)), preflight.headers
    for method in ("POST", "PUT", "DELETE"):
        refused, tree_refused = _ask((t.store, t.tree), method, f"/video_files/{vid}/manifest.mpd")
        assert (refused.status_code, refused.content, _headers(refused)) == (405, tree_refused.content, _headers(tree_refused))


def _legacy_sniff(path: str, answer: requests.Response) -> dict[str, str]:
    """The nosniff the store's location adds on the legacy routes too (as the app does), beyond the tree's nginx."""
    return (
        {"X-Content-Type-Options": "nosniff"}
        if path.startswith("/live_m3u8/") and "X-Content-Type-Options" in answer.headers
        else {}
    )


def test_what_the_tree_never_serves_the_bucket_never_serves(tier) -> None:  # type: ignore[no-untyped-def]
    """Originals, attempts' staging, dot files and stray names are in the bucket, yet are the app's JSON 404, and the
    store is never asked for them; a name of the layout the bucket lacks is the app's answer too, as from the tree."""
    t, vid = tier
    assert t.objects.head(f"videos/{vid}/originals/000000.mp4") is not None  # KEEP_ORIGINALS: migrate copied them
    strays = {
        f"videos/{vid}/attempts/7/HIGH.mp4": b"staged",
        f"videos/{vid}/attempts/7/HIGH/000000.m4s": b"staged",
        f"videos/{vid}/notes.txt": b"not media",
        f"videos/{vid}/HIGH/debug.log": b"not media",
        f"videos/{vid}/manifest.mpd.orig": b"not media",
        f"videos/{vid}/live_m3u8": b"not media",
    }
    for key, data in strays.items():
        t.objects.put(key, data)
    for dotted in (f"videos/{vid}/.manifest.mpd.tmp-0000", f"videos/{vid}/HIGH/.000001.m4s.tmp-0000"):
        t.objects.client.put_object(Bucket=t.bucket, Key=t.prefix + dotted, Body=b"half")  # checked_key refuses dot names
    never = [
        "originals/000000.mp4",
        "attempts/7/HIGH.mp4",
        "attempts/7/HIGH/000000.m4s",
        ".manifest.mpd.tmp-0000",
        "HIGH/.000001.m4s.tmp-0000",
        "notes.txt",
        "HIGH/debug.log",
        "manifest.mpd.orig",
        "live_m3u8",
        "HIGH/",
        "HIGH/../originals/000000.mp4",
        "HIGH/%2e%2e/originals/000000.mp4",
    ]
    for name in never:
        path = f"/video_files/{vid}/{name}"
        store, tree = _ask((t.store, t.tree), "GET", path)
        assert (store.status_code, store.headers["Content-Type"]) == (404, "application/json"), (path, store.content[:200])
        assert (store.content, _headers(store)) == (tree.content, _headers(tree)), path
    for key in (*strays, f"videos/{vid}/originals/000000.mp4", f"videos/{vid}/.manifest.mpd.tmp-0000"):
        assert t.log.gets(t.prefix + key) == 0, key
    for path in (f"/video_files/{vid}/HIGH/000099.m4s", f"/video_files/{vid}/ZZ/vod.m3u8", "/video_files/999999/manifest.mpd",
                 "/live_m3u8/999999/root.m3u8"):  # fmt: skip
        store, tree = _ask((t.store, t.tree), "GET", path)
        assert (store.status_code, store.headers["Content-Type"]) == (404, "application/json"), (path, store.content[:300])
        assert (store.content, _headers(store)) == (tree.content, _headers(tree)), path
        assert b"<?xml" not in store.content and b"AccessDenied" not in store.content, path
        _from_the_store(store, path)


@pytest.fixture
def lone_tier(
    store_bucket: str, gateway: s3.SpareGateway, make_config
) -> Iterator[tuple[str, S3Objects, StoreLog, str, int]]:  # type: ignore[no-untyped-def]
    """The bucket front, on objects a test writes as the pipeline will, of a public video; the app behind it answers
    only nginx's question whether the video may be played (auth_request, deploy/nginx/team03.conf)."""
    prefix = f"t{uuid.uuid4().hex[:8]}/"
    objects = s3.s3_objects(store_bucket, prefix=prefix)
    objects.client.put_bucket_policy(Bucket=store_bucket, Policy=s3.read_policy(store_bucket, prefix))
    app = create_app(make_config())
    vid = app.test_client().post("/videos", json={"title": "lone tier"}).json["video_id"]
    folder = real.nginx_prefix()
    try:
        with http_server(app) as app_url:
            app_port = int(app_url.rsplit(":", 1)[1])
            url, proc = start_front(folder, app_port, store=real.Store(f"127.0.0.1:{gateway.port}", store_bucket, prefix))
            try:
                yield url, objects, StoreLog(gateway, store_bucket), prefix, vid
            finally:
                real.stop_gracefully([proc], timeout=20)
    finally:
        app.extensions["team03"].close()
        shutil.rmtree(folder, ignore_errors=True)


def test_a_burst_costs_the_store_one_get_and_a_changed_playlist_shows_within_a_second(lone_tier, segment_files, gateway) -> None:  # type: ignore[no-untyped-def]
    url, objects, log, prefix, vid = lone_tier
    segment = segment_files[1].read_bytes()
    objects.put(f"videos/{vid}/HIGH/000001.m4s", segment)  # as the pipeline will
    objects.put(f"videos/{vid}/HIGH/playlist.m3u8", b"#EXTM3U\n#EXT-X-VERSION:7\n#EXTINF:3.0,\n000000.m4s\n")

    media = f"{url}/video_files/{vid}/HIGH/000001.m4s"
    answers, _, _ = burst(media, 40)
    assert len(answers) == 40 and {(a.status_code, a.content) for a in answers} == {(200, segment)}
    assert log.gets(f"{prefix}videos/{vid}/HIGH/000001.m4s") == 1  # one GET for the 40 (the others waited for it)
    answers, _, _ = burst(media, 40)
    assert {(a.status_code, a.content) for a in answers} == {(200, segment)}
    assert log.gets(f"{prefix}videos/{vid}/HIGH/000001.m4s") == 1  # and none for the next 40: media is kept

    # A query never reaches the store (it could pick another version or rename the type) nor splits nginx's copy.
    objects.put(f"videos/{vid}/HIGH/000002.m4s", segment)
    other = f"{url}/video_files/{vid}/HIGH/000002.m4s"
    for query in ("?response-content-type=text/html&versionId=x", "", "?x=1"):
        asked = requests.get(other + query, timeout=10)
        assert (asked.status_code, asked.headers["Content-Type"], asked.content) == (200, "video/iso.segment", segment)
    assert log.gets(f"{prefix}videos/{vid}/HIGH/000002.m4s") == 1  # the store's log names the key without a query

    gateway.pause()  # the store frozen: what nginx keeps is still served (media is never rewritten)
    try:
        kept = requests.get(media, timeout=10)
        assert (kept.status_code, kept.content) == (200, segment)
    finally:
        gateway.resume()

    playlist = f"{url}/video_files/{vid}/HIGH/playlist.m3u8"
    key = f"{prefix}videos/{vid}/HIGH/playlist.m3u8"
    answers, started, ended = burst(playlist, 40)
    assert {a.status_code for a in answers} == {200} and len({a.content for a in answers}) == 1
    assert 1 <= log.gets(key) <= int(ended) - int(started) + 1  # at most one GET per wall-clock second the burst spanned

    # A new revision of the playlist: nginx serves it within a second of the store holding it, and never the old after.
    newer = b"#EXTM3U\n#EXT-X-VERSION:7\n#EXTINF:3.0,\n000000.m4s\n#EXTINF:3.0,\n000001.m4s\n"
    seen: list[tuple[float, bytes]] = []
    stop = threading.Event()

    def poll() -> None:  # a player polling faster than any does (every 50 ms), so nginx's copy is always warm
        while not stop.is_set():
            seen.append((time.monotonic(), requests.get(playlist, timeout=10).content))
            stop.wait(0.05)

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        real.wait_for(lambda: len(seen) >= 5, 10, "the poller warmed nginx's copy")
        objects.put(f"videos/{vid}/HIGH/playlist.m3u8", newer)
        written = time.monotonic()
        real.wait_for(lambda: any(body == newer for _, body in seen), 5, "the new playlist served")
    finally:
        stop.set()
        poller.join(timeout=15)
    first_new = next(at for at, body in seen if body == newer)
    assert first_new - written <= 1.2, first_new - written  # within its second, plus a fetch
    assert all(body == newer for at, body in seen if at >= first_new)
