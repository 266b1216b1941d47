"""What the operator's `purge` removes: media and rows nothing refers to any more, listed first, removed on demand.

Media (objects, server/store/media.py): a video's whose video row is gone (a delete cut short between the
row and the media), and the staged outputs of an attempt that is no longer running (a worker died between
writing and reporting). Scratch: files a dead process left mid-write, only once untouched for a quiet
period, so nothing a live writer still holds is removed. Rows: expired admin sessions and events past
EVENT_RETENTION. The reaper removes staged outputs and scratch files by the same rules (`stale_staging`,
`stale_temps`); purge adds the orphans and rows, and is bounded (PURGE_MAX per kind).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import ColumnElement, delete, func, select
from sqlalchemy.orm import Session

from server.config import Config
from server.domain import eventlog
from server.infra.models import AdminSession, Attempt, Event, Video
from server.infra.services import Services

PURGE_MAX = 10_000  # items of each kind one purge lists (run it again for more)
TEMPS = "temp files"  # the kind whose items are scratch files; the others are key prefixes of media objects


def expired_sessions(now: datetime) -> ColumnElement[bool]:
    """The admin sessions no longer valid (the login check prunes them too, a batch at a time)."""
    return AdminSession.expires_at <= now


def _idle(path: Path, quiet: float) -> bool:
    try:
        return time.time() - path.stat().st_mtime > quiet
    except FileNotFoundError:
        return False


def _staging_quiet(config: Config) -> float:
    return 2 * config.LEASE_SECONDS


def _temp_quiet(config: Config) -> float:
    return 2 * config.PROCESSING_DEADLINE


def look_back(config: Config) -> timedelta:
    """How long before its previous pass a reaper pass that searches only videos written lately must look.

    A dead writer's file is taken by the first pass after it has been idle for its quiet period; the
    event that announced the write may precede it (an attempt started, then encoded; a change logged,
    then published), so twice the longer quiet period covers both.
    """
    return timedelta(seconds=2 * max(_staging_quiet(config), _temp_quiet(config)))


def written_since(session: Session, since: datetime) -> list[int]:
    """The videos with an event at or after `since`: every write into a video's folder is logged with one."""
    query = select(Event.video_id).where(Event.at >= since, Event.video_id.is_not(None)).distinct()
    found = [int(video_id) for video_id in session.scalars(query) if video_id is not None]  # none is (the query)
    session.rollback()
    return found


def stale_staging(services: Services, session: Session, limit: int = PURGE_MAX, videos: list[int] | None = None) -> list[str]:
    """Key prefixes of the staged outputs of attempts not running (of every video, or of `videos`).

    An attempt that is over never writes again (the worker API refuses its outputs), so no quiet period is needed.
    """
    media, stale = services.media, []
    for video_id, attempt_id in media.attempts(videos)[:limit]:
        running = session.scalar(select(Attempt.id).where(Attempt.id == attempt_id, Attempt.outcome.is_(None)))
        if running is None:
            stale.append(media.attempt_prefix(video_id, attempt_id))
    session.rollback()
    return stale


def stale_temps(services: Services, limit: int = PURGE_MAX, videos: list[int] | None = None) -> list[Path]:
    """Scratch and temp files untouched for twice the processing deadline (their writer died): the local tree's
    in every video's folder, or in `videos`' only."""
    quiet = _temp_quiet(services.config)
    return [p for p in services.media.temp_files(videos)[:limit] if _idle(p, quiet)]


def orphan_videos(services: Services, session: Session, limit: int = PURGE_MAX) -> list[str]:
    """Key prefixes of videos that have objects but no video row (a delete cut short between the row and the media)."""
    ids = services.media.video_ids(limit)
    known: set[int] = set()
    for start in range(0, len(ids), 500):
        known.update(session.scalars(select(Video.id).where(Video.id.in_(ids[start : start + 500]))))
    session.rollback()
    return [services.media.video_prefix(video_id) for video_id in ids if video_id not in known]


@dataclass
class PurgePlan:
    """What one purge would remove: key prefixes (media) or paths (scratch files) per kind, row counts per table."""

    files: dict[str, list[str]] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)


def plan(services: Services, session: Session) -> PurgePlan:
    """List what is orphaned now (nothing is removed)."""
    now = services.clock.now()
    files = {
        "orphan videos' media": orphan_videos(services, session),
        "staged outputs": stale_staging(services, session),
        TEMPS: [str(path) for path in stale_temps(services)],
    }
    sessions = session.scalar(select(func.count()).select_from(AdminSession).where(expired_sessions(now)))
    events = session.scalar(
        select(func.count()).where(eventlog.past_retention(now, services.config.EVENT_RETENTION)).select_from(Event)
    )
    session.rollback()
    rows = {
        "expired admin sessions": min(int(sessions or 0), PURGE_MAX),
        "events past retention": min(int(events or 0), PURGE_MAX),
    }
    return PurgePlan(files, rows)


def apply(services: Services, session: Session, purge: PurgePlan) -> PurgePlan:
    """Remove what `purge` listed (rows: at most as many as it counted, by the same rules); return what was removed."""
    removed = PurgePlan({}, {})
    for kind, names in purge.files.items():
        if kind == TEMPS:
            removed.files[kind] = [name for name in names if remove(Path(name))]
        else:
            removed.files[kind] = [name for name in names if remove_objects(services, name)]
    now = services.clock.now()
    stale = session.scalars(select(AdminSession.id).where(expired_sessions(now)).limit(PURGE_MAX)).all()
    if stale:
        session.execute(delete(AdminSession).where(AdminSession.id.in_(stale)))
    session.commit()
    removed.rows["expired admin sessions"] = len(stale)
    pruned = 0
    for _ in range(PURGE_MAX // eventlog.PRUNE_BATCH):  # prune deletes one batch per call
        batch = eventlog.prune(session, now, services.config.EVENT_RETENTION)
        pruned += batch
        if batch < eventlog.PRUNE_BATCH:
            break
    removed.rows["events past retention"] = pruned
    return removed


def remove(path: Path) -> bool:
    """Delete a scratch file; whether it is gone."""
    path.unlink(missing_ok=True)
    return not path.exists()


def remove_objects(services: Services, prefix: str) -> bool:
    """Delete every object under `prefix`; whether there were any."""
    return services.media.delete_prefix(prefix) > 0
