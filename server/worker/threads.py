"""Gearman worker threads: each registers with every gearmand, holds one job at a time, and reconnects to one that comes back."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from server.infra.queue import Handler, gearman_worker

log = logging.getLogger(__name__)


class WorkerThread(threading.Thread):
    """Take jobs from gearmand and run them until `stop` is set, finishing the current one."""

    def __init__(self, servers: tuple[str, ...], handlers: dict[str, Handler], stop: threading.Event, index: int) -> None:
        super().__init__(name=f"gearman-worker-{index}", daemon=True)
        self.servers = servers
        self.handlers = handlers
        self.stop = stop
        self.client_id = f"{socket.gethostname()}-{os.getpid()}-{index}"

    def run(self) -> None:
        while not self.stop.is_set():
            worker = gearman_worker(self.servers, self.client_id)
            # Checked between jobs: returning False ends work() after the current job.
            worker.after_poll = lambda _activity: not self.stop.is_set()
            for name, handler in self.handlers.items():
                worker.register_task(name.encode(), _callback(handler))
            try:
                worker.work(poll_timeout=1.0)
            except Exception as exc:  # ServerUnavailable and socket errors while gearmand restarts
                log.warning("gearmand %s unavailable (%s); reconnecting", ",".join(self.servers), exc)
                self.stop.wait(1.0)
            finally:
                worker.shutdown()


def _callback(handler: Handler) -> Callable[[object, Any], bytes]:
    def run(_worker: object, job: Any) -> bytes:  # job: pygearman's GearmanJob (untyped)
        started = time.monotonic()
        try:
            handler(job.data)
        except Exception:
            # The database holds the segment's state and the reaper retries it; a raise here
            # would only make gearmand drop the job, so log and report completion.
            log.exception("job %s failed after %.2fs", job.unique, time.monotonic() - started)
        return b"done"

    return run
