"""gunicorn with several processes: one recording served by all of them, rate limits shared, no local runner.

Which process answered is read from gunicorn's own access log (`%(p)s`, the worker's pid): the
responses carry nothing extra. Each request opens its own connection (`Connection: close`), so the
kernel hands them to whichever process accepts first.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from server.config import Config
from tests.harness.android import segment_upload
from tests.harness.services import ROOT, Memcached, free_port, start_gunicorn, stop_gracefully, wait_for, wait_http

PROCESSES = 3
PER_VIDEO = 6  # RATE_LIMIT_UPLOAD_PER_VIDEO for the test: a 7th upload to one video within the minute is 429
ACCESS = re.compile(r"^pid=<(\d+)> (\w+) (\S+) (\d{3})$", re.MULTILINE)
CLOSE = {"Connection": "close"}


class Web:
    """gunicorn with PROCESSES worker processes on a free loopback port, its access log in `log`."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        flags = (
            "-w",
            str(PROCESSES),
            "--threads",
            "2",
            "--access-logfile",
            "-",
            "--access-logformat",
            "pid=%(p)s %(m)s %(U)s %(s)s",
        )
        self.proc = start_gunicorn(env, self.port, log, *flags)
        wait_http(f"{self.base}/ping", self.proc, log)
        wait_for(lambda: self.text().count("Booting worker with pid") >= PROCESSES, 60, f"{PROCESSES} gunicorn workers booted")

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def pids(self, path_part: str) -> set[int]:
        """The pids of the processes that answered a request whose path contains `path_part`."""
        return {int(m[1]) for m in ACCESS.finditer(self.text()) if path_part in m[3]}

    def post(self, path: str, **kwargs: object) -> requests.Response:
        return requests.post(f"{self.base}{path}", headers={**CLOSE, **kwargs.pop("headers", {})}, timeout=30, **kwargs)  # type: ignore[arg-type]

    def get(self, path: str) -> requests.Response:
        return requests.get(f"{self.base}{path}", headers=CLOSE, timeout=30)

    def upload(self, video_id: int, segment_id: int, data: bytes) -> requests.Response:
        body, content_type = segment_upload(segment_id, data)
        return self.post(f"/video_segment/{video_id}", data=body, headers={"Content-Type": content_type})


def _env(config: Config, **extra: str) -> dict[str, str]:
    return {**os.environ, **config.to_env(), "LOG_LEVEL": "INFO", **extra}


@pytest.fixture
def memcached() -> Iterator[Memcached]:
    server = Memcached().start()
    yield server
    server.stop()


@pytest.fixture
def cluster(make_config, gearmand, memcached, tmp_path: Path) -> Iterator[Web]:  # type: ignore[no-untyped-def]
    """gunicorn x PROCESSES + MariaDB + memcached + gearmand + one segment_processor."""
    config = make_config(
        GEARMAN_SERVERS=(gearmand.address,),
        MEMCACHED_SERVERS=(memcached.address,),
        RATE_LIMIT_UPLOAD_PER_VIDEO=f"{PER_VIDEO}/minute",
        REAPER_INTERVAL=0.5,
        PROCESSING_DEADLINE=30.0,
        GAP_TIMEOUT=4.0,
    )
    procs: list[subprocess.Popen[bytes]] = []
    with open(tmp_path / "worker.log", "ab") as stderr:
        argv = [sys.executable, "-m", "server.segment_processor"]
        procs.append(subprocess.Popen(argv, cwd=ROOT, env=_env(config), stdout=subprocess.DEVNULL, stderr=stderr))
    try:
        web = Web(_env(config), tmp_path / "gunicorn.log")
        procs.append(web.proc)
        yield web
    finally:
        stop_gracefully(procs, timeout=20)


def _lists(web: Web, video_id: int, segment_id: int) -> bool:
    """Whether the live HLS playlist (a player's poll, on a new connection) lists `segment_id` yet."""
    response = web.get(f"/video_files/{video_id}/LOW/playlist.m3u8")
    return response.status_code == 200 and f"{segment_id:06d}." in response.text


def test_a_paced_recording_is_served_by_every_process_and_reaches_vod(cluster: Web, segment_files: list[Path]) -> None:
    web = cluster
    video_id = web.post("/videos", json={"title": "three processes"}).json()["video_id"]
    for k, path in enumerate(segment_files):  # paced like a phone: the next once the last one plays
        assert web.upload(video_id, k, path.read_bytes()).status_code == 201
        wait_for(lambda k=k: _lists(web, video_id, k), 90, f"segment {k} in the live playlist")
    assert web.post(f"/video_end/{video_id}", data={"last_segment_id": str(len(segment_files) - 1)}).status_code == 200
    wait_for(lambda: web.get(f"/video/{video_id}").json()["type"] == "VOD", 90, f"video {video_id} VOD")
    # Players keep polling (each poll a new connection): within a bounded number, every process has answered.
    wait_for(lambda: _lists(web, video_id, 3) and len(web.pids(f"/{video_id}")) == PROCESSES, 30, "every process answered")
    assert "local job runner started" not in web.text()  # no process ran jobs itself: the segment_processor did


def test_the_per_video_upload_limit_is_counted_across_processes(cluster: Web, segment_files: list[Path]) -> None:
    web = cluster
    video_id = web.post("/videos", json={"title": "limited"}).json()["video_id"]
    # Only stored uploads count (a phone's retry of stored bytes too): refusals never do, whoever sends them.
    assert {web.upload(video_id, 0, b"not a video").status_code for _ in range(PER_VIDEO + 1)} == {422}
    data = [path.read_bytes() for path in segment_files]
    answers = [web.upload(video_id, k % len(data), data[k % len(data)]).status_code for k in range(PER_VIDEO)]
    assert answers == [201] * PER_VIDEO
    refused = web.upload(video_id, PER_VIDEO % len(data), data[PER_VIDEO % len(data)])
    assert refused.status_code == 429 and refused.json()["code"] == "too_many_requests", refused.text
    answered = web.pids(f"/video_segment/{video_id}")
    assert len(answered) >= 2, f"every upload landed on pid {answered}: this proves nothing about sharing"


def test_without_gearman_no_process_runs_jobs_and_each_says_so(make_config, tmp_path: Path) -> None:
    web = Web(_env(make_config(GEARMAN_SERVERS=())), tmp_path / "gunicorn.log")
    try:
        message = "GEARMAN_SERVERS is not set and this web process runs no local job runner"
        wait_for(lambda: web.text().count(message) >= PROCESSES, 30, "each process's startup error line")
        assert "local job runner started" not in web.text()
    finally:
        stop_gracefully([web.proc], timeout=20)
