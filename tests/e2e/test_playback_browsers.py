"""Real players on the real server: dash.js, hls.js and Chromium's own HLS, live and VOD, over HTTP.

One module-scoped stack (fresh tables, a private gearmand, two `python -m server.segment_processor`
workers, the app served over HTTP on loopback) and eight phone-like segments made once by ffmpeg.
The live stream is recorded by a thread that uploads one segment every UPLOAD_EVERY seconds while
dash.js and hls.js follow it at the same time (each from its own page origin); the VOD plays run
concurrently too, which keeps the module well under three minutes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest
import requests

from server.config import Config
from server.playlists import VIDEO_TIMESCALE
from tests import services as real
from tests.e2e.players import long_stalls, play, summary
from tests.integration.conftest import Stack
from tests.media import make_segment

# Phone-like: 1080x720 at 30 fps, cut on keyframes, so durations wander around 3 s (whole frames).
DURATIONS = (3.0, 2.9, 3.1, 3.0, 3.1, 2.9, 3.0, 3.0)
SEGMENT_S = 3.0
MAX_STALL = SEGMENT_S
UPLOAD_EVERY = 2.0
PLAY_TIMEOUT = 75.0
RUNGS = ("HIGH", "MEDIUM", "LOW")  # Config.LADDER's names


@dataclass
class Recording:
    """A live recording in progress: who uploaded what when, and any failure of the uploader."""

    video_id: int
    created: float
    uploads: dict[int, float] = field(default_factory=dict)
    ended: float | None = None
    error: BaseException | None = None
    thread: threading.Thread | None = None


@pytest.fixture(scope="module")
def segments(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    folder = tmp_path_factory.mktemp("phone")
    with ThreadPoolExecutor(2) as pool:
        paths = pool.map(
            lambda i: make_segment(folder / f"seg{i}.mp4", seconds=DURATIONS[i], size="1080x720"), range(len(DURATIONS))
        )
        return [p.read_bytes() for p in paths]


@pytest.fixture(scope="module")
def stack(mysql_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    real.truncate_all(mysql_database)
    tmp = tmp_path_factory.mktemp("stack")
    gearmand = real.Gearmand().start()
    config = Config.from_env(
        DATABASE_URL=mysql_database,
        MEDIA_ROOT=tmp / "media",
        SECRET_KEY="test",
        GEARMAN_SERVERS=(gearmand.address,),
        MEMCACHED_SERVERS=(),
        CACHE_PREFIX="e2e:",
        REAPER_INTERVAL=0.5,
        PROCESSING_DEADLINE=20.0,
        JOB_MAX_ATTEMPTS=3,
        RETRY_BACKOFF=0.3,
        GAP_TIMEOUT=10.0,
        FFMPEG_TIMEOUT=60.0,
    )
    s = Stack(config, gearmand)
    try:
        for _ in range(2):
            s.start_worker(tmp / "workers.log")
        s.serve()
        yield s
    finally:
        s.close()
        gearmand.stop()


def _record(stack: Stack, segments: list[bytes], title: str) -> Recording:
    """Create a video, upload 0 and 1 now, then the rest every UPLOAD_EVERY s from a thread, then end it."""
    video_id = stack.new_video(title)
    rec = Recording(video_id, time.time())

    def upload(k: int) -> None:
        stack.upload(video_id, k, segments[k])
        rec.uploads[k] = time.time()

    def rest() -> None:
        try:
            for k in range(2, len(segments)):
                time.sleep(UPLOAD_EVERY)
                upload(k)
            stack.end(video_id, len(segments) - 1)
            rec.ended = time.time()
        except BaseException as e:  # reported by the test, not lost in the thread
            rec.error = e

    upload(0)
    upload(1)
    rec.thread = threading.Thread(target=rest, name=f"phone-{video_id}", daemon=True)
    rec.thread.start()
    return rec


def _durations(stack: Stack, video_id: int) -> list[float]:
    video = stack.video(video_id)
    assert video is not None
    return [s.duration_ticks / VIDEO_TIMESCALE for s in sorted(video.segments, key=lambda s: s.segment_id)]


def _play_all(jobs: dict[str, Callable[[], dict]]) -> dict[str, dict | BaseException]:
    """Run each play concurrently; return its report, or the exception the harness raised."""
    with ThreadPoolExecutor(len(jobs)) as pool:
        futures = {name: pool.submit(job) for name, job in jobs.items()}
        out: dict[str, dict | BaseException] = {}
        for name, future in futures.items():
            try:
                out[name] = future.result(timeout=PLAY_TIMEOUT + 90)
            except BaseException as e:
                out[name] = e
        return out


def _report(reports: dict[str, dict | BaseException], name: str) -> dict:
    report = reports[name]
    if isinstance(report, BaseException):
        raise report
    return report


def _first_played(report: dict) -> float:
    """Return the media time at which playback started (the first sample once playing)."""
    first = report["firstPlayingMs"]
    assert first is not None, summary(report)
    return next(s["ct"] for s in report["samples"] if s["t"] >= first)


@dataclass(frozen=True)
class Live:
    video_id: int
    durations: list[float]
    reports: dict[str, dict | BaseException]


@pytest.fixture(scope="module")
def live(stack: Stack, segments: list[bytes]) -> Live:
    rec = _record(stack, segments, "live e2e")
    base = f"{stack.base_url}/video_files/{rec.video_id}"
    # Players start once the list has something in it, as a viewer would open the stream.
    stack.wait(lambda: stack.segment(rec.video_id, 0).packaged_at is not None, 60, "segment 0 packaged")
    reports = _play_all(
        {
            "dash": lambda: play("dash", f"{base}/manifest.mpd", timeout=PLAY_TIMEOUT),
            "hls": lambda: play("hls", f"{base}/master.m3u8", timeout=PLAY_TIMEOUT),
        }
    )
    assert rec.thread is not None
    rec.thread.join(timeout=30)
    if rec.error is not None:
        raise rec.error
    stack.wait_vod(rec.video_id, timeout=60)
    return Live(rec.video_id, _durations(stack, rec.video_id), reports)


@pytest.mark.parametrize("player", ["dash", "hls"])
def test_live_stream_is_followed_to_its_end(live: Live, player: str) -> None:
    report = _report(live.reports, player)
    total = sum(live.durations)

    assert not report["fatal"], summary(report)
    assert [e for e in report["errors"] if e["fatal"]] == [], summary(report)
    assert report["live"], summary(report)
    assert report["ended"], summary(report)
    assert long_stalls(report, MAX_STALL) == [], summary(report)
    assert report["currentTime"] == pytest.approx(total, abs=0.5), summary(report)
    # From the start, or from the live edge: either way the last two segments were seen playing.
    assert _first_played(report) <= total - sum(live.durations[-2:]) + 0.5, summary(report)
    print(f"{player} live: started at {_first_played(report):.2f}s, latency {report['latency']}, ended by {report['endedBy']}")


@dataclass(frozen=True)
class Vod:
    video_id: int
    total: float
    reports: dict[str, dict | BaseException]


VOD_PLAYS = {
    "dash": ("dash", "/video_files/{vid}/manifest.mpd"),
    "hls": ("hls", "/video_files/{vid}/master.m3u8"),
    "legacy-ts": ("hls", "/live_m3u8/{vid}/root.m3u8"),
    "native": ("native", "/video_files/{vid}/master.m3u8"),
}


def _warm_cache(base: str, video_id: int) -> None:
    """Fetch every playlist once, as a first viewer would: the players then get cached answers."""
    paths = ["manifest.mpd", "master.m3u8", "audio/playlist.m3u8"]
    paths += [f"{rung}/playlist.m3u8" for rung in RUNGS]
    urls = [f"{base}/video_files/{video_id}/{p}" for p in paths]
    urls += [f"{base}/live_m3u8/{video_id}/root.m3u8"] + [f"{base}/live_m3u8/{video_id}/{r}/stream.m3u8" for r in RUNGS]
    for url in urls:
        assert requests.get(url, timeout=10).status_code == 200, url


@pytest.fixture(scope="module")
def vod(stack: Stack, segments: list[bytes]) -> Vod:
    video_id = stack.new_video("vod e2e")
    for k, data in enumerate(segments):
        stack.upload(video_id, k, data)
    stack.end(video_id, len(segments) - 1)
    stack.wait_vod(video_id, timeout=90)
    total = sum(_durations(stack, video_id))
    _warm_cache(stack.base_url, video_id)

    def job(player: str, path: str) -> Callable[[], dict]:
        url = stack.base_url + path.format(vid=video_id)
        return lambda: play(player, url, timeout=total + 30)

    return Vod(video_id, total, _play_all({name: job(*spec) for name, spec in VOD_PLAYS.items()}))


@pytest.mark.parametrize("name", list(VOD_PLAYS))
def test_vod_plays_from_start_to_end(vod: Vod, name: str) -> None:
    report = _report(vod.reports, name)

    assert report["errors"] == [], summary(report)
    assert report["ended"], summary(report)
    assert not report["live"], summary(report)
    assert long_stalls(report, MAX_STALL) == [], summary(report)
    assert report["currentTime"] == pytest.approx(vod.total, abs=0.5), summary(report)
    assert _first_played(report) < 0.5, summary(report)


def test_the_pages_were_cross_origin(stack: Stack, vod: Vod) -> None:
    for report in vod.reports.values():
        if isinstance(report, dict):
            assert report["pageOrigin"] != stack.base_url
