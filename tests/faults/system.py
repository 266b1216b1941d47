"""The system under fault: production processes on private dependencies, and the faults a test injects into it.

    nginx (deploy/nginx/team03.conf) -> gunicorn (deploy/gunicorn.conf.py, 2 processes) on 127.0.0.1
    gunicorn also on the test host's veth peer, where a remote worker (its own namespace) reaches the API
    2 local `python -m server.segment_processor` (database + media store + reaper), 1 remote (API + token)
    a private MariaDB, gearmand (on the veth peer, for the remote worker) and memcached; media in a bucket of a
    radosgw of the test's own (MEDIA_STORE=s3), nginx's cache tier in front of it; scratch on a tmpfs

Every fault is recorded with its window in the shared `Record`; each waits for the facts it needs
(a worker holding an attempt, an upload refused for the full disk) with a deadline.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import func, select

from server.config import Config
from server.core.clock import SystemClock
from server.domain import registry
from server.infra.models import Attempt, Event, Worker
from tests.faults.record import Record
from tests.harness import s3
from tests.harness import services as real
from tests.harness.netns import TestHost
from tests.harness.stack import Stack
from tests.harness.tree import tree

REMOTE = "remote1"
LOCAL_WORKERS = 2


class System:
    """Everything the fault suite starts, in the order it must be stopped (close() is safe after a failure)."""

    def __init__(
        self,
        config: Config,
        stack: Stack,
        host: TestHost,
        mariadb: real.MariaDB,
        memcached: real.Memcached,
        tmp: Path,
        gateway: s3.SpareGateway,
    ):
        self.config, self.stack, self.host, self.mariadb, self.memcached, self.tmp = config, stack, host, mariadb, memcached, tmp
        self.gateway = gateway
        self.record = Record()
        self.procs: list[subprocess.Popen[bytes]] = []
        self.app_port = real.free_port()
        self.front_port = real.free_port()
        self.nginx_prefix = real.nginx_prefix()
        self.remote: subprocess.Popen[bytes] | None = None

    @property
    def gearmand(self) -> real.Gearmand:
        return self.stack.gearmand

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.front_port}"

    def start(self) -> None:
        self.stack.start_workers(LOCAL_WORKERS, self.tmp / "worker.log")
        env = {**os.environ, **self.config.to_env(), "LOG_LEVEL": "WARNING"}
        peer = f"{self.host.host_address}:{self.app_port}"
        log = self.tmp / "gunicorn.log"
        self.procs.append(real.start_gunicorn(env, self.app_port, log, "-w", "2", "--threads", "8", "-b", peer))
        real.wait_http(f"http://127.0.0.1:{self.app_port}/ping", self.procs[-1], log, timeout=60)
        store = real.Store(self.gateway.endpoint.removeprefix("http://"), self.config.S3_BUCKET, self.config.S3_PREFIX)
        conf = real.render_nginx(self.nginx_prefix, self.app_port, self.front_port, status_port=real.free_port(), store=store)
        self.procs.append(real.start_nginx(self.nginx_prefix, conf))
        real.wait_http(f"{self.base}/ping", self.procs[-1], self.nginx_prefix / "nginx.out")
        self.start_remote()

    def start_remote(self) -> None:
        """Start the remote worker inside the test host: API_URL, WORKER_TOKEN and gearmand only."""
        media = self.tmp / "remote-media"
        media.mkdir(exist_ok=True)
        with self.stack.services.sessions() as session:
            token = registry.mint_token(session, REMOTE, now=SystemClock().now())
        env = {
            "PATH": os.environ["PATH"],
            "LOG_LEVEL": "INFO",
            "GEARMAN_SERVERS": ",".join(self.config.GEARMAN_SERVERS),
            "API_URL": f"http://{self.host.host_address}:{self.app_port}",
            "WORKER_TOKEN": token,
            "MEDIA_ROOT": str(media),
            "WORKER_CONCURRENCY": "1",
            "FFMPEG_TIMEOUT": str(self.config.FFMPEG_TIMEOUT),
        }
        with open(self.tmp / "remote.log", "ab") as log:
            argv = [sys.executable, "-m", "server.segment_processor"]
            self.remote = self.host.popen(argv, env=env, cwd=str(real.ROOT), stdout=subprocess.DEVNULL, stderr=log)
        real.wait_for(lambda: self._registered(REMOTE), 30, f"remote worker registered; see {self.tmp / 'remote.log'}")

    def _registered(self, name: str) -> bool:
        with self.stack.services.sessions() as session:
            return session.scalar(select(func.count()).select_from(Worker).where(Worker.name == name)) == 1

    # -- queries (the test's own connection to the private MariaDB) --

    def running_attempt(self, worker_names: list[str]) -> tuple[int, str] | None:
        """(attempt id, worker name) of an attempt still running (outcome NULL) on one of `worker_names`."""
        with self.stack.services.sessions() as session:
            query = select(Attempt.id, Worker.name).join(Worker, Worker.id == Attempt.worker_id)
            found = session.execute(query.where(Attempt.outcome.is_(None), Worker.name.in_(worker_names)).limit(1)).first()
            return None if found is None else (found[0], found[1])

    def outcome(self, attempt_id: int) -> object:
        with self.stack.services.sessions() as session:
            return session.scalar(select(Attempt.outcome).where(Attempt.id == attempt_id))

    def dangling_attempts(self) -> int:
        with self.stack.services.sessions() as session:
            return session.scalar(select(func.count()).select_from(Attempt).where(Attempt.outcome.is_(None))) or 0

    def attempt_outcomes(self) -> dict[str, int]:
        """How many attempts ended each way (ok, failed, expired, ...; "running" for none yet)."""
        with self.stack.services.sessions() as session:
            rows = session.execute(select(Attempt.outcome, func.count()).group_by(Attempt.outcome)).all()
        return {getattr(outcome, "value", None) or "running": count for outcome, count in rows}

    def finished_events(self, video_id: int) -> int:
        with self.stack.services.sessions() as session:
            query = select(func.count()).select_from(Event).where(Event.video_id == video_id, Event.kind == "video.finished")
            return session.scalar(query) or 0

    def local_names(self) -> dict[str, subprocess.Popen[bytes]]:
        return {f"{os.uname().nodename}-{p.pid}": p for p in self.stack.workers if p.poll() is None}

    # -- faults --

    def kill_worker(self) -> None:
        """kill -9 a local worker, the one holding an attempt if any does within 10 s, and start a replacement."""
        names = self.local_names()
        found = real.poll(lambda: self.running_attempt(list(names)), 10)
        name = found[1] if found else next(iter(names))
        fault = self.record.begin("kill -9 worker", note=f"holding attempt {found[0]}" if found else "idle")
        victim = names[name]
        victim.kill()
        victim.wait()
        self.stack.workers.remove(victim)
        self.stack.start_worker(self.tmp / "worker.log")
        fault.ended = time.monotonic()

    def restart_gearmand(self) -> None:
        """Kill gearmand (its queue is in memory: every queued job is lost) and start it again on the same port."""
        fault = self.record.begin("restart gearmand")
        self.gearmand.stop()
        self.gearmand.start()
        fault.ended = time.monotonic()

    def restart_mariadb(self, down: float) -> None:
        """kill -9 MariaDB, leave it down `down` seconds, start it again on the same datadir and port."""
        fault = self.record.begin("mariadb", note=f"down {down:g}s")
        self.mariadb.kill()
        time.sleep(down)  # the outage's length is the fault's parameter, not a wait for something
        self.mariadb.start()
        fault.ended = time.monotonic()

    def bounce_memcached(self, down: float) -> None:
        fault = self.record.begin("memcached", note=f"down {down:g}s")
        self.memcached.stop()
        time.sleep(down)  # the outage's length
        self.memcached.start()
        fault.ended = time.monotonic()

    def pause_store(self, down: float) -> None:
        """Freeze the object store (SIGSTOP: connections accepted, nothing answered) for `down` seconds."""
        fault = self.record.begin("store", note=f"frozen {down:g}s")
        self.gateway.pause()
        try:
            time.sleep(down)  # the outage's length is the fault's parameter, not a wait for something
        finally:
            self.gateway.resume()
            fault.ended = time.monotonic()
        fault.note += f"; {self._count(503)} answers 503 by then"

    def fill_disk(self, refused: int) -> None:
        """Fill the scratch tmpfs (MEDIA_ROOT), wait until `refused` uploads were answered 507 (30 s at most), then free it."""
        fault = self.record.begin("disk")
        before = self._count(507)
        filler = real.fill_disk(self.config.MEDIA_ROOT)
        try:
            real.wait_for(lambda: self._count(507) >= before + refused, 30, f"{refused} uploads refused with 507 on a full disk")
        finally:
            filler.unlink(missing_ok=True)  # not made if the disk was full already
            fault.ended = time.monotonic()
        fault.note = f"{self._count(507) - before} uploads answered 507"

    def cut_remote(self) -> None:
        """Cut the remote worker's link while it holds an attempt; restore it once the reaper took the attempt back."""
        found = real.wait_for(lambda: self.running_attempt([REMOTE]), 30, "the remote worker holding an attempt")
        attempt_id = found[0]  # type: ignore[index]
        fault = self.record.begin("cut remote link", note=f"attempt {attempt_id}")
        self.host.cut()
        try:
            lease = self.config.LEASE_SECONDS
            real.wait_for(lambda: self.outcome(attempt_id) is not None, 4 * lease, f"attempt {attempt_id} taken back")
        finally:
            self.host.restore()
            fault.ended = time.monotonic()
        fault.note += f" -> {getattr(self.outcome(attempt_id), 'value', None)}"

    def _count(self, status: int) -> int:
        with self.record.lock:
            return sum(1 for a in self.record.answers if a.status == status)

    def temp_files(self) -> list[Path]:
        media = tree(self.stack.services)
        staging = [
            Path(self.config.S3_PREFIX) / key for key in self.stack.services.objects.list("videos/") if "/attempts/" in key
        ]
        scratch = self.tmp / "remote-media" / "work"  # encoding.Scratch: a live worker's lock file and the sweep gate stay
        locks = {p for p in scratch.glob("*") if p.name == ".sweep" or p.suffix == ".lock"}
        remote = [p for p in (self.tmp / "remote-media").rglob("*") if p.is_file() and p not in locks]
        return media.temp_files() + staging + remote

    def close(self) -> None:
        self.stack.close()
        real.stop_gracefully([p for p in (self.remote,) if p is not None], timeout=10)
        real.stop_gracefully(list(reversed(self.procs)), timeout=15)
        errors = self.nginx_prefix / "error.log"
        if errors.exists():  # kept beside the other logs: nginx's prefix is removed
            shutil.copy(errors, self.tmp / "nginx-error.log")
        subprocess.run(["rm", "-rf", str(self.nginx_prefix)], check=False)
