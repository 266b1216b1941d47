"""The worker wing's side that has the database and the media tree: the local origin, the worker's
registration through the database, the packaging handler, the reaper, and the in-process runner that
dev_run.py uses. A remote worker never imports this module (server/worker/processor.py picks it only
for a worker with DATABASE_URL), so it never loads SQLAlchemy.
"""

from __future__ import annotations

import logging
import threading
from functools import partial
from pathlib import Path

from server.config import Config
from server.core.jobs import PACKAGE_VIDEO, TRANSCODE_SEGMENT, PackageJob, SegmentJob
from server.core.retry import Failure
from server.core.wire import Claim, Skip, WorkerRef
from server.domain import lifecycle, registry
from server.infra.queue import LocalQueue
from server.infra.services import Services
from server.ops.reaper import Reaper
from server.worker.encoding import workdir_for
from server.worker.runner import default_worker_name, handlers_for, registration, start_workers

log = logging.getLogger(__name__)


class LocalOrigin:
    """The origin seen from a worker that shares its database and media store.

    Its outputs are never staged: they stay in its scratch folder until the completion checks them and stores
    them in their places (a remote worker's must cross the network before, hence its staging).
    """

    def __init__(self, services: Services, worker: WorkerRef) -> None:
        self.services = services
        self.worker = worker
        self._outputs: dict[int, dict[str, Path]] = {}  # by attempt: each thread its own attempt's entry

    def claim(self, job: SegmentJob) -> Claim | Skip:
        with self.services.sessions() as session:
            return lifecycle.start_attempt(self.services, session, job.video_id, job.segment_id, self.worker)

    def workdir(self, claim: Claim) -> Path:
        # In MEDIA_ROOT/scratch (an attempt's id is the deployment's own): put_output is then a link on the local tree.
        return workdir_for(self.services.media.scratch("work"), claim)

    def fetch_source(self, claim: Claim, workdir: Path) -> Path:
        media = self.services.media
        return media.readable(media.original(claim.video_id, claim.segment_id, claim.source_extension), workdir)

    def heartbeat(self, claim: Claim, progress: float) -> None:
        with self.services.sessions() as session:
            lifecycle.renew_lease(self.services, session, claim.attempt_id, progress)

    def put_output(self, claim: Claim, name: str, path: Path) -> None:
        self._outputs.setdefault(claim.attempt_id, {})[name] = path

    def complete(self, claim: Claim) -> None:
        outputs = self._outputs.pop(claim.attempt_id, {})
        with self.services.sessions() as session:
            lifecycle.complete_attempt(self.services, session, claim.attempt_id, inline=True, local_files=outputs)

    def fail(self, claim: Claim, error: str, failure: Failure) -> None:
        self._outputs.pop(claim.attempt_id, None)
        with self.services.sessions() as session:
            lifecycle.fail_attempt(self.services, session, claim.attempt_id, error, failure)


def handle_package(services: Services, data: bytes) -> None:
    """Run one PACKAGE_VIDEO job: package what became placeable, then maybe finish (this process has the media)."""
    job = PackageJob.decode(data)
    with services.sessions() as session:
        lifecycle.settle(services, session, job.video_id, inline=True)


class LocalRegistry:
    """A worker with the database: registers itself directly; its origin is the media tree."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.services: Services = Services.build(config)
        self.origin = LocalOrigin(self.services, WorkerRef(None, default_worker_name(config)))

    def hello(self, functions: tuple[str, ...]) -> float:
        name = default_worker_name(self.config)
        with self.services.sessions() as session:
            row = registry.register(session, name, registration(self.config, functions), now=self.services.clock.now())
            self.origin = LocalOrigin(self.services, WorkerRef(row.id, row.name))
        return self.config.LEASE_SECONDS

    def alive(self) -> None:
        with self.services.sessions() as session:
            registry.heartbeat(session, self._id(), now=self.services.clock.now())

    def bye(self) -> None:
        try:
            with self.services.sessions() as session:
                registry.stopped(session, self._id(), now=self.services.clock.now())
        finally:
            self.services.close()

    def _id(self) -> int:
        worker_id = self.origin.worker.id
        assert worker_id is not None, "hello() first"
        return worker_id

    def start(self, config: Config, functions: tuple[str, ...], stop: threading.Event) -> list[threading.Thread]:
        """The Gearman threads of `functions`, and the reaper (this worker has the database)."""
        handlers = handlers_for(config, self.origin, functions, partial(handle_package, self.services))
        return start_workers(config, handlers, stop, Reaper(self.services, stop))


def start_local_runner(services: Services) -> Reaper:
    """Attach an in-process queue with WORKER_CONCURRENCY threads, registered as a worker, and start the reaper.

    The runner is a worker like any other in the workers table (the dashboard shows it keeping up): it
    registers here and says it is alive every third of a lease until the process stops.
    """
    functions = (TRANSCODE_SEGMENT, PACKAGE_VIDEO)
    with services.sessions() as session:
        row = registry.register(
            session, default_worker_name(services.config), registration(services.config, functions), now=services.clock.now()
        )
        me = WorkerRef(row.id, row.name)
    origin = LocalOrigin(services, me)
    handlers = handlers_for(services.config, origin, functions, partial(handle_package, services))
    services.queue = LocalQueue(handlers, services.config.WORKER_CONCURRENCY)
    reaper = Reaper(services, services.stopping)
    reaper.start()
    assert me.id is not None
    threading.Thread(target=_keep_alive, args=(services, me.id), name="local-worker-alive", daemon=True).start()
    log.info("local job runner started with %d thread(s) as worker %s", services.config.WORKER_CONCURRENCY, me.name)
    return reaper


def _keep_alive(services: Services, worker_id: int) -> None:
    """Heartbeat the local runner's worker row until the process closes its services."""
    while not services.stopping.wait(services.config.LEASE_SECONDS / 3):
        try:
            with services.sessions() as session:
                registry.heartbeat(session, worker_id, now=services.clock.now())
        except Exception as exc:  # noqa: BLE001 - a database restart: the next tick tries again
            log.warning("local worker heartbeat failed, retrying: %s", exc)
