"""The one way to write a video's rows: lock the row, change, log the change, move the revision, commit.

    with video_change(session, video_id, clock) as change:
        change.video.title = "x"
        change.event("video.renamed", title="x")

Every transaction that writes a video's rows (its segments, their rungs and attempts) takes the video's
row lock first, so two writers never deadlock and checks made inside stay true until the commit. The
revision moves on once per change that logged an event (cache keys and playlists carry it), and the
events commit with the change or, on an exception, not at all.

SQLite ignores FOR UPDATE and pysqlite opens a transaction only at its first write: there a no-op
UPDATE of the row takes the database's write lock instead (other writers wait for it, up to the
engine's busy timeout), so the same check-then-write code is race-free on both backends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, Table, select, update
from sqlalchemy.orm import Session

from server.core.clock import Clock
from server.core.errors import NotFound
from server.domain import eventlog
from server.infra.models import Video


@dataclass
class Change:
    session: Session
    video: Video
    now: datetime
    events: int = field(default=0)
    committed: list[Callable[[], None]] = field(default_factory=list)  # run once the change is durable, in order

    def event(self, kind: str, *, segment: int | None = None, worker: int | None = None, **data: object) -> None:
        """Log one state change of this video, one of its segments or attempts (same transaction)."""
        eventlog.record(self.session, kind, at=self.now, video_id=self.video.id, segment_id=segment, worker_id=worker, **data)
        self.events += 1

    def on_commit(self, action: Callable[[], None]) -> None:
        """Run `action` after the commit (a metric counting a durable fact); never if the change rolls back."""
        self.committed.append(action)


def lock_video(session: Session, video_id: int) -> bool:
    """Take the video's row lock (see the module docstring); False if the video does not exist."""
    if session.get_bind().dialect.name == "sqlite":
        videos = cast(Table, Video.__table__)  # a mapped class's table; typed as any FromClause
        claimed = cast(
            CursorResult[Any], session.execute(update(videos).where(videos.c.id == video_id).values(revision=videos.c.revision))
        )
        return claimed.rowcount == 1
    return session.scalar(select(Video.id).where(Video.id == video_id).with_for_update()) is not None


@contextmanager
def video_change(session: Session, video_id: int, clock: Clock) -> Iterator[Change]:
    """Lock `video_id`'s row and yield a Change; commit on exit, roll back on an exception. NotFound if gone."""
    if not lock_video(session, video_id):
        session.rollback()
        raise NotFound(f"video {video_id} does not exist")
    # What the lock protects is read after it, never taken from the identity map.
    video = session.scalars(select(Video).where(Video.id == video_id).execution_options(populate_existing=True)).one()
    change = Change(session, video, clock.now())
    try:
        yield change
        if change.events and session.get(Video, video_id) is not None:  # not after a delete
            session.execute(update(Video).where(Video.id == video_id).values(revision=Video.revision + 1))
        session.commit()
    except BaseException:
        session.rollback()
        raise
    for action in change.committed:
        action()
