"""The admin JSON API and its event stream (docs/admin-api.md); every resource calls require_admin first.

Resources parse and call: queries are in server/web/admin_views.py, changes in server/domain/ingest.py and
server/domain/lifecycle.py. Login (/api/admin/login, logout, me) is server/web/api/auth.py's.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Iterator

from flask import Response, request
from flask_restful import Resource

from server.core.errors import Conflict, InvalidInput, TooManyStreams
from server.domain import curation, ingest, lifecycle
from server.domain.eventlog import newest_id
from server.infra.models import MAX_ID
from server.infra.services import Holds, Services
from server.web import admin_views
from server.web.api.auth import require_admin
from server.web.api.context import feed, services, session
from server.web.api.resource import Answer
from server.web.api.videos import _json_object, _query_int
from server.web.eventfeed import Feed

NO_STORE = {"Cache-Control": "no-store"}
MAX_EVENT_ID = 2**63 - 1
KEEPALIVE_SECONDS = 15.0  # a comment line when nothing else was sent for this long (proxies drop idle streams)
WAKE_SECONDS = 1.0  # an open stream looks at least this often at its keep-alive, its end and the process stopping
RETRY_MS = 1000  # EventSource waits this long before it reconnects (after the stream ends)


class AdminVideos(Resource):
    def get(self) -> Answer:
        """A page of VideoRows: ?limit= (default 50, max 200), ?before=<id>, ?q=<title words>, ?filter=live|vod|failed."""
        require_admin(session())
        limit = _query_int("limit", admin_views.PAGE_DEFAULT, 1, admin_views.PAGE_MAX) or admin_views.PAGE_DEFAULT
        before = _query_int("before", None, 1, MAX_ID)
        q = request.args.get("q")
        if q is not None and len(q) > 200:
            raise InvalidInput("q", "at most 200 characters")
        kind = request.args.get("filter") or None
        if kind is not None and kind not in admin_views.FILTERS:
            raise InvalidInput("filter", f"must be one of {', '.join(admin_views.FILTERS)}")
        page = admin_views.list_videos(services(), session(), limit=limit, before=before, q=q, kind=kind)
        return page, 200, NO_STORE


class AdminVideo(Resource):
    def get(self, video_id: int) -> Answer:
        require_admin(session())
        return admin_views.video_detail(services(), session(), video_id), 200, NO_STORE

    def patch(self, video_id: int) -> Answer:
        """Change any of {"title", "visibility", "pinned"} (at least one); every field is checked before any is written."""
        admin = require_admin(session())
        body = _json_object()
        if not {"title", "visibility", "pinned"} & body.keys():
            raise InvalidInput("body", "at least one of title, visibility, pinned is required")
        title = ingest.validate_title(body["title"]) if "title" in body else None
        visibility = curation.parse_visibility(body["visibility"]) if "visibility" in body else None
        pinned = body.get("pinned")
        if "pinned" in body and not isinstance(pinned, bool):
            raise InvalidInput("pinned", "must be true or false")
        if title is not None:
            ingest.rename_video(services(), session(), video_id, title, by=admin.name)
        if visibility is not None:
            curation.set_visibility(services(), session(), video_id, visibility, by=admin.name)
        if isinstance(pinned, bool):
            curation.set_pinned(services(), session(), video_id, pinned, by=admin.name)
        return _row(video_id), 200, NO_STORE

    def delete(self, video_id: int) -> Answer:
        admin = require_admin(session())
        ingest.delete_video(services(), session(), video_id, by=admin.name)
        return "", 204


class AdminVideoEnd(Resource):
    def post(self, video_id: int) -> Answer:
        """End a stuck live video at its highest stored segment; 409 if it is not live."""
        require_admin(session())
        ingest.end_stuck_video(services(), session(), video_id)
        lifecycle.maybe_finish(services(), session(), video_id)  # every segment may be done already
        return _row(video_id), 200, NO_STORE


class AdminSegmentRetry(Resource):
    def post(self, video_id: int, segment_id: int) -> Answer:
        """A FAILED segment starts over; 409 if it is not FAILED."""
        admin = require_admin(session())
        lifecycle.retry_failed(services(), session(), video_id, segment_id)
        curation.record_retry(services(), session(), video_id, [segment_id], by=admin.name)
        return admin_views.segment_detail(session(), video_id, segment_id), 200, NO_STORE


class AdminVideoRetry(Resource):
    def post(self, video_id: int) -> Answer:
        """Every FAILED segment of the video starts over; how many did."""
        admin = require_admin(session())
        retried = []
        for segment_id in admin_views.failed_segment_ids(session(), video_id):
            try:
                lifecycle.retry_failed(services(), session(), video_id, segment_id)
            except Conflict:  # retried by someone else meanwhile
                continue
            retried.append(segment_id)
        if retried:  # nothing was FAILED: nothing was done, nothing to audit
            curation.record_retry(services(), session(), video_id, retried, by=admin.name)
        return {"retried": len(retried)}, 200, NO_STORE


class AdminWorkers(Resource):
    def get(self) -> Answer:
        require_admin(session())
        return admin_views.workers(services(), session()), 200, NO_STORE


class AdminAttemptCancel(Resource):
    def post(self, attempt_id: int) -> Answer:
        """Cancel a running attempt (its worker stops at its next heartbeat), retry its segment now; 409 if not running."""
        require_admin(session())
        attempt = lifecycle.cancel_attempt(services(), session(), attempt_id)
        segment_id = session().scalar(admin_views.segment_id_of(attempt))
        return admin_views.attempt_row(attempt, segment_id), 200, NO_STORE


class AdminSystem(Resource):
    def get(self) -> Answer:
        require_admin(session())
        return admin_views.system(services(), session()), 200, NO_STORE


class AdminEvents(Resource):
    def get(self) -> Answer:
        """Stream the event log (text/event-stream) after Last-Event-ID, ?after=, or else the newest event."""
        require_admin(session())
        after = _event_id(request.headers.get("Last-Event-ID"), "Last-Event-ID")
        if after is None:
            after = _event_id(request.args.get("after"), "after")
        if after is None:
            after = newest_id(session())
        session().rollback()  # no connection is held while the stream is open: the feed reads for it
        slots = services().streams
        if not slots.take():
            raise TooManyStreams(f"this process already streams to {slots.slots} dashboards (ADMIN_STREAMS)")
        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        body = EventStream(services(), feed(), after, slots)
        return Response(body, mimetype="text/event-stream", headers=headers)


def _event_id(raw: str | None, name: str) -> int | None:
    if raw is None or raw.strip() == "":
        return None
    text = raw.strip()
    if not (text.isascii() and text.isdigit() and len(text) <= 19) or int(text) > MAX_EVENT_ID:
        raise InvalidInput(name, "must be an event id (ASCII digits)")
    return int(text)


def _row(video_id: int) -> dict[str, object]:
    return admin_views.video_rows(services(), session(), [ingest.get_video(session(), video_id)])[0]


class EventStream:
    """The body of one event stream: follows the process's event feed until ADMIN_STREAM_SECONDS, then ends.

    It holds one of the process's stream slots (and a place in the feed) from its creation until `close()`
    (which the WSGI server calls when the stream ends or the client goes, started or not), and no
    database connection: the feed reads the log once for every open stream.
    """

    def __init__(self, services: Services, feed: Feed, after: int, slots: Holds) -> None:
        self._services = services
        self._slots = slots
        self._released = False
        self._reader = feed.reader(after)
        self._body = self._run()

    def __iter__(self) -> Iterator[bytes]:
        return self._body

    def close(self) -> None:
        self._body.close()
        self._reader.close()
        if not self._released:
            self._released = True
            self._slots.release()

    def _run(self) -> Generator[bytes, None, None]:
        services = self._services
        started = time.monotonic()
        deadline = started + services.config.ADMIN_STREAM_SECONDS
        last_write = started
        yield f"retry: {RETRY_MS}\n\n".encode()  # also sends the headers at once
        while (now := time.monotonic()) < deadline and not services.stopping.is_set():
            wait = min(WAKE_SECONDS, deadline - now, last_write + KEEPALIVE_SECONDS - now)
            chunk = self._reader.next(max(0.0, wait))
            if chunk:
                yield chunk
                last_write = time.monotonic()
            elif time.monotonic() - last_write >= KEEPALIVE_SECONDS:
                yield b": keep-alive\n\n"
                last_write = time.monotonic()
