"""The worker the operator starts: `python -m server.segment_processor [--only transcode|package]`, on any machine.

Two kinds (docs/workers.md):

* With DATABASE_URL and the media tree (MEDIA_ROOT shared with the web app): takes every job function
  it can (`team03.transcode_segment`, `team03.package_video`) and talks to the database directly.
* Remote: API_URL and WORKER_TOKEN set, no DATABASE_URL, its own empty MEDIA_ROOT: takes only the
  transcodes; the source comes down the worker API and the outputs go up it (server/remote_origin.py).

`--only` narrows what a worker takes. It registers at start (hello), says it is alive every
LEASE_SECONDS / 3, and on SIGTERM or SIGINT finishes the jobs in hand, then says bye and exits.
"""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # also runnable as `python server/segment_processor.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from server import configure_logging
from server.config import ROOT, Config, database_configured
from server.errors import WorkerUnauthorized
from server.jobs import PACKAGE_VIDEO, TRANSCODE_SEGMENT

log = logging.getLogger("server.segment_processor")

ONLY = {"transcode": TRANSCODE_SEGMENT, "package": PACKAGE_VIDEO}


class Refused(Exception):
    """The worker cannot start as configured; the message is the one line the operator reads."""


@dataclass(frozen=True)
class Plan:
    """What this process is: remote or not, and the job functions it takes."""

    remote: bool
    functions: tuple[str, ...]


def plan(config: Config, only: str | None, *, database: bool) -> Plan:
    """Decide the worker's kind and functions from its settings; Refused when they cannot work."""
    if not config.uses_gearman:
        raise Refused("GEARMAN_SERVERS is not set: without it `python dev_run.py` runs the jobs in-process")
    remote = bool(config.API_URL and config.WORKER_TOKEN) and not database
    if not remote and not database and (config.API_URL or config.WORKER_TOKEN):
        raise Refused("a remote worker needs both API_URL and WORKER_TOKEN")
    if remote:
        if only == "package":
            raise Refused("--only package needs DATABASE_URL and the media tree; a remote worker (API_URL) only transcodes")
        return Plan(True, (TRANSCODE_SEGMENT,))
    return Plan(False, (ONLY[only],) if only else (TRANSCODE_SEGMENT, PACKAGE_VIDEO))


def software_version() -> str:
    """Return the code's commit (short), or "unknown" outside a git checkout."""
    try:
        done = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return done.stdout.strip() or "unknown"


def registration(config: Config, functions: tuple[str, ...]):  # type: ignore[no-untyped-def]
    """What this worker tells the registry about itself."""
    from server.transcode.ffmpeg import capabilities
    from server.workers import Registration

    return Registration(socket.gethostname(), software_version(), capabilities(), config.WORKER_CONCURRENCY, functions)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m server.segment_processor", description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(ONLY), help="take only this job function (default: every one it can)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = Config.from_env()
    configure_logging(config.LOG_LEVEL)
    try:
        how = plan(config, args.only, database=database_configured())
    except Refused as exc:
        log.error("%s", exc)
        return 2
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("signal %d: finishing the jobs in hand, then exiting", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    registry = RemoteRegistry(config) if how.remote else LocalRegistry(config)
    return run(config, how, registry, stop)


class RemoteRegistry:
    """A remote worker's registration, heartbeat and origins: all over the worker API."""

    def __init__(self, config: Config) -> None:
        from server.remote_origin import RemoteOrigin

        self.config = config
        self.api = RemoteOrigin(config.API_URL, config.WORKER_TOKEN)
        self.services = None

    def hello(self, functions: tuple[str, ...]) -> float:
        answer = self.api.hello(registration(self.config, functions).to_json())
        return float(answer["lease_seconds"])

    def alive(self) -> None:
        self.api.alive()

    def bye(self) -> None:
        self.api.bye()

    def origin_factory(self) -> Callable[[], object]:
        from server.remote_origin import RemoteOrigin

        # One HTTP session per worker thread: a requests.Session is not meant to be shared across threads.
        return lambda: RemoteOrigin(self.config.API_URL, self.config.WORKER_TOKEN)


class LocalRegistry:
    """A worker with the database: registers itself directly; its origin is the media tree."""

    def __init__(self, config: Config) -> None:
        from server.services import Services

        self.config = config
        self.services = Services.build(config)
        self.worker = None

    def hello(self, functions: tuple[str, ...]) -> float:
        from server import workers
        from server.clock import utcnow
        from server.lifecycle import WorkerRef

        with self.services.sessions() as session:
            row = workers.register(session, self.config.worker_name, registration(self.config, functions), now=utcnow())
            self.worker = WorkerRef(row.id, row.name)
        return float(self.config.LEASE_SECONDS)

    def alive(self) -> None:
        from server import workers
        from server.clock import utcnow

        with self.services.sessions() as session:
            workers.heartbeat(session, self.worker.id, now=utcnow())  # type: ignore[union-attr]

    def bye(self) -> None:
        from server import workers
        from server.clock import utcnow

        with self.services.sessions() as session:
            workers.stopped(session, self.worker.id, now=utcnow())  # type: ignore[union-attr]
        self.services.close()

    def origin_factory(self) -> Callable[[], object]:
        from server.origin import LocalOrigin

        return lambda: LocalOrigin(self.services, self.worker)


def run(config: Config, how: Plan, registry: RemoteRegistry | LocalRegistry, stop: threading.Event) -> int:
    """Register, start the job threads, say alive until `stop`, drain, say bye."""
    from server.work import start_workers

    try:
        lease_seconds = registry.hello(how.functions)
    except WorkerUnauthorized as exc:
        log.error("%s: check WORKER_TOKEN (python -m server.cli worker token NAME)", exc.message)
        return 3
    threads = start_workers(registry.services, registry.origin_factory(), how.functions, stop)
    kind = "remote" if how.remote else "local"
    log.info("segment_processor ready (%s): %d thread(s) for %s", kind, config.WORKER_CONCURRENCY, ",".join(how.functions))
    while not stop.wait(max(1.0, lease_seconds / 3)):
        try:
            registry.alive()
        except WorkerUnauthorized as exc:  # revoked: take no more work
            log.error("%s: finishing the jobs in hand, then exiting", exc.message)
            stop.set()
        except Exception as exc:  # noqa: BLE001 - the API or the database restarting: jobs go on, next beat retries
            log.warning("worker heartbeat failed: %s", exc)
    for thread in threads:
        thread.join()
    try:
        registry.bye()
    except Exception as exc:  # noqa: BLE001 - exiting anyway; the registry shows the last heartbeat
        log.warning("could not say bye: %s", exc)
    log.info("segment_processor stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
