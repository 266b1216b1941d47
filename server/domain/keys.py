"""Recording keys (docs/api.md "Doors"): mint, find, revoke, list, and what each key holds.

A key is shown once, when minted; the row keeps its SHA-256 (server/core/doors.py). A revoked key is refused at
its next request (`find` returns None), and its live videos that have a segment are ended at their highest stored
one, as an admin's end does; one without a segment is left to the reaper's abandonment rule (LIVE_IDLE_TIMEOUT).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from server.core.doors import key_hash, new_key, valid_key_name
from server.core.errors import Conflict, InvalidInput, KeyRequired, MaxLiveReached, NotFound, QuotaExceeded
from server.core.states import VideoType, Visibility
from server.domain import eventlog, ingest, lifecycle
from server.infra.models import RecordingKey, Segment, SegmentRendition, Video
from server.infra.services import Services

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KeySummary:
    """A key as the admin sees it (never the key itself): its limits, its live videos and bytes stored."""

    name: str
    created_at: datetime
    created_by: str | None
    revoked_at: datetime | None
    max_live: int | None
    quota_bytes: int | None
    visibility: str
    live: int
    used_bytes: int


def mint(
    services: Services,
    session: Session,
    name: str,
    *,
    max_live: int | None = None,
    quota_bytes: int | None = None,
    visibility: Visibility = Visibility.PUBLIC,
    by: str,
) -> tuple[RecordingKey, str]:
    """Make the key `name`; return its row and the key (shown once). Conflict if the name is taken."""
    if not valid_key_name(name):
        raise InvalidInput("name", "1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    if max_live is not None and max_live < 1:
        raise InvalidInput("max_live", "must be at least 1")
    if quota_bytes is not None and quota_bytes < 1:
        raise InvalidInput("quota_bytes", "must be at least 1")
    now = services.clock.now()
    key = new_key()
    row = RecordingKey(
        name=name,
        key_hash=key_hash(key),
        max_live=max_live,
        quota_bytes=quota_bytes,
        visibility=visibility,
        created_at=now,
        created_by=by,
    )
    session.add(row)
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        raise Conflict(f"a key named {name!r} exists (revoke it, or choose another name)") from None
    eventlog.record(session, "key.minted", at=now, name=name, by=by, max_live=max_live, quota_bytes=quota_bytes)
    session.commit()
    log.info("recording key %r minted by %s", name, by)
    return row, key


def find(session: Session, key: str) -> RecordingKey | None:
    """The unrevoked key row for `key` (as the URL carried it), or None."""
    return session.scalars(
        select(RecordingKey).where(RecordingKey.key_hash == key_hash(key), RecordingKey.revoked_at.is_(None))
    ).one_or_none()


def revoke(services: Services, session: Session, name: str, *, by: str) -> list[int]:
    """Revoke the key `name` and end its live videos that have a segment; return their ids. NotFound if no such key."""
    row = session.scalars(select(RecordingKey).where(RecordingKey.name == name).with_for_update()).one_or_none()
    if row is None:
        raise NotFound(f"no recording key named {name!r}")
    if row.revoked_at is None:
        row.revoked_at = services.clock.now()
        eventlog.record(session, "key.revoked", at=row.revoked_at, name=row.name, by=by)
    key_id = row.id
    session.commit()
    log.info("recording key %r revoked by %s", name, by)
    ended = []
    for video_id in session.scalars(select(Video.id).where(live_videos(key_id))).all():
        try:
            ingest.end_stuck_video(services, session, video_id)
        except (Conflict, NotFound):  # ended meanwhile, no segment yet (the reaper's), or deleted
            continue
        lifecycle.maybe_finish(services, session, video_id)
        ended.append(video_id)
    return ended


def live_videos(key_id: int) -> ColumnElement[bool]:
    """The condition for a key's live videos: LIVE and never ended (counted by max_live)."""
    return (Video.key_id == key_id) & (Video.type == VideoType.LIVE) & Video.ended_at.is_(None)


def live_count(session: Session, key_id: int) -> int:
    return int(session.scalar(select(func.count(Video.id)).where(live_videos(key_id))) or 0)


def hold_live_slot(session: Session, key_id: int) -> RecordingKey:
    """Lock the key's row (until the caller commits) and refuse a create past its max_live (409 max_live_reached).

    KeyRequired (401) if the key was revoked since the request's door let it in.
    """
    if session.get_bind().dialect.name == "sqlite":  # no FOR UPDATE there: a no-op write takes the write lock (changes.py)
        session.execute(update(RecordingKey).where(RecordingKey.id == key_id).values(max_live=RecordingKey.max_live))
    query = select(RecordingKey).where(RecordingKey.id == key_id).with_for_update()
    row = session.scalars(query.execution_options(populate_existing=True)).one_or_none()
    if row is None or row.revoked_at is not None:
        session.rollback()
        raise KeyRequired("this server URL's recording key is unknown or revoked")
    if row.max_live is not None and (live := live_count(session, key_id)) >= row.max_live:
        session.rollback()
        raise MaxLiveReached(
            f"this recording key has {live} live video(s), its max_live ({row.max_live}): end one before starting another",
            field="max_live",
        )
    return row


def check_quota(session: Session, key: RecordingKey, incoming: int) -> None:
    """Refuse (403 quota_exceeded) `incoming` bytes that would take the key's videos past its quota_bytes."""
    if key.quota_bytes is None:
        return
    used = usage(session, key.id)
    if used + incoming > key.quota_bytes:
        raise QuotaExceeded(
            f"this upload ({incoming} bytes) would take this recording key past its quota_bytes "
            f"({key.quota_bytes} bytes; {used} used); nothing was stored",
            field="quota_bytes",
        )


def listed_to(key_id: int | None) -> ColumnElement[bool]:
    """GET /videos's filter, core.doors.listed as SQL: public videos to all, and a key's own videos to that key."""
    public = Video.visibility == Visibility.PUBLIC
    return public if key_id is None else public | (Video.key_id == key_id)


def usage(session: Session, key_id: int) -> int:
    """Bytes a key's videos hold: every stored original (kept or not, it was stored) and every rendition."""
    originals = session.scalar(
        select(func.coalesce(func.sum(Segment.size), 0)).join(Video, Video.id == Segment.video_id).where(Video.key_id == key_id)
    )
    renditions = session.scalar(
        select(func.coalesce(func.sum(SegmentRendition.size), 0))
        .join(Segment, Segment.id == SegmentRendition.segment_pk)
        .join(Video, Video.id == Segment.video_id)
        .where(Video.key_id == key_id)
    )
    return int(originals or 0) + int(renditions or 0)


def list_keys(session: Session) -> list[KeySummary]:
    """Every key, newest first, with its live videos and bytes stored."""
    rows = session.scalars(select(RecordingKey).order_by(RecordingKey.id.desc())).all()
    return [summarize(session, row) for row in rows]


def summarize(session: Session, row: RecordingKey) -> KeySummary:
    """A key's row with its live videos and bytes stored, as the admin sees it."""
    return KeySummary(
        name=row.name,
        created_at=row.created_at,
        created_by=row.created_by,
        revoked_at=row.revoked_at,
        max_live=row.max_live,
        quota_bytes=row.quota_bytes,
        visibility=row.visibility.value,
        live=live_count(session, row.id),
        used_bytes=usage(session, row.id),
    )
