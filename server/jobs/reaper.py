"""The reaper: the loop that makes the system converge whatever was lost.

Every REAPER_INTERVAL seconds it deletes temp files a dead process left, re-submits segments that were never queued (gearmand down at
upload), whose retry time has come, or that sat queued or PROCESSING past PROCESSING_DEADLINE
(a worker killed mid-job, a gearmand restarted with an empty queue); it packages segments whose
gap timed out and switches finished videos to VOD; it ends live videos abandoned for LIVE_IDLE_TIMEOUT. Each claim is a conditional UPDATE, so any
number of reapers in any number of processes re-submit a segment once.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from server.errors import Conflict, NotFound
from server.ingest import delete_video, end_video, get_video, publish, utcnow
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
    end_idle_videos(services, utcnow())
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


IDLE_BATCH = 100


def abandoned(last_activity: datetime, now: datetime, timeout: timedelta) -> bool:
    """Whether a live video with no end signal has been idle long enough to be ended by the server.

    Its last activity is its newest upload, or its creation if nothing was uploaded: a phone that died
    (battery, crash, lost network for good) never sends /video_end.
    """
    return now - last_activity >= timeout


def end_idle_videos(services: Services, now: datetime) -> int:
    """End each abandoned live video at its highest stored segment, as /video_end would; return how many.

    It then becomes VOD the normal way (maybe_finish, now or on a later pass). A video that never received
    a segment has nothing to play: it is deleted rather than listed forever as an empty recording.
    """
    timeout = timedelta(seconds=services.config.LIVE_IDLE_TIMEOUT)
    cutoff = now - timeout
    newest = func.max(Segment.uploaded_at)
    query = (
        select(Video.id, Video.created_at, newest, func.max(Segment.segment_id))
        .outerjoin(Segment, Segment.video_id == Video.id)
        .where(Video.type == VideoType.LIVE, Video.last_segment_id.is_(None), Video.created_at <= cutoff)
        .group_by(Video.id, Video.created_at)
        .having(or_(newest.is_(None), newest <= cutoff))
        .order_by(Video.id)
        .limit(IDLE_BATCH)
    )
    ended = 0
    with services.sessions() as session:
        for video_id, created_at, newest_upload, highest in session.execute(query).all():
            if abandoned(newest_upload or created_at, now, timeout):
                ended += _end_idle(services, session, video_id, highest)
    return ended


def _end_idle(services: Services, session: Session, video_id: int, highest: int | None) -> bool:
    idle = services.config.LIVE_IDLE_TIMEOUT
    try:
        if highest is None:
            video = get_video(session, video_id, lock=True, fresh=True)  # nothing changes under this lock
            first = session.scalar(select(Segment.id).where(Segment.video_id == video_id).limit(1))
            if video.type is not VideoType.LIVE or video.last_segment_id is not None or first is not None:
                session.rollback()
                return False  # ended, or a first segment arrived, meanwhile
            log.warning("video %s abandoned: nothing uploaded in %.0f s; deleting the empty recording", video_id, idle)
            delete_video(services, session, video_id)
            return True
        end_video(session, video_id, highest)
    except (Conflict, NotFound):  # a later segment arrived, or the video was deleted, meanwhile
        session.rollback()
        return False
    log.warning("video %s abandoned: no upload for %.0f s; ended at its highest segment %s", video_id, idle, highest)
    maybe_finish(services, session, video_id)
    return True
