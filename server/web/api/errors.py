"""The only place that turns exceptions into JSON error responses."""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify, request
from flask_limiter import RateLimitExceeded
from sqlalchemy.exc import DataError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException, MethodNotAllowed, RequestEntityTooLarge

from server.core.errors import ServiceError
from server.web.api.limits import retry_after

log = logging.getLogger(__name__)


def _body(status: int, code: str, message: str, description: str, field: str | None = None) -> Response:
    payload = {"code": code, "message": message, "description": description}
    if field:
        payload["field"] = field
    response = jsonify(payload)
    response.status_code = status
    return response


def register(app: Flask) -> None:
    """Install the error handlers on `app`.

    No 401 carries `WWW-Authenticate`: a browser would prompt for HTTP Basic and then send the cached
    credentials on every request, cross-site ones included, which no CSRF check covers (server/web/api/auth.py).
    """

    @app.errorhandler(ServiceError)
    def service_error(exc: ServiceError) -> Response:
        if exc.status >= 500 and exc.retry_after is None:
            log.error("%s: %s", exc.code, exc)
        elif exc.detail is not None:
            log.warning("%s %s: %s", request.path[:200], exc.code, exc)
        response = _body(exc.status, exc.code, exc.message, type(exc).__doc__ or exc.code, exc.field)
        if exc.retry_after is not None:
            response.headers["Retry-After"] = str(exc.retry_after)
        challenge = getattr(exc, "challenge", None)
        if exc.status == 401 and challenge:
            response.headers["WWW-Authenticate"] = challenge
        return response

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(exc: RequestEntityTooLarge) -> Response:
        return _body(413, "payload_too_large", "request body larger than MAX_SEGMENT_BYTES allows", exc.description or "")

    @app.errorhandler(RateLimitExceeded)
    def rate_limited(exc: RateLimitExceeded) -> Response:
        # Nothing was read or stored; the client may retry after Retry-After seconds.
        response = _body(429, "too_many_requests", f"rate limit exceeded: {exc.description}", "retry after Retry-After seconds")
        response.headers["Retry-After"] = str(retry_after())
        return response

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        response = _body(
            exc.code or 500, (exc.name or "error").lower().replace(" ", "_"), exc.name or "error", exc.description or ""
        )
        if isinstance(exc, MethodNotAllowed) and exc.valid_methods:  # the 405 exception
            response.headers["Allow"] = ", ".join(exc.valid_methods)
        return response

    @app.errorhandler(OperationalError)
    @app.errorhandler(PoolTimeout)
    def database_unavailable(exc: Exception) -> Response:
        # MySQL restarting, unreachable or out of connections: nothing was stored; the client may retry.
        log.error("database unavailable: %s", str(exc).splitlines()[0][:300])
        response = _body(503, "database_unavailable", "the database is unavailable; retry shortly", type(exc).__name__)
        response.headers["Retry-After"] = "5"
        return response

    @app.errorhandler(DataError)
    def data_error(exc: DataError) -> Response:
        # A value the database refuses (too long for its column, out of range): the request's fault, and
        # nothing was stored (the statement failed). The SQL and its parameters are logged, not answered.
        log.warning("%s: database refused a value: %s", request.path[:200], str(exc.orig)[:300])
        return _body(400, "invalid_input", "a value in the request is too long or out of range", "bad request")

    @app.errorhandler(ValueError)
    def value_error(exc: ValueError) -> Response:
        # Python refuses to parse integers of more than sys.get_int_max_str_digits() digits (4300):
        # a client's number that long is bad input wherever it is parsed, never our 500.
        if "integer string conversion" in str(exc):
            return _body(400, "invalid_input", "a number in the request has too many digits", "bad request")
        return unexpected(exc)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Response:
        log.exception("unhandled error")
        return _body(500, "internal_error", "internal server error", "the error was logged")
