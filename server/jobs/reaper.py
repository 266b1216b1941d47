"""The reaper: the loop that makes the system converge whatever was lost.

Every REAPER_INTERVAL seconds it deletes temp files a dead process left, re-submits segments that were never queued (gearmand down at
upload), whose retry time has come, or that sat queued or PROCESSING past PROCESSING_DEADLINE
(a worker killed mid-job, a gearmand restarted with an empty queue); it packages segments whose
gap timed out and switches finished videos to VOD. Each claim is a conditional UPDATE, so any
number of reapers in any number of processes re-submit a segment once.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from server.ingest import publish, utcnow
from server.lifecycle import maybe_finish
from server.models import Segment, SegmentStatus, Video, VideoType
from server.pipeline import disk_full, package_pending
from server.services import Services

log = logging.getLogger(__name__)


class Reaper(threading.Thread):
    def __init__(self, services: Services, stop: threading.Event) -> None:
        super().__init__(name="reaper", daemon=True)
        self.services = services
        self.stop = stop

    def run(self) -> None:
        while not self.stop.wait(self.services.config.REAPER_INTERVAL):
            try:
                reap(self.services)
            except Exception as exc:  # a database restart or a full disk must not kill the loop
                if disk_full(exc):  # the operator's to fix; one line per pass, not a traceback
                    log.error("reaper pass stopped, disk full: %s; retrying next interval", exc)
                else:
                    log.exception("reaper pass failed; retrying next interval")


def _due(now: datetime, deadline: timedelta):  # type: ignore[no-untyped-def]
    stale = now - deadline
    waiting = and_(
        Segment.status == SegmentStatus.NIL,
        or_(Segment.retry_at.is_(None), Segment.retry_at <= now),
        or_(Segment.queued_at.is_(None), Segment.queued_at <= stale),
    )
    stuck = and_(Segment.status == SegmentStatus.PROCESSING, Segment.started_at <= stale)
    return or_(waiting, stuck)


def reap(services: Services) -> int:
    """Run one pass; return how many segments were re-submitted."""
    deadline = timedelta(seconds=services.config.PROCESSING_DEADLINE)
    with services.sessions() as session:
        now = utcnow()
        candidates = session.scalars(select(Segment).where(_due(now, deadline)).limit(500)).all()
        resubmitted = sum(_resubmit(services, session, segment, now, deadline) for segment in candidates)
        for video_id in session.scalars(select(Video.id).where(Video.type == VideoType.LIVE, Video.status != "EMPTY")):
            package_pending(services, session, video_id)
            maybe_finish(services, session, video_id)
    swept = services.media.sweep_temps(older_than=2 * services.config.PROCESSING_DEADLINE)
    if resubmitted or swept:
        log.info("reaper re-submitted %d segment(s), removed %d stale temp file(s)", resubmitted, swept)
    return resubmitted


def _resubmit(services: Services, session: Session, segment: Segment, now: datetime, deadline: timedelta) -> bool:
    # Claim by moving queued_at: the conditional UPDATE succeeds for one reaper only.
    claimed = session.execute(
        update(Segment).where(Segment.id == segment.id, _due(now, deadline)).values(status=SegmentStatus.NIL, queued_at=now)
    )
    session.commit()
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        return False
    if segment.status is SegmentStatus.PROCESSING:
        log.warning(
            "video %s segment %s stuck in PROCESSING since %s; re-submitting",
            segment.video_id,
            segment.segment_id,
            segment.started_at,
        )
    live = session.scalar(select(Video.type).where(Video.id == segment.video_id)) is VideoType.LIVE
    return publish(services, session, segment, live=live)
