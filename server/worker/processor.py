"""The worker the operator starts: `python -m server.segment_processor [--only transcode|package]`, on any machine.

(server/segment_processor.py is the name operators type; this module is the worker itself.)

Two kinds (docs/workers.md):

* With DATABASE_URL and the media tree (MEDIA_ROOT shared with the web app): takes every job function
  (`team03.transcode_segment`, `team03.package_video`), talks to the database directly, runs the reaper.
* Remote: API_URL and WORKER_TOKEN set, no DATABASE_URL, its own empty MEDIA_ROOT: takes only the
  transcodes; the source comes down the worker API and the outputs go up it (server/worker/remote.py).

`--only` narrows what a worker takes. It registers at start (hello), says it is alive every
LEASE_SECONDS / 3, and on SIGTERM or SIGINT finishes the jobs in hand, then says bye and exits.
A revoked token makes a remote worker drain and exit the same way.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import sys
import threading
from dataclasses import dataclass
from typing import Protocol

from server.config import Config, configure_logging, database_configured
from server.core.errors import WorkerUnauthorized
from server.core.jobs import PACKAGE_VIDEO, SHORT_NAMES, TRANSCODE_SEGMENT
from server.infra import metrics
from server.worker.encoding import Scratch
from server.worker.remote import RemoteOrigin
from server.worker.runner import handlers_for, registration, start_workers

log = logging.getLogger("server.segment_processor")


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
        raise Refused("a remote worker needs both API_URL and WORKER_TOKEN (and no DATABASE_URL)")
    if remote:
        if only == "package":
            raise Refused("--only package needs DATABASE_URL and the media tree; a remote worker (API_URL) only transcodes")
        return Plan(True, (TRANSCODE_SEGMENT,))
    return Plan(False, (SHORT_NAMES[only],) if only else (TRANSCODE_SEGMENT, PACKAGE_VIDEO))


class Presence(Protocol):
    """How a worker registers, says it is alive, starts its threads and leaves: remote or with the database."""

    def hello(self, functions: tuple[str, ...]) -> float: ...
    def alive(self) -> None: ...
    def bye(self) -> None: ...
    def start(self, config: Config, functions: tuple[str, ...], stop: threading.Event) -> list[threading.Thread]: ...


class RemoteRegistry:
    """A remote worker's registration, heartbeat and origin: all over the worker API."""

    def __init__(self, config: Config) -> None:
        self.config = config
        # Its own scratch tree under its MEDIA_ROOT (held, with its lock, as long as the process lives); a
        # previous run's, killed with -9, is swept first.
        self.scratch = Scratch(config.MEDIA_ROOT)
        self.origin = RemoteOrigin(config.API_URL, config.WORKER_TOKEN, scratch=self.scratch.path)

    def hello(self, functions: tuple[str, ...]) -> float:
        return float(self.origin.hello(registration(self.config, functions).to_json())["lease_seconds"])

    def alive(self) -> None:
        self.origin.alive()

    def bye(self) -> None:
        try:
            self.origin.bye()
        finally:
            self.scratch.close()

    def start(self, config: Config, functions: tuple[str, ...], stop: threading.Event) -> list[threading.Thread]:
        """The Gearman threads of `functions` (a remote worker only transcodes)."""
        return start_workers(config, handlers_for(config, self.origin, functions), stop)


def _local_registry(config: Config) -> Presence:
    # Imported here: a remote worker never loads the database side (SQLAlchemy, the domain).
    from server.worker.local import LocalRegistry

    return LocalRegistry(config)


def run(config: Config, how: Plan, presence: Presence, stop: threading.Event) -> int:
    """Register, start the job threads, say alive until `stop`, drain, say bye."""
    try:
        lease_seconds = presence.hello(how.functions)
    except WorkerUnauthorized as exc:
        log.error("%s: check WORKER_TOKEN (python -m server.cli worker token NAME)", exc.message)
        return 3
    # The server's lease rules: the encoder renews every third of it, whatever this machine's setting.
    config = dataclasses.replace(config, LEASE_SECONDS=lease_seconds)
    threads = presence.start(config, how.functions, stop)
    kind = "remote" if how.remote else "local"
    log.info("segment_processor ready (%s): %d thread(s) for %s", kind, config.WORKER_CONCURRENCY, ",".join(how.functions))
    status = 0
    while not stop.wait(max(1.0, lease_seconds / 3)):
        try:
            presence.alive()
        except WorkerUnauthorized as exc:  # revoked: take no more work
            log.error("%s: finishing the jobs in hand, then exiting", exc.message)
            status = 3
            stop.set()
        except Exception as exc:  # noqa: BLE001 - the API or the database restarting: jobs go on, next beat retries
            log.warning("worker heartbeat failed: %s", exc)
    for thread in threads:
        thread.join()
    try:
        presence.bye()
    except Exception as exc:  # noqa: BLE001 - exiting anyway; the registry shows the last heartbeat
        log.warning("could not say bye: %s", exc)
    log.info("segment_processor stopped")
    return status


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m server.segment_processor", description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(SHORT_NAMES), help="take only this job function (default: every one it can)")
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
    presence = RemoteRegistry(config) if how.remote else _local_registry(config)
    metrics.serve(config)  # this worker's transcode times and attempts, for a Prometheus near it (METRICS_PORT)
    return run(config, how, presence, stop)


if __name__ == "__main__":
    sys.exit(main())
