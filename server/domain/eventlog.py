"""The event log: one row per state change of a video, segment, attempt or worker.

Rows are added to the session of the change they describe, so they commit with it or not at all
(server/domain/changes.py is how video changes write them). The dashboard streams them; the reaper prunes them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, delete, func, select
from sqlalchemy.orm import Session

from server.core.states import AttemptOutcome, SegmentState
from server.infra.models import Event


def segment_kind(state: SegmentState) -> str:
    """The kind of a segment's move to `state` (`segment.packaged`)."""
    return f"segment.{state.value.lower()}"


def attempt_kind(outcome: AttemptOutcome) -> str:
    """The kind of an attempt's end with `outcome` (`attempt.ok`)."""
    return f"attempt.{outcome.value}"


# Every kind the log holds, so every `event:` the admin stream sends: the one list. record() refuses any
# other; server/web/api/openapi.json's EventKind enum is this list (tests/unit/test_event_kinds.py), and the
# dashboard's handlers (static/src/events.ts) are typed from it, so a kind added here without its
# handler fails the dashboard's build.
KINDS: tuple[str, ...] = (
    "video.created",
    "video.uploading",
    "video.stalled",
    "video.ended",
    "video.renamed",
    "video.finished",
    "video.deleted",
    *(segment_kind(state) for state in SegmentState),
    "attempt.started",
    "attempt.progress",
    *(attempt_kind(outcome) for outcome in AttemptOutcome),
    "worker.token_minted",
    "worker.revoked",
    "worker.started",
    "worker.stopped",
    "worker.lost",
    # The audit trail (docs/admin-api.md "Audit"): admin actions, each with `by` (the admin's name, or "cli"),
    # beside video.renamed and video.deleted, which carry `by` too when an admin did them.
    "admin.login",
    "key.minted",
    "key.revoked",
    "video.visibility",
    "video.pinned",
    "video.link",
    "video.retried",
)

PRUNE_BATCH = 5000
# An id missing from the log may be a transaction that took it and has not committed yet (ids are given
# at insert, commits land in any order): readers wait this long for it before reading past it (a rollback).
GAP_GRACE = 5.0


def record(
    session: Session,
    kind: str,
    *,
    at: datetime,
    video_id: int | None = None,
    segment_id: int | None = None,
    worker_id: int | None = None,
    **data: object,
) -> Event:
    """Add one event to the session's transaction (the caller commits it with the change); `kind` is one of KINDS."""
    if kind not in KINDS:
        raise ValueError(f"{kind!r} is not an event kind (server/domain/eventlog.py KINDS)")
    event = Event(
        at=at,
        kind=kind,
        video_id=video_id,
        segment_id=segment_id,
        worker_id=worker_id,
        data=json.dumps(data, separators=(",", ":"), default=str) if data else None,
    )
    session.add(event)
    return event


def past_retention(now: datetime, retention: float) -> ColumnElement[bool]:
    """The events the log no longer keeps: older than `retention` seconds (prune and the operator's purge)."""
    return Event.at < now - timedelta(seconds=retention)


def prune(session: Session, now: datetime, retention: float) -> int:
    """Delete events older than `retention` seconds, at most PRUNE_BATCH per call; return how many."""
    ids = session.scalars(select(Event.id).where(past_retention(now, retention)).order_by(Event.id).limit(PRUNE_BATCH)).all()
    if ids:
        session.execute(delete(Event).where(Event.id.in_(ids)))
    session.commit()
    return len(ids)


def newest_id(session: Session) -> int:
    """The highest event id so far (0 for an empty log): where a reader starts that replays nothing."""
    return int(session.scalar(select(func.max(Event.id))) or 0)


def read_after(session: Session, after: int, limit: int) -> list[Event]:
    """Up to `limit` events with ids above `after`, in id order."""
    return list(session.scalars(select(Event).where(Event.id > after).order_by(Event.id).limit(limit)))


@dataclass
class Sequencer:
    """Hands out events in id order, never twice and none skipped, although commits land out of id order.

    Ids are taken at insert: a transaction holding id 10 may commit after id 11 was read. So a reader
    passes an id missing between `last` and a newer one only once it has been missing for `grace`
    seconds (it was rolled back, or pruned), or once the newer event is itself that old (a reader
    resuming far behind does not wait at every old rollback); until then the events after it wait.
    `now` is monotonic; `wall` the clock the events' `at` was written with.
    """

    last: int
    grace: float = GAP_GRACE
    _gap_since: float | None = field(default=None)

    def take(self, events: list[Event], now: float, wall: datetime) -> list[Event]:
        """The events (read after `last`, in id order) that may be handed out now; `last` moves past them."""
        ready: list[Event] = []
        for event in events:
            if event.id != self.last + 1 and (wall - event.at).total_seconds() < self.grace:
                if self._gap_since is None:
                    self._gap_since = now
                if now - self._gap_since < self.grace:
                    break
            self._gap_since = None
            ready.append(event)
            self.last = event.id
        return ready
