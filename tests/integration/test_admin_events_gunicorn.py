"""The admin event stream under gunicorn with several processes: what another process writes reaches an open stream.

Events come from the database, not from the process that holds the stream: a direct write (a worker on
another machine) and a request answered by another process both arrive within a second.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from server.config import Config
from server.core.clock import SystemClock
from server.domain import eventlog
from tests.harness.services import free_port, start_gunicorn, stop_gracefully, wait_for, wait_http
from tests.harness.sse import END, Message, SseClient

PROCESSES = 3
MAX_POSTS = 30  # bounds the wait for a second process to answer
DELIVERY = 1.0  # seconds within which an event written anywhere reaches an open stream
STREAM_SECONDS = 8.0  # the stream ends by itself, so gunicorn logs which process held it
ACCESS = re.compile(r"^pid=<(\d+)> (\w+) (\S+) (\d{3})$", re.MULTILINE)


class Web:
    def __init__(self, base: str, log: Path) -> None:
        self.base, self.log = base, log

    def pids(self, method: str, path: str) -> set[int]:
        """The processes that answered `method path` (gunicorn's access log names each one's pid)."""
        text = self.log.read_text(errors="replace")
        return {int(m[1]) for m in ACCESS.finditer(text) if m[2] == method and m[3] == path}


@pytest.fixture
def web(make_config, gearmand, tmp_path: Path, admin_auth: dict[str, str]) -> Iterator[Web]:  # type: ignore[no-untyped-def]
    config: Config = make_config(GEARMAN_SERVERS=(gearmand.address,), ADMIN_STREAM_SECONDS=STREAM_SECONDS)
    env = {**os.environ, **config.to_env(), "LOG_LEVEL": "INFO"}
    port, log = free_port(), tmp_path / "gunicorn.log"
    access = ("--access-logfile", "-", "--access-logformat", "pid=%(p)s %(m)s %(U)s %(s)s")
    proc = start_gunicorn(env, port, log, "-w", str(PROCESSES), "--threads", "2", *access)
    try:
        wait_http(f"http://127.0.0.1:{port}/ping", proc, log)
        booted = lambda: log.read_text(errors="replace").count("Booting worker with pid") >= PROCESSES  # noqa: E731
        wait_for(booted, 60, f"{PROCESSES} gunicorn workers booted")
        yield Web(f"http://127.0.0.1:{port}", log)
    finally:
        stop_gracefully([proc], timeout=20)


def test_events_written_elsewhere_reach_an_open_stream_within_a_second(
    web: Web, database_url: str, admin_auth: dict[str, str]
) -> None:
    stream = SseClient(f"{web.base}/api/admin/events", admin_auth)
    try:
        assert stream.status == 200
        # A write straight to the database, as a worker elsewhere or the reaper makes it.
        engine = create_engine(database_url)
        try:
            with Session(engine) as db:
                written = eventlog.record(db, "worker.started", at=SystemClock().now(), worker_id=7, name="far-away")
                db.commit()
                direct_id = written.id
        finally:
            engine.dispose()
        sent = time.monotonic()
        (direct,) = stream.events(1, timeout=5)
        assert (direct.id, direct.event) == (direct_id, "worker.started")
        assert direct.at - sent < DELIVERY, f"took {direct.at - sent:.2f}s"
        # Requests on fresh connections until two processes have answered some (so at least one is not the
        # stream's own; the kernel does not deal connections out in turn): each one's event reaches this
        # stream within a second, in order.
        messages: list[Message] = []
        for i in range(MAX_POSTS):
            if i >= PROCESSES and len(web.pids("POST", "/videos")) >= 2:
                break
            sent = time.monotonic()
            response = requests.post(f"{web.base}/videos", json={"title": f"v{i}"}, headers={"Connection": "close"}, timeout=30)
            assert response.status_code == 201
            (message,) = stream.events(1, timeout=5)
            assert message.at - sent < DELIVERY, f"event {i} took {message.at - sent:.2f}s"
            assert (message.event, message.data["data"]["title"]) == ("video.created", f"v{i}")
            messages.append(message)
        ids = [direct.id, *(m.id for m in messages)]
        assert ids == sorted(set(ids))
        wait_for(lambda: stream.next(timeout=STREAM_SECONDS) == END, STREAM_SECONDS * 2, "the stream ended by itself")
    finally:
        stream.close()
    (holder,) = wait_for(lambda: web.pids("GET", "/api/admin/events"), 10, "the stream's line in the access log")
    writers = web.pids("POST", "/videos")
    assert writers - {holder}, f"every POST was answered by {writers}, the stream's own process: this proves nothing"
