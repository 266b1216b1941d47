"""The app and its workers on real services, as tests and benches drive them.

`Stack` is the app (in-process test client, optionally served over loopback HTTP) plus
`python -m server.segment_processor` subprocesses on one database, media root and gearmand. Tests build
it on their fixtures' config; `fresh_stack` builds it on a database, gearmand and temp dir of its own and
tears all of them down on the way out (benches). `upload` posts a segment the way the phone does.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import selectinload
from werkzeug.test import TestResponse

from server import create_app
from server.config import Config
from server.core.jobs import TRANSCODE_SEGMENT, SegmentJob
from server.domain import lifecycle
from server.infra.models import Attempt, Segment, Video
from server.infra.queue import queue_status
from server.infra.services import Services
from server.web.devserver import make_dev_server
from tests.harness.android import segment_upload
from tests.harness.services import ROOT, Gearmand, drop_database, new_database, stop_gracefully, wait_for


def stack_config(database_url: str, media_root: Path, **overrides: object) -> Config:
    """Return a Config on `database_url` and `media_root` with no gearmand, no memcached and cache keys of its own."""
    values: dict[str, object] = {
        "DATABASE_URL": database_url,
        "MEDIA_ROOT": media_root,
        "SECRET_KEY": "test",
        "GEARMAN_SERVERS": (),
        "MEMCACHED_SERVERS": (),
        "CACHE_PREFIX": f"t{uuid.uuid4().hex[:8]}:",
    }
    return Config.from_env(**{**values, **overrides})


def upload(
    client: FlaskClient, video_id: int, segment_id: int | str, data: bytes | None, extension: str | None = "mp4"
) -> TestResponse:
    """POST /video_segment/<video_id> with the body the Android app sends; return the response, whatever it is."""
    body, content_type = segment_upload(segment_id, data, extension)
    return client.post(f"/video_segment/{video_id}", data=body, content_type=content_type)


@contextmanager
def http_server(app: Flask) -> Iterator[str]:
    """Serve `app` with the dev server (werkzeug, threaded, HTTP/1.1 keep-alive) on a free loopback port; yield its base URL."""
    # werkzeug sets its own logger to INFO on first use: one line per request would drown what is measured or logged.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = make_dev_server(app, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="stack-http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


class Stack:
    """An app plus worker processes sharing one database, media root and gearmand."""

    def __init__(self, config: Config, gearmand: Gearmand, tmp: Path | None = None) -> None:
        self.config = config
        self.gearmand = gearmand
        self.tmp = tmp
        self.app = create_app(config)
        self.client = self.app.test_client()
        self.services: Services = self.app.extensions["team03"]
        self.workers: list[subprocess.Popen[bytes]] = []
        self.base_url = ""
        self._serving = ExitStack()

    @property
    def database_url(self) -> str:
        return self.config.DATABASE_URL

    def env(self, concurrency: int = 1) -> dict[str, str]:
        """The environment of a worker subprocess: this stack's config, `concurrency` jobs at a time."""
        return {**os.environ, **self.config.to_env(), "LOG_LEVEL": "INFO", "WORKER_CONCURRENCY": str(concurrency)}

    def start_worker(self, log: Path, concurrency: int = 1, command: list[str] | None = None) -> subprocess.Popen[bytes]:
        """Start `python -m server.segment_processor` (or `command`), its stderr appended to `log`."""
        with open(log, "ab") as stderr:
            proc = subprocess.Popen(
                command or [sys.executable, "-m", "server.segment_processor"],
                cwd=ROOT,
                env=self.env(concurrency),
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        self.workers.append(proc)
        return proc

    def start_workers(self, count: int, log: Path, timeout: float = 20.0, command: list[str] | None = None) -> None:
        """Start `count` workers; return once gearmand lists every worker of this stack (fail at once if one exits)."""
        for _ in range(count):
            self.start_worker(log, command=command)

        def registered() -> bool:
            if any(p.poll() is not None for p in self.workers):
                raise RuntimeError(f"a worker exited before it registered with gearmand; see {log}")
            status = queue_status(self.config.GEARMAN_SERVERS).total(TRANSCODE_SEGMENT)
            return status.get("workers", 0) >= len(self.workers)

        wait_for(registered, timeout, f"{len(self.workers)} workers registered with gearmand; see {log}")

    def stop_workers(self) -> None:
        """SIGTERM every worker (they finish the job in hand), wait, kill stragglers."""
        stop_gracefully(self.workers)
        self.workers.clear()

    def upload(self, video_id: int, segment_id: int, data: bytes) -> TestResponse:
        """Upload one segment through the test client; it must be stored (201)."""
        response = upload(self.client, video_id, segment_id, data)
        assert response.status_code == 201, response.json
        return response

    def new_video(self, title: str = "pipeline") -> int:
        return self.client.post("/videos", json={"title": title}).json["video_id"]

    def end(self, video_id: int, last: int) -> None:
        assert self.client.post(f"/video_end/{video_id}", data={"last_segment_id": str(last)}).status_code == 200

    def video(self, video_id: int) -> Video | None:
        with self.services.sessions() as session:
            query = (
                select(Video).where(Video.id == video_id).options(selectinload(Video.segments), selectinload(Video.renditions))
            )
            return session.scalars(query).one_or_none()

    def segment(self, video_id: int, segment_id: int) -> Segment:
        with self.services.sessions() as session:
            return session.scalars(select(Segment).where(Segment.video_id == video_id, Segment.segment_id == segment_id)).one()

    def attempts(self, video_id: int, segment_id: int) -> list[Attempt]:
        """The segment's attempts, oldest first."""
        with self.services.sessions() as session:
            query = select(Attempt).join(Segment, Attempt.segment_pk == Segment.id)
            query = query.where(Segment.video_id == video_id, Segment.segment_id == segment_id).order_by(Attempt.id)
            return list(session.scalars(query))

    def wait(self, what: Callable[[], object], timeout: float = 60.0, message: str = "") -> object:
        return wait_for(what, timeout, message or str(what))

    def published(self, video_id: int) -> bool:
        """Whether the video's playlist files show its current revision (server/domain/publishing.py)."""
        with self.services.sessions() as session:
            row = session.execute(select(Video.revision, Video.published_revision).where(Video.id == video_id)).one_or_none()
        return row is not None and row.published_revision == row.revision

    def wait_vod(self, video_id: int, timeout: float = 90.0) -> Video:
        """Wait until the video is VOD and its playlist files say so (what players see), and return it."""
        return self.wait(
            lambda: (v := self.video(video_id)) is not None and v.type.value == "VOD" and self.published(video_id) and v,
            timeout,
            f"video {video_id} VOD and published",
        )  # type: ignore[return-value]

    def serve(self) -> str:
        """Serve the app over real HTTP on loopback (threaded, like dev_run) until close(); return its base URL."""
        self.base_url = self._serving.enter_context(http_server(self.app))
        return self.base_url

    def close(self) -> None:
        self._serving.close()
        self.stop_workers()
        self.services.close()


@contextmanager
def fresh_stack(database: str = "mysql", *, prefix: str = "team03-stack-", **overrides: object) -> Iterator[Stack]:
    """Yield a Stack on a temp dir, a fresh database ("mysql" or "sqlite") and a private gearmand; tear all down after."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    url: str | None = None
    gearmand: Gearmand | None = None
    stack: Stack | None = None
    try:
        url = new_database(database, tmp)
        gearmand = Gearmand().start()
        config = stack_config(url, tmp / "media", **{"GEARMAN_SERVERS": (gearmand.address,), **overrides})
        stack = Stack(config, gearmand, tmp)
        yield stack
    finally:
        if stack is not None:
            stack.close()
        if gearmand is not None:
            gearmand.stop()
        if url is not None and database == "mysql":
            drop_database(url)
        shutil.rmtree(tmp, ignore_errors=True)


def ticketed(services, video_id: int, segment_id: int, *, now: float | None = None) -> dict:  # type: ignore[no-untyped-def]
    """A claim body with the ticket the origin puts in the job it hands out (lifecycle.submit)."""
    job = SegmentJob(video_id, segment_id).signed(lifecycle.ticket_key(services), services.clock.time() if now is None else now)
    return {"video_id": video_id, "segment_id": segment_id, "issued": job.issued, "ticket": job.ticket}
