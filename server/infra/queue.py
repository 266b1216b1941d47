"""The one module that talks to Gearman, and the in-process runner that stands in for it."""

from __future__ import annotations

import logging
import queue
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import gearman

log = logging.getLogger(__name__)

Handler = Callable[[bytes], None]


CONNECT_TIMEOUT = 1.0  # seconds one connect to one gearmand may take: a blackholed server costs this, not the kernel's ~2 min
SUBMIT_TIMEOUT = 5.0  # seconds one gearmand may take to acknowledge a job once connected
DOWN_SECONDS = 10.0  # a gearmand that failed a submit is tried after the others for this long
RECONNECT_BACKOFF = (1.0, 8.0)  # a worker retries a dead gearmand after 1 s, doubling up to 8 s
# A connection whose gearmand vanished without a word (a cut link, a crashed host) is noticed after
# idle + interval * count seconds: a worker then reconnects, and so re-registers, once it is back.
KEEPALIVE = (20, 5, 3)  # TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT


class _Connection(gearman.connection.GearmanConnection):
    """pygearman's connection with a bounded connect, keepalives, and a backoff on a dead server.

    The pinned pygearman connects with no timeout (a blackholed gearmand blocks the caller for the
    kernel's SYN retries, about two minutes), leaves the socket of a failed connect open (a leaked
    descriptor and a ResourceWarning per attempt) and retries a dead server every second. We never use
    its SSL option.
    """

    allowed_connect_time: float  # pygearman's: no connect before this time.time()

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.failed_connects = 0

    def connect(self) -> None:
        if time.time() < self.allowed_connect_time:
            self.throw_exception(message="gearmand failed recently; waiting before the next connect")
        try:
            super().connect()
        except gearman.errors.ConnectionError:
            self.failed_connects += 1
            low, high = RECONNECT_BACKOFF
            self.allowed_connect_time = time.time() + min(high, low * 2 ** (self.failed_connects - 1))
            raise
        self.failed_connects = 0

    def _create_client_socket(self) -> None:
        client_socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        client_socket.settimeout(CONNECT_TIMEOUT)
        try:
            client_socket.connect((self.gearman_host, self.gearman_port))
        except OSError as exc:
            client_socket.close()
            self.throw_exception(exception=exc)
        _keepalive(client_socket)
        self.set_socket(client_socket)  # makes it non-blocking again


def _keepalive(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    idle, interval, count = KEEPALIVE
    for option, value in (("TCP_KEEPIDLE", idle), ("TCP_KEEPINTVL", interval), ("TCP_KEEPCNT", count)):
        if hasattr(socket, option):  # Linux names all three
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)


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


class NoQueue:
    """The queue of a web process that runs no jobs and has no gearmand: every upload waits in the database."""

    def submit(self, function: str, data: bytes, *, unique: str, priority: int = 1) -> None:
        raise QueueUnavailable("GEARMAN_SERVERS is not set and this process runs no local job runner")


class GearmanQueue:
    """Submit background jobs to one of several gearmand; one client per server, guarded by a lock.

    pygearman's own client shuffles its servers per job but fails the job when the connection it picks
    was to a gearmand that has since died (it retries nothing), and waits on a blackholed one for the
    kernel's connect timeout. So each server gets its own client, and a submit tries the servers in
    turn (spreading jobs over them), those that failed within DOWN_SECONDS last. A server costs at most
    CONNECT_TIMEOUT + `timeout` (plus one fast retry on a fresh connection when the kept one was dead),
    so a submit is bounded by len(servers) times that. The same job may end up on two servers (a
    gearmand that queued it but never answered): attempt rows decide which run counts, not Gearman.
    """

    def __init__(self, servers: tuple[str, ...], *, timeout: float = SUBMIT_TIMEOUT) -> None:
        self.servers = tuple(servers)
        self.timeout = timeout
        self._lock = threading.Lock()
        self._clients: dict[str, gearman.GearmanClient] = {}
        self._down_until: dict[str, float] = {}
        self._turn = 0

    def submit(self, function: str, data: bytes, *, unique: str, priority: int = 1) -> None:
        job = {"task": function.encode(), "data": data, "unique": unique.encode(), "priority": _GEARMAN_PRIORITY[priority]}
        with self._lock:
            errors = []
            for server in self._order():
                try:
                    self._submit_to(server, job)
                except QueueUnavailable as exc:
                    self._down_until[server] = time.monotonic() + DOWN_SECONDS
                    errors.append(str(exc))
                    continue
                self._down_until.pop(server, None)
                return
        raise QueueUnavailable("; ".join(errors))

    def close(self) -> None:
        with self._lock:
            for server in list(self._clients):
                self._drop_client(server)

    def _order(self) -> list[str]:
        """Every server once: round robin from the next one, those that failed recently last."""
        self._turn = (self._turn + 1) % len(self.servers)
        turn = self.servers[self._turn :] + self.servers[: self._turn]
        now = time.monotonic()
        return sorted(turn, key=lambda server: self._down_until.get(server, 0.0) > now)  # stable: keeps the turn

    def _submit_to(self, server: str, job: dict[str, object]) -> None:
        """Hand `job` to `server`; a kept connection that fails is replaced once (gearmand restarted since)."""
        kept = server in self._clients
        try:
            self._request(server, job)
        except QueueUnavailable as exc:
            if not kept or exc.__cause__ is None:  # a timeout: the server is slow or gone, not our socket
                raise
            log.info("gearmand %s: kept connection failed (%r); reconnecting once", server, exc.__cause__)
            self._request(server, job)

    def _request(self, server: str, job: dict[str, object]) -> None:
        try:
            request = self._client(server).submit_job(
                **job, background=True, wait_until_complete=False, poll_timeout=self.timeout
            )
        except Exception as exc:  # pygearman raises several unrelated types on a dead server
            self._drop_client(server)
            raise QueueUnavailable(f"gearmand {server}: {exc!r}") from exc
        if request.timed_out or request.state not in (gearman.JOB_CREATED, gearman.JOB_COMPLETE):
            self._drop_client(server)
            raise QueueUnavailable(f"gearmand {server} did not accept the job within {self.timeout:g} s ({request.state})")

    def _client(self, server: str) -> gearman.GearmanClient:
        if server not in self._clients:
            self._clients[server] = _Client([server])
        return self._clients[server]

    def _drop_client(self, server: str) -> None:
        client = self._clients.pop(server, None)
        if client is not None:
            client.shutdown()


def gearman_worker(servers: tuple[str, ...], client_id: str) -> gearman.GearmanWorker:
    """Return a worker for every server in `servers` (one per thread: it holds one job at a time).

    pygearman's work loop reconnects to a server it lost (and so registers our functions with it again)
    each time its poll times out, here after RECONNECT_BACKOFF; meanwhile it takes jobs from the others.
    """
    worker = _Worker(list(servers))
    worker.set_client_id(client_id.encode())
    return worker


Counts = dict[str, int]  # queued, running, workers


@dataclass(frozen=True)
class ServerStatus:
    """One gearmand's answer: its counts per function, or why it did not answer."""

    server: str
    functions: dict[str, Counts]
    error: str | None = None


@dataclass(frozen=True)
class QueueStatus:
    """Every gearmand's counts, and their total over the servers that answered."""

    servers: tuple[ServerStatus, ...]

    def total(self, function: str) -> Counts:
        """Sum the queued and running jobs of `function`; workers is the most any one server has.

        Every worker registers with every server, so a sum would count each worker once per server.
        """
        counts = [s.functions.get(function, {}) for s in self.servers if s.error is None]
        total = {key: sum(c.get(key, 0) for c in counts) for key in ("queued", "running")}
        return {**total, "workers": max((c.get("workers", 0) for c in counts), default=0)}

    @property
    def answered(self) -> bool:
        return any(s.error is None for s in self.servers)


def queue_status(servers: tuple[str, ...], *, timeout: float = 10.0) -> QueueStatus:
    """Ask each gearmand for its per-function counts; one that does not answer is reported, not raised."""
    return QueueStatus(tuple(_server_status(server, timeout) for server in servers))


def _server_status(server: str, timeout: float) -> ServerStatus:
    admin = _Admin([server], poll_timeout=timeout)
    try:
        rows = admin.get_status()
    except Exception as exc:  # pygearman raises several unrelated types on a dead server
        return ServerStatus(server, {}, f"{type(exc).__name__}: {exc}")
    finally:
        admin.shutdown()
    functions = {
        _text(row["task"]): {"queued": int(row["queued"]), "running": int(row["running"]), "workers": int(row["workers"])}
        for row in rows
    }
    return ServerStatus(server, functions)


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
