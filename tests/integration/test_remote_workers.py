"""Remote workers in their own network namespace: only Gearman and the worker API, no database, an empty MEDIA_ROOT.

The server side (the app over real HTTP, gearmand, a `--only package` worker with the database and the
media tree, which also runs the reaper) listens on the namespace's peer address; each remote worker is a
`python -m server.segment_processor` started inside the namespace with GEARMAN_SERVERS, API_URL and
WORKER_TOKEN only.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from flask import Flask, Response, request
from sqlalchemy import func, select

from server import create_app
from server.core.clock import SystemClock
from server.domain import registry
from server.infra.models import Attempt, Event, Segment, Worker
from server.web.devserver import make_dev_server
from tests.harness import s3
from tests.harness.android import segment_upload
from tests.harness.netns import TestHost
from tests.harness.services import ROOT, Gearmand, stop_gracefully, wait_for
from tests.harness.tree import tree

# Long enough that a worker on this busy 2-core machine renews in time (ffmpeg's progress lines drive its
# heartbeats), short enough that a killed worker's attempt is taken back within seconds.
LEASE_SECONDS = 8.0


# `python -m server.segment_processor`, writing sys.modules to argv[1] at exit (SIGTERM drains, then exits).
RECORD_MODULES = """
import atexit, pathlib, runpy, sys
out = pathlib.Path(sys.argv[1])
atexit.register(lambda: out.write_text("\\n".join(sorted(sys.modules))))
sys.argv = ["segment_processor"]
runpy.run_module("server.segment_processor", run_name="__main__")
"""


class Serving:
    """A WSGI app over real HTTP on `host` (threaded dev server) until close()."""

    def __init__(self, app, host: str) -> None:  # type: ignore[no-untyped-def]
        self.server = make_dev_server(app, host, 0)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://{host}:{self.server.server_port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class RemoteStack:
    """The server side on the peer address, and remote workers inside `host`."""

    def __init__(self, host: TestHost, config, gearmand: Gearmand, tmp: Path) -> None:  # type: ignore[no-untyped-def]
        self.host = host
        self.config = config
        self.tmp = tmp
        self.app = create_app(config)
        self.client = self.app.test_client()
        self.services = self.app.extensions["team03"]
        self.api = Serving(self.app, host.host_address)
        self.local: list[subprocess.Popen[bytes]] = []
        self.remote: list[subprocess.Popen[bytes]] = []
        self.local.append(self._packager())

    def _packager(self) -> subprocess.Popen[bytes]:
        env = {**os.environ, **self.config.to_env(), "LOG_LEVEL": "INFO", "WORKER_NAME": "packager"}
        with open(self.tmp / "packager.log", "ab") as log:
            argv = [sys.executable, "-m", "server.segment_processor", "--only", "package"]
            return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log)

    def token(self, name: str) -> str:
        with self.services.sessions() as session:
            return registry.mint_token(session, name, now=SystemClock().now())

    def revoke(self, name: str) -> None:
        with self.services.sessions() as session:
            registry.revoke(session, name, now=SystemClock().now())

    def start_remote(
        self,
        name: str,
        *,
        api_url: str | None = None,
        token: str | None = None,
        media_of: str | None = None,
        modules_out: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start a remote worker in the namespace: no DATABASE_URL, its own MEDIA_ROOT (`media_of` another's: restarted there).

        With `modules_out`, the worker writes the names of every module it loaded there when it exits.
        """
        media = self.tmp / f"remote-{media_of or name}"
        media.mkdir(exist_ok=True)
        env = {
            "PATH": os.environ["PATH"],
            "LOG_LEVEL": "INFO",
            "GEARMAN_SERVERS": ",".join(self.config.GEARMAN_SERVERS),
            "API_URL": api_url or self.api.url,
            "WORKER_TOKEN": token or self.token(name),
            "MEDIA_ROOT": str(media),
            "WORKER_CONCURRENCY": "1",
            "FFMPEG_TIMEOUT": "60",
        }
        log = open(self.tmp / f"remote-{name}.log", "ab")  # noqa: SIM115 - the child holds it
        argv = [sys.executable, "-m", "server.segment_processor"]
        if modules_out is not None:
            argv = [sys.executable, "-c", RECORD_MODULES, str(modules_out)]
        proc = self.host.popen(argv, env=env, cwd=str(ROOT), stdout=subprocess.DEVNULL, stderr=log)
        log.close()
        self.remote.append(proc)
        return proc

    def log(self, name: str) -> str:
        path = self.tmp / f"remote-{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def new_video(self) -> int:
        return self.client.post("/videos", json={"title": "remote"}).json["video_id"]

    def upload(self, video_id: int, segment_id: int, data: bytes) -> None:
        body, content_type = segment_upload(segment_id, data)
        response = self.client.post(f"/video_segment/{video_id}", data=body, content_type=content_type)
        assert response.status_code == 201, response.json

    def end(self, video_id: int, last: int) -> None:
        assert self.client.post(f"/video_end/{video_id}", data={"last_segment_id": str(last)}).status_code == 200

    def scalar(self, query):  # type: ignore[no-untyped-def]
        with self.services.sessions() as session:
            return session.scalar(query)

    def attempts(self, video_id: int) -> list[tuple[int, str, str | None]]:
        """(segment_id, worker name, outcome) of every attempt of the video, oldest first."""
        with self.services.sessions() as session:
            query = (
                select(Segment.segment_id, Worker.name, Attempt.outcome)
                .join(Segment, Segment.id == Attempt.segment_pk)
                .join(Worker, Worker.id == Attempt.worker_id)
                .where(Segment.video_id == video_id)
                .order_by(Attempt.id)
            )
            return [(s, w, None if o is None else str(getattr(o, "value", o))) for s, w, o in session.execute(query)]

    def wait_vod(self, video_id: int, timeout: float = 120.0) -> None:
        wait_for(lambda: self.client.get(f"/video/{video_id}").json["type"] == "VOD", timeout, f"video {video_id} VOD")

    def close(self) -> None:
        stop_gracefully(self.remote + self.local)
        self.api.close()
        self.services.close()


@pytest.fixture
def host() -> Iterator[TestHost]:
    with TestHost("w1") as found:
        yield found


@pytest.fixture
def remote_stack(request: pytest.FixtureRequest, host: TestHost, make_config, tmp_path: Path) -> Iterator[RemoteStack]:  # type: ignore[no-untyped-def]
    """The origin on the local tree, or (parametrized "s3") on a bucket: remote workers see only the API either way."""
    store: dict[str, object] = {}
    if getattr(request, "param", "local") == "s3":
        bucket = request.getfixturevalue("s3_bucket")
        store = {
            "MEDIA_STORE": "s3",
            "S3_ENDPOINT_URL": s3.ENDPOINT,
            "S3_BUCKET": bucket,
            "S3_PREFIX": f"r{uuid.uuid4().hex[:8]}",
        }
    gearmand = Gearmand(host.host_address).start()
    config = make_config(
        **store,
        GEARMAN_SERVERS=(gearmand.address,),
        REAPER_INTERVAL=0.5,
        LEASE_SECONDS=LEASE_SECONDS,
        PROCESSING_DEADLINE=20.0,
        RETRY_BACKOFF=0.3,
        GAP_TIMEOUT=4.0,
    )
    stack = RemoteStack(host, config, gearmand, tmp_path)
    yield stack
    stack.close()
    gearmand.stop()


def assert_clean(stack: RemoteStack, video_id: int) -> None:
    """No temp file on the server, no staging directory left, nothing left in the remote workers' MEDIA_ROOTs.

    Waited for (10 s at most): the VOD switch is committed before its playlists are written, and a worker
    removes its work folder after the origin answered its completion.
    """
    wait_for(lambda: tree(stack.services).temp_files() == [], 10, "no temp file on the origin")
    assert stack.services.media.attempts([video_id]) == []  # no staged output left, on either store
    wait_for(lambda: scratch_files(stack.tmp) == [], 10, "nothing in the remote workers' scratch")


def scratch_files(tmp: Path) -> list[Path]:
    """Files in the remote workers' MEDIA_ROOTs but a live worker's lock file and the sweep gate (encoding.Scratch)."""
    locks = {p for p in tmp.glob("remote-*/work/*") if p.name == ".sweep" or p.suffix == ".lock"}
    return [p for p in tmp.glob("remote-*/**/*") if p.is_file() and p not in locks]


def packaged_events(stack: RemoteStack, video_id: int) -> int:
    return stack.scalar(
        select(func.count()).select_from(Event).where(Event.video_id == video_id, Event.kind == "segment.packaged")
    )


@pytest.mark.parametrize("remote_stack", ["local", "s3"], indirect=True)
def test_a_remote_worker_turns_a_paced_recording_into_a_vod(remote_stack: RemoteStack, segment_files, tmp_path: Path) -> None:
    modules = tmp_path / "modules.txt"
    far = remote_stack.start_remote("far", modules_out=modules)
    video_id = remote_stack.new_video()
    for segment_id, path in enumerate(segment_files):
        remote_stack.upload(video_id, segment_id, path.read_bytes())
        # Paced like a phone: the next segment once this one has been taken (a fact, not a sleep).
        wait_for(
            lambda s=segment_id: any(a[0] == s for a in remote_stack.attempts(video_id)), 60, f"segment {segment_id} claimed"
        )
    remote_stack.end(video_id, len(segment_files) - 1)
    remote_stack.wait_vod(video_id)
    video = remote_stack.client.get(f"/video/{video_id}").json
    assert video["status"] == "OK"
    assert remote_stack.attempts(video_id) == [(s, "far", "ok") for s in range(len(segment_files))]
    assert packaged_events(remote_stack, video_id) == len(segment_files)
    assert remote_stack.client.get(f"/video_files/{video_id}/master.m3u8").status_code == 200
    assert_clean(remote_stack, video_id)
    # Having encoded a whole recording, the remote worker never loaded the database, web or template side.
    stop_gracefully([far])
    loaded = {name.split(".")[0] for name in modules.read_text().split()}
    assert "server" in loaded and not loaded & {"sqlalchemy", "pymysql", "flask", "werkzeug", "jinja2", "alembic"}
    assert not {name for name in modules.read_text().split() if name.startswith(("server.domain", "server.web", "server.ops"))}


def test_kill_9_of_a_remote_worker_mid_encode_another_finishes_once(remote_stack: RemoteStack, segment_files) -> None:
    doomed = remote_stack.start_remote("doomed")
    video_id = remote_stack.new_video()
    remote_stack.upload(video_id, 0, segment_files[0].read_bytes())
    wait_for(lambda: (0, "doomed", None) in remote_stack.attempts(video_id), 60, "doomed's attempt running")
    wait_for(lambda: scratch_files(remote_stack.tmp) != [], 60, "doomed's source arriving in its scratch")
    doomed.kill()
    doomed.wait()
    assert scratch_files(remote_stack.tmp) != []  # what kill -9 leaves behind
    # Restarted on the same machine (its MEDIA_ROOT), under another name: its first act sweeps the dead one's files.
    remote_stack.start_remote("survivor", media_of="doomed")
    remote_stack.end(video_id, 0)
    remote_stack.wait_vod(video_id, timeout=120)
    assert remote_stack.attempts(video_id) == [(0, "doomed", "expired"), (0, "survivor", "ok")]
    assert packaged_events(remote_stack, video_id) == 1  # published once
    assert_clean(remote_stack, video_id)


def corrupting_proxy(upstream: str, seen: list[str]) -> Flask:
    """Forward to the worker API, flipping one byte of the first source download and of the first output upload."""
    app = Flask("corrupting_proxy")
    pending = {"GET": True, "PUT": True}
    forwarded = ("Authorization", "Content-Type", "X-Content-SHA256", "Range")
    returned = ("Content-Type", "X-Content-SHA256", "Content-Range", "Accept-Ranges")

    def flip(data: bytes) -> bytes:
        return data[:100] + bytes([data[100] ^ 0xFF]) + data[101:] if len(data) > 100 else data

    @app.route("/<path:path>", methods=["GET", "POST", "PUT"])
    def forward(path: str) -> Response:
        body = request.get_data()
        if request.method == "PUT" and pending["PUT"]:
            pending["PUT"], body = False, flip(body)
        headers = {k: v for k in forwarded if (v := request.headers.get(k)) is not None}
        answer = requests.request(request.method, f"{upstream}/{path}", data=body, headers=headers, timeout=30)
        content = answer.content
        if request.method == "GET" and path.endswith("/source") and pending["GET"]:
            pending["GET"], content = False, flip(content)
        seen.append(f"{request.method} {path.rsplit('/', 1)[-1]} {answer.status_code}")
        return Response(
            content, status=answer.status_code, headers={k: answer.headers[k] for k in returned if k in answer.headers}
        )

    return app


def test_a_corrupted_transfer_is_detected_and_sent_again(remote_stack: RemoteStack, segment_files) -> None:
    seen: list[str] = []
    proxy = Serving(corrupting_proxy(remote_stack.api.url, seen), remote_stack.host.host_address)
    try:
        worker = remote_stack.start_remote("noisy", api_url=proxy.url)
        video_id = remote_stack.new_video()
        remote_stack.upload(video_id, 0, segment_files[0].read_bytes())
        remote_stack.end(video_id, 0)
        remote_stack.wait_vod(video_id)
        stop_gracefully([worker])  # says bye through the proxy
    finally:
        proxy.close()
    sources = [s for s in seen if s.startswith("GET source")]
    assert len(sources) == 2  # the damaged one, then a whole new download
    puts = [s.rsplit(" ", 1)[1] for s in seen if s.startswith("PUT")]
    assert puts[0] == "422" and "422" not in puts[1:]  # the server refused the damaged output, the resend was stored
    assert remote_stack.attempts(video_id) == [(0, "noisy", "ok")]  # retried within the attempt: none spent
    assert_clean(remote_stack, video_id)


def test_a_revoked_token_is_refused(remote_stack: RemoteStack) -> None:
    token = remote_stack.token("fired")
    remote_stack.revoke("fired")
    refused = remote_stack.start_remote("fired", token=token)
    assert refused.wait(timeout=60) == 3
    assert "refused the token" in remote_stack.log("fired")
    # One that is running when its token is revoked drains and exits at its next heartbeat.
    running = remote_stack.start_remote("later")
    wait_for(lambda: remote_stack.scalar(select(Worker.started_at).where(Worker.name == "later")), 60, "later registered")
    remote_stack.revoke("later")
    assert running.wait(timeout=30) is not None
    assert "finishing the jobs in hand" in remote_stack.log("later")
