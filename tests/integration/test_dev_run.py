"""The newcomer's path: `python dev_run.py` on embedded defaults takes a recording made the Android way."""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from server import create_app
from tests.harness.android import VIDEO_KEYS, new_video_body, segment_upload
from tests.harness.services import ROOT, free_port, wait_port


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("GEARMAN_SERVERS", "MEMCACHED_SERVERS", "DATABASE_URL")}
    env.update(
        {"DATABASE_URL": f"sqlite:///{tmp_path / 'dev.sqlite'}", "MEDIA_ROOT": str(tmp_path / "media"), "REAPER_INTERVAL": "0.5"}
    )
    return env


@contextmanager
def _dev_run(tmp_path: Path, log_path: Path) -> Iterator[str]:
    """Run `python dev_run.py` on SQLite, its console in `log_path`; yield its base URL once it listens; SIGTERM it."""
    port = free_port()
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [sys.executable, "dev_run.py", "--port", str(port)], cwd=ROOT, env=_env(tmp_path), stdout=log, stderr=log
        )
    try:
        wait_port(port, timeout=30)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()  # what an operator's service manager sends
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
            raise AssertionError(f"dev_run.py ignored SIGTERM for 30 s:\n{log_path.read_text()[-3000:]}") from None


def test_dev_run_serves_a_phone_recording_from_upload_to_vod(tmp_path, segment_files):
    with _dev_run(tmp_path, tmp_path / "dev_run.log") as base:
        _record_like_a_phone(base, segment_files, tmp_path)


def test_the_first_start_prints_a_one_time_admin_password_that_logs_in(tmp_path):
    with _dev_run(tmp_path, tmp_path / "first.log") as base:
        console = (tmp_path / "first.log").read_text()  # printed (and flushed) before the port opens
        found = re.search(r"Dashboard: (\S+)\n.*\n +Username: (\S+)\n +Password: (\S+)\n.*shown once", console)
        assert found, console[-3000:]
        url, name, password = found.groups()
        assert (url, name) == (f"{base}/", "admin") and len(password) >= 16
        assert "python -m server.cli admin create NAME" in console
        with requests.Session() as browser:
            login = browser.post(f"{base}/api/admin/login", json={"username": name, "password": password}, timeout=10)
            assert login.status_code == 200, login.text
            assert browser.get(f"{base}/api/admin/me", timeout=10).json() == {"name": "admin", **login.json()}
        assert (
            requests.post(f"{base}/api/admin/login", json={"username": name, "password": "admin"}, timeout=10).status_code == 401
        )
    with _dev_run(tmp_path, tmp_path / "second.log"):  # an admin exists: no new password, none shown
        console = (tmp_path / "second.log").read_text()
        assert "team03 on http" in console and "Password" not in console and password not in console


def _record_like_a_phone(base: str, segment_files: list[Path], tmp_path: Path) -> None:
    with requests.Session() as s:
        s.headers.update({"Accept": "application/json"})
        video = s.post(f"{base}/videos", json=new_video_body("from the phone")).json()
        assert set(video) == VIDEO_KEYS
        vid = video["video_id"]
        for k in (1, 0, 2):
            body, content_type = segment_upload(k, segment_files[k].read_bytes())
            assert s.post(f"{base}/video_segment/{vid}", data=body, headers={"Content-Type": content_type}).status_code == 201
        assert s.post(f"{base}/video_end/{vid}", data={"last_segment_id": "2"}).status_code == 200
        deadline = time.monotonic() + 120
        while s.get(f"{base}/video/{vid}").json()["type"] != "VOD":
            assert time.monotonic() < deadline, (tmp_path / "dev_run.log").read_text()[-3000:]
            time.sleep(0.5)
        assert s.get(f"{base}/live_mpd/{vid}.mpd?last_segment_id=2").headers["streamEnded"] == "true"
        assert s.get(f"{base}/video_files/{vid}/HIGH/000002.mp4").status_code == 200


def test_cli_migrates_and_creates_an_admin_who_can_rename(tmp_path):
    env = _env(tmp_path)
    run = [sys.executable, "-m", "server.cli"]
    subprocess.run([*run, "db", "upgrade"], cwd=ROOT, env=env, check=True, capture_output=True)
    subprocess.run(
        [*run, "admin", "create", "ops"], cwd=ROOT, env=env, input="hunter22\n", text=True, check=True, capture_output=True
    )
    from server import create_app
    from server.config import Config

    app = create_app(Config.from_env(DATABASE_URL=env["DATABASE_URL"], MEDIA_ROOT=tmp_path / "media"))
    try:
        client = app.test_client()
        vid = client.post("/videos", json={"title": "a"}).json["video_id"]
        auth = {"Authorization": "Basic " + base64.b64encode(b"ops:hunter22").decode()}
        assert client.put(f"/video/{vid}", json={"title": "b"}, headers=auth).json["title"] == "b"
        assert client.put(f"/video/{vid}", json={"title": "c"}).status_code == 401
    finally:
        app.extensions["team03"].close()


def test_closing_an_app_stops_its_local_reaper(make_config):
    # An app built with the local runner (no GEARMAN_SERVERS) runs a reaper thread; close() must end it, or every app a
    # process builds and throws away (tests, reloads) leaves one polling the database forever.
    before = set(threading.enumerate())
    app = create_app(make_config(REAPER_INTERVAL=0.1), local_runner=True)
    reapers = [t for t in set(threading.enumerate()) - before if t.name == "reaper"]
    assert len(reapers) == 1 and reapers[0].is_alive()
    app.extensions["team03"].close()
    reapers[0].join(timeout=5)
    assert not reapers[0].is_alive()
