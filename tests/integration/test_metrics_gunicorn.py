"""/metrics under gunicorn with 2 processes: counters are summed over every process, a dead one's included.

Which process answered is read from gunicorn's access log (`%(p)s`); each request opens its own
connection, so the kernel hands them to whichever process accepts first.
"""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families

from server.config import Config
from tests.harness.android import segment_upload
from tests.harness.services import free_port, start_gunicorn, stop_gracefully, wait_for, wait_http

PROCESSES = 2
MAX_UPLOADS = 16  # uploads until both processes have stored one; the kernel spreads them well before this
ACCESS = re.compile(r"^pid=<(\d+)> (\w+) (\S+) (\d{3})$", re.MULTILINE)
CLOSE = {"Connection": "close"}


def _uploads_total(base: str) -> float:
    text = requests.get(f"{base}/metrics", headers=CLOSE, timeout=30).text
    (family,) = [f for f in text_string_to_metric_families(text) if f.name == "team03_segment_uploads"]
    (sample,) = [s for s in family.samples if s.name == "team03_segment_uploads_total"]
    return sample.value


def test_counters_are_summed_over_the_processes(make_config, gearmand, segment_files: list[Path], tmp_path: Path) -> None:
    config: Config = make_config(GEARMAN_SERVERS=(gearmand.address,))
    folder = tmp_path / "prometheus"  # created by deploy/gunicorn.conf.py's on_starting
    env = {**os.environ, **config.to_env(), "PROMETHEUS_MULTIPROC_DIR": str(folder), "LOG_LEVEL": "INFO"}
    log, port = tmp_path / "gunicorn.log", free_port()
    base = f"http://127.0.0.1:{port}"
    flags = ("-w", str(PROCESSES), "--threads", "2", "--access-logfile", "-", "--access-logformat", "pid=%(p)s %(m)s %(U)s %(s)s")
    proc = start_gunicorn(env, port, log, *flags)
    try:
        wait_http(f"{base}/ping", proc, log)
        wait_for(lambda: log.read_text().count("Booting worker with pid") >= PROCESSES, 60, "both gunicorn workers booted")
        video_id = requests.post(f"{base}/videos", json={"title": "two processes"}, headers=CLOSE, timeout=30).json()["video_id"]
        data = segment_files[0].read_bytes()

        def storers() -> set[int]:
            return {int(m[1]) for m in ACCESS.finditer(log.read_text()) if m[3] == f"/video_segment/{video_id}" and m[4] == "201"}

        stored = 0
        while len(storers()) < PROCESSES and stored < MAX_UPLOADS:
            body, content_type = segment_upload(stored, data)
            headers = {**CLOSE, "Content-Type": content_type}
            assert requests.post(f"{base}/video_segment/{video_id}", data=body, headers=headers, timeout=30).status_code == 201
            stored += 1
        assert len(storers()) == PROCESSES, f"{stored} uploads all landed on pid {storers()}: this proves nothing about summing"
        assert [_uploads_total(base) for _ in range(4)] == [stored] * 4  # whichever process answers
        # A process that dies keeps its counts (child_exit marks it dead; its files stay and are summed).
        os.kill(min(storers()), signal.SIGKILL)
        wait_for(lambda: log.read_text().count("Booting worker with pid") > PROCESSES, 60, "gunicorn replaced the killed worker")
        wait_http(f"{base}/ping", proc, log)
        assert _uploads_total(base) == stored
    finally:
        stop_gracefully([proc], timeout=20)
