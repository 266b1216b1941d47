"""The worker API (docs/registry.md): what a worker without the database asks for and hands back.

Every route needs `Authorization: Bearer <WORKER_TOKEN>`; `authenticate_worker` (a before_request hook
that runs before the body is read) answers 401 otherwise, a revoked token included, and counts the
failures per client address (RATE_LIMIT_WORKER_AUTH, then 429). Valid tokens are not rate-limited.

An attempt is reachable only by the worker that claimed it, and only while it runs: afterwards 410.
Outputs arrive as raw PUT bodies, streamed into a temp file in the attempt's staging directory before
the view runs (server/web/api/uploads.py), hashed on the way; the view checks the hash against
X-Content-SHA256 (422), then links the file into place unless that name is already there (201); an
existing output answers 200 for the same bytes and 409 for different ones.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any

from flask import current_app, g, request, send_file
from flask_restful import Resource
from sqlalchemy.orm import Session

from server.core import wire
from server.core.errors import Conflict, Gone, InvalidInput, NotFound, TicketRefused, UnprocessableMedia, WorkerUnauthorized
from server.core.jobs import SegmentJob
from server.core.retry import Failure
from server.domain import lifecycle, registry
from server.domain.state import rendition_plan
from server.infra.models import Attempt, Segment
from server.store.local import UploadFile
from server.store.objects import ObjectMissing, PutResult
from server.web.api.context import services, session
from server.web.api.limits import count_failed_worker_auth
from server.web.api.resource import Answer

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_NO_STORE = {"Cache-Control": "no-store"}
# What a worker may report; LOST is the reaper's word for an expired lease, never a worker's. A remote
# worker's full disk is its own, not the origin's: a crash of that worker for the retry policy (an attempt
# spent, the usual backoff; another worker may take it), never the origin's DISK_FULL (no attempt spent,
# the longest wait), which any token holder could otherwise report forever.
WORKER_FAILURES = {"media": Failure.MEDIA, "crash": Failure.CRASH, "disk_full": Failure.CRASH}


def _now() -> datetime:
    return services().clock.now()


def authenticate_worker() -> None:
    """Refuse a worker route without a valid token before its body is read (a before_request hook)."""
    if request.routing_exception is not None:
        return
    view_class = getattr(current_app.view_functions.get(request.endpoint or ""), "view_class", None)
    if not getattr(view_class, "worker_api", False):
        return
    auth = request.headers.get("Authorization", "")
    scheme, _, token = auth.partition(" ")
    # A short session of its own: none is held while the body arrives.
    with services().sessions() as db:
        worker = registry.authenticate(db, token.strip()) if scheme.lower() == "bearer" else None
    if worker is None:
        count_failed_worker_auth()  # 429 once an address has failed too often
        raise WorkerUnauthorized("a valid worker token is required (Authorization: Bearer <WORKER_TOKEN>)")
    g.worker = wire.WorkerRef(worker.id, worker.name)


def _json_object() -> dict[str, Any]:
    body = request.get_json(force=True, silent=True)
    if not isinstance(body, dict):
        raise InvalidInput("body", "must be a JSON object")
    return body


def _id(body: dict[str, Any], field: str) -> int:
    value = body.get(field)
    if type(value) is not int or not 0 <= value <= 2**31 - 1:
        raise InvalidInput(field, "an integer from 0 to 2^31-1 is required")
    return value


def _running(db: Session, attempt_id: int) -> tuple[Attempt, Segment]:
    """Return this worker's attempt and its segment; NotFound if it is not this worker's, Gone if it is over."""
    attempt = db.get(Attempt, attempt_id)
    if attempt is None or attempt.worker_id != g.worker.id:
        raise NotFound(f"attempt {attempt_id} is not one of this worker's")
    segment = db.get(Segment, attempt.segment_pk)
    if attempt.outcome is not None or segment is None:
        raise Gone(f"attempt {attempt_id} is no longer running")
    return attempt, segment


def _gone(exc: wire.AttemptGone) -> Gone:
    return Gone(str(exc) or "the attempt is no longer running")


class WorkerResource(Resource):
    worker_api = True  # authenticate_worker checks the token of every route of this family


class WorkerHello(WorkerResource):
    def post(self) -> Answer:
        registration = wire.Registration.from_json(_json_object())
        worker = registry.register(session(), g.worker.name, registration, now=_now())
        return {"worker_id": worker.id, "lease_seconds": services().config.LEASE_SECONDS}, 200, _NO_STORE


class WorkerAlive(WorkerResource):
    def post(self) -> Answer:
        registry.heartbeat(session(), g.worker.id, now=_now())
        return {"worker_id": g.worker.id}, 200, _NO_STORE


class WorkerBye(WorkerResource):
    def post(self) -> Answer:
        registry.stopped(session(), g.worker.id, now=_now())
        return {"worker_id": g.worker.id}, 200, _NO_STORE


class AttemptList(WorkerResource):
    def post(self) -> Answer:
        """Claim a segment: 201 with the Claim, or 409 with the reason there is nothing to do."""
        body = _json_object()
        video_id, segment_id = _id(body, "video_id"), _id(body, "segment_id")
        ticket = body.get("ticket")
        if not isinstance(ticket, str) or type(body.get("issued")) is not int:
            raise InvalidInput("ticket", "the job's ticket and issued time are required")
        job = SegmentJob(video_id, segment_id, body["issued"], ticket)
        if not job.valid(lifecycle.ticket_key(services()), services().clock.time()):
            raise TicketRefused(f"no valid ticket for segment {segment_id} of video {video_id}: claim only the jobs handed out")
        claim = lifecycle.start_attempt(services(), session(), video_id, segment_id, g.worker)
        if isinstance(claim, wire.Skip):
            message = f"nothing to do: {claim.reason}"
            return {"code": "nothing_to_do", "message": message, "error": message, "skip": claim.reason}, 409, _NO_STORE
        return claim.to_json(), 201, _NO_STORE


class AttemptSource(WorkerResource):
    def get(self, attempt_id: int) -> Answer:
        """The original's bytes (Range, ETag), with their SHA-256 for the worker to verify."""
        db = session()
        _attempt, segment = _running(db, attempt_id)
        media = services().media
        key = media.original(segment.video_id, segment.segment_id, segment.original_extension)
        digest = segment.sha256
        db.close()  # no connection is held while the bytes go out
        # From a bucket: downloaded once into the attempt's scratch folder, which a resumed fetch (Range) reuses
        # and which goes when the attempt is over (MediaStore.remove_attempt; the reaper sweeps a dead origin's).
        folder = media.scratch("sources") / str(int(attempt_id))
        folder.mkdir(exist_ok=True)
        try:
            path = media.readable(key, folder)
        except ObjectMissing:
            raise Gone(f"attempt {attempt_id}: the original is no longer stored") from None
        response = send_file(path, mimetype="application/octet-stream", conditional=True, etag=digest, max_age=0)
        response.headers["X-Content-SHA256"] = digest
        return response


class AttemptHeartbeat(WorkerResource):
    def post(self, attempt_id: int) -> Answer:
        progress = _json_object().get("progress")
        if progress is not None and (type(progress) not in (int, float) or not 0 <= progress <= 1):
            raise InvalidInput("progress", "a number from 0 to 1 is required")
        db = session()
        _running(db, attempt_id)
        try:
            expires = lifecycle.renew_lease(services(), db, attempt_id, progress)
        except wire.AttemptGone as exc:
            raise _gone(exc) from exc
        return {"lease_expires_at": expires.isoformat()}, 200, _NO_STORE


class AttemptOutput(WorkerResource):
    @staticmethod
    def raw_upload_dir(attempt_id: int, name: str) -> Path:
        """Where the body is received (server/web/api/uploads.py): this machine's scratch; 410 before any byte."""
        with services().sessions() as db:
            attempt, segment = _running(db, attempt_id)
            _check_output_name(segment, attempt, name)
        return services().media.scratch("outputs")

    def put(self, attempt_id: int, name: str) -> Answer:
        upload: UploadFile = g.raw_upload
        claimed = request.headers.get("X-Content-SHA256", "").strip().lower()
        if not _SHA256.match(claimed):
            raise InvalidInput("X-Content-SHA256", "the SHA-256 of the body, 64 hex digits, is required")
        if upload.size == 0:
            raise InvalidInput("body", "empty output")
        if upload.sha256 != claimed:
            raise UnprocessableMedia("the body does not match its X-Content-SHA256: damaged on the way, send it again")
        with services().sessions() as db:
            _attempt, segment = _running(db, attempt_id)
        media = services().media
        stored = media.put_new(media.attempt_output(segment.video_id, attempt_id, name), upload.finished())
        upload.discard()
        if stored is PutResult.CREATED:
            self._renew(attempt_id)
            return {"name": name, "size": upload.size, "sha256": claimed}, 201, _NO_STORE
        if stored is PutResult.DIFFERENT:
            raise Conflict(f"output {name} is already stored with different bytes")
        return {"name": name, "size": upload.size, "sha256": claimed}, 200, _NO_STORE

    @staticmethod
    def _renew(attempt_id: int) -> None:
        """An output arriving is a sign of life: renew the lease, as a heartbeat would (uploads happen after ffmpeg)."""
        try:
            lifecycle.renew_lease(services(), session(), attempt_id, None)
        except wire.AttemptGone as exc:
            raise _gone(exc) from exc


def _check_output_name(segment: Segment, attempt: Attempt, name: str) -> None:
    """Refuse a name the claim did not list (404): only those are ever written, beside each other."""
    if name not in wire.outputs_of(tuple(rendition_plan(r.rendition) for r in segment.renditions)):
        raise NotFound(f"{name!r} is not an output of attempt {attempt.id}")


class AttemptComplete(WorkerResource):
    def post(self, attempt_id: int) -> Answer:
        """Commit the outputs: 200 (again: 200, no-op); 409 when one is missing; 410 when the attempt is over."""
        db = session()
        attempt = db.get(Attempt, attempt_id)
        if attempt is None or attempt.worker_id != g.worker.id:
            raise NotFound(f"attempt {attempt_id} is not one of this worker's")
        try:
            committed = lifecycle.complete_attempt(services(), db, attempt_id, inline=False)
        except wire.AttemptGone as exc:
            raise _gone(exc) from exc
        return {"attempt_id": attempt_id, "committed": committed}, 200, _NO_STORE


class AttemptFail(WorkerResource):
    def post(self, attempt_id: int) -> Answer:
        body = _json_object()
        error = body.get("error")
        if not isinstance(error, str):
            raise InvalidInput("error", "a string is required")
        kind = body.get("kind")
        failure = WORKER_FAILURES.get(kind) if isinstance(kind, str) else None  # a list is no key (and no 500)
        if failure is None:
            raise InvalidInput("kind", f"one of {', '.join(WORKER_FAILURES)} is required")
        db = session()
        _running(db, attempt_id)
        try:
            lifecycle.fail_attempt(services(), db, attempt_id, error[-wire.ERROR_TAIL :], failure)
        except wire.AttemptGone as exc:
            raise _gone(exc) from exc
        return {"attempt_id": attempt_id}, 200, _NO_STORE
