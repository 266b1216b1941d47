"""Start the job machinery of one process: Gearman worker threads or the local runner, plus the reaper."""

from __future__ import annotations

import logging
import threading

from server.jobs.handlers import handlers_for
from server.jobs.queue import LocalQueue
from server.jobs.reaper import Reaper
from server.jobs.worker import WorkerThread
from server.services import Services

log = logging.getLogger(__name__)


def start_local_runner(services: Services) -> Reaper:
    """Attach an in-process queue with WORKER_CONCURRENCY threads and start the reaper."""
    services.queue = LocalQueue(handlers_for(services), services.config.WORKER_CONCURRENCY)
    reaper = Reaper(services, services.stopping)
    reaper.start()
    log.info("local job runner started with %d thread(s)", services.config.WORKER_CONCURRENCY)
    return reaper


def start_workers(services: Services, stop: threading.Event) -> list[threading.Thread]:
    """Start WORKER_CONCURRENCY Gearman worker threads and the reaper; they end when `stop` is set."""
    handlers = handlers_for(services)
    threads: list[threading.Thread] = [
        WorkerThread(services.config.GEARMAN_SERVERS, handlers, stop, i) for i in range(services.config.WORKER_CONCURRENCY)
    ]
    threads.append(Reaper(services, stop))
    for thread in threads:
        thread.start()
    return threads
