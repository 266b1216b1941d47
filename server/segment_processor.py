"""The worker the operator starts: `python -m server.segment_processor` (one per 1-2 cores, any machine).

It needs the same DATABASE_URL, GEARMAN_SERVERS and a MEDIA_ROOT on storage shared with the web app.
SIGTERM or SIGINT: finish the jobs in hand, then exit.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from pathlib import Path

if __package__ in (None, ""):  # also runnable as `python server/segment_processor.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from server import configure_logging
from server.config import Config
from server.jobs import FUNCTIONS
from server.lifecycle import WorkerRef
from server.origin import LocalOrigin
from server.services import Services
from server.work import default_worker_name, start_workers

log = logging.getLogger("server.segment_processor")


def main() -> int:
    config = Config.from_env()
    configure_logging(config.LOG_LEVEL)
    if not config.uses_gearman:
        log.error("GEARMAN_SERVERS is not set: without it `python dev_run.py` runs the jobs in-process")
        return 2
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("signal %d: finishing the current job, then exiting", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    services = Services.build(config)
    origin = LocalOrigin(services, WorkerRef(None, default_worker_name(config)))
    threads = start_workers(config, services, origin, FUNCTIONS, stop)
    log.info("segment_processor ready: %d worker(s) on %s", config.WORKER_CONCURRENCY, ",".join(config.GEARMAN_SERVERS))
    while not stop.wait(0.5):
        pass
    for thread in threads:
        thread.join()
    log.info("segment_processor stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
