"""Start the job machinery of one process: Gearman worker threads with the handlers of its functions.

Nothing here needs the database: a remote worker runs this module as it is. What does (packaging, the
reaper, the local runner, the origin seen through the database) is server/worker/local.py.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from functools import partial

from server.config import Config
from server.core.jobs import PACKAGE_VIDEO, TRANSCODE_SEGMENT
from server.core.transcode.ffmpeg import capabilities
from server.core.wire import Registration
from server.infra import metrics
from server.infra.queue import Handler
from server.worker.encoding import handle_transcode
from server.worker.origin import Origin
from server.worker.threads import WorkerThread

log = logging.getLogger(__name__)


def default_worker_name(config: Config) -> str:
    return config.WORKER_NAME or f"{socket.gethostname()}-{os.getpid()}"


def handlers_for(
    config: Config, origin: Origin, functions: tuple[str, ...], package: Handler | None = None
) -> dict[str, Handler]:
    """The handlers of `functions`; packaging needs the database and the media tree (`package`, server/worker/local.py)."""
    handlers: dict[str, Handler] = {}
    if TRANSCODE_SEGMENT in functions:
        handlers[TRANSCODE_SEGMENT] = partial(handle_transcode, origin, config)
    if PACKAGE_VIDEO in functions:
        if package is None:
            raise ValueError("packaging runs where the media and the database are: this worker has neither")
        handlers[PACKAGE_VIDEO] = package
    return handlers


def registration(config: Config, functions: tuple[str, ...]) -> Registration:
    """What a worker tells the registry about itself."""
    return Registration(socket.gethostname(), metrics.software_version(), capabilities(), config.WORKER_CONCURRENCY, functions)


def start_workers(
    config: Config, handlers: dict[str, Handler], stop: threading.Event, *extra: threading.Thread
) -> list[threading.Thread]:
    """Start WORKER_CONCURRENCY Gearman worker threads (and `extra`: the origin's reaper); they end when `stop` is set."""
    threads: list[threading.Thread] = [
        WorkerThread(config.GEARMAN_SERVERS, handlers, stop, i) for i in range(config.WORKER_CONCURRENCY)
    ]
    threads.extend(extra)
    for thread in threads:
        thread.start()
    return threads
