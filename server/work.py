"""Start the job machinery of one process: Gearman worker threads or the local runner, and the reaper.

The job functions by name: the same handlers run under gearmand and in the local runner.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from functools import partial

from server import lifecycle
from server.config import Config
from server.encoding import handle_transcode
from server.jobs import PACKAGE_VIDEO, TRANSCODE_SEGMENT, PackageJob
from server.jobs.queue import Handler, LocalQueue
from server.jobs.worker import WorkerThread
from server.lifecycle import WorkerRef
from server.origin import LocalOrigin, Origin
from server.reaper import Reaper
from server.services import Services

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


def start_local_runner(services: Services) -> Reaper:
    """Attach an in-process queue with WORKER_CONCURRENCY threads and start the reaper."""
    origin = LocalOrigin(services, WorkerRef(None, default_worker_name(services.config)))
    handlers = handlers_for(services.config, services, origin, (TRANSCODE_SEGMENT, PACKAGE_VIDEO))
    services.queue = LocalQueue(handlers, services.config.WORKER_CONCURRENCY)
    reaper = Reaper(services, services.stopping)
    reaper.start()
    log.info("local job runner started with %d thread(s)", services.config.WORKER_CONCURRENCY)
    return reaper


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
