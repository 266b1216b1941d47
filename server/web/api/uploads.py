"""Request bodies: received whole, under a deadline, before any view runs; file parts streamed beside their destination.

The rule "no database connection is held while a body arrives" lives here: `receive_body` runs before
every view and reads the whole body (a form is parsed, a file part streams to an UploadFile, any other
body is cached for `get_json`), so a view's first `session()` comes after the last byte. A phone on a
slow network then holds a thread, never one of the pool's connections. `BodyDeadline` bounds that
thread: every read of the body waits on the socket at most until BODY_READ_TIMEOUT after the request
began, then the request ends with 408 and teardown deletes what was received.

A request answered before its body was read (a refusal: no such video, the database down) has the rest
of its body read and dropped before the answer goes out, under the same deadline: gunicorn drains at
most 64 KiB itself and otherwise closes the connection after the answer without saying so, so the
next request on that keep-alive connection (nginx's upstream pool, a phone's OkHttp) would fail.
"""

from __future__ import annotations

import socket
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

Clock = Callable[[], float]
DRAIN_CHUNK = 64 * 1024
STARTED = "team03.started"  # environ key: when BodyDeadline saw the request begin (its clock, time.monotonic)


def request_started() -> float | None:
    """When this request began (time.monotonic()), as BodyDeadline recorded it; None outside it."""
    return request.environ.get(STARTED)


def request_started_at() -> datetime | None:
    """When this request began on the service's clock (naive UTC), as receive_body noted it before the body."""
    return g.get("started_at")


class DeadlineInput:
    """A wsgi.input whose reads give up at `deadline` (on `clock`): the socket waits at most the time left."""

    def __init__(self, stream: IO[bytes], sock: socket.socket | None, deadline: float, timeout: float, clock: Clock) -> None:
        self._stream = stream
        self._sock = sock
        self._deadline = deadline
        self._timeout = timeout
        self._clock = clock
        self.consumed = 0  # bytes of the body read so far

    def read(self, size: int = -1) -> bytes:
        data = self._call(self._stream.read, size)
        self.consumed += len(data)
        return data

    def readline(self, size: int = -1) -> bytes:
        data = self._call(self._stream.readline, size)
        self.consumed += len(data)
        return data

    def drain(self, length: int) -> None:
        """Read and drop what is left of a body of `length` bytes; stop at the deadline or a closed socket."""
        with suppress(RequestTimeout, OSError):
            while self.consumed < length:
                if not self.read(min(DRAIN_CHUNK, length - self.consumed)):
                    return

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.readline, b"")

    def _call(self, read: Callable[[int], bytes], size: int) -> bytes:
        left = self._deadline - self._clock()
        if left <= 0:
            raise self._expired()
        if self._sock is None:  # a server that hides its socket (mod_wsgi): its own timeout bounds each read
            return read(size)
        previous = self._sock.gettimeout()
        self._sock.settimeout(left)
        try:
            return read(size)
        except TimeoutError as exc:  # socket.timeout: nothing arrived before the deadline
            raise self._expired() from exc
        finally:
            with suppress(OSError):  # the server writes the answer with its own setting
                self._sock.settimeout(previous)

    def _expired(self) -> RequestTimeout:
        return RequestTimeout(
            f"the request body did not arrive within BODY_READ_TIMEOUT ({self._timeout:g} s); nothing was stored"
        )


class BodyDeadline:
    """WSGI middleware: a request's body must arrive within `timeout` seconds of its start, and is read to its
    end (at most `drain_limit` bytes of it) before the answer goes out, even when the app did not need it."""

    def __init__(
        self, app: Callable[..., Iterable[bytes]], timeout: float, drain_limit: int, clock: Clock = time.monotonic
    ) -> None:
        self.app = app
        self.timeout = timeout
        self.drain_limit = drain_limit
        self.clock = clock

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        # gunicorn's gthread worker and werkzeug's dev server read bodies from a blocking socket with no timeout.
        sock = environ.get("gunicorn.socket") or environ.get("werkzeug.socket")
        environ[STARTED] = started = self.clock()
        deadline = started + self.timeout
        environ["wsgi.input"] = body = DeadlineInput(environ["wsgi.input"], sock, deadline, self.timeout, self.clock)
        response = self.app(environ, start_response)
        length = _content_length(environ)
        if length <= self.drain_limit:  # beyond: a 413, whose connection the server closes
            body.drain(length)
        return response


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

    def _get_file_stream(  # type: ignore[override]
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
        return upload  # type: ignore[return-value]


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
