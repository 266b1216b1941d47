"""Domain errors. The HTTP layer maps them to JSON in server/web/api/errors.py."""

from __future__ import annotations


class ServiceError(Exception):
    """The server failed in a way its log explains (every error here is a kind of this one)."""

    status = 500
    code = "internal_error"
    retry_after: int | None = None  # seconds, sent as Retry-After: the condition is temporary

    def __init__(self, message: str, *, field: str | None = None, detail: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        # For the server's log only (tool output with paths, temp names, addresses); never in an answer.
        self.detail = detail

    def __str__(self) -> str:
        return self.message if self.detail is None else f"{self.message}: {self.detail}"


class InvalidInput(ServiceError):
    """A part of the request is malformed or out of range (`field` names it); nothing was changed."""

    status = 400
    code = "invalid_input"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}", field=field)


class NotFound(ServiceError):
    """No such video, segment, rendition, attempt, worker or webhook: never created, or deleted."""

    status = 404
    code = "not_found"


class Conflict(ServiceError):
    """The request contradicts what is already stored (other bytes for the same segment, an ended video); nothing was changed."""

    status = 409
    code = "conflict"


class RequestTimeout(ServiceError):
    """The request body did not arrive in time; nothing was stored."""

    status = 408
    code = "request_timeout"


class NotReadyYet(ServiceError):
    """Nothing can be played yet (no segment is ready); players retry on a 503."""

    status = 503
    code = "not_ready"
    retry_after = 1


class TooManyStreams(ServiceError):
    """This process already holds ADMIN_STREAMS event streams open (each a thread); retry after Retry-After."""

    # Answered at once: the event-stream server keeps threads beyond its ADMIN_STREAMS for this answer.

    status = 503
    code = "too_many_streams"
    retry_after = 5


class PayloadTooLarge(ServiceError):
    """The body is larger than the server accepts (MAX_SEGMENT_BYTES for a segment); nothing was stored."""

    status = 413
    code = "payload_too_large"


class UnprocessableMedia(ServiceError):
    """The file is not media the server can use (no video stream, undecodable, damaged on the way)."""

    status = 422
    code = "unprocessable_media"


class InsufficientStorage(ServiceError):
    """The server ran out of disk space; nothing was stored, and the same request can succeed later."""

    status = 507
    code = "insufficient_storage"


class StorageUnavailable(ServiceError):
    """The object store did not answer usefully within its timeouts and retries (down, refused, 5xx)."""

    status = 503
    code = "storage_unavailable"
    retry_after = 5


class Unauthorized(ServiceError):
    """No admin login: none was sent, or it is wrong or expired."""

    status = 401
    code = "unauthorized"


class KeyRequired(Unauthorized):
    """Recording needs a recording key in the server URL (/k/<key>/) and this one is missing, unknown or revoked."""

    code = "recording_key_required"


class WorkerUnauthorized(Unauthorized):
    """The worker API needs a valid, unrevoked worker token (Authorization: Bearer)."""

    # Sent as WWW-Authenticate: a browser never prompts for a Bearer challenge (only Basic and the like),
    # so this one 401 can follow RFC 9110 without the cached-credentials risk server/web/api/errors.py avoids.
    challenge = 'Bearer realm="team03 worker"'


class Gone(ServiceError):
    """What was asked for existed but is over (an attempt no longer running: expired, cancelled, finished)."""

    status = 410
    code = "gone"


class Forbidden(ServiceError):
    """The login is valid but the request may not do this (an admin mutation without its CSRF token)."""

    status = 403
    code = "forbidden"


class QuotaExceeded(Forbidden):
    """The upload would take its recording key past its storage quota; nothing of it was stored."""

    code = "quota_exceeded"


class LinkRefused(Forbidden):
    """A signed playback link that is altered, expired or made for another video (docs/api.md "Doors")."""

    code = "link_refused"


class NotWatchable(Forbidden):
    """The video is private or does not exist: an anonymous player may not read its files (nginx's auth_request)."""

    code = "not_watchable"


class TicketRefused(Forbidden):
    """A claim without a valid ticket: the origin did not hand this segment out (or the ticket expired)."""

    code = "ticket_refused"


class TooManyRequests(ServiceError):
    """Refused for now (too many failed logins); retry after Retry-After seconds."""

    status = 429
    code = "too_many_requests"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TranscodeError(ServiceError):
    """A segment could not be turned into its renditions."""

    code = "transcode_error"


class FFmpegError(TranscodeError):
    """An ffmpeg/ffprobe process failed; carries what an operator needs to reproduce it."""

    code = "ffmpeg_error"

    def __init__(self, argv: list[str], returncode: int | None, stderr: str, *, timed_out: bool = False) -> None:
        tail = "\n".join(stderr.strip().splitlines()[-12:])
        why = "timed out" if timed_out else f"exited with {returncode}"
        super().__init__(f"{argv[0]} {why}: {tail}")
        self.argv = argv
        self.returncode = returncode
        self.stderr_tail = tail
        self.timed_out = timed_out


class MetricsForbidden(Forbidden):
    """Only a caller with METRICS_TOKEN (Authorization: Bearer) may read /metrics; with none set, only a loopback caller."""


def disk_full(exc: BaseException) -> bool:
    """Whether Python or ffmpeg ran out of space (ENOSPC or a quota): the machine's fault, not the media's."""
    import errno
    import os

    if isinstance(exc, InsufficientStorage):
        return True
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    return isinstance(exc, FFmpegError) and any(
        s in exc.stderr_tail for s in (os.strerror(errno.ENOSPC), os.strerror(errno.EDQUOT))
    )
