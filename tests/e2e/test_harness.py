"""The browser harness itself: real players on streams ffmpeg makes here, from another origin."""

from __future__ import annotations

import functools
import http.server
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.harness.players import long_stalls, play, summary

SECONDS = 12
MAX_STALL = 3.0
ENCODE = ["-c:v", "libx264", "-preset", "ultrafast", "-g", "30", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "96k"]


def _lavfi_inputs(seconds: int, *, realtime: bool = False) -> list[str]:
    # -re paces reading at 1x so a live packager writes segments as a camera would.
    pace = ["-re"] if realtime else []
    return [
        *pace,
        "-f",
        "lavfi",
        "-i",
        f"testsrc2=size=640x360:rate=30:duration={seconds}",
        *pace,
        "-f",
        "lavfi",
        "-i",
        f"sine=frequency=440:sample_rate=48000:duration={seconds}",
    ]


def _ffmpeg(*args: str) -> list[str]:
    return ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args]


def dash_vod_argv(out: Path) -> list[str]:
    """Return the argv packaging a SECONDS-long test clip as DASH VOD into out/."""
    return _ffmpeg(*_lavfi_inputs(SECONDS), *ENCODE, "-f", "dash", "-seg_duration", "3", str(out / "stream.mpd"))


def hls_argv(out: Path, *, playlist_type: str, seg: int, realtime: bool = False) -> list[str]:
    """Return the argv packaging a SECONDS-long test clip as HLS fMP4 into out/."""
    return _ffmpeg(
        *_lavfi_inputs(SECONDS, realtime=realtime),
        *ENCODE,
        "-f",
        "hls",
        "-hls_time",
        str(seg),
        "-hls_segment_type",
        "fmp4",
        "-hls_playlist_type",
        playlist_type,
        # temp_file: a segment appears under its name only once complete.
        "-hls_flags",
        "temp_file",
        "-hls_segment_filename",
        str(out / "seg_%03d.m4s"),
        str(out / "index.m3u8"),
    )


class _CorsHandler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".mpd": "application/dash+xml",
        ".m3u8": "application/vnd.apple.mpegurl",
        ".m4s": "video/iso.segment",
        ".mp4": "video/mp4",
    }

    def end_headers(self) -> None:
        # The page lives on the harness's origin: every fetch here is cross-origin.
        self.send_header("Access-Control-Allow-Origin", "*")
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


class _QuietServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        # Players abort requests they no longer need; that is not a test failure.
        pass


@dataclass(frozen=True)
class Streams:
    root: Path
    base: str


@pytest.fixture(scope="module")
def streams(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Streams]:
    root = tmp_path_factory.mktemp("streams")
    for sub in ("dash", "hls"):
        (root / sub).mkdir()
    subprocess.run(dash_vod_argv(root / "dash"), check=True, timeout=120)
    subprocess.run(hls_argv(root / "hls", playlist_type="vod", seg=3), check=True, timeout=120)
    server = _QuietServer(("127.0.0.1", 0), functools.partial(_CorsHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Streams(root, f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.mark.parametrize(("player", "path"), [("dash", "dash/stream.mpd"), ("hls", "hls/index.m3u8")])
def test_vod_plays_to_the_end(streams: Streams, player: str, path: str) -> None:
    report = play(player, f"{streams.base}/{path}", timeout=SECONDS + 20)

    assert report["ended"], summary(report)
    assert report["errors"] == [], summary(report)
    assert long_stalls(report, MAX_STALL) == [], summary(report)
    assert report["currentTime"] == pytest.approx(SECONDS, abs=0.5), summary(report)
    assert report["maxBufferedEnd"] >= SECONDS - 0.5, summary(report)
    assert not report["live"]
    assert report["pageOrigin"] != streams.base  # CORS really was exercised


@pytest.mark.parametrize(
    ("player", "path"),
    [
        ("dash", "missing.mpd"),
        ("hls", "missing.m3u8"),
        ("shaka", "missing.mpd"),
        ("shaka", "missing.m3u8"),
        ("videojs", "missing.mpd"),
        ("videojs", "missing.m3u8"),
        ("native", "missing.mp4"),
    ],
)
def test_missing_stream_is_reported_as_an_error(streams: Streams, player: str, path: str) -> None:
    report = play(player, f"{streams.base}/{path}", timeout=20)

    assert report["errors"], summary(report)
    assert report["fatal"] and report["stopReason"] == "fatal", summary(report)
    assert not report["ended"]


def test_hls_live_event_is_followed_to_endlist(streams: Streams) -> None:
    live = streams.root / "live"
    live.mkdir()
    playlist = live / "index.m3u8"
    argv = hls_argv(live, playlist_type="event", seg=2, realtime=True)
    encoder_t0 = time.time()
    log = (live.parent / "live-ffmpeg.log").open("w")
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 10
        while not playlist.exists():
            assert time.monotonic() < deadline, "ffmpeg wrote no live playlist within 10 s"
            time.sleep(0.05)
        report = play("hls", f"{streams.base}/live/index.m3u8", timeout=SECONDS + 25)
        assert proc.wait(timeout=30) == 0, (live.parent / "live-ffmpeg.log").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()

    assert report["live"], summary(report)
    assert "#EXT-X-ENDLIST" in playlist.read_text()
    assert report["ended"], summary(report)
    assert report["errors"] == [], summary(report)
    assert long_stalls(report, MAX_STALL) == [], summary(report)
    assert report["currentTime"] == pytest.approx(SECONDS, abs=0.5), summary(report)
    assert report["latency"] is not None and report["latency"]["count"] > 0, summary(report)
    # How far behind the edge it plays is a figure for bench/live_latency.py, not a timed assertion.
    # Wall clock from ffmpeg's start to what is on screen, for the log (-rA shows it).
    wall = [(report["wallT0"] + s["t"]) / 1000 - encoder_t0 - s["ct"] for s in report["samples"] if "latency" in s]
    print(f"hls.js live latency: edge {report['latency']}, wall-clock mean {sum(wall) / len(wall):.2f}s max {max(wall):.2f}s")
