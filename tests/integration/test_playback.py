"""Playback on the real pipeline: what players are told while live, at the end, and as VOD."""

from __future__ import annotations

import json
import math
import subprocess
import threading
import time
from urllib.parse import urljoin
from xml.etree import ElementTree

import m3u8
import pytest
import requests
from mpegdash.parser import MPEGDASHParser

from server.infra.models import SegmentState
from tests.harness.android import android_player
from tests.harness.media import byte_range, file_entries
from tests.harness.tree import tree

NS = {"d": "urn:mpeg:dash:schema:mpd:2011"}


def _android(client, vid, after=None):  # type: ignore[no-untyped-def]
    url = f"/live_mpd/{vid}.mpd" + ("" if after is None else f"?last_segment_id={after}")
    response = client.get(url, headers={"Accept": "application/json", "Cache-control": "public,max-age=0"})
    assert response.status_code == 200
    root = ElementTree.fromstring(response.data)
    reps = root.findall(".//d:Representation", NS)
    names = [[u.get("media") for u in r.findall(".//d:SegmentURL", NS)] for r in reps]
    return response, reps, names


def _packaged(stack, vid, k):  # type: ignore[no-untyped-def]
    """Segment k is packaged and the playlist files show it."""
    return stack.segment(vid, k).packaged_at is not None and stack.published(vid)


def test_live_playlists_grow_then_become_vod(stack, segment_files, tmp_path):
    stack.start_worker(tmp_path / "worker.log")
    client = stack.client
    vid = stack.new_video()
    for k in (0, 1):
        stack.upload(vid, k, segment_files[k].read_bytes())
    stack.wait(lambda: _packaged(stack, vid, 0) and _packaged(stack, vid, 1), 60, "0 and 1 packaged")

    response, reps, names = _android(client, vid)
    assert response.headers["lastSegmentId"] == "1" and response.headers["streamEnded"] == "false"
    assert len(reps) >= 3 and names[0] == ["000000.mp4", "000001.mp4"]
    assert ElementTree.fromstring(response.data).find("d:BaseURL", NS).text == f"/video_files/{vid}/"
    response, _, names = _android(client, vid, after=1)
    assert "lastSegmentId" not in response.headers and response.headers["streamEnded"] == "false"
    assert names[0] == []

    media = m3u8.loads(client.get(f"/video_files/{vid}/HIGH/playlist.m3u8").data.decode())
    assert media.playlist_type == "event" and not media.is_endlist
    # Each file in ~1 s parts (one per keyframe), byte ranges that cover it, lasting what the TS lasts.
    assert [s.uri for s in file_entries(media)] == ["000000.m4s", "000001.m4s"]
    for name, seconds in (("000000.m4s", 3.0), ("000001.m4s", 2.9)):
        parts = [s for s in media.segments if s.uri == name]
        assert [round(s.duration, 3) for s in parts[:-1]] == [1.0] * (len(parts) - 1) and len(parts) == 3
        assert round(sum(s.duration for s in parts), 3) == seconds
        ranges = [byte_range(s) for s in parts]
        assert ranges[0][0] == 0 and [o for o, _ in ranges[1:]] == [o + n for o, n in ranges[:-1]]
        with client.get(f"/video_files/{vid}/HIGH/{name}") as whole:
            assert sum(n for _, n in ranges) == len(whole.data)
    # RFC 8216 4.3.3.1: every EXTINF rounded to the nearest integer fits the target, fixed at 1 (6.2.1);
    # no EXT-X-SERVER-CONTROL, which hls-parser reads as Low-Latency HLS (render.live_timing).
    assert media.target_duration == 1 >= max(math.floor(s.duration + 0.5) for s in media.segments)
    assert "#EXT-X-SERVER-CONTROL" not in client.get(f"/video_files/{vid}/HIGH/playlist.m3u8").data.decode()
    legacy = m3u8.loads(client.get(f"/live_m3u8/{vid}/LOW/stream.m3u8").data.decode())
    assert not legacy.is_endlist
    assert [s.uri for s in legacy.segments] == [f"/video_files/{vid}/LOW/000000.ts", f"/video_files/{vid}/LOW/000001.ts"]
    assert [round(s.duration, 1) for s in legacy.segments] == [3.0, 2.9]  # actual, not a constant 3
    mpd = MPEGDASHParser.parse(client.get(f"/video_files/{vid}/manifest.mpd").data.decode())
    assert mpd.type == "dynamic" and mpd.utc_timings

    stack.upload(vid, 2, segment_files[2].read_bytes())
    stack.end(vid, 2)
    stack.wait_vod(vid)
    response, _, names = _android(client, vid, after=2)
    assert response.headers["streamEnded"] == "true" and names[0] == []  # ended, nothing new
    _, _, names = _android(client, vid)
    assert names[2] == ["000000.mp4", "000001.mp4", "000002.mp4"]
    media = m3u8.loads(client.get(f"/video_files/{vid}/MEDIUM/playlist.m3u8").data.decode())
    assert media.playlist_type == "event" and media.is_endlist and len(file_entries(media)) == 3  # RFC 8216 6.2.1
    assert media.segment_map[0].uri == "init.mp4"
    assert m3u8.loads(client.get(f"/live_m3u8/{vid}/HIGH/stream.m3u8").data.decode()).is_endlist
    master = m3u8.loads(client.get(f"/live_m3u8/{vid}/root.m3u8").data.decode())
    assert [p.uri for p in master.playlists] == ["HIGH/stream.m3u8", "MEDIUM/stream.m3u8", "LOW/stream.m3u8"]
    assert urljoin(f"http://h/live_m3u8/{vid}/root.m3u8", master.playlists[0].uri) == f"http://h/live_m3u8/{vid}/HIGH/stream.m3u8"
    mpd = MPEGDASHParser.parse(client.get(f"/video_files/{vid}/manifest.mpd").data.decode())
    assert mpd.type == "static" and mpd.media_presentation_duration.startswith("PT")
    vtt = client.get(f"/video_files/{vid}/storyboard.vtt")
    assert vtt.data.startswith(b"WEBVTT") and b"storyboard/000002.jpg#xywh=" in vtt.data
    video = client.get(f"/video/{vid}").json
    assert (video["type"], video["status"], video["segment_count"]) == ("VOD", "OK", 3)
    assert video["uri_thumbnail"] == "thumbnails/000001.jpg"
    with client.get(f"/video_files/{vid}/{video['uri_thumbnail']}") as thumbnail:
        assert thumbnail.status_code == 200 and thumbnail.headers["Content-Type"] == "image/jpeg"


def test_players_opening_before_the_first_segment_are_answered_once_it_is_packaged(
    make_config, gearmand, segment_files, tmp_path
):  # type: ignore[no-untyped-def]
    from tests.harness.stack import Stack

    # A wait longer than any encode here, so the answer comes from the segment and not the deadline.
    stack = Stack(make_config(GEARMAN_SERVERS=(gearmand.address,), FIRST_SEGMENT_WAIT=120.0), gearmand)
    try:
        stack.start_worker(tmp_path / "worker.log")
        vid = stack.new_video()
        paths = ("manifest.mpd", "HIGH/playlist.m3u8", "audio/playlist.m3u8")
        answers: dict[str, object] = {}

        def open_(path: str) -> None:
            answers[path] = stack.app.test_client().get(f"/video_files/{vid}/{path}")

        threads = [threading.Thread(target=open_, args=(path,)) for path in paths]
        for thread in threads:
            thread.start()
        stack.wait(lambda: stack.services.holds.held == len(paths), 30, "every request held")
        stack.upload(vid, 0, segment_files[0].read_bytes())
        for thread in threads:
            thread.join(timeout=150)
        assert all(answers[p].status_code == 200 for p in paths), {p: answers[p].status_code for p in paths}  # type: ignore[attr-defined]
        assert stack.services.holds.held == 0

        media = m3u8.loads(answers["HIGH/playlist.m3u8"].data.decode())  # type: ignore[attr-defined]
        assert [s.uri for s in file_entries(media)] == ["000000.m4s"] and media.segment_map[0].uri == "init.mp4"
        with stack.client.get(f"/video_files/{vid}/HIGH/init.mp4") as init:
            assert init.status_code == 200  # the promised file exists
        mpd = MPEGDASHParser.parse(answers["manifest.mpd"].data.decode())  # type: ignore[attr-defined]
        assert mpd.type == "dynamic" and mpd.periods[0].adaptation_sets[0].segment_templates[0].segment_timelines
        first_codecs = [
            p.stream_info.codecs for p in m3u8.loads(stack.client.get(f"/video_files/{vid}/master.m3u8").data.decode()).playlists
        ]
        stack.end(vid, 0)
        stack.wait_vod(vid)
        last_codecs = [
            p.stream_info.codecs for p in m3u8.loads(stack.client.get(f"/video_files/{vid}/master.m3u8").data.decode()).playlists
        ]
        assert first_codecs == last_codecs  # the playlists never change their codecs once media exists
    finally:
        stack.close()


def test_the_android_player_loop_follows_a_live_upload_to_the_end(stack, segment_files, tmp_path):
    stack.start_worker(tmp_path / "worker.log")
    base = stack.serve()
    vid = stack.new_video()

    def phone() -> None:
        for k in (0, 2, 1, 3):  # the recorder's retry queue reorders
            body_ok = stack.upload(vid, k, segment_files[k].read_bytes())
            assert body_ok.status_code == 201
            time.sleep(1.0)
        stack.end(vid, 3)

    recorder = threading.Thread(target=phone)
    recorder.start()
    seen = android_player(base, vid, time.monotonic() + 120)
    recorder.join()
    assert seen == ["000000.mp4", "000001.mp4", "000002.mp4", "000003.mp4"]


@pytest.mark.parametrize("path", ["video_files/{vid}/master.m3u8", "live_m3u8/{vid}/root.m3u8", "video_files/{vid}/manifest.mpd"])
def test_ffmpeg_decodes_the_whole_stream(finished_video, path):
    base, vid, total = finished_video
    url = f"{base}/{path.format(vid=vid)}"
    decoded = subprocess.run(
        ["ffmpeg", "-v", "error", "-xerror", "-i", url, "-map", "0:v:0", "-f", "null", "-"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert decoded.returncode == 0, decoded.stderr[-2000:]
    out = subprocess.run(["ffprobe", "-v", "error", "-of", "json", "-show_format", url], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert abs(float(json.loads(out.stdout)["format"]["duration"]) - total) < 0.6


@pytest.fixture
def finished_video(stack, segment_files, tmp_path):  # type: ignore[no-untyped-def]
    stack.start_worker(tmp_path / "worker.log")
    base = stack.serve()
    vid = stack.new_video()
    for k in range(3):
        stack.upload(vid, k, segment_files[k].read_bytes())
    stack.end(vid, 2)
    stack.wait_vod(vid)
    return base, vid, sum(stack.segment(vid, k).duration_ticks for k in range(3)) / 90000


def test_serving_headers_caching_ranges_cors_and_no_escape(finished_video, stack):
    base, vid, _ = finished_video
    with requests.Session() as s:
        _check_serving(s, base, vid)


def _check_serving(s: requests.Session, base: str, vid: int) -> None:
    expected = {
        f"/video_files/{vid}/manifest.mpd": "application/dash+xml",
        f"/video_files/{vid}/master.m3u8": "application/vnd.apple.mpegurl",
        f"/live_mpd/{vid}.mpd": "application/dash+xml",
        f"/video_files/{vid}/storyboard.vtt": "text/vtt; charset=utf-8",
        f"/video_files/{vid}/HIGH/000000.m4s": "video/iso.segment",
        f"/video_files/{vid}/HIGH/init.mp4": "video/mp4",
        f"/video_files/{vid}/LOW/000001.ts": "video/mp2t",
        f"/video_files/{vid}/storyboard/000000.jpg": "image/jpeg",
    }
    for path, mime in expected.items():
        response = s.get(base + path, headers={"Origin": "http://player.example"})
        assert response.status_code == 200, path
        assert response.headers["Content-Type"] == mime, path
        assert response.headers["Access-Control-Allow-Origin"] == "*"
        assert response.headers["ETag"]
        assert s.get(base + path, headers={"If-None-Match": response.headers["ETag"]}).status_code == 304, path
    assert s.get(f"{base}/video_files/{vid}/master.m3u8").headers["Cache-Control"] == "public, max-age=1"  # a file, ETag
    media = s.get(f"{base}/video_files/{vid}/HIGH/000000.m4s", headers={"Range": "bytes=0-99"})
    assert media.status_code == 206 and len(media.content) == 100
    assert "immutable" in media.headers["Cache-Control"]
    assert "lastSegmentId" in s.get(f"{base}/live_mpd/{vid}.mpd").headers["Access-Control-Expose-Headers"]
    preflight = s.options(
        f"{base}/video_files/{vid}/HIGH/000000.m4s", headers={"Origin": "http://x", "Access-Control-Request-Headers": "range"}
    )
    assert preflight.status_code == 200 and "Range" in preflight.headers["Access-Control-Allow-Headers"]
    for bad in (
        "originals/000000.mp4",
        "HIGH/../originals/000000.mp4",
        "HIGH/",
        "",
        "..%2F..%2Fetc%2Fpasswd",
        "HIGH/000000.mp4.tmp",
    ):
        assert s.get(f"{base}/video_files/{vid}/{bad}").status_code == 404, bad
    assert s.get(f"{base}/live_mpd/{vid}.mpd?last_segment_id=x").status_code == 400
    assert s.get(f"{base}/video_files/{vid}/NOPE/playlist.m3u8").status_code == 404
    assert s.get(f"{base}/live_mpd/99999.mpd").status_code == 404


def test_the_android_mpd_is_cached_in_memcached_by_revision(make_config, gearmand, segment_files, tmp_path):
    """The one dynamic playlist (its query and headers) is rendered once per revision; the others are files."""
    import os

    from server.web.answers import current_revision
    from tests.harness.stack import Stack

    servers = tuple(os.environ.get("MEMCACHED_SERVERS", "127.0.0.1:11211").split(","))
    stack = Stack(make_config(GEARMAN_SERVERS=(gearmand.address,), MEMCACHED_SERVERS=servers, REAPER_INTERVAL=0.5), gearmand)
    try:
        stack.start_worker(tmp_path / "worker.log")
        vid = stack.new_video()
        stack.upload(vid, 0, segment_files[0].read_bytes())
        stack.wait(lambda: _packaged(stack, vid, 0), 60, "packaged")
        first = stack.client.get(f"/live_mpd/{vid}.mpd").data
        with stack.services.sessions() as session:
            revision = current_revision(session, vid)
        assert stack.services.cache.get(f"pl:{vid}:{revision}:android:None") is not None
        stack.upload(vid, 1, segment_files[1].read_bytes())
        stack.wait(lambda: _packaged(stack, vid, 1), 60, "packaged")
        second = stack.client.get(f"/live_mpd/{vid}.mpd").data
        assert first.count(b"<SegmentURL") == 3 and second.count(b"<SegmentURL") == 6  # a new revision is never answered stale
    finally:
        stack.close()


def test_live_to_vod_in_every_order(stack, segment_files, tmp_path):
    data = [p.read_bytes() for p in segment_files]
    stack.start_worker(tmp_path / "w1.log")
    stack.start_worker(tmp_path / "w2.log")
    # a) every segment done before the end signal: VOD from the end's own answer
    a = stack.new_video("a")
    for k in range(2):
        stack.upload(a, k, data[k])
    stack.wait(lambda: _packaged(stack, a, 0) and _packaged(stack, a, 1), 60, "a packaged")
    answer = stack.client.post(f"/video_end/{a}", data={"last_segment_id": "1"}).json
    assert answer["type"] == "VOD"
    # b) the end signal before the last segments are uploaded
    b = stack.new_video("b")
    stack.upload(b, 0, data[0])
    stack.end(b, 2)
    assert stack.video(b).type.value == "LIVE"
    stack.upload(b, 2, data[2])
    stack.upload(b, 1, data[1])
    # c) a segment that never arrives: VOD after GAP_TIMEOUT, without it
    c = stack.new_video("c")
    stack.upload(c, 0, data[0])
    stack.upload(c, 2, data[2])
    stack.end(c, 2)
    # d) a segment that fails for good: VOD without it
    d = stack.new_video("d")
    for k in range(3):
        stack.upload(d, k, data[k])
    original = tree(stack.services).original(d, 1, "mp4")
    original.write_bytes(b"\0" * 5000)
    stack.end(d, 2)
    for vid, expected in ((b, [0, 1, 2]), (c, [0, 2]), (d, [0, 2])):
        video = stack.wait_vod(vid, timeout=90)
        assert video.status.value == "OK"
        listed = m3u8.loads(stack.client.get(f"/video_files/{vid}/HIGH/playlist.m3u8").data.decode())
        files = file_entries(listed)
        assert [int(s.uri[:6]) for s in files] == expected
        assert listed.is_endlist
        if expected != [0, 1, 2]:
            assert files[1].discontinuity and [s for s in listed.segments if s.discontinuity] == [files[1]]
    assert stack.segment(d, 1).status is SegmentState.FAILED
    for vid in (a, b, c, d):
        assert stack.client.get(f"/live_mpd/{vid}.mpd?last_segment_id=2").headers["streamEnded"] == "true"


def test_the_vod_switch_happens_exactly_once_under_races(stack, segment_files, tmp_path):
    from server.domain.lifecycle import maybe_finish

    stack.start_worker(tmp_path / "worker.log")
    vid = stack.new_video()
    stack.upload(vid, 0, segment_files[0].read_bytes())
    stack.wait(lambda: _packaged(stack, vid, 0), 60, "packaged")
    stack.workers[0].terminate()
    stack.workers[0].wait()
    with stack.services.sessions() as session:
        from server.domain.ingest import end_video

        end_video(stack.services, session, vid, 0)
    results: list[bool] = []

    def race() -> None:
        with stack.services.sessions() as session:
            results.append(maybe_finish(stack.services, session, vid))

    threads = [threading.Thread(target=race) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 1
    assert stack.video(vid).type.value == "VOD"
