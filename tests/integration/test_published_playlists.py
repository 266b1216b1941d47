"""Playlists published as files (server/domain/publishing.py) and served by the shipped nginx config.

Real workers encode real segments; the files are read while they are being rewritten, through Flask and
through deploy/nginx/team03.conf as shipped (its root pointed at the test's MEDIA_ROOT).
"""

from __future__ import annotations

import collections
import email.utils
import json
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from xml.etree import ElementTree

import m3u8
import pytest
import requests
from prometheus_client import REGISTRY

from server.core.errors import StorageUnavailable
from server.domain import publishing
from server.infra.models import Video
from server.ops import reaper
from tests.harness import services as real
from tests.harness.media import file_entries
from tests.harness.services import burst
from tests.harness.stack import Stack
from tests.harness.tree import tree

NS = {"d": "urn:mpeg:dash:schema:mpd:2011"}
PLAYLISTS = ("manifest.mpd", "master.m3u8", "HIGH/playlist.m3u8", "audio/playlist.m3u8", "HIGH/vod.m3u8", "storyboard.vtt")
LEGACY = ("root.m3u8", "LOW/stream.m3u8")


def _listed(body: bytes) -> list[str]:
    """The segment files an HLS media playlist lists (each as ~1 s byte-range parts); fails on a torn or empty file."""
    playlist = m3u8.loads(body.decode())
    assert body.startswith(b"#EXTM3U") and playlist.segment_map, body[:200]
    return [s.uri for s in file_entries(playlist)]


def _headers(response: requests.Response) -> list[tuple[str, str]]:
    """Every header as it was sent (the name's case too), but the few each server sets for itself."""
    own = {"date", "server", "connection", "keep-alive"}
    return sorted((name, value) for name, value in response.raw.headers.items() if name.lower() not in own)


def _mpd_segments(body: bytes) -> int:
    root = ElementTree.fromstring(body)  # a torn file does not parse
    timeline = root.find(".//d:AdaptationSet/d:Representation/d:SegmentTemplate/d:SegmentTimeline", NS)
    if timeline is None:
        timeline = root.find(".//d:AdaptationSet/d:SegmentTemplate/d:SegmentTimeline", NS)
    return sum(1 + int(s.get("r", "0")) for s in timeline.findall("d:S", NS))


def test_files_move_forward_whole_while_two_workers_publish(stack: Stack, segment_files, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Two workers package and publish at once; a reader polling the files never sees one torn or going back."""
    stack.start_workers(2, tmp_path / "workers.log")
    vid = stack.new_video()
    folder = tree(stack.services).video_dir(vid)
    seen: list[tuple[int, int]] = []  # (HLS segments, MPD segments) per read
    errors: list[str] = []
    done = threading.Event()

    def reader() -> None:
        while not done.is_set():
            try:
                hls = _listed((folder / "HIGH/playlist.m3u8").read_bytes())
                mpd = _mpd_segments((folder / "manifest.mpd").read_bytes())
            except FileNotFoundError:
                continue  # nothing published yet
            except Exception as exc:  # noqa: BLE001 - any parse failure is the finding
                errors.append(repr(exc))
                return
            seen.append((len(hls), mpd))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for k, path in enumerate(segment_files):
            stack.upload(vid, k, path.read_bytes())
        stack.end(vid, len(segment_files) - 1)
        stack.wait_vod(vid, timeout=120)
    finally:
        done.set()
        thread.join(timeout=30)
    assert not errors, errors[:3]
    hls_counts = [h for h, _ in seen]
    assert hls_counts == sorted(hls_counts), "an HLS playlist went back to an older revision"
    assert hls_counts[-1] == len(segment_files) and len(set(hls_counts)) > 1  # it was read while it grew
    final = (folder / "HIGH/playlist.m3u8").read_bytes()
    assert m3u8.loads(final.decode()).is_endlist
    assert tree(stack.services).temp_files() == []
    # Flask answers the files themselves (the embedded default), as nginx would.
    for name in PLAYLISTS:
        assert stack.client.get(f"/video_files/{vid}/{name}").data == (folder / name).read_bytes(), name
    for name in LEGACY:
        assert stack.client.get(f"/live_m3u8/{vid}/{name}").data == (folder / "live_m3u8" / name).read_bytes(), name


def test_a_gap_decided_by_time_is_published_while_live(stack: Stack, segment_files, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Nobody uploads or ends anything: the reaper decides the gap (GAP_TIMEOUT, 4 s here) and publishes it."""
    stack.start_worker(tmp_path / "worker.log")
    vid = stack.new_video()
    stack.upload(vid, 0, segment_files[0].read_bytes())
    stack.upload(vid, 2, segment_files[2].read_bytes())  # 1 never comes
    playlist = tree(stack.services).video_dir(vid) / "HIGH/playlist.m3u8"
    stack.wait(lambda: playlist.is_file() and _listed(playlist.read_bytes()) == ["000000.m4s"], 60, "0 listed")
    stack.wait(lambda: _listed(playlist.read_bytes()) == ["000000.m4s", "000002.m4s"], 60, "1 skipped, 2 listed")
    video = stack.video(vid)
    assert video is not None and video.type.value == "LIVE"
    assert not m3u8.loads(playlist.read_text()).is_endlist and file_entries(m3u8.loads(playlist.read_text()))[1].discontinuity


def test_a_publish_that_failed_is_retried_by_the_reaper(stack: Stack, segment_files, tmp_path, monkeypatch, admin_auth) -> None:  # type: ignore[no-untyped-def]
    """The web process cannot write the files (a full disk); the worker's reaper, another process, publishes them."""
    stack.start_worker(tmp_path / "worker.log")
    vid = stack.new_video("before")
    stack.upload(vid, 0, segment_files[0].read_bytes())
    stack.end(vid, 0)
    stack.wait_vod(vid)
    manifest = tree(stack.services).video_dir(vid) / "manifest.mpd"
    assert b"<Title>before</Title>" in manifest.read_bytes()

    def disk_full(*args: object, **kwargs: object) -> None:
        raise StorageUnavailable("the object store did not answer to store")

    monkeypatch.setattr(stack.services.media, "put_many", disk_full)
    failed = REGISTRY.get_sample_value("team03_playlist_publishes_total", {"result": "failed"}) or 0.0
    response = stack.client.put(f"/video/{vid}", json={"title": "after"}, headers=admin_auth)
    assert response.status_code == 200  # the rename is committed; only its files lagged
    assert REGISTRY.get_sample_value("team03_playlist_publishes_total", {"result": "failed"}) == failed + 1
    stack.wait(lambda: stack.published(vid) and b"<Title>after</Title>" in manifest.read_bytes(), 30, "republished")
    with stack.services.sessions() as session:
        assert publishing.lagging(session, 10) == []


def test_videos_published_before_files_existed_are_backfilled(stack: Stack, segment_files, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """An upgrade: rows without published_revision (migration 0006) and no files get them from the reaper."""
    stack.start_worker(tmp_path / "worker.log")
    vid = stack.new_video()
    stack.upload(vid, 0, segment_files[0].read_bytes())
    stack.end(vid, 0)
    stack.wait_vod(vid)
    folder = tree(stack.services).video_dir(vid)
    for name in (*PLAYLISTS, "live_m3u8"):
        path = folder / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    with stack.services.sessions() as session:
        session.query(Video).filter(Video.id == vid).update({"published_revision": None, "published_key": None})
        session.commit()
    reaper.reap(stack.services)
    assert all((folder / name).is_file() for name in PLAYLISTS)
    assert m3u8.loads((folder / "HIGH/playlist.m3u8").read_text()).is_endlist


# --- through the shipped nginx config ----------------------------------------------------------------


@dataclass
class Front:
    stack: Stack
    url: str  # nginx, deploy/nginx/team03.conf as shipped
    app: str  # the app straight


@pytest.fixture
def front(make_config, gearmand) -> Iterator[Front]:  # type: ignore[no-untyped-def]
    """The stack behind deploy/nginx/team03.conf, MEDIA_ROOT in a folder nginx's workers (nobody) can read.

    Not under pytest's basetemp: pytest makes pytest-of-<user> 0700 again whenever a session starts.
    """
    prefix = real.nginx_prefix()
    media_root = prefix / "media"
    real.readable_by_all(media_root)
    stack = Stack(make_config(GEARMAN_SERVERS=(gearmand.address,), MEDIA_ROOT=media_root, REAPER_INTERVAL=0.5), gearmand)
    port = real.free_port()
    try:
        app_url = stack.serve()
        proc = real.start_nginx(prefix, real.render_nginx(prefix, int(app_url.rsplit(":", 1)[1]), port, media_root=media_root))
        try:
            real.wait_http(f"http://127.0.0.1:{port}/ping", proc, prefix / "nginx.out")
            yield Front(stack, f"http://127.0.0.1:{port}", app_url)
        finally:
            proc.terminate()
            proc.wait(timeout=20)
    finally:
        stack.close()
        shutil.rmtree(prefix, ignore_errors=True)


def test_nginx_answers_the_published_files_as_the_app_does(front: Front, segment_files, tmp_path) -> None:  # type: ignore[no-untyped-def]
    stack, app, url = front.stack, front.app, front.url
    stack.start_worker(tmp_path / "worker.log")
    vid = stack.new_video()
    stack.upload(vid, 0, segment_files[0].read_bytes())
    stack.wait(lambda: stack.segment(vid, 0).packaged_at is not None and stack.published(vid), 90, "0 published")
    live = requests.get(f"{url}/video_files/{vid}/HIGH/playlist.m3u8", timeout=10)
    assert live.status_code == 200 and live.headers["Cache-Control"] == "public, max-age=1"
    stack.upload(vid, 1, segment_files[1].read_bytes())
    bare = f"{url}/live_mpd/{vid}.mpd"
    assert requests.get(bare, timeout=10).headers["streamEnded"] == "false"  # asked in the second of the switch, maybe
    stack.end(vid, 1)
    stack.wait_vod(vid)
    recording = requests.get(bare, timeout=10)  # what the app's VOD tab fetches once: the whole recording, at once
    assert (recording.headers["streamEnded"], recording.headers["lastSegmentId"]) == ("true", "1")

    paths = [f"/video_files/{vid}/{name}" for name in PLAYLISTS] + [f"/live_m3u8/{vid}/{name}" for name in LEGACY]
    paths += [f"/video_files/{vid}/{name}" for name in ("HIGH/init.mp4", "HIGH/000001.m4s", "LOW/000000.ts", "LOW/000001.mp4")]
    paths += [f"/video_files/{vid}/{name}" for name in ("audio/init.mp4", "thumbnails/000000.jpg", "storyboard/000001.jpg")]
    for path in paths:
        ours, theirs = requests.get(url + path, timeout=10), requests.get(app + path, timeout=10)
        assert ours.status_code == theirs.status_code == 200, path
        assert ours.content == theirs.content, path
        for header in ("Content-Type", "Cache-Control", "Access-Control-Allow-Origin", "Access-Control-Expose-Headers"):
            assert ours.headers[header] == theirs.headers[header], (path, header, ours.headers.get(header))
        if path.startswith("/video_files/"):  # media and playlists are never sniffed, from nginx or the app
            sniff = (ours.headers.get("X-Content-Type-Options"), theirs.headers.get("X-Content-Type-Options"))
            assert sniff == ("nosniff", "nosniff"), (path, sniff)
        assert requests.get(url + path, headers={"If-None-Match": ours.headers["ETag"]}, timeout=10).status_code == 304
    assert requests.get(f"{url}/video_files/{vid}/master.m3u8", timeout=10).headers["Cache-Control"] == "public, max-age=1"
    part = requests.get(f"{url}/video_files/{vid}/HIGH/000001.m4s", headers={"Range": "bytes=10-109"}, timeout=10)
    whole = (tree(stack.services).video_dir(vid) / "HIGH/000001.m4s").read_bytes()
    assert part.status_code == 206 and part.content == whole[10:110]
    preflight = requests.options(
        f"{url}/video_files/{vid}/HIGH/000001.m4s",
        headers={"Origin": "http://player.example", "Access-Control-Request-Headers": "range"},
        timeout=10,
    )
    assert preflight.status_code in (200, 204) and "Range" in preflight.headers["Access-Control-Allow-Headers"]
    assert preflight.headers["Access-Control-Allow-Origin"] == "*" and "GET" in preflight.headers["Access-Control-Allow-Methods"]

    # The Android MPD stays dynamic: its query and its two headers come from the app through nginx.
    android = requests.get(f"{url}/live_mpd/{vid}.mpd?last_segment_id=0", timeout=10)
    assert android.headers["lastSegmentId"] == "1" and android.headers["streamEnded"] == "true"
    assert ElementTree.fromstring(android.content).find("d:BaseURL", NS).text == f"/video_files/{vid}/"
    # ...micro-cached by nginx (1 s), yet every URL answers as the app does: status, bytes and every header,
    # names in their case (the app reads lastSegmentId and streamEnded case-sensitively), asked twice (a miss,
    # then a hit), by GET and HEAD, with a matching ETag (304), with a Range the app ignores; errors too.
    queries = ("", "?last_segment_id=0", "?last_segment_id=1", "?last_segment_id=-1", "?last_segment_id=x", "?last_segment_id=")
    for path in [f"/live_mpd/{vid}.mpd{query}" for query in queries] + ["/live_mpd/999999.mpd", f"/live_mpd/{vid}.mpdx"]:
        theirs = requests.get(app + path, timeout=10)
        asks: list[tuple[str, dict[str, str]]] = [("GET", {}), ("GET", {}), ("HEAD", {}), ("GET", {"Range": "bytes=0-9"})]
        if "ETag" in theirs.headers:
            asks += [("GET", {"If-None-Match": theirs.headers["ETag"]}), ("GET", {"If-None-Match": '"other"'})]
        for method, headers in asks:
            ours, theirs = (requests.request(method, base + path, headers=headers, timeout=10) for base in (url, app))
            assert (ours.status_code, ours.content) == (theirs.status_code, theirs.content), (path, method, headers)
            assert _headers(ours) == _headers(theirs), (path, method, headers)
    # Names the tree never serves, and videos without files, are the app's JSON 404s.
    folder = tree(stack.services).video_dir(vid)
    (folder / ".manifest.mpd.tmp-0000").write_bytes(b"half")
    (folder / "HIGH/.000001.m4s.tmp-0000").write_bytes(b"half")
    for bad in (
        "originals/000000.mp4",
        ".manifest.mpd.tmp-0000",
        "HIGH/.000001.m4s.tmp-0000",
        "attempts/1/HIGH.mp4",
        "HIGH/",
        "HIGH/../originals/000000.mp4",
        "NOPE.mp4",
        "live_m3u8",
    ):
        answer = requests.get(f"{url}/video_files/{vid}/{bad}", timeout=10)
        assert answer.status_code == 404 and answer.headers["Content-Type"] == "application/json", bad
    missing = requests.get(f"{url}/video_files/999999/manifest.mpd", timeout=10)
    assert missing.status_code == 404 and "999999" in missing.json()["message"]

    # With the app gone, the app's routes are 503 (the Android MPD asked above once its cached second is over: nginx
    # never serves an old answer for an error). Since the doors, nginx serves an anonymous file from the tree only once the app says anyone may play it (its
    # answer kept for the second it was asked in): with the app gone that fails closed too, while signed links keep
    # playing from the tree (tests/integration/test_watching_nginx.py).
    stack._serving.close()
    gone_paths = (f"/video_files/{vid}/manifest.mpd", f"/live_mpd/{vid}.mpd", f"/video_files/{vid}/originals/000000.mp4")
    for path in (*gone_paths, "/video_files/999999/manifest.mpd"):
        gone = stack.wait(lambda: (a := requests.get(url + path, timeout=10)).status_code != 200 and [a], 2.5, path)[0]  # type: ignore[index]  # noqa: B023
        assert gone.status_code == 503 and json.loads(gone.content)["code"] == "service_unavailable", path
        assert gone.headers["Retry-After"] == "5" and gone.headers["Content-Type"] == "application/json", path


class AppRequests:
    """The app's own count of the requests that reach it, by path and query (a WSGI middleware on the served app)."""

    def __init__(self, stack: Stack) -> None:
        self.seen: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()
        self._wsgi = stack.app.wsgi_app
        stack.app.wsgi_app = self  # type: ignore[method-assign]

    def __call__(self, environ, start_response):  # type: ignore[no-untyped-def]
        query = environ.get("QUERY_STRING", "")
        with self._lock:
            self.seen[environ["PATH_INFO"] + (f"?{query}" if query else "")] += 1
        return self._wsgi(environ, start_response)


def test_nginx_micro_caches_the_android_mpd(front: Front, segment_files, tmp_path, admin_auth) -> None:  # type: ignore[no-untyped-def]
    """A crowd polling one live MPD URL costs the app one request per second; a change shows within about 1 s.

    Only the polls (`?last_segment_id=`) are kept: the URL without a query is what the app fetches once for a
    VOD, so an answer kept from before the switch would be a truncated recording, and it always reaches the app.
    """
    stack, url, app = front.stack, front.url, front.app
    stack.start_worker(tmp_path / "worker.log")
    vid = stack.new_video()
    stack.upload(vid, 0, segment_files[0].read_bytes())
    stack.wait(lambda: stack.segment(vid, 0).packaged_at is not None and stack.published(vid), 90, "0 published")
    counted = AppRequests(stack)
    for path, listed, kept in ((f"/live_mpd/{vid}.mpd", "0", False), (f"/live_mpd/{vid}.mpd?last_segment_id=0", None, True)):
        direct = requests.get(app + path, timeout=10)
        assert direct.headers.get("lastSegmentId") == listed
        counted.seen.clear()
        answers, started, ended = burst(url + path, 40)
        assert len(answers) == 40 and {(a.status_code, a.content) for a in answers} == {(200, direct.content)}, path
        assert {(a.headers.get("lastSegmentId"), a.headers["streamEnded"]) for a in answers} == {(listed, "false")}
        if kept:  # at most one request per wall-clock second the burst spanned (nginx keys each second apart)
            assert 1 <= counted.seen[path] <= int(ended) - int(started) + 1, (path, counted.seen)
        else:
            assert counted.seen[path] == 40, (path, counted.seen)
    # Errors are never kept: each one reaches the app.
    counted.seen.clear()
    for _ in range(3):
        assert requests.get(f"{url}/live_mpd/999999.mpd", timeout=10).status_code == 404
        assert requests.get(f"{url}/live_mpd/{vid}.mpd?last_segment_id=x", timeout=10).status_code == 400
    assert counted.seen["/live_mpd/999999.mpd"] == 3 and counted.seen[f"/live_mpd/{vid}.mpd?last_segment_id=x"] == 3

    # A new segment: the cached answer (asked all along, so always warm) lists it from the second after the app did.
    path = f"/live_mpd/{vid}.mpd?last_segment_id=0"
    stack.upload(vid, 1, segment_files[1].read_bytes())
    _kept_within_its_second(url + path, app + path, lambda a: a.headers.get("lastSegmentId") == "1", 90)

    # A finished video's answer says max-age=3600 to players; nginx still keeps it only within its second.
    bare = f"{url}/live_mpd/{vid}.mpd"
    assert requests.get(bare, timeout=10).headers["streamEnded"] == "false"  # asked in the second of the switch, maybe
    stack.end(vid, 1)
    stack.wait_vod(vid)
    recording = requests.get(bare, timeout=10)  # what the app's VOD tab fetches once: the whole recording, at once
    assert (recording.headers["streamEnded"], recording.headers["lastSegmentId"]) == ("true", "1")
    finished = stack.wait(lambda: (a := requests.get(url + path, timeout=10)).headers["streamEnded"] == "true" and a, 5, "ended")
    assert finished.headers["Cache-Control"] == "public, max-age=3600"  # type: ignore[attr-defined]
    assert stack.client.delete(f"/video/{vid}", headers=admin_auth).status_code == 204
    _kept_within_its_second(url + path, app + path, lambda a: a.status_code == 404, 10)


def _kept_within_its_second(cached: str, app: str, new: Callable[[requests.Response], bool], timeout: float) -> None:
    """Ask `cached` (nginx), then `app`, in turn until nginx's answer is `new`; once the app's was, an older answer
    from nginx must be dated (Date, whole seconds) no later than that second: nginx keeps an answer only within
    the second it fetched it in. Asked one at a time, an answer fetched after the app's changed is always new."""
    app_changed: float | None = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = requests.get(cached, timeout=10)
        if new(answer):
            return
        if app_changed is not None:
            dated = email.utils.parsedate_to_datetime(answer.headers["Date"]).timestamp()
            assert dated <= int(app_changed), (
                f"an answer older than its second: {answer.headers['Date']}, changed at {app_changed}"
            )
        elif new(requests.get(app, timeout=10)):
            app_changed = time.time()
        time.sleep(0.05)  # a player's poll, quicker
    raise AssertionError(f"{cached}: not changed after {timeout}s (the app's changed at {app_changed})")


def test_nginx_serves_only_the_layouts_names_and_never_a_symlink(front: Front) -> None:
    """A stray file or a planted symlink in a video's folder is the app's JSON 404 through nginx, not its bytes."""
    media = tree(front.stack.services)
    vid = front.stack.new_video("strays")  # a public video: nginx serves its files from the tree once the app says so
    folder = media.video_dir(vid)
    (folder / "HIGH").mkdir(parents=True)
    (folder / "HIGH/000000.m4s").write_bytes(b"a segment")
    outside = media.root / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(b"not media")
    (outside / "000000.jpg").write_bytes(b"not media")
    (folder / "HIGH/000001.m4s").symlink_to(outside / "secret.txt")  # a file link with a name the layout allows
    (folder / "thumbnails").symlink_to(outside)  # a folder link
    (folder / "manifest.mpd").symlink_to(outside / "secret.txt")  # a playlist the app reads too
    (folder / "live_m3u8").mkdir()
    (folder / "live_m3u8/root.m3u8").symlink_to(outside / "secret.txt")
    strays = ("notes.txt", "manifest.mpd.orig", "HIGH/000000.m4s.bak", "HIGH/debug.log", "HIGH/playlist.json")
    for name in strays:
        (folder / name).write_bytes(b"not media")
    served = requests.get(f"{front.url}/video_files/{vid}/HIGH/000000.m4s", timeout=10)
    assert (served.status_code, served.content) == (200, b"a segment")
    paths = [f"/video_files/{vid}/{name}" for name in ("HIGH/000001.m4s", "thumbnails/000000.jpg", "manifest.mpd", *strays)]
    for path in paths:
        answer = requests.get(front.url + path, timeout=10)
        if path.endswith("manifest.mpd"):  # the app's own answer for a video with no segment yet: never the link's bytes
            assert (answer.status_code, answer.json()["code"]) == (503, "not_ready"), (path, answer.content)
            continue
        assert answer.status_code == 404 and answer.headers["Content-Type"] == "application/json", (path, answer.content)
    legacy = requests.get(f"{front.url}/live_m3u8/{vid}/root.m3u8", timeout=10)
    assert legacy.status_code == 200 and b"not media" not in legacy.content  # the app renders it; the link is not read


def test_nginx_answers_one_range_at_most(front: Front) -> None:
    """A request for many ranges of a media file gets the whole file once (max_ranges 1), not a multipart answer."""
    vid = front.stack.new_video("ranges")
    folder = tree(front.stack.services).video_dir(vid)
    (folder / "HIGH").mkdir(parents=True)
    (folder / "HIGH/000000.m4s").write_bytes(bytes(range(256)) * 4)
    url = f"{front.url}/video_files/{vid}/HIGH/000000.m4s"
    one = requests.get(url, headers={"Range": "bytes=10-19"}, timeout=10)
    assert (one.status_code, one.content) == (206, bytes(range(10, 20)))
    many = requests.get(
        url, headers={"Range": ",".join(f"bytes={k}-{k}" if k == 0 else f"{k}-{k}" for k in range(0, 200, 2))}, timeout=10
    )
    assert (many.status_code, len(many.content)) == (200, 1024), many.headers.get("Content-Type")
