"""Dashboard tabs never starve the web app: event streams live on their own server, behind the shipped nginx.

The web app runs under gunicorn with deploy/gunicorn.conf.py, the event-stream server with
deploy/gunicorn-events.conf.py (both as shipped, the web app with 2 processes instead of 4 to spare the
machine), behind deploy/nginx/team03.conf with only its addresses replaced. A hundred open streams leave
the phones' uploads and the video list answering at once, and the stream past ADMIN_STREAMS is refused
at once, in JSON, rather than queued behind the others.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from server.config import Config
from tests.harness import services as real
from tests.harness.android import new_video_body, segment_upload
from tests.harness.sse import SseClient

TABS = 100  # open dashboard tabs, each one event stream
WEB_PROCESSES = 2
PROMPT = 5.0  # seconds: "at once" for a request on loopback, far below nginx's 60 s and the phone's 20 s
OPENING = 15.0  # seconds the hundred streams may take to open, together
STREAM_TIMEOUT = 30.0  # an open stream's reads (keep-alives come every 15 s)


@dataclass
class Front:
    base: str  # nginx
    app: str  # the web app's own gunicorn, as an nginx site from before the event-stream server reaches it
    config: Config


@pytest.fixture
def front(make_config, gearmand, tmp_path: Path) -> Iterator[Front]:  # type: ignore[no-untyped-def]
    """nginx (shipped site) in front of the web app and the event-stream server, each under its shipped gunicorn config."""
    config: Config = make_config(GEARMAN_SERVERS=(gearmand.address,))
    assert config.ADMIN_STREAMS == Config().ADMIN_STREAMS  # the shipped cap
    env = {**os.environ, **config.to_env(), "LOG_LEVEL": "WARNING"}
    app_port, events_port, port = real.free_port(), real.free_port(), real.free_port()
    app_log, events_log = tmp_path / "gunicorn.log", tmp_path / "gunicorn-events.log"
    procs = [real.start_gunicorn(env, app_port, app_log, "-w", str(WEB_PROCESSES))]
    prefix = real.nginx_prefix()
    try:
        real.wait_http(f"http://127.0.0.1:{app_port}/ping", procs[0], app_log)
        events = dict(conf="deploy/gunicorn-events.conf.py", app="server:create_events_app()")
        procs.append(real.start_gunicorn(env, events_port, events_log, **events))
        real.wait_http(f"http://127.0.0.1:{events_port}/ping", procs[1], events_log)
        procs.append(real.start_nginx(prefix, real.render_nginx(prefix, app_port, port, events_port=events_port)))
        real.wait_http(f"http://127.0.0.1:{port}/ping", procs[2], prefix / "nginx.out")
        yield Front(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{app_port}", config)
    finally:
        real.stop_gracefully(procs, timeout=20)
        subprocess.run(["rm", "-rf", str(prefix)], check=False)


def login(base: str) -> dict[str, str]:
    """The dashboard's cookie (one scrypt check, not one per tab as HTTP Basic would cost)."""
    response = requests.post(f"{base}/api/admin/login", json={"username": "root", "password": "s3cret"}, timeout=PROMPT)
    assert response.status_code == 200, response.text
    return {"Cookie": f"team03_session={response.cookies['team03_session']}"}


def open_stream(url: str, headers: dict[str, str]) -> SseClient | str:
    try:
        return SseClient(url, headers, timeout=STREAM_TIMEOUT)
    except OSError as exc:  # no answer before the client's deadline
        return f"no answer: {exc}"


def timed(call) -> object:  # type: ignore[no-untyped-def]
    """The status of `call()`, or that it did not answer within PROMPT seconds."""
    try:
        return call().status_code
    except requests.RequestException as exc:
        return f"no answer within {PROMPT:g} s: {exc!r}"


def first_created(stream: SseClient, timeout: float) -> int:
    """The video of the first `video.created` the stream carries (other events skipped), within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        (message,) = stream.events(1, timeout=max(0.0, deadline - time.monotonic()))
        if message.event == "video.created":
            return message.data["video_id"]  # type: ignore[index, no-any-return]


def test_a_hundred_dashboard_tabs_slow_no_upload(front: Front, admin_auth: dict[str, str], segment_files: list[Path]) -> None:
    cookie = login(front.base)
    url = f"{front.base}/api/admin/events"
    video = requests.post(f"{front.base}/videos", json=new_video_body("tabs"), timeout=PROMPT).json()["video_id"]
    body, content_type = segment_upload(0, segment_files[0].read_bytes())
    pool = ThreadPoolExecutor(max_workers=TABS)
    openers = []
    try:
        # A stream's headers come only once its server has a thread for it; the old web app never had one past its 8.
        # The requests below come while any stream still waiting is waiting (its client gives up after STREAM_TIMEOUT).
        openers = [pool.submit(open_stream, url, cookie) for _ in range(TABS)]
        done, _ = wait(openers, timeout=OPENING)
        seen: dict[str, object] = {
            "open": sum(isinstance(s, SseClient) and s.status == 200 for s in (f.result() for f in done)),
            "videos": timed(lambda: requests.get(f"{front.base}/videos", timeout=PROMPT)),
            "upload": timed(
                lambda: requests.post(
                    f"{front.base}/video_segment/{video}", data=body, headers={"Content-Type": content_type}, timeout=PROMPT
                )
            ),
        }
        try:
            refused = requests.get(url, headers=cookie, timeout=PROMPT)
            seen["one more"] = (refused.status_code, refused.headers.get("Retry-After"), refused.json().get("code"))
        except (requests.RequestException, ValueError) as exc:
            seen["one more"] = f"no JSON answer within {PROMPT:g} s: {exc!r}"
        assert seen == {"open": TABS, "videos": 200, "upload": 201, "one more": (503, "5", "too_many_streams")}
        # Every tab still gets what happens: the first and the last stream see a new video within a second or two.
        created = requests.post(f"{front.base}/videos", json=new_video_body("seen"), timeout=PROMPT).json()["video_id"]
        for opener in (openers[0], openers[-1]):
            stream = opener.result()
            assert isinstance(stream, SseClient)
            assert first_created(stream, PROMPT) == created
    finally:
        for opener in openers:  # each one once it has an answer (a stream the old app left waiting: its client's deadline)
            if isinstance(stream := opener.result(), SseClient):
                with contextlib.suppress(OSError):
                    stream.close()
        pool.shutdown()


def test_streams_that_reach_the_web_app_take_at_most_two_threads_of_a_process(front: Front, admin_auth: dict[str, str]) -> None:
    """An nginx site from before the event-stream server sends the streams to the web app: it refuses all but 2 per process."""
    cookie = login(front.base)
    streams: list[SseClient] = []
    try:
        while len(streams) <= 2 * WEB_PROCESSES and (not streams or streams[-1].status == 200):
            streams.append(SseClient(f"{front.app}/api/admin/events", cookie, timeout=PROMPT))  # each answers within PROMPT
        refused = streams[-1]
        assert (refused.status, refused.headers.get("retry-after")) == (503, "5")
        assert json.loads(refused.response.read())["code"] == "too_many_streams"
    finally:
        for stream in streams:
            stream.close()
