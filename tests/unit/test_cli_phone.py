"""The phone side of `stream` (server/ops/phone.py): cut argv, the upload plan, pacing, sources, retries over loopback HTTP."""

from __future__ import annotations

import json
import random
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from server.core.transcode import ffmpeg
from server.core.transcode.ladder import SourceInfo
from server.ops import phone

BASE = ["ffmpeg", "-nostdin", "-hide_banner", "-nostats", "-loglevel", "error", "-y"]
SEGMENT = ["-f", "segment", "-segment_time", "3", "-reset_timestamps", "1", "-segment_format", "mp4"]
SEGMENT += ["-segment_format_options", "movflags=+faststart", "-segment_list", "/o/segments.csv", "-segment_list_type", "csv"]
MAPS = ["-map", "0:v:0", "-map", "0:a:0?"]


def test_a_copy_cut_argv() -> None:
    argv = ffmpeg.cut_argv(Path("/in/a b.mp4"), Path("/o"), copy=True)
    assert argv == [*BASE, "-i", "/in/a b.mp4", *MAPS, "-c", "copy", "-map_metadata", "-1", *SEGMENT, "/o/%06d.mp4"]


def test_a_url_is_reencoded_with_keyframes_forced_every_3_s_and_read_over_http_only() -> None:
    argv = ffmpeg.cut_argv("https://h/x.m3u8", Path("/o"), copy=False)
    source = ["-protocol_whitelist", "http,https,tcp,tls,crypto", "-rw_timeout", "20000000", "-i", "https://h/x.m3u8"]
    codecs = ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-force_key_frames", "expr:gte(t,n_forced*3)"]
    codecs += ["-c:a", "aac", "-b:a", "128k"]
    assert argv == [*BASE, *source, *MAPS, *codecs, "-map_metadata", "-1", *SEGMENT, "/o/%06d.mp4"]


@pytest.mark.parametrize(
    ("codec", "keyframes", "copy"),
    [("h264", 1.0, True), ("h264", 3.0, True), ("h264", 3.1, False), ("h264", None, False), ("hevc", 1.0, False)],
)
def test_copy_only_when_the_keyframes_allow(codec: str, keyframes: float | None, copy: bool) -> None:
    assert ffmpeg.can_copy_cut(SourceInfo(640, 360, 10.0, 30.0, True, codec, keyframes)) is copy


def test_the_segment_list_gives_each_length() -> None:
    assert ffmpeg.parse_cut_list("000000.mp4,0.000000,3.000000\n000001.mp4,3.000000,4.500000\n") == [
        ("000000.mp4", 3.0),
        ("000001.mp4", 1.5),
    ]


def test_in_order_by_default_and_every_segment_twice_at_duplicate_1() -> None:
    assert phone.upload_plan(5, shuffle=False, duplicate=0.0, rng=random.Random(1)) == [0, 1, 2, 3, 4]
    twice = phone.upload_plan(5, shuffle=True, duplicate=1.0, rng=random.Random(1))
    assert sorted(twice) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    with pytest.raises(ValueError, match="probability"):
        phone.upload_plan(3, shuffle=False, duplicate=2.0, rng=random.Random(1))


@pytest.mark.parametrize("seed", range(200))
def test_a_shuffled_plan_sends_each_once_or_twice_and_stays_in_its_window(seed: int) -> None:
    rng = random.Random(seed)
    count, duplicate = rng.randrange(0, 30), rng.choice([0.0, 0.3, 1.0])
    plan = phone.upload_plan(count, shuffle=True, duplicate=duplicate, rng=rng)
    assert set(plan) == set(range(count))
    assert all(1 <= plan.count(k) <= 2 for k in range(count))
    sent: set[int] = set()
    for k in plan:
        if k not in sent:  # a first send: at most window - 1 lower segments are still waiting
            assert len([j for j in range(k) if j not in sent]) < phone.SHUFFLE_WINDOW
            sent.add(k)


def test_the_same_seed_gives_the_same_plan() -> None:
    def plan(seed: int) -> list[int]:
        return phone.upload_plan(40, shuffle=True, duplicate=0.3, rng=random.Random(seed))

    assert plan(7) == plan(7) != plan(8)


def test_pacing_holds_a_segment_until_it_is_recorded() -> None:
    now = [100.0]
    cuts = [phone.Cut(i, Path(f"{i}.mp4"), s) for i, s in enumerate([3.0, 2.5, 1.0])]
    pacer = phone.Pacer(cuts, fast=False, clock=lambda: now[0])
    now[0] = 101.0
    assert [pacer.delay(k) for k in range(3)] == [2.0, 4.5, 5.5]
    now[0] = 110.0
    assert pacer.delay(2) == 0.0
    assert phone.Pacer(cuts, fast=True, clock=lambda: 0.0).delay(2) == 0.0


def test_sources(tmp_path: Path) -> None:
    video = tmp_path / "v.mp4"
    video.write_bytes(b"x")
    assert phone.check_source(str(video)) == video
    assert phone.check_source("https://example.org/v.mp4") == "https://example.org/v.mp4"
    for bad, message in [
        ("ftp://h/v.mp4", "unsupported URL scheme 'ftp'"),
        ("file:///etc/passwd", "unsupported URL scheme 'file'"),
        ("rtmp://h/live", "unsupported URL scheme 'rtmp'"),
        (str(tmp_path / "missing.mp4"), "no such file"),
        (str(tmp_path), "no such file"),
    ]:
        with pytest.raises(phone.PhoneError, match=message):
            phone.check_source(bad)


def test_playback_urls_are_built_as_the_app_builds_them() -> None:
    video = {"video_id": 9, "base_url": "/video_files/9", "uri_mpd": "manifest.mpd", "uri_m3u8": "master.m3u8"}
    assert phone.playback_urls("http://h:5000/", video) == {
        "mpd": "http://h:5000/video_files/9/manifest.mpd",
        "hls": "http://h:5000/video_files/9/master.m3u8",
        "android": "http://h:5000/live_mpd/9.mpd",
    }


# -- the HTTP calls, against a loopback server that answers from a script -----------------------------


@contextmanager
def scripted(answers: list[tuple[int, dict[str, object]]]) -> Iterator[tuple[str, list[tuple[str, str, bytes]]]]:
    """Serve `answers` in turn (the last one repeats); yield the base URL and every request seen."""
    seen: list[tuple[str, str, bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            seen.append((self.path, self.headers.get("Content-Type", ""), body))
            status, answer = answers[min(len(seen), len(answers)) - 1]
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_5xx_and_429_are_retried_with_doubling_backoff_then_the_answer_is_returned() -> None:
    answers = [(503, {"message": "busy"}), (429, {"message": "slow down"}), (500, {}), (201, {"segment_id": 4})]
    with scripted(answers) as (url, seen):
        slept: list[float] = []
        client = phone.PhoneClient(url, sleep=slept.append)
        assert client.upload(3, 4, b"DATA") == {"segment_id": 4}
    assert slept == [0.5, 1.0, 2.0] and client.retried == 3 and len(seen) == 4
    path, content_type, body = seen[0]
    assert path == "/video_segment/3" and content_type.startswith("multipart/form-data; boundary=")
    assert b'name="data"; filename="video-4.mp4"\r\nContent-Type: multipart/form-data\r\nContent-Length: 4\r\n' in body


def test_a_4xx_is_not_retried_and_says_the_server_s_message() -> None:
    with scripted([(409, {"message": "segment 4 differs"})]) as (url, seen):
        client = phone.PhoneClient(url, sleep=lambda _s: None)
        with pytest.raises(phone.PhoneError, match=r"^/video_end/3: HTTP 409 segment 4 differs$"):
            client.end(3, 4)
    assert seen == [("/video_end/3", "application/x-www-form-urlencoded", b"last_segment_id=4")]


def test_retries_are_bounded_and_a_refused_connection_is_one_line() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    slept: list[float] = []
    client = phone.PhoneClient(f"http://127.0.0.1:{port}", retries=5, sleep=slept.append)
    with pytest.raises(phone.PhoneError) as error:
        client.create_video("t")
    assert slept == [0.5, 1.0, 2.0, 4.0, 8.0]
    assert (
        "\n" not in str(error.value) and "could not create the video" in str(error.value) and "after 6 tries" in str(error.value)
    )


def test_a_server_that_never_answers_times_out() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)  # accepts into the backlog, never reads or answers
        client = phone.PhoneClient(f"http://127.0.0.1:{sock.getsockname()[1]}", timeout=0.3, retries=1, sleep=lambda _s: None)
        with pytest.raises(phone.PhoneError, match="timed out"):
            client.check()


def test_only_an_http_server_is_accepted() -> None:
    with pytest.raises(phone.PhoneError, match="must be an http"):
        phone.PhoneClient("ftp://h")
