"""The threaded dev server that dev_run.py and the test and bench harnesses run (gunicorn in production)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment


class DevRequestHandler(WSGIRequestHandler):
    """The dev server's handler, whose Server header names no software versions (Werkzeug's names two)."""

    def version_string(self) -> str:
        return "team03"

    def connection_dropped(self, error: BaseException, environ: dict[str, Any] | None = None) -> None:
        # Werkzeug closes the response only after draining the request's leftovers; a reset there (a
        # player aborting a segment request) skips the close and leaks the served file's descriptor.
        body = (environ or {}).pop(_RESPONSE, None)
        if body is not None and hasattr(body, "close"):
            body.close()


_RESPONSE = "team03.response"


def _remember_response(app: WSGIApplication) -> WSGIApplication:
    """Keep each response iterable in its environ, where DevRequestHandler.connection_dropped finds it."""

    def wrapped(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        environ[_RESPONSE] = body = app(environ, start_response)
        return body

    return wrapped


def make_dev_server(app: WSGIApplication, host: str, port: int) -> BaseWSGIServer:
    """Return the threaded dev server (dev_run.py and the test and bench harnesses): never debug, closes every response."""
    return make_server(host, port, _remember_response(app), threaded=True, request_handler=DevRequestHandler)
