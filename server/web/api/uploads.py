"""Request bodies: received whole, under a deadline, before any view runs; file parts streamed beside their destination.

The rule "no database connection is held while a body arrives" lives here: `receive_body` runs before
every view and reads the whole body (a form is parsed, a file part streams to an UploadFile, any other
body is cached for `get_json`), so a view's first `session()` comes after the last byte. A phone on a
slow network then holds a thread, never one of the pool's connections. `BodyDeadline` bounds that
thread: a body still arriving BODY_READ_TIMEOUT after the request began has its socket's reading side
shut (`Cutoff`), whatever read is in progress, then the request ends with 408 and teardown deletes what
was received. A socket timeout could not do it: it bounds one recv(), and a body dripping a byte a
second inside the server's read(n) loop never waits that long.

A request answered before its body was read (a refusal: no such video, the database down) has the rest
of its body read and dropped before the answer goes out, under the same deadline: gunicorn drains at
most 64 KiB itself and otherwise closes the connection after the answer without saying so, so the
next request on that keep-alive connection (nginx's upstream pool, a phone's OkHttp) would fail.
"""

from __future__ import annotations

import heapq
import itertools
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import suppress
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import flask
from flask import current_app, g, request
from flask.json.provider import DefaultJSONProvider

from server.core.errors import RequestTimeout
from server.store import UploadFile
from server.web.api.context import services

Monotonic = Callable[[], float]  # time.monotonic, or a test's
DRAIN_CHUNK = 64 * 1024
STARTED = "team03.started"  # environ key: when BodyDeadline saw the request begin (its clock, time.monotonic)


def request_started() -> float | None:
    """When this request began (time.monotonic()), as BodyDeadline recorded it; None outside it."""
    return request.environ.get(STARTED)


def request_started_at() -> datetime | None:
    """When this request began on the service's clock (naive UTC), as receive_body noted it before the body."""
    started: datetime | None = g.get("started_at")
    return started


class DeadlineInput:
    """A wsgi.input that refuses to read past `deadline` (on `clock`), and raises 408 for a read Cutoff cut short."""

    def __init__(self, stream: IO[bytes], deadline: float, timeout: float, clock: Monotonic, length: int | None = 0) -> None:
        self._stream = stream
        self.deadline = deadline
        self._timeout = timeout
        self._clock = clock
        self.length = length  # bytes the body declares; None: until the server's stream ends (chunked)
        self.consumed = 0  # bytes of the body read so far
        self.cut = False  # set by Cutoff when it shut the socket at the deadline
        self._ended = False

    @property
    def finished(self) -> bool:
        """Whether the whole body has been read."""
        return self._ended or (self.length is not None and self.consumed >= self.length)

    def read(self, size: int = -1) -> bytes:
        return self._take(self._stream.read, size)

    def readline(self, size: int = -1) -> bytes:
        return self._take(self._stream.readline, size)

    def drain(self) -> None:
        """Read and drop what is left of the body; stop at the deadline or a closed socket.

        Never more than the body declares: the server's stream is the raw socket on the dev server, whose
        read(n) waits for n bytes, so reading a whole chunk past a small body's end waited for the client,
        which was waiting for the answer (a 401 before a 120-byte body was read hung until the deadline).
        """
        with suppress(RequestTimeout, OSError):
            while not self.finished:
                want = DRAIN_CHUNK if self.length is None else min(DRAIN_CHUNK, self.length - self.consumed)
                if not self.read(want):
                    break

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.readline, b"")

    def _take(self, read: Callable[[int], bytes], size: int) -> bytes:
        if self.cut or self._clock() >= self.deadline:
            raise self._expired()
        try:
            data = read(size)
        except Exception as exc:
            if self.cut:  # the server's reader saw the end it did not expect (a chunked body cut short)
                raise self._expired() from exc
            raise
        if self.cut:  # whatever this read returned, the body did not arrive in time
            raise self._expired()
        self.consumed += len(data)
        if not data and size != 0:
            self._ended = True
        return data

    def _expired(self) -> RequestTimeout:
        return RequestTimeout(
            f"the request body did not arrive within BODY_READ_TIMEOUT ({self._timeout:g} s); nothing was stored"
        )


class Cutoff:
    """Shuts the reading side of a request's socket at its body's deadline, if the body is still arriving.

    A socket timeout bounds one recv() only, and gunicorn's and werkzeug's read(n) loop over recv() until n
    bytes came: a body dripping a byte a second never timed out. Shutting the socket makes the recv() in
    progress return at once, wherever that loop is; DeadlineInput then answers 408. One thread per Cutoff
    sleeps until the nearest deadline; it ends after IDLE seconds with nothing to watch, and starts again.
    A body disarmed (read, or its request over) is never touched again: its keep-alive connection is reused.
    """

    IDLE = 30.0

    def __init__(self, clock: Monotonic = time.monotonic) -> None:
        self._clock = clock
        self._changed = threading.Condition()
        self._due: list[tuple[float, int]] = []  # (deadline, token), a heap; a disarmed token's entry is skipped
        self._armed: dict[int, tuple[DeadlineInput, socket.socket]] = {}  # the only references to what is watched
        self._tokens = itertools.count()
        self._thread: threading.Thread | None = None

    def arm(self, body: DeadlineInput, sock: socket.socket) -> int:
        """Watch `body`, arriving on `sock`, until disarm() with the token returned."""
        with self._changed:
            token = next(self._tokens)
            self._armed[token] = (body, sock)
            heapq.heappush(self._due, (body.deadline, token))
            if self._thread is None or not self._thread.is_alive():  # also after a fork
                self._thread = threading.Thread(target=self._run, name="body-cutoff", daemon=True)
                self._thread.start()
            elif self._due[0][1] == token:  # sooner than what the thread sleeps until (with one timeout, rarely)
                self._changed.notify()
        return token

    def disarm(self, token: int) -> None:
        """Stop watching; from here on the body's socket is the server's alone."""
        with self._changed:
            self._armed.pop(token, None)

    def _run(self) -> None:
        with self._changed:
            while True:
                while self._due and self._due[0][1] not in self._armed:
                    heapq.heappop(self._due)
                if not self._due:
                    if not self._changed.wait(self.IDLE) and not self._due:
                        self._thread = None
                        return
                    continue
                deadline, token = self._due[0]
                left = deadline - self._clock()
                if left > 0:
                    self._changed.wait(left)
                    continue
                heapq.heappop(self._due)
                body, sock = self._armed.pop(token)
                if not body.finished:
                    body.cut = True
                    with suppress(OSError):  # the client closed it meanwhile
                        sock.shutdown(socket.SHUT_RD)


class BodyDeadline:
    """WSGI middleware: a request's body must arrive within `timeout` seconds of its start, and is read to its
    end (at most `drain_limit` bytes of it) before the answer goes out, even when the app did not need it."""

    def __init__(
        self, app: Callable[..., Iterable[bytes]], timeout: float, drain_limit: int, clock: Monotonic = time.monotonic
    ) -> None:
        self.app = app
        self.timeout = timeout
        self.drain_limit = drain_limit
        self.clock = clock
        self.cutoff = Cutoff(clock)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        # gunicorn's gthread worker and werkzeug's dev server read bodies from a blocking socket with no timeout;
        # a server that hides its socket (mod_wsgi) bounds each read itself, and the deadline is checked between.
        sock = environ.get("gunicorn.socket") or environ.get("werkzeug.socket")
        environ[STARTED] = started = self.clock()
        length = _declared_length(environ)
        body = DeadlineInput(environ["wsgi.input"], started + self.timeout, self.timeout, self.clock, length)
        environ["wsgi.input"] = body
        watch = self.cutoff.arm(body, sock) if sock is not None and not body.finished else None
        try:
            response = self.app(environ, start_response)
            if length is not None and length <= self.drain_limit:  # beyond: a 413, whose connection the server closes
                body.drain()
        finally:
            if watch is not None:
                self.cutoff.disarm(watch)
        return response


def _declared_length(environ: dict[str, Any]) -> int | None:
    """The request's declared body length; None for a chunked body (its end is the server's to find), else 0 when
    absent or not a number."""
    if "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
        return None
    return _content_length(environ)


def _content_length(environ: dict[str, Any]) -> int:
    """The request's declared body length; 0 when absent or not a number (a chunked body is the server's to frame)."""
    try:
        return max(0, int(environ.get("CONTENT_LENGTH") or 0))
    except ValueError:
        return 0


class JsonProvider(DefaultJSONProvider):
    """Flask's JSON, but a body nested past the parser's recursion limit is bad JSON (ValueError: a 400), not a 500."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        try:
            return super().loads(s, **kwargs)
        except RecursionError:
            raise ValueError("JSON nested too deeply") from None


class Request(flask.Request):
    """Flask's request, whose file parts go to an UploadFile when the route receives uploads."""

    def _get_file_stream(
        self,
        total_content_length: int | None,
        content_type: str | None,
        filename: str | None = None,
        content_length: int | None = None,
    ) -> IO[bytes]:
        directory: Path | None = g.get("upload_dir")
        if directory is None:
            return super()._get_file_stream(total_content_length, content_type, filename, content_length)
        upload = UploadFile(directory, g.upload_limit)
        g.uploads.append(upload)
        return upload  # type: ignore[return-value]  # the part of IO[bytes] that werkzeug's form parser uses


def receive_body() -> None:
    """Read the whole body before the view runs (a before_request hook): no database connection waits on a client.

    A resource that takes uploads names where they go with `upload_dir(**view_args)` (it may refuse, e.g. 404).
    """
    # Before any of the body: a segment arrives when its request began (ingest.record_arrival).
    g.started_at = services().clock.now()
    if request.routing_exception is not None:
        return
    view_class = getattr(current_app.view_functions.get(request.endpoint or ""), "view_class", None)
    upload_dir = getattr(view_class, "upload_dir", None)
    if upload_dir is not None and request.method == "POST":
        expect_uploads(upload_dir(**(request.view_args or {})), services().config.MAX_SEGMENT_BYTES)
    raw_upload_dir = getattr(view_class, "raw_upload_dir", None)
    if raw_upload_dir is not None and request.method == "PUT":
        receive_raw(raw_upload_dir(**(request.view_args or {})), services().config.MAX_SEGMENT_BYTES)
        return
    request.get_data(parse_form_data=True)


RAW_CHUNK = 256 * 1024


def receive_raw(directory: Path, limit: int) -> UploadFile:
    """Stream a raw (non-form) body into a temp file in `directory`, at most `limit` bytes: `g.raw_upload`.

    A resource names the directory with `raw_upload_dir(**view_args)` (it may refuse first, e.g. 410);
    the body is hashed as it arrives and deleted at teardown unless the view commits it.
    """
    expect_uploads(directory, limit)
    upload = UploadFile(directory, limit)
    g.uploads.append(upload)
    # request.stream stops at Content-Length; past MAX_CONTENT_LENGTH werkzeug refuses it (413).
    while chunk := request.stream.read(RAW_CHUNK):
        upload.write(chunk)
    g.raw_upload = upload
    return upload


def expect_uploads(directory: Path, limit: int) -> None:
    """Send the file parts of this request to `directory`, each at most `limit` bytes."""
    g.upload_dir = directory
    g.upload_limit = limit
    g.uploads = []


def discard_uploads(_exc: BaseException | None = None) -> None:
    """Delete every temp file of this request that was not committed (a teardown hook)."""
    for upload in g.pop("uploads", []):
        upload.discard()
