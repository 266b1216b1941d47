"""What the operator's `purge` removes: files and rows nothing refers to any more, listed first, removed on demand.

Files: a video directory under MEDIA_ROOT whose video row is gone (a delete cut short between the row
and the files), the staging directory of an attempt that is no longer running (a worker died between
writing and reporting), and temp files a dead process left mid-write. Rows: expired admin sessions and
events past EVENT_RETENTION. Files are only taken once untouched for a quiet period, so nothing a live
writer still holds is removed. The reaper removes staging directories and temp files by the same rules
(`stale_staging`, `stale_temps`); purge adds the orphans and rows, and is bounded (PURGE_MAX per kind).
"""

from __future__ import annotations

import shutil
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


def stale_staging(services: Services, session: Session, limit: int = PURGE_MAX, videos: list[int] | None = None) -> list[Path]:
    """Staging directories of attempts not running, untouched for twice the lease (of every video, or of `videos`)."""
    quiet = _staging_quiet(services.config)
    stale = []
    for _video_id, attempt_id, path in services.media.attempt_dirs(videos)[:limit]:
        running = session.scalar(select(Attempt.id).where(Attempt.id == attempt_id, Attempt.outcome.is_(None)))
        if running is None and _idle(path, quiet):
            stale.append(path)
    session.rollback()
    return stale


def stale_temps(services: Services, limit: int = PURGE_MAX, videos: list[int] | None = None) -> list[Path]:
    """Temp files untouched for twice the processing deadline (their writer died), anywhere or in `videos`' folders."""
    quiet = _temp_quiet(services.config)
    return [p for p in services.media.temp_files(videos)[:limit] if _idle(p, quiet)]


def orphan_videos(services: Services, session: Session, limit: int = PURGE_MAX) -> list[Path]:
    """Video directories with no video row, untouched for the idle timeout of a live video."""
    videos = services.media.root / "videos"
    found = (
        sorted((int(p.name), p) for p in videos.iterdir() if p.is_dir() and p.name.isdigit())[:limit] if videos.is_dir() else []
    )
    ids = [video_id for video_id, _ in found]
    known: set[int] = set()
    for start in range(0, len(ids), 500):
        known.update(session.scalars(select(Video.id).where(Video.id.in_(ids[start : start + 500]))))
    session.rollback()
    quiet = max(2 * services.config.LEASE_SECONDS, 60.0)
    return [path for video_id, path in found if video_id not in known and _idle(path, quiet)]


@dataclass
class PurgePlan:
    """What one purge would remove: paths per kind and row counts per table."""

    files: dict[str, list[Path]] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)


def plan(services: Services, session: Session) -> PurgePlan:
    """List what is orphaned now (nothing is removed)."""
    now = services.clock.now()
    files = {
        "orphan video dirs": orphan_videos(services, session),
        "staging dirs": stale_staging(services, session),
        "temp files": stale_temps(services),
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
    removed = PurgePlan({kind: [p for p in paths if remove(p)] for kind, paths in purge.files.items()}, {})
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
    """Delete a file or a directory tree; whether it is gone."""
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
    return not path.exists()
