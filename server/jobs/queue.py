"""The one module that talks to Gearman, and the in-process runner that stands in for it."""

from __future__ import annotations

import logging
import queue
import socket
import threading
from collections.abc import Callable
from typing import Protocol

import gearman

log = logging.getLogger(__name__)

Handler = Callable[[bytes], None]


class _Connection(gearman.connection.GearmanConnection):
    """pygearman's connection, but a failed connect() closes its socket.

    The pinned pygearman leaves that socket open: one leaked descriptor (and a ResourceWarning) per
    attempt for as long as gearmand is down. Nothing else changes; we never use its SSL option.
    """

    def _create_client_socket(self) -> None:
        client_socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            client_socket.connect((self.gearman_host, self.gearman_port))
        except OSError as exc:
            client_socket.close()
            self.throw_exception(exception=exc)
        self.set_socket(client_socket)


class _Client(gearman.GearmanClient):
    connection_class = _Connection


class _Worker(gearman.GearmanWorker):
    connection_class = _Connection


class _Admin(gearman.admin_client.GearmanAdminClient):
    connection_class = _Connection


class QueueUnavailable(Exception):
    """The job could not be handed to the queue; the reaper will submit it later."""


class JobQueue(Protocol):
    def submit(self, function: str, data: bytes, *, unique: str, priority: int = 1) -> None:
        """Queue a background job; priority 0 (packaging), 1 (live encodes) or 2 (the rest) runs in that order."""
        ...


_GEARMAN_PRIORITY = {0: gearman.PRIORITY_HIGH, 1: gearman.PRIORITY_NONE, 2: gearman.PRIORITY_LOW}


class GearmanQueue:
    """Submit background jobs to gearmand; one client per process, guarded by a lock."""

    def __init__(self, servers: tuple[str, ...], *, timeout: float = 5.0) -> None:
        self.servers = list(servers)
        self.timeout = timeout
        self._lock = threading.Lock()
        self._client: gearman.GearmanClient | None = None

    def submit(self, function: str, data: bytes, *, unique: str, priority: int = 1) -> None:
        with self._lock:
            try:
                request = self._get_client().submit_job(
                    function.encode(),
                    data,
                    unique=unique.encode(),
                    priority=_GEARMAN_PRIORITY[priority],
                    background=True,
                    wait_until_complete=False,
                    poll_timeout=self.timeout,
                )
            except Exception as exc:  # pygearman raises several unrelated types on a dead server
                self._drop_client()
                raise QueueUnavailable(f"gearmand {self.servers}: {exc!r}") from exc
            if request.timed_out or request.state not in (gearman.JOB_CREATED, gearman.JOB_COMPLETE):
                self._drop_client()
                raise QueueUnavailable(f"gearmand {self.servers} did not accept the job ({request.state})")

    def close(self) -> None:
        with self._lock:
            self._drop_client()

    def _drop_client(self) -> None:
        if self._client is not None:
            self._client.shutdown()
            self._client = None

    def _get_client(self) -> gearman.GearmanClient:
        if self._client is None:
            self._client = _Client(self.servers)
        return self._client


def gearman_worker(servers: tuple[str, ...], client_id: str) -> gearman.GearmanWorker:
    """Return a worker connected to `servers` (one per thread: it holds one job at a time)."""
    worker = _Worker(list(servers))
    worker.set_client_id(client_id.encode())
    return worker


def queue_status(servers: tuple[str, ...], *, timeout: float = 10.0) -> dict[str, dict[str, int]]:
    """Return gearmand's per-function counts: queued, running, workers."""
    admin = _Admin(list(servers), poll_timeout=timeout)
    try:
        rows = admin.get_status()
    finally:
        admin.shutdown()
    return {
        _text(row["task"]): {"queued": int(row["queued"]), "running": int(row["running"]), "workers": int(row["workers"])}
        for row in rows
    }


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


class LocalQueue:
    """Run jobs on threads in this process: the embedded stand-in for gearmand and workers."""

    def __init__(self, handlers: dict[str, Handler], concurrency: int = 1) -> None:
        self.handlers = handlers
        self._queue: queue.PriorityQueue[tuple[int, int, str, bytes, str]] = queue.PriorityQueue()
        self._pending: set[str] = set()
        self._lock = threading.Lock()
        self._seq = 0
        self._threads = [threading.Thread(target=self._run, name=f"local-worker-{i}", daemon=True) for i in range(concurrency)]
        for thread in self._threads:
            thread.start()

    def submit(self, function: str, data: bytes, *, unique: str, priority: int = 1) -> None:
        with self._lock:
            if unique in self._pending:
                return  # same coalescing as gearmand's unique key
            self._pending.add(unique)
            self._seq += 1
            self._queue.put((priority, self._seq, function, data, unique))

    def _run(self) -> None:
        while True:
            _prio, _seq, function, data, unique = self._queue.get()
            with self._lock:
                self._pending.discard(unique)
            try:
                self.handlers[function](data)
            except Exception:
                log.exception("local job %s failed", function)
            finally:
                self._queue.task_done()

    def join(self) -> None:
        """Block until every submitted job has run (tests and shutdown)."""
        self._queue.join()
