"""Real players on the real server: dash.js, hls.js, Shaka Player, video.js and Chromium's own HLS, live and VOD.

One module-scoped stack (fresh tables, a private gearmand, two `python -m server.segment_processor`
workers, the app served over HTTP on loopback) and eight phone-like segments made once by ffmpeg.
One live recording per format (DASH, then HLS): its players open it before anything is uploaded
(the format's reference player, Shaka Player, video.js), then a thread uploads one segment every
UPLOAD_EVERY seconds, and Shaka Player and video.js open it again mid-stream; all follow it to its
end at the same time, each from its own page origin. The VOD plays run a few at a time.

Doors (docs/api.md "Doors"): a fourth recording is of a private video, its four players opening signed links
minted by links.mint_link; then the VOD, its public plays done, is made private and played from links, from
links that have expired (each player must stop on its own error event carrying the 403) and from its plain
URL (the 404).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC
from urllib.parse import urlparse

import m3u8
import pytest
import requests

from server.core.doors import LINK_PREFIX
from server.core.states import Visibility
from server.core.timeline import VIDEO_TIMESCALE
from server.domain import curation, links, publishing
from tests.harness import services as real
from tests.harness.media import file_entries, make_segment
from tests.harness.players import long_stalls, play, summary
from tests.harness.stack import Stack, stack_config

# Phone-like: 1080x720 at 30 fps, cut on keyframes, so durations wander around 3 s (whole frames).
DURATIONS = (3.0, 2.9, 3.1, 3.0, 3.1, 2.9, 3.0, 3.0)
SEGMENT_S = 3.0
MAX_STALL = SEGMENT_S
UPLOAD_EVERY = 2.0
PLAY_TIMEOUT = 75.0
RUNGS = ("HIGH", "MEDIUM", "LOW")  # Config.LADDER's names
PATHS = {"dash": "manifest.mpd", "hls": "master.m3u8"}
# Three live recordings, at most four players each (more starve the encoder of the 2 cores and every
# player waits at the live edge): per format, its players open it before anything is uploaded, one
# after the other, the least patient last (video.js gives up at the first error on a DASH MPD, so it
# waits at most FIRST_SEGMENT_WAIT: docs/architecture.md "What players see first"); in the third, Shaka Player and
# video.js open it mid-stream, once segment MID_STREAM_AT is packaged (hls.js joins the HLS one then too).
# A play is "<when>:<player>:<format>".
RECORDINGS = {
    "dash": ("before:dash:dash", "before:shaka:dash", "before:videojs:dash"),
    "hls": ("before:hls:hls", "before:shaka:hls", "before:videojs:hls", "mid:hls:hls"),
    "mid-stream": ("mid:shaka:dash", "mid:shaka:hls", "mid:videojs:dash", "mid:videojs:hls"),
    # A private video: every player opens its signed link (the HLS master or the MPD) before the first upload.
    "private": ("before:hls:hls", "before:dash:dash", "before:shaka:hls", "before:videojs:dash"),
}
PRIVATE = ("private",)
LINK_TTL = 900  # s: outlives every play from a link
MID_STREAM_AT = 3
MIN_FPS = 10  # decoded pictures per second played, at least (the phone shoots 30)
VOD_AT_ONCE = 4  # concurrent VOD plays: more only starve each other of the 2 cores


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
    config = stack_config(
        mysql_database,
        tmp / "media",
        GEARMAN_SERVERS=(gearmand.address,),
        REAPER_INTERVAL=0.5,
        PROCESSING_DEADLINE=20.0,
        JOB_MAX_ATTEMPTS=3,
        RETRY_BACKOFF=0.3,
        GAP_TIMEOUT=10.0,
        FFMPEG_TIMEOUT=60.0,
        FIRST_SEGMENT_WAITERS=16,  # every player below may hold its video and audio playlists at once
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


def _record(stack: Stack, segments: list[bytes], video_id: int) -> Recording:
    """Upload 0 and 1 now, then the rest every UPLOAD_EVERY s from a thread, then end the video."""
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


def _play_all(jobs: dict[str, Callable[[], dict]], at_once: int) -> dict[str, dict | BaseException]:
    """Run the plays, at_once at a time; return each one's report, or the exception the harness raised."""
    with ThreadPoolExecutor(at_once) as pool:
        return _results({name: pool.submit(job) for name, job in jobs.items()})


def _results(futures: dict[str, Future[dict]]) -> dict[str, dict | BaseException]:
    out: dict[str, dict | BaseException] = {}
    for name, future in futures.items():
        try:
            out[name] = future.result(timeout=3 * (PLAY_TIMEOUT + 90))
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


def _packaged(stack: Stack, video_id: int, segment_id: int) -> float | None:
    """Return when the segment was packaged, as epoch seconds (the players' clock); None if not yet."""
    video = stack.video(video_id)
    segment = next((s for s in video.segments if s.segment_id == segment_id), None) if video else None
    if segment is None or segment.packaged_at is None:
        return None
    return segment.packaged_at.replace(tzinfo=UTC).timestamp()


@dataclass(frozen=True)
class Live:
    video_id: int
    durations: list[float]
    uploaded: dict[int, float]  # epoch s, per segment
    packaged: dict[int, float]  # epoch s, per segment: when it could first be listed
    reports: dict[str, dict | BaseException]  # per play name
    anonymous: dict[str, tuple[int, int]]  # a private video's files asked mid-stream: path -> (by link, plainly)


@pytest.fixture(scope="module")
def recordings(stack: Stack, segments: list[bytes], tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Live]:
    """Return each recording of RECORDINGS, made once, when a test first asks for it."""
    made: dict[str, Live | Exception] = {}

    def get(name: str) -> Live:
        if name not in made:
            try:
                made[name] = _live(stack, segments, tmp_path_factory, name)
            except Exception as e:  # every play of that recording reports it, none records it again
                made[name] = e
        result = made[name]
        if isinstance(result, Exception):
            raise result
        return result

    return get


def _make_private(stack: Stack, video_id: int) -> None:
    with stack.services.sessions() as session:
        curation.set_visibility(stack.services, session, video_id, Visibility.PRIVATE, by="e2e")


def _link(stack: Stack, video_id: int, fmt: str, ttl: int = LINK_TTL) -> str:
    """Mint a signed link to the video's HLS master or MPD, as `video link` does; return its whole URL."""
    with stack.services.sessions() as session:
        link = links.mint_link(stack.services, session, video_id, dash=fmt == "dash", ttl=ttl, by="e2e")
    return stack.base_url + link.path


def _plain(stack: Stack, video_id: int, fmt: str) -> str:
    return _plain_file(stack, video_id, PATHS[fmt])


def _plain_file(stack: Stack, video_id: int, path: str) -> str:
    return f"{stack.base_url}/video_files/{video_id}/{path}"


def _live(stack: Stack, segments: list[bytes], tmp_path_factory: pytest.TempPathFactory, recording: str) -> Live:
    plays = RECORDINGS[recording]
    video_id = stack.new_video(f"live {recording}")
    private = recording in PRIVATE
    if private:
        _make_private(stack, video_id)
    src = {fmt: (_link if private else _plain)(stack, video_id, fmt) for fmt in PATHS}
    shots, opened = tmp_path_factory.mktemp(f"screenshots-{recording}"), tmp_path_factory.mktemp(f"opened-{recording}")

    def job(name: str) -> Callable[[], dict]:
        _, player, fmt = name.split(":")
        url = src[fmt]
        stem = name.replace(":", "-")

        def run() -> dict:
            report = play(player, url, timeout=PLAY_TIMEOUT, screenshot=shots / f"{stem}.png", opened=opened / stem)
            (shots / f"{stem}.json").write_text(json.dumps(report))  # whole, events and samples too
            return report

        return run

    futures: dict[str, Future[dict]] = {}
    with ThreadPoolExecutor(len(plays)) as pool:
        for name in (n for n in plays if n.startswith("before:")):
            futures[name] = pool.submit(job(name))
            # Nothing is uploaded until this player has asked for the stream.
            stack.wait(lambda name=name: (opened / name.replace(":", "-")).exists(), 120, f"{name} opened the stream")
        rec = _record(stack, segments, video_id)
        stack.wait(lambda: _packaged(stack, video_id, MID_STREAM_AT), 90, "mid-stream")
        futures |= {name: pool.submit(job(name)) for name in plays if name not in futures}
        anonymous = _ask_both_ways(stack, video_id, src["hls"]) if private else {}
        reports = _results(futures)
    assert rec.thread is not None
    rec.thread.join(timeout=30)
    if rec.error is not None:
        raise rec.error
    stack.wait_vod(video_id, timeout=60)
    packaged = {k: _packaged(stack, video_id, k) for k in range(len(segments))}
    assert all(at is not None for at in packaged.values()), packaged
    return Live(video_id, _durations(stack, video_id), dict(rec.uploads), packaged, reports, anonymous)  # type: ignore[arg-type]


def _ask_both_ways(stack: Stack, video_id: int, link: str) -> dict[str, tuple[int, int]]:
    """GET the video's playlists and first media files under the link and at their plain URLs; return both statuses."""
    paths = [*PATHS.values(), "audio/playlist.m3u8", f"{RUNGS[0]}/playlist.m3u8", f"{RUNGS[0]}/init.mp4", "audio/000000.m4s"]
    folder = link.rsplit("/", 1)[0]
    return {
        p: (
            requests.get(f"{folder}/{p}", timeout=10).status_code,
            requests.get(_plain_file(stack, video_id, p), timeout=10).status_code,
        )
        for p in paths
    }


def _waited_on(report: dict) -> list[dict]:
    """Return the playlist requests that are held before the first segment: the MPD and media playlists."""
    return [r for r in report["playlists"] if not r["path"].endswith("/master.m3u8")]


@pytest.mark.parametrize(("recording", "name"), [(rec, name) for rec, names in RECORDINGS.items() for name in names])
def test_live_stream_is_followed_to_its_end(recordings: Callable[[str], Live], recording: str, name: str) -> None:
    live = recordings(recording)
    when = name.split(":")[0]
    report = _report(live.reports, name)
    total = sum(live.durations)
    asked = _waited_on(report)

    assert asked, summary(report)
    if when == "before":
        # It asked before anything could be listed, waited, and reached playback without a fatal error.
        assert asked[0]["sent"] / 1000 < live.packaged[0], summary(report)
    else:
        assert asked[0]["sent"] / 1000 > live.packaged[MID_STREAM_AT], summary(report)
    assert not report["fatal"], summary(report)
    assert [e for e in report["errors"] if e["fatal"]] == [], summary(report)
    assert report["live"], summary(report)
    assert report["ended"], summary(report)
    assert long_stalls(report, MAX_STALL) == [], summary(report)
    assert report["currentTime"] == pytest.approx(total, abs=0.5), summary(report)
    # From the start, or from the live edge: either way the last two segments were seen playing.
    assert _first_played(report) <= total - sum(live.durations[-2:]) + 0.5, summary(report)
    assert report["screenshot"] is not None, summary(report)  # taken once the picture had moved 1 s
    _decoded_pictures(report)
    # Every file was asked for where the player opened the stream (under the link, for a private video).
    folder = _folder(report["src"])
    assert _elsewhere(report, folder) == [], summary(report)
    assert [r for r in report["refused"] if r["status"] in (403, 404)] == [], summary(report)
    if recording in PRIVATE:
        assert folder.startswith(LINK_PREFIX), summary(report)
        assert set(live.anonymous.values()) == {(200, 404)}, live.anonymous  # the link opens each, nothing else does
    statuses = sorted({r["status"] for r in asked})
    lag = [round(live.packaged[k] - live.uploaded[k], 1) for k in sorted(live.uploaded)]
    print(
        f"{name} {report['version']}: started at {_first_played(report):.2f}s, playlist statuses {statuses},"
        f" latency {report['latency']}, ended by {report['endedBy']}, upload -> packaged {lag} s,"
        f" screenshot {report['screenshot']['path']}"
    )


def _folder(src: str) -> str:
    """The path a stream was opened at, without its file name: where the player must find everything else."""
    return urlparse(src).path.rsplit("/", 1)[0] + "/"


def _elsewhere(report: dict, folder: str) -> list[dict]:
    """The requests for the stream's files (playlists, segments) made outside `folder`; the clock (/time) may be."""
    asked = report["playlists"] + [r for r in report["media"] if r["path"] != publishing.TIME_URL]
    return [r for r in asked if not r["path"].startswith(folder)]


def _decoded_pictures(report: dict) -> None:
    """Pictures were decoded as the clock moved (a moving currentTime alone could be audio or a frozen frame)."""
    played = report["currentTime"] - _first_played(report)
    assert report["frames"]["decoded"] >= MIN_FPS * played, summary(report)


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
    "shaka-dash": ("shaka", "/video_files/{vid}/manifest.mpd"),
    "shaka-hls": ("shaka", "/video_files/{vid}/master.m3u8"),
    "videojs-dash": ("videojs", "/video_files/{vid}/manifest.mpd"),
    "videojs-hls": ("videojs", "/video_files/{vid}/master.m3u8"),
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

    return Vod(video_id, total, _play_all({name: job(*spec) for name, spec in VOD_PLAYS.items()}, VOD_AT_ONCE))


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


@pytest.mark.parametrize("recording", ["hls", "mid-stream"])
def test_the_live_hls_plays_were_of_one_second_parts(
    stack: Stack, recordings: Callable[[str], Live], segments: list[bytes], recording: str
) -> None:
    """What every live HLS play above followed: each segment listed as ~1 s byte-range parts of its file, target 1,
    and fetched as such (the players' media requests carried a Range)."""
    live = recordings(recording)
    for name in (n for n in RECORDINGS[recording] if n.endswith(":hls")):
        asked = _report(live.reports, name)["requests"]
        assert asked["ranged"] >= len(segments), (name, asked)
    for track in (*RUNGS, "audio"):
        text = requests.get(f"{stack.base_url}/video_files/{live.video_id}/{track}/playlist.m3u8", timeout=10).text
        playlist = m3u8.loads(text)
        assert playlist.target_duration == 1 and "#EXT-X-SERVER-CONTROL" not in text, text
        assert [s.uri for s in file_entries(playlist)] == [f"{k:06d}.m4s" for k in range(len(segments))], text
        assert len(playlist.segments) >= 3 * len(segments) - 1 and all(s.byterange for s in playlist.segments), text
        assert max(s.duration for s in playlist.segments) <= 1.003, text


def test_the_vod_hls_plays_were_of_whole_segments(stack: Stack, vod: Vod, segments: list[bytes]) -> None:
    """A finished video's VOD playlists (what its master names) list whole files: Chromium's own HLS needs them."""
    for track in (*RUNGS, "audio"):
        text = requests.get(f"{stack.base_url}/video_files/{vod.video_id}/{track}/vod.m3u8", timeout=10).text
        playlist = m3u8.loads(text)
        assert playlist.target_duration == 3 and [s.byterange for s in playlist.segments] == [None] * len(segments), text


# The VOD made private, once its public plays are done: each player from a fresh link (the formats the private
# recording's Shaka Player and video.js did not play), and each from an expired link and from the plain URL.
PRIVATE_VOD_PLAYS = {
    "hls": ("hls", "hls"),
    "dash": ("dash", "dash"),
    "shaka-dash": ("shaka", "dash"),
    "videojs-hls": ("videojs", "hls"),
}
REFUSED_PLAYS = {"hls": ("hls", "hls"), "dash": ("dash", "dash"), "shaka": ("shaka", "dash"), "videojs": ("videojs", "hls")}
SHORT_TTL = 5  # s: a link that still opens when first asked, then expires while the fresh links play
REFUSED_TIMEOUT = 30.0  # s: a refused player must have given up by then, not hang


@dataclass(frozen=True)
class PrivateVod:
    video_id: int
    total: float
    expiring: dict[str, tuple[int, int]]  # per format: the short link's status when minted, then once expired
    reports: dict[str, dict | BaseException]  # "link:<play>", "expired:<play>", "plain:<play>"


@pytest.fixture(scope="module")
def private_vod(stack: Stack, vod: Vod, tmp_path_factory: pytest.TempPathFactory) -> PrivateVod:
    _make_private(stack, vod.video_id)
    fresh = {fmt: _link(stack, vod.video_id, fmt) for fmt in PATHS}
    short = {fmt: _link(stack, vod.video_id, fmt, ttl=SHORT_TTL) for fmt in PATHS}
    first = {fmt: requests.get(url, timeout=10).status_code for fmt, url in short.items()}
    shots = tmp_path_factory.mktemp("screenshots-private-vod")

    def job(name: str, player: str, url: str, **shot: object) -> Callable[[], dict]:
        def run() -> dict:
            timeout = vod.total + 30 if name.startswith("link:") else REFUSED_TIMEOUT
            report = play(player, url, timeout=timeout, **shot)  # type: ignore[arg-type]
            (shots / f"{name.replace(':', '-')}.json").write_text(json.dumps(report))
            return report

        return run

    futures: dict[str, Future[dict]] = {}
    with ThreadPoolExecutor(VOD_AT_ONCE) as pool:
        for name, (player, fmt) in PRIVATE_VOD_PLAYS.items():
            futures[f"link:{name}"] = pool.submit(job(f"link:{name}", player, fresh[fmt], screenshot=shots / f"link-{name}.png"))
        # The server's own answer turns 403 at expiry: then, and not before, the players are handed the link.
        for fmt, url in short.items():
            stack.wait(lambda url=url: requests.get(url, timeout=10).status_code == 403, SHORT_TTL + 30, f"{fmt} link expired")
        expired = {fmt: requests.get(url, timeout=10).status_code for fmt, url in short.items()}
        for name, (player, fmt) in REFUSED_PLAYS.items():
            for kind, url in (("expired", short[fmt]), ("plain", _plain(stack, vod.video_id, fmt))):
                shot = shots / f"{kind}-{name}.png"
                futures[f"{kind}:{name}"] = pool.submit(job(f"{kind}:{name}", player, url, error_screenshot=shot))
        reports = _results(futures)
    print(f"private VOD screenshots and reports: {shots}")
    return PrivateVod(vod.video_id, vod.total, {fmt: (first[fmt], expired[fmt]) for fmt in PATHS}, reports)


@pytest.mark.parametrize("name", list(PRIVATE_VOD_PLAYS))
def test_private_vod_plays_from_a_link(private_vod: PrivateVod, name: str) -> None:
    report = _report(private_vod.reports, f"link:{name}")

    assert report["errors"] == [], summary(report)
    assert report["ended"], summary(report)
    assert long_stalls(report, MAX_STALL) == [], summary(report)
    assert report["currentTime"] == pytest.approx(private_vod.total, abs=0.5), summary(report)
    assert _first_played(report) < 0.5, summary(report)
    _decoded_pictures(report)
    assert report["screenshot"] is not None, summary(report)
    folder = _folder(report["src"])
    assert folder.startswith(LINK_PREFIX), summary(report)
    assert report["refused"] == [], summary(report)
    assert _elsewhere(report, folder) == [], summary(report)
    assert any(r["path"].endswith((".m4s", ".mp4")) for r in report["media"]), summary(report)


def _stopped_on(report: dict, status: int) -> None:
    """The player gave up on its own error event carrying `status`, before showing a picture, and did not hang.

    (The <video> element may report its own MEDIA_ERR first: video.js ends the MediaSource as it gives up.)
    """
    assert report["stopReason"] == "fatal", summary(report)
    own = [e for e in report["errors"] if e["fatal"] and e["source"] == report["player"]]
    assert own and own[0]["status"] == status, summary(report)
    assert {r["status"] for r in report["refused"]} == {status}, summary(report)
    assert report["firstPlayingMs"] is None and report["frames"]["decoded"] == 0, summary(report)
    assert report["errorScreenshot"] is not None, summary(report)


@pytest.mark.parametrize("name", list(REFUSED_PLAYS))
def test_an_expired_link_stops_the_player_with_403(private_vod: PrivateVod, name: str) -> None:
    # The short link opened the video when minted and was refused once expired, on the server's clock.
    assert set(private_vod.expiring.values()) == {(200, 403)}, private_vod.expiring
    report = _report(private_vod.reports, f"expired:{name}")

    _stopped_on(report, 403)
    assert _folder(report["src"]).startswith(LINK_PREFIX), summary(report)
    print(f"expired link, {name}: {report['errors'][0]} after {report['elapsed']:.1f}s, {report['errorScreenshot']['path']}")


@pytest.mark.parametrize("name", list(REFUSED_PLAYS))
def test_a_private_video_plain_url_is_404(private_vod: PrivateVod, name: str) -> None:
    report = _report(private_vod.reports, f"plain:{name}")

    _stopped_on(report, 404)
    assert _folder(report["src"]) == f"/video_files/{private_vod.video_id}/", summary(report)
