"""Start the job machinery of one process: Gearman worker threads or the local runner, and the reaper.

The job functions by name: the same handlers run under gearmand and in the local runner.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from functools import partial

from server.config import Config
from server.core.jobs import PACKAGE_VIDEO, TRANSCODE_SEGMENT, PackageJob
from server.core.transcode.ffmpeg import capabilities
from server.domain import lifecycle, registry
from server.domain.lifecycle import WorkerRef
from server.infra import metrics
from server.infra.queue import Handler, LocalQueue
from server.infra.services import Services
from server.ops.reaper import Reaper
from server.worker.encoding import handle_transcode
from server.worker.origin import LocalOrigin, Origin
from server.worker.threads import WorkerThread

log = logging.getLogger(__name__)


def default_worker_name(config: Config) -> str:
    return config.WORKER_NAME or f"{socket.gethostname()}-{os.getpid()}"


def handle_package(services: Services, data: bytes) -> None:
    """Run one PACKAGE_VIDEO job: package what became placeable, then maybe finish (this process has the media)."""
    job = PackageJob.decode(data)
    with services.sessions() as session:
        lifecycle.settle(services, session, job.video_id, inline=True)


def handlers_for(config: Config, services: Services | None, origin: Origin, functions: tuple[str, ...]) -> dict[str, Handler]:
    """The handlers of `functions`; packaging needs `services` (the database and the media tree)."""
    handlers: dict[str, Handler] = {}
    if TRANSCODE_SEGMENT in functions:
        handlers[TRANSCODE_SEGMENT] = partial(handle_transcode, origin, config)
    if PACKAGE_VIDEO in functions:
        if services is None:
            raise ValueError("packaging runs where the media and the database are: this worker has neither")
        handlers[PACKAGE_VIDEO] = partial(handle_package, services)
    return handlers


def registration(config: Config, functions: tuple[str, ...]) -> registry.Registration:
    """What a worker tells the registry about itself."""
    return registry.Registration(
        socket.gethostname(), metrics.software_version(), capabilities(), config.WORKER_CONCURRENCY, functions
    )


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
    handlers = handlers_for(services.config, services, origin, functions)
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


def start_workers(
    config: Config, services: Services | None, origin: Origin, functions: tuple[str, ...], stop: threading.Event
) -> list[threading.Thread]:
    """Start WORKER_CONCURRENCY Gearman worker threads (and, on the origin, the reaper); they end when `stop` is set."""
    handlers = handlers_for(config, services, origin, functions)
    threads: list[threading.Thread] = [
        WorkerThread(config.GEARMAN_SERVERS, handlers, stop, i) for i in range(config.WORKER_CONCURRENCY)
    ]
    if services is not None:
        threads.append(Reaper(services, stop))
    for thread in threads:
        thread.start()
    return threads
