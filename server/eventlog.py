"""The event log: one row per state change of a video, segment, attempt or worker.

Rows are added to the session of the change they describe, so they commit with it or not at all
(server/changes.py is how video changes write them). The dashboard streams them; the reaper prunes them.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from server.models import Event

PRUNE_BATCH = 5000


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
    """Add one event to the session's transaction (the caller commits it with the change)."""
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


def prune(session: Session, now: datetime, retention: float) -> int:
    """Delete events older than `retention` seconds, at most PRUNE_BATCH per call; return how many."""
    cutoff = now - timedelta(seconds=retention)
    ids = session.scalars(select(Event.id).where(Event.at < cutoff).order_by(Event.id).limit(PRUNE_BATCH)).all()
    if ids:
        session.execute(delete(Event).where(Event.id.in_(ids)))
    session.commit()
    return len(ids)
