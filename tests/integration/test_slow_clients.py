"""Slow clients: bodies that trickle in hold no database connection, are cut at a deadline, and leave nothing;
and what a caller reaching gunicorn directly may claim about itself (X-Forwarded-For).

The app runs as in production, under gunicorn with deploy/gunicorn.conf.py, directly and behind
deploy/nginx/team03.conf; the dev server (dev_run.py) gets the deadline test. Slow clients are raw
loopback sockets sending the Android upload a few bytes a second; everything is bounded in count and time.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import selectors
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from server.config import Config
from server.infra.models import Segment
from tests.harness import services as real
from tests.harness.android import new_video_body, segment_upload
from tests.harness.sse import SseClient

SLOW = 50
ANDROID_TIMEOUT = 20.0  # seconds the Android app waits for an answer: "promptly" here means within that


@dataclass
class Served:
    """The app on a loopback port; `port` is where clients connect (nginx's when there is a front)."""

    config: Config
    port: int

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def temp_files(self) -> list[Path]:
        root = self.config.MEDIA_ROOT
        return [p for p in root.rglob(".*") if p.is_file()] if root.exists() else []

    def segment_ids(self, video_id: int) -> set[int]:
        engine = create_engine(self.config.DATABASE_URL)
        try:
            with Session(engine) as session:
                return set(session.scalars(select(Segment.segment_id).where(Segment.video_id == video_id)))
        finally:
            engine.dispose()

    def new_video(self) -> int:
        response = requests.post(f"{self.base}/videos", json=new_video_body("slow clients"), timeout=ANDROID_TIMEOUT)
        assert response.status_code == 201, response.text
        return response.json()["video_id"]


class SlowUpload:
    """One Android upload on a raw socket: headers and the body into the segment's bytes, then a few bytes a second."""

    def __init__(self, port: int, video_id: int, segment_id: int, data: bytes, *, missing: int = 0) -> None:
        body, content_type = segment_upload(segment_id, data)
        head = (
            f"POST /video_segment/{video_id} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        # Well into the data part (servers read bodies in 64 KiB blocks and wait for a whole one): a server
        # reading this body has its temp file open by now.
        sent = body.index(data) + min(len(data) // 2, 256 * 1024)
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=ANDROID_TIMEOUT)
        self.sock.sendall(head.encode() + body[:sent])
        self.rest = body[sent : len(body) - missing]
        self.lock = threading.Lock()

    def trickle(self, count: int = 2) -> None:
        with self.lock:
            if len(self.rest) > count:
                self.sock.sendall(self.rest[:count])
                self.rest = self.rest[count:]

    def finish(self) -> tuple[int, bytes]:
        """Send the rest of the body (all that was promised, unless `missing`); return the answer's status and body."""
        with self.lock:
            self.sock.sendall(self.rest)
            self.rest = b""
        response = http.client.HTTPResponse(self.sock)
        response.begin()
        return response.status, response.read()

    def cut(self) -> None:
        """The phone loses its connection mid-body."""
        with self.lock:
            self.sock.close()


@pytest.fixture
def trickling() -> Iterator[Callable[[list[SlowUpload]], None]]:
    """Start one thread that sends every given upload 2 more bytes each second until the test ends."""
    stop = threading.Event()
    threads: list[threading.Thread] = []

    def start(uploads: list[SlowUpload]) -> None:
        def loop() -> None:
            while not stop.wait(1.0):
                for upload in uploads:
                    with contextlib.suppress(OSError):  # cut, or refused by the server
                        upload.trickle()

        threads.append(threading.Thread(target=loop, daemon=True))
        threads[-1].start()

    yield start
    stop.set()
    for thread in threads:
        thread.join(timeout=5)


def server_env(config: Config, **extra: str) -> dict[str, str]:
    return {**os.environ, **config.to_env(), "LOG_LEVEL": "WARNING", **extra}


@pytest.fixture
def gunicorn(make_config, gearmand, tmp_path: Path) -> Iterator[Callable[..., Served]]:  # type: ignore[no-untyped-def]
    """Start the app under gunicorn (deploy/gunicorn.conf.py, one process) with the given env and flags."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(threads: int, **env: str) -> Served:
        config = make_config(GEARMAN_SERVERS=(gearmand.address,), MAX_SEGMENT_BYTES=8 * 1024 * 1024)
        port = real.free_port()
        log = tmp_path / "gunicorn.log"
        # A short graceful timeout: at the end the master kills a worker whose threads are still stuck.
        flags = ("-w", "1", "--threads", str(threads), "--graceful-timeout", "5")
        procs.append(real.start_gunicorn(server_env(config, **env), port, log, *flags))
        real.wait_http(f"http://127.0.0.1:{port}/ping", procs[-1], log)
        return Served(config, port)

    yield start
    real.stop_gracefully(procs, timeout=20)


@pytest.fixture
def nginx_front() -> Iterator[Callable[[Served], tuple[Served, Callable[[], int]]]]:
    """Put deploy/nginx/team03.conf in front of a served app; return it and a reader of nginx's open connections."""
    procs: list[subprocess.Popen[bytes]] = []
    prefix = real.nginx_prefix()

    def front(app: Served) -> tuple[Served, Callable[[], int]]:
        port, status_port = real.free_port(), real.free_port()
        procs.append(real.start_nginx(prefix, real.render_nginx(prefix, app.port, port, status_port=status_port)))
        real.wait_http(f"http://127.0.0.1:{port}/ping", procs[-1], prefix / "nginx.out")

        def connections() -> int:
            text = requests.get(f"http://127.0.0.1:{status_port}/status", timeout=5).text
            return int(re.search(r"Active connections:\s*(\d+)", text)[1])  # type: ignore[index]

        return Served(app.config, port), connections

    yield front
    real.stop_gracefully(procs, timeout=10)
    subprocess.run(["rm", "-rf", str(prefix)], check=False)


def probe(served: Served, video_id: int, data: bytes) -> dict[str, object]:
    """What must keep working: /ping, a normal upload and the video list; each one's status, or that none came in 20 s."""
    body, content_type = segment_upload(0, data)
    calls = {
        "ping": lambda: requests.get(f"{served.base}/ping", timeout=ANDROID_TIMEOUT),
        "upload": lambda: requests.post(
            f"{served.base}/video_segment/{video_id}",
            data=body,
            headers={"Content-Type": content_type},
            timeout=ANDROID_TIMEOUT,
        ),
        "videos": lambda: requests.get(f"{served.base}/videos", timeout=ANDROID_TIMEOUT),  # listed from its first segment
    }
    seen: dict[str, object] = {}
    for name, call in calls.items():
        try:
            response = call()
        except requests.Timeout:
            seen[name] = f"no answer within {ANDROID_TIMEOUT:g} s"
            continue
        seen[name] = response.status_code
        if name == "videos" and response.ok:
            seen["listed"] = video_id in {v["video_id"] for v in response.json()}
    return seen


PROMPT = {"ping": 200, "videos": 200, "listed": True, "upload": 201}


def test_fifty_slow_uploads_starve_nothing(gunicorn, trickling, segment_files: list[Path]) -> None:  # type: ignore[no-untyped-def]
    """Straight to gunicorn (threads enough for every connection): 50 bodies arriving at once hold no database connection."""
    served = gunicorn(threads=SLOW + 8, BODY_READ_TIMEOUT="120")
    video_id = served.new_video()
    data = segment_files[0].read_bytes()
    slow = [SlowUpload(served.port, video_id, 1 + k, data) for k in range(SLOW)]
    trickling(slow)
    try:
        # Every slow body is being received: each has its temp file beside its destination (bounded wait; 15 on
        # the code that held a pooled connection per upload).
        with contextlib.suppress(AssertionError):
            real.wait_for(lambda: len(served.temp_files()) == SLOW, 45, "every slow body being received")
        seen = {"receiving": len(served.temp_files()), **probe(served, video_id, data)}
        assert seen == {"receiving": SLOW, **PROMPT}
    finally:
        for upload in slow:
            upload.cut()
    real.wait_for(lambda: not served.temp_files(), 60, f"the cut uploads' temp files deleted: {served.temp_files()}")
    assert served.segment_ids(video_id) == {0}


def test_slow_uploads_wait_in_nginx(gunicorn, nginx_front, trickling, segment_files: list[Path]) -> None:  # type: ignore[no-untyped-def]
    """Behind the shipped nginx config, a slow body reaches the app only once complete; a cut one never does."""
    app = gunicorn(threads=4, BODY_READ_TIMEOUT="120")  # fewer threads than slow clients: only the front protects them
    served, connections = nginx_front(app)
    video_id = served.new_video()
    data = segment_files[0].read_bytes()
    slow = [SlowUpload(served.port, video_id, 1 + k, data) for k in range(SLOW)]
    trickling(slow)
    try:
        real.wait_for(lambda: connections() > SLOW, 60, f"nginx holding the {SLOW} slow uploads")
        assert probe(served, video_id, data) == PROMPT
        assert app.temp_files() == [], "a body still arriving at nginx reached the app"
        status, body = slow[-1].finish()  # the one that completes reaches the app, in one fast hop
        assert status == 201, body
    finally:
        for upload in slow:
            upload.cut()
    real.wait_for(lambda: connections() == 1, 60, "nginx closing the cut uploads (only the status request left)")
    assert app.temp_files() == []
    assert served.segment_ids(video_id) == {0, SLOW}  # ids within MAX_SEGMENT_AHEAD of the highest stored


@pytest.fixture
def dev_server(make_config, tmp_path: Path) -> Iterator[Callable[..., Served]]:  # type: ignore[no-untyped-def]
    """Start `python dev_run.py` (the dev server, local job threads) with the given env."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(**env: str) -> Served:
        config, port, log = make_config(), real.free_port(), tmp_path / "dev_run.log"
        with open(log, "ab") as out:
            argv = [sys.executable, "dev_run.py", "--port", str(port)]
            procs.append(subprocess.Popen(argv, cwd=real.ROOT, env=server_env(config, **env), stdout=out, stderr=out))
        real.wait_http(f"http://127.0.0.1:{port}/ping", procs[-1], log)
        return Served(config, port)

    yield start
    real.stop_gracefully(procs, timeout=10)


@pytest.mark.parametrize("server", ["gunicorn", "dev_server"])
def test_content_length_longer_than_the_body_gets_408(server: str, request, segment_files: list[Path]) -> None:  # type: ignore[no-untyped-def]
    """A body that stops short of its Content-Length is cut at BODY_READ_TIMEOUT: 408 JSON, no temp file, no row."""
    start = request.getfixturevalue(server)
    served = start(threads=4, BODY_READ_TIMEOUT="2") if server == "gunicorn" else start(BODY_READ_TIMEOUT="2")
    video_id = served.new_video()
    data = segment_files[0].read_bytes()
    started = time.monotonic()  # before the request starts, so before the server's deadline starts
    stalled = SlowUpload(served.port, video_id, 7, data, missing=100)
    try:
        status, body = stalled.finish()  # all but the last 100 bytes, then silence; the socket gives up after 20 s
    finally:
        stalled.cut()
    waited = time.monotonic() - started
    assert status == 408, body
    assert json.loads(body)["code"] == "request_timeout"
    assert waited >= 2.0  # the deadline, not an early refusal
    real.wait_for(lambda: not served.temp_files(), 30, f"the stalled upload's temp file deleted: {served.temp_files()}")
    assert served.segment_ids(video_id) == set()


@pytest.mark.parametrize("server", ["gunicorn", "dev_server"])
def test_a_body_dripping_in_is_cut_at_the_deadline(server: str, request, segment_files: list[Path]) -> None:  # type: ignore[no-untyped-def]
    """Issue 15: a body sent a byte at a time outlived BODY_READ_TIMEOUT (each byte reset the socket's timeout, and
    the server's read(n) loops until n bytes came): it is cut at the deadline, 408, while it is still dripping."""
    start = request.getfixturevalue(server)
    served = start(threads=4, BODY_READ_TIMEOUT="2") if server == "gunicorn" else start(BODY_READ_TIMEOUT="2")
    video_id = served.new_video()
    started = time.monotonic()
    dripping = SlowUpload(served.port, video_id, 7, segment_files[0].read_bytes())
    answered = threading.Event()

    def drip() -> None:  # 20 bytes a second, for longer than the test waits for its answer
        with contextlib.suppress(OSError):
            while not answered.wait(0.05) and time.monotonic() - started < ANDROID_TIMEOUT:
                dripping.trickle(1)

    dripper = threading.Thread(target=drip, daemon=True)
    dripper.start()
    try:
        response = http.client.HTTPResponse(dripping.sock)
        response.begin()  # the socket gives up after ANDROID_TIMEOUT
        status, body = response.status, response.read()
        waited = time.monotonic() - started
    finally:
        answered.set()
        dripper.join(timeout=5)
        dripping.cut()
    assert status == 408, body
    assert json.loads(body)["code"] == "request_timeout"
    assert 2.0 <= waited < 4.0, f"answered after {waited:.1f} s, the body still dripping"
    real.wait_for(lambda: not served.temp_files(), 30, f"the dripping upload's temp file deleted: {served.temp_files()}")
    assert served.segment_ids(video_id) == set()


def test_a_direct_caller_cannot_name_its_own_address(gunicorn) -> None:  # type: ignore[no-untyped-def]
    """Issue 15: straight to gunicorn, any caller's X-Forwarded-For was believed (a fresh rate budget per request):
    it counts only when the TCP peer is one of TRUSTED_PROXY_ADDRESSES (by default loopback, where nginx is)."""

    def creates(served: Served) -> list[int]:
        url = f"{served.base}/videos"
        headers = [{"X-Forwarded-For": f"192.0.2.{i}"} for i in range(3)]
        return [requests.post(url, json=new_video_body(), headers=h, timeout=ANDROID_TIMEOUT).status_code for h in headers]

    limited = {"TRUSTED_PROXIES": "1", "RATE_LIMIT_CREATE": "2/minute"}
    assert creates(gunicorn(threads=2, TRUSTED_PROXY_ADDRESSES="192.0.2.254", **limited)) == [201, 201, 429]
    assert creates(gunicorn(threads=2, **limited)) == [201, 201, 201]  # this loopback caller stands where nginx would


def test_nginx_refuses_what_the_app_would_in_json(gunicorn, nginx_front) -> None:  # type: ignore[no-untyped-def]
    """The shipped front's body limit is the app's (MAX_SEGMENT_BYTES + 1 MiB envelope), and its 413 is the API's JSON."""
    limit = re.search(r"client_max_body_size (\d+)m;", real.NGINX_SITE.read_text())
    assert limit is not None
    assert int(limit[1]) * 1024 * 1024 == Config().MAX_SEGMENT_BYTES + 1024 * 1024
    served, _ = nginx_front(gunicorn(threads=2))
    head = f"POST /video_segment/1 HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\nContent-Length: {int(limit[1]) * 1024 * 1024 + 1}\r\n\r\n"
    with socket.create_connection(("127.0.0.1", served.port), timeout=ANDROID_TIMEOUT) as sock:
        sock.sendall(head.encode())
        response = http.client.HTTPResponse(sock)
        response.begin()
        assert response.status == 413
        assert response.getheader("Content-Type") == "application/json"
        assert json.loads(response.read())["code"] == "payload_too_large"


def test_nginx_passes_the_admin_event_stream_as_it_comes(gunicorn, nginx_front, admin_auth: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    """Behind the shipped front (which buffers answers), an event reaches the dashboard within a second."""
    served, _ = nginx_front(gunicorn(threads=2))
    stream = SseClient(f"{served.base}/api/admin/events", admin_auth)
    try:
        assert stream.status == 200  # nginx consumes X-Accel-Buffering: the client never sees it
        sent = time.monotonic()
        video_id = served.new_video()
        (message,) = stream.events(1, timeout=5)
        assert (message.event, message.data["video_id"]) == ("video.created", video_id)  # type: ignore[index]
        assert message.at - sent < 1.0, f"took {message.at - sent:.2f}s through nginx"
    finally:
        stream.close()


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_nginx_answers_503_json_while_the_app_is_down(method: str) -> None:
    """With gunicorn unreachable, the shipped front answers what its body says: 503 with Retry-After, not a 502."""
    prefix = real.nginx_prefix()
    port = real.free_port()
    proc = real.start_nginx(prefix, real.render_nginx(prefix, real.free_port(), port))  # no app listens
    try:
        real.wait_port(port)
        response = requests.request(method, f"http://127.0.0.1:{port}/video_segment/1", data=b"x" * 10, timeout=ANDROID_TIMEOUT)
        assert (response.status_code, response.headers.get("Retry-After")) == (503, "5"), response.text
        assert response.json()["code"] == "service_unavailable"
    finally:
        real.stop_gracefully([proc], timeout=10)
        subprocess.run(["rm", "-rf", str(prefix)], check=False)


def test_a_refused_upload_leaves_its_keep_alive_connection_usable(gunicorn, segment_files: list[Path]) -> None:  # type: ignore[no-untyped-def]
    """An upload refused before its body was read (no such video; the database down) is drained first.

    gunicorn drains at most 64 KiB of a body the app left unread and otherwise closes the connection
    after the answer, without saying so: the client's (or nginx's) next request on it then fails.
    """
    served = gunicorn(threads=4)
    body, content_type = segment_upload(0, segment_files[0].read_bytes())
    answers = []
    with requests.Session() as client:  # one keep-alive connection, as nginx's upstream pool keeps them
        for _ in range(10):
            refused = client.post(
                f"{served.base}/video_segment/99999", data=body, headers={"Content-Type": content_type}, timeout=ANDROID_TIMEOUT
            )
            answers.append((refused.status_code, client.get(f"{served.base}/ping", timeout=ANDROID_TIMEOUT).status_code))
    assert answers == [(404, 200)] * 10


IDLE = 1600  # idle connections from one address: enough to take down Debian's default (768 worker_connections)


def _held(port: int, source: str = "127.0.0.1") -> socket.socket:
    """A request whose headers are whole and whose body never comes: what nginx counts against an address."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=ANDROID_TIMEOUT, source_address=(source, 0))
    sock.sendall(
        b"POST /video_segment/1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: 1000\r\n\r\n"
    )
    return sock


def _ping_from(source: str, port: int) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0))
    try:
        connection.request("GET", "/ping")
        return connection.getresponse().status
    finally:
        connection.close()


def test_one_address_cannot_take_the_front_down(gunicorn, nginx_front) -> None:  # type: ignore[no-untyped-def]
    """1,600 idle connections and more held requests than limit_conn allows from 127.0.0.1: 127.0.0.2 still gets answers."""
    limit = re.search(r"limit_conn team03_addr (\d+);", real.NGINX_SITE.read_text())
    assert limit is not None, "no per-address limit_conn in the shipped config"
    over = 5
    served, connections = nginx_front(gunicorn(threads=2))
    idle: list[socket.socket] = []
    held: list[socket.socket] = []
    try:
        idle = [socket.create_connection(("127.0.0.1", served.port), timeout=ANDROID_TIMEOUT) for _ in range(IDLE)]
        held = [_held(served.port) for _ in range(int(limit[1]) + over)]
        real.wait_for(lambda: connections() > IDLE + int(limit[1]), 15, "nginx accepting every connection")
        refused: list[socket.socket] = []
        with selectors.DefaultSelector() as answered:  # epoll: these descriptors are past select()'s 1024
            for sock in held:
                answered.register(sock, selectors.EVENT_READ)
            deadline = time.monotonic() + 10
            while len(refused) < over and time.monotonic() < deadline:
                for key, _ in answered.select(timeout=1.0):
                    answered.unregister(key.fileobj)
                    refused.append(key.fileobj)  # type: ignore[arg-type]
        assert len(refused) == over, "held requests beyond the limit were not refused"
        for sock in refused:
            response = http.client.HTTPResponse(sock)
            response.begin()
            assert (response.status, response.getheader("Content-Type")) == (429, "application/json")
            assert json.loads(response.read())["code"] == "too_many_requests"
        full = _raw(served.port, b"GET /video_files/1/manifest.mpd HTTP/1.1\r\nHost: x\r\n\r\n")  # players' files too
        assert full[:2] == (429, "too_many_requests"), full
        assert _ping_from("127.0.0.2", served.port) == 200  # another address is served at once
    finally:
        for sock in idle + held:
            sock.close()


def _raw(port: int, request: bytes) -> tuple[int, object, str | None]:
    """Send `request` as it is; return the status, the JSON body's code (else the body's start) and Server."""
    with socket.create_connection(("127.0.0.1", port), timeout=ANDROID_TIMEOUT) as sock:
        sock.sendall(request)
        response = http.client.HTTPResponse(sock)
        response.begin()
        body = response.read()
        json_body = response.getheader("Content-Type") == "application/json"
        return response.status, json.loads(body).get("code") if json_body else body[:60], response.getheader("Server")


MALFORMED = {  # what a server refuses before any route: the status and the API's code for it
    "not http": (b"GARBAGE\r\n\r\n", 400, "bad_request"),
    "long request line": (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "request_uri_too_long"),
    "long header": (b"GET /ping HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", 400, "bad_request"),
    "HTTP/2 as text": (b"GET /ping HTTP/2.5\r\nHost: x\r\n\r\n", 505, "http_version_not_supported"),
    "a method a file has not": (b"DELETE /video_files/1/manifest.mpd HTTP/1.1\r\nHost: x\r\n\r\n", 405, "method_not_allowed"),
}
GUNICORN_MALFORMED = {
    "not http": (b"GARBAGE\r\n\r\n", 400, "bad_request"),
    "long request line": (b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "request_uri_too_long"),
    "too many headers": (
        b"GET /ping HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: y\r\n" % k for k in range(150)) + b"\r\n",
        431,
        "request_header_fields_too_large",
    ),
}


def test_refusals_before_the_app_are_json_and_name_no_version(gunicorn, nginx_front, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """nginx's and gunicorn's own refusals (malformed, too long, a version or method they refuse) are the API's JSON."""
    app = gunicorn(threads=2)
    served, _ = nginx_front(app)
    seen = {}
    for server, port, cases in (("nginx", served.port, MALFORMED), ("gunicorn", app.port, GUNICORN_MALFORMED)):
        for name, (request, _, _) in cases.items():
            status, code, software = _raw(port, request)
            seen[server, name] = (status, code)
            assert software in (None, "nginx", "gunicorn"), software
    expected = {("nginx", n): (s, c) for n, (_, s, c) in MALFORMED.items()}
    expected |= {("gunicorn", n): (s, c) for n, (_, s, c) in GUNICORN_MALFORMED.items()}
    assert seen == expected
    assert requests.get(f"{served.base}/ping", timeout=10).headers["Server"] == "nginx"
