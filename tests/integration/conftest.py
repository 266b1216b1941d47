"""The full pipeline on real services: the app in-process, workers as real subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from server import create_app, make_dev_server
from server.config import Config
from server.models import Attempt, Segment, Video
from tests.android import segment_upload
from tests.services import ROOT, stop_gracefully, wait_for


class Stack:
    """An app plus worker processes sharing one database, media root and gearmand."""

    def __init__(self, config: Config, gearmand) -> None:  # type: ignore[no-untyped-def]
        self.config = config
        self.gearmand = gearmand
        self.app = create_app(config)
        self.client = self.app.test_client()
        self.services = self.app.extensions["team03"]
        self.workers: list[subprocess.Popen[bytes]] = []

    def env(self, concurrency: int = 1) -> dict[str, str]:
        return {**os.environ, **self.config.to_env(), "LOG_LEVEL": "INFO", "WORKER_CONCURRENCY": str(concurrency)}

    def start_worker(self, log: Path, concurrency: int = 1) -> subprocess.Popen[bytes]:
        with open(log, "ab") as stderr:
            proc = subprocess.Popen(
                [sys.executable, "-m", "server.segment_processor"],
                cwd=ROOT,
                env=self.env(concurrency),
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        self.workers.append(proc)
        return proc

    def upload(self, video_id: int, segment_id: int, data: bytes):  # type: ignore[no-untyped-def]
        body, content_type = segment_upload(segment_id, data)
        response = self.client.post(f"/video_segment/{video_id}", data=body, content_type=content_type)
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

    def wait_vod(self, video_id: int, timeout: float = 90.0) -> Video:
        return self.wait(
            lambda: (v := self.video(video_id)) is not None and v.type.value == "VOD" and v, timeout, f"video {video_id} VOD"
        )  # type: ignore[return-value]

    def serve(self) -> str:
        """Serve the app over real HTTP on loopback (threaded, like dev_run); return its base URL."""
        self._server = make_dev_server(self.app, "127.0.0.1", 0)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.base_url = f"http://127.0.0.1:{self._server.server_port}"
        return self.base_url

    def close(self) -> None:
        if getattr(self, "_server", None) is not None:
            self._server.shutdown()
            self._server.server_close()
        stop_gracefully(self.workers)
        self.services.close()


@pytest.fixture
def stack(make_config, gearmand) -> Iterator[Stack]:  # type: ignore[no-untyped-def]
    config = make_config(
        GEARMAN_SERVERS=(gearmand.address,),
        REAPER_INTERVAL=0.5,
        PROCESSING_DEADLINE=20.0,
        LEASE_SECONDS=3.0,
        JOB_MAX_ATTEMPTS=3,
        RETRY_BACKOFF=0.3,
        GAP_TIMEOUT=4.0,
        FFMPEG_TIMEOUT=60.0,
    )
    s = Stack(config, gearmand)
    yield s
    s.close()
