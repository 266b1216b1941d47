"""Two origins behind one nginx (issue 17, "stateless origins"): two machines that share only the services.

    phones, players -> nginx (deploy/nginx/team03.conf, 127.0.0.1; `upstream team03_app` names both origins)
        origin a: namespace t3-origina-<pid>    gunicorn (deploy/gunicorn.conf.py) on 10.203.A.2:8000
                                                 `python -m server.segment_processor` (its reaper inside)
        origin b: namespace t3-originb-<pid>    the same on 10.203.B.2:8000
    shared: a fresh database on the MariaDB of 127.0.0.1:3306, a private gearmand and memcached on loopback,
            and the media store: one MEDIA_ROOT folder ("local"), or the Ceph gateway on 127.0.0.1:7480
            under a fresh bucket and S3_PREFIX ("s3", each origin with a scratch MEDIA_ROOT of its own)

Each origin is a test host (tests/harness/netns.py): its processes see only their own link, and reach the
loopback services through a relay on this machine's end of it (tests/harness/relay.py), as another machine
would reach them over the network. `kill(origin)` is the machine's crash: kill -9 of every process in its
namespace at once (gunicorn's master and workers, the segment_processor), recorded as a fault in `Record`.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack, suppress
from pathlib import Path

from sqlalchemy import Engine, create_engine, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from server.config import Config
from server.core.jobs import TRANSCODE_SEGMENT
from server.infra.models import Attempt, Event, Video, Worker
from server.infra.queue import queue_status
from tests.faults.record import Record
from tests.harness import s3
from tests.harness import services as real
from tests.harness.netns import TestHost, ip
from tests.harness.relay import Relay
from tests.harness.stack import stack_config

APP_PORT = 8000  # each origin is a host of its own: gunicorn on the port deploy/gunicorn.conf.py ships
RGW = ("127.0.0.1", 7480)  # scripts/services.sh's Ceph gateway (tests/harness/s3.py ENDPOINT)
WORKERS = 1  # segment_processors per origin
# The app's own knobs, as the fault suite sets them (tests/faults/conftest.py KNOBS says why each).
KNOBS: dict[str, object] = {
    "LADDER": "HIGH:480x320:500k,MEDIUM:320x240:250k,LOW:240x160:120k",
    "LEASE_SECONDS": 6.0,  # the dead origin's attempt comes back within seconds
    "REAPER_INTERVAL": 0.5,
    "PROCESSING_DEADLINE": 15.0,  # a job the dead origin stored but never submitted is submitted after this
    "RETRY_BACKOFF": 0.3,
    "GAP_TIMEOUT": 4.0,
    "FFMPEG_TIMEOUT": 60.0,
    "BODY_READ_TIMEOUT": 10.0,
    # nginx reaches the origins from 10.203.X.1 (docs/operations.md "Run two origins on one bucket").
    "TRUSTED_PROXIES": 1,
    "TRUSTED_PROXY_ADDRESSES": ("10.203.0.0/16",),
}
_UPLOAD = re.compile(r'"POST /video_segment/\d+ HTTP/1\.[01]" (\d{3}) ')


class Origin:
    """One origin machine: gunicorn and segment_processors inside `host`, with `config` as that machine sees it."""

    def __init__(self, name: str, host: TestHost, config: Config, tmp: Path) -> None:
        self.name, self.host, self.config, self.tmp = name, host, config, tmp
        self.procs: list[subprocess.Popen[bytes]] = []
        self.access_log = tmp / f"{name}-access.log"
        self.log = tmp / f"{name}.log"
        self.killed = False

    @property
    def upstream(self) -> str:
        return f"{self.host.address}:{APP_PORT}"

    @property
    def worker_names(self) -> list[str]:
        return [f"origin-{self.name}-{k}" for k in range(WORKERS)]

    def env(self) -> dict[str, str]:
        return {**os.environ, **self.config.to_env(), "LOG_LEVEL": "INFO"}

    def start(self) -> None:
        """Start gunicorn as deploy/gunicorn.conf.py says (bound to this host's address) and the segment_processors."""
        gunicorn = [str(real.ROOT / ".venv/bin/gunicorn"), "-c", str(real.ROOT / "deploy/gunicorn.conf.py")]
        gunicorn += ["-b", self.upstream, "-w", "2", "--threads", "4", "--access-logfile", str(self.access_log)]
        with open(self.log, "ab") as log:
            env = {**self.env(), "LOG_LEVEL": "WARNING"}
            self.procs.append(self.host.popen([*gunicorn, "server:create_app()"], env=env, cwd=real.ROOT, stdout=log, stderr=log))
            for name in self.worker_names:
                argv = [sys.executable, "-m", "server.segment_processor"]
                env = {**self.env(), "WORKER_NAME": name, "WORKER_CONCURRENCY": "1"}
                self.procs.append(self.host.popen(argv, env=env, cwd=real.ROOT, stdout=subprocess.DEVNULL, stderr=log))

    def wait_ready(self) -> None:
        """Wait until gunicorn answers /readyz from outside: the database, gearmand, memcached (and the bucket) reached."""
        real.wait_http(f"http://{self.upstream}/readyz", self.procs[0], self.log, timeout=60)

    def pids(self) -> list[int]:
        """Every process inside this origin's namespace, those started here and every child of theirs."""
        return [int(pid) for pid in ip("netns", "pids", self.host.namespace).stdout.split()]

    def kill(self) -> list[str]:
        """kill -9 every process of this origin at once (the machine's crash); return their names."""
        pids = self.pids()
        names = [_name(pid) for pid in pids]
        for pid in pids:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for proc in self.procs:
            proc.wait(timeout=10)
        real.wait_for(lambda: not self.pids(), 10, f"every process of origin {self.name} gone")
        self.killed = True
        return names

    def uploads(self) -> int:
        """Segment uploads this origin's gunicorn answered with a 2xx (its access log)."""
        if not self.access_log.exists():
            return 0
        return sum(1 for status in _UPLOAD.findall(self.access_log.read_text(errors="replace")) if status.startswith("2"))

    def stop(self) -> None:
        real.stop_gracefully(list(reversed(self.procs)), timeout=10)


class TwoOrigins:
    """The whole set-up for one store ("local" or "s3"); close() tears all of it down, also after a failure."""

    def __init__(self, store: str, tmp: Path) -> None:
        self.store, self.tmp = store, tmp
        self.record = Record()
        self.origins: list[Origin] = []
        self.front_port = real.free_port()
        self._stack = ExitStack()
        self.database_url = ""
        self._engine: Engine | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.front_port}"

    def start(self) -> None:
        stack = self._stack
        self.database_url = real.create_database()
        stack.callback(real.drop_database, self.database_url)
        self._engine = create_engine(self.database_url)
        stack.callback(self._engine.dispose)
        gearmand = real.Gearmand().start()
        stack.callback(gearmand.stop)
        self.gearmand = gearmand
        memcached = real.Memcached().start()
        stack.callback(memcached.stop)
        media = Path(tempfile.mkdtemp(prefix="team03-origins-"))  # 0755 below: nginx's workers (nobody) read it
        stack.callback(shutil.rmtree, media, ignore_errors=True)
        real.readable_by_all(media / "shared")
        base = stack_config(self.database_url, media / "shared", **KNOBS, **self._store_settings())
        hosts = [stack.enter_context(TestHost(f"origin{name}")) for name in "ab"]
        database = make_url(self.database_url)
        services = [(database.host or "127.0.0.1", database.port or 3306), _split(gearmand.address), _split(memcached.address)]
        services += [RGW] if self.store == "s3" else []
        routes = {(host.host_address, port): (address, port) for host in hosts for address, port in services}
        stack.enter_context(Relay(routes, self.tmp / "relay.log"))
        for name, host in zip("ab", hosts, strict=True):
            on_host = {
                "DATABASE_URL": database.set(host=host.host_address).render_as_string(hide_password=False),
                "GEARMAN_SERVERS": (f"{host.host_address}:{gearmand.port}",),
                "MEMCACHED_SERVERS": (f"{host.host_address}:{memcached.port}",),
            }
            if self.store == "s3":
                on_host |= {"S3_ENDPOINT_URL": f"http://{host.host_address}:{RGW[1]}", "MEDIA_ROOT": media / name}
            self.origins.append(Origin(name, host, dataclasses.replace(base, **on_host), self.tmp))
        for origin in self.origins:
            stack.callback(origin.stop)
            origin.start()
        for origin in self.origins:
            origin.wait_ready()
        self._wait_workers()
        self._start_front(media / "shared")

    def _store_settings(self) -> dict[str, object]:
        """The settings of the shared store: none for the local tree; a fresh bucket and prefix for S3."""
        if self.store == "local":
            return {}
        s3.ensure_gateway()
        bucket = s3.new_bucket()
        self._stack.callback(s3.remove_bucket, bucket)
        os.environ.setdefault("AWS_ACCESS_KEY_ID", s3.ACCESS_KEY)
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", s3.SECRET_KEY)
        return {
            "MEDIA_STORE": "s3",
            "S3_BUCKET": bucket,
            "S3_PREFIX": f"t{uuid.uuid4().hex[:10]}/",
            "S3_ENDPOINT_URL": s3.ENDPOINT,
        }

    def _wait_workers(self) -> None:
        def registered() -> bool:
            for origin in self.origins:
                if any(p.poll() is not None for p in origin.procs):
                    raise RuntimeError(f"a process of origin {origin.name} exited; see {origin.log}")
            status = queue_status((self.gearmand.address,)).total(TRANSCODE_SEGMENT)
            return status.get("workers", 0) >= WORKERS * len(self.origins)

        real.wait_for(registered, 30, "every origin's segment_processor registered with gearmand")

    def _start_front(self, media: Path) -> None:
        """nginx in front of both origins; it serves players' files from `media` (with S3 an empty folder: all to the app)."""
        prefix = real.nginx_prefix()
        self._stack.callback(subprocess.run, ["rm", "-rf", str(prefix)], check=False)
        origins = tuple(origin.upstream for origin in self.origins)
        conf = real.render_nginx(prefix, real.free_port(), self.front_port, media_root=media, origins=origins)
        nginx = real.start_nginx(prefix, conf)
        self._stack.callback(real.stop_gracefully, [nginx], 10)
        self._stack.callback(_keep, prefix / "error.log", self.tmp / "nginx-error.log")
        real.wait_http(f"{self.base}/ping", nginx, prefix / "nginx.out")

    def _session(self) -> Session:
        assert self._engine is not None, "start() first"
        return Session(self._engine)

    # -- the fault --

    def holding(self) -> Origin | None:
        """The live origin one of whose workers holds a running attempt, if any does now."""
        with self._session() as session:
            query = select(Worker.name).join(Attempt, Attempt.worker_id == Worker.id).where(Attempt.outcome.is_(None))
            names = set(session.scalars(query))
        return next((o for o in self.origins if not o.killed and names & set(o.worker_names)), None)

    def kill(self, origin: Origin, note: str) -> None:
        fault = self.record.begin("kill origin", note=f"origin {origin.name}: {note}")
        names = origin.kill()
        fault.ended = time.monotonic()
        fault.note += f"; killed {len(names)}: {', '.join(sorted(names))}"

    # -- queries (the test's own connection to the shared database) --

    def revisions(self, video_id: int) -> tuple[int, int] | None:
        """The video's (revision, published_revision): its rows' version and the one its files show."""
        with self._session() as session:
            row = session.execute(select(Video.revision, Video.published_revision).where(Video.id == video_id)).one_or_none()
        return None if row is None else (row[0], row[1] or 0)

    def finished_events(self, video_id: int) -> int:
        with self._session() as session:
            query = select(func.count()).select_from(Event).where(Event.video_id == video_id, Event.kind == "video.finished")
            return session.scalar(query) or 0

    def attempt_outcomes(self) -> dict[str, int]:
        with self._session() as session:
            rows = session.execute(select(Attempt.outcome, func.count()).group_by(Attempt.outcome)).all()
        return {getattr(outcome, "value", None) or "running": count for outcome, count in rows}

    def close(self) -> None:
        self._stack.close()


def _split(address: str) -> tuple[str, int]:
    host, port = address.rsplit(":", 1)
    return host, int(port)


def _name(pid: int) -> str:
    """A process's command name (gunicorn's workers and master alike say `gunicorn`)."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "gone"


def _keep(source: Path, target: Path) -> None:
    """Copy nginx's error log beside the test's other logs before its prefix is removed."""
    if source.exists():
        shutil.copy(source, target)
