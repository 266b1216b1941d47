"""The reaper: the loop that makes the system converge whatever was lost.

Every REAPER_INTERVAL seconds it takes back attempts whose lease ran out (lifecycle.expire_leases), hands
to the queue the segments that were never queued (gearmand down at upload) or whose retry time has come,
re-submits QUEUED segments no worker took within PROCESSING_DEADLINE (a gearmand restarted empty),
settles live videos (a gap timed out: package, maybe finish), ends live videos abandoned for
LIVE_IDLE_TIMEOUT, deletes finished videos past RETENTION_DAYS (`expire_videos`), reports stalled streams
(`video.stalled`) and lost workers (`worker.lost`) in the event log once each, hands new events to the
webhook dispatcher and sends its due deliveries (server/ops/webhooks.py), prunes the event log, and deletes
what dead processes left (temp files, staging directories of finished attempts). It runs where the database
and the media are (the local runner, and every segment_processor of the origin); any number of them may
run: the attempt rows decide.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Select, and_, false, func, or_, select
from sqlalchemy.orm import Session

from server.config import Config
from server.core.errors import Conflict, NotFound, StorageUnavailable, disk_full
from server.core.ingest_health import is_stalled
from server.core.states import SegmentState, VideoStatus, VideoType
from server.domain import eventlog, lifecycle, publishing, registry
from server.domain.changes import video_change
from server.domain.ingest import delete_abandoned, delete_when, end_video
from server.infra.models import Event, Segment, Video
from server.infra.services import Services
from server.ops import purge
from server.ops.webhooks import Dispatcher

log = logging.getLogger(__name__)
SUBMIT_BATCH = 500


class TempSweep:
    """Where a reaper's passes look for what dead writers left (temp files, staging folders of attempts).

    Searching the whole media tree costs every file in it (3.3 us an entry: 8.6 s a pass at 10,000 videos
    of 20 segments, longer than REAPER_INTERVAL). Every write into a video's folder is logged with an
    event of that video (purge.written_since), so a pass searches only the folders of videos with an
    event since its previous pass, less purge.look_back. The first pass, and one every
    TEMP_SWEEP_INTERVAL, search the whole tree: a writer that died far from any event of its video (an
    upload cut mid-body on a video silent for long) is found there.
    """

    def __init__(self, config: Config) -> None:
        self.every = timedelta(seconds=config.TEMP_SWEEP_INTERVAL)
        self.look_back = purge.look_back(config)
        self.whole_at: datetime | None = None
        self.previous: datetime | None = None

    def since(self, now: datetime) -> datetime | None:
        """Decide this pass (at `now`): None to search the whole tree, else the time from which videos' events count."""
        previous, self.previous = self.previous, now
        if previous is None or self.whole_at is None or now - self.whole_at >= self.every:
            self.whole_at = now
            return None
        return previous - self.look_back


class Reaper(threading.Thread):
    def __init__(self, services: Services, stop: threading.Event) -> None:
        super().__init__(name="reaper", daemon=True)
        self.services = services
        self.stop = stop
        self.webhooks = Dispatcher(services)
        self.sweep = TempSweep(services.config)

    def run(self) -> None:
        try:
            while not self.stop.wait(self.services.config.REAPER_INTERVAL):
                self._pass()
        finally:
            self.webhooks.close()

    def _pass(self) -> None:
        try:
            reap(self.services, self.sweep)
        except Exception as exc:  # a database restart or a full disk must not kill the loop
            if disk_full(exc) or isinstance(exc, StorageUnavailable):  # one line per pass, not a traceback
                log.error("reaper pass stopped (%s); retrying next interval", exc)
            else:
                log.exception("reaper pass failed; retrying next interval")
        try:  # after reap(): this pass's stalls and lost workers are in the log; sends run on the pool
            self.webhooks.tick()
        except Exception:
            log.exception("webhook pass failed; retrying next interval")


def due(now: datetime, deadline: timedelta) -> ColumnElement[bool]:
    """Segments to hand to the queue: RECEIVED whose time has come, QUEUED that no worker took in time."""
    waiting = and_(Segment.status == SegmentState.RECEIVED, or_(Segment.retry_at.is_(None), Segment.retry_at <= now))
    lost = and_(Segment.status == SegmentState.QUEUED, or_(Segment.queued_at.is_(None), Segment.queued_at <= now - deadline))
    return or_(waiting, lost)


def reap(services: Services, sweep: TempSweep | None = None) -> int:
    """Run one pass; return how many segments were handed to the queue. Without `sweep` (a one-off pass),
    the whole media tree is searched for what dead writers left."""
    deadline = timedelta(seconds=services.config.PROCESSING_DEADLINE)
    since = None if sweep is None else sweep.since(services.clock.now())
    # First: it needs only the database (its media go as far as the store answers), and a store that is down
    # stops the steps below that read it.
    expired_videos = expire_videos(services, services.clock.now())
    with services.sessions() as session:
        searched = None if since is None else purge.written_since(session, since)  # before this pass's own writes
        expired = lifecycle.expire_leases(services, session)
        now = services.clock.now()
        candidates = session.execute(
            select(Segment.video_id, Segment.segment_id).where(due(now, deadline)).limit(SUBMIT_BATCH)
        ).all()
        session.rollback()
        submitted = sum(lifecycle.submit(services, session, video_id, segment_id) for video_id, segment_id in candidates)
        live = session.scalars(select(Video.id).where(Video.type == VideoType.LIVE, Video.status != VideoStatus.EMPTY)).all()
        session.rollback()
        for video_id in live:
            lifecycle.settle(services, session, video_id, inline=True)  # gap timeouts: packages, finishes, publishes
        republished = _republish(services, session)
        pruned = eventlog.prune(session, services.clock.now(), services.config.EVENT_RETENTION)
        stale = purge.stale_staging(services, session, SUBMIT_BATCH, searched)
        staged = sum(purge.remove_objects(services, prefix) for prefix in stale)
    end_idle_videos(services, services.clock.now())
    report_stalls(services, services.clock.now())
    with services.sessions() as session:
        config = services.config
        registry.mark_lost(session, now=services.clock.now(), lease_seconds=config.LEASE_SECONDS, horizon=config.EVENT_RETENTION)
    swept = sum(purge.remove(path) for path in purge.stale_temps(services, SUBMIT_BATCH, searched))
    if expired or submitted or swept or staged or pruned or republished or expired_videos:
        log.info(
            "reaper: %d lease(s) expired, %d segment(s) queued, %d video(s) republished, %d temp file(s) and %d staging dir(s) removed, %d event(s) pruned, %d video(s) past retention deleted",
            expired,
            submitted,
            republished,
            swept,
            staged,
            pruned,
            expired_videos,
        )
    return submitted


def _republish(services: Services, session: Session) -> int:
    """Publish the playlists of videos whose files lag their revision (a publisher died, a disk was full)."""
    if not services.has_media:
        return 0
    lagging = publishing.lagging(session, SUBMIT_BATCH)
    session.rollback()
    return sum(publishing.publish(services, session, video_id) for video_id in lagging)


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
            if delete_abandoned(services, session, video_id):
                log.warning("video %s abandoned: nothing uploaded in %.0f s; deleted the empty recording", video_id, idle)
                return True
            return False  # ended, or a first segment arrived, meanwhile
        end_video(services, session, video_id, highest)
    except (Conflict, NotFound):  # a later segment arrived, or the video was deleted, meanwhile
        session.rollback()
        return False
    log.warning("video %s abandoned: no upload for %.0f s; ended at its highest segment %s", video_id, idle, highest)
    lifecycle.maybe_finish(services, session, video_id)
    return True


RETENTION_BATCH = 100  # videos deleted per pass at most: each is a transaction and a media prefix to remove


def past_retention(video: Video, now: datetime, days: float) -> bool:
    """Whether RETENTION_DAYS (`days`) deletes `video` at `now`.

    Only a finished recording (VOD) that no admin pinned, once `days` days have passed since its end: its
    `finished_at`, or its `ended_at` when that is NULL. A live video, even ended, is never deleted: it is
    still being placed (its end is not its finish). 0 days keeps everything forever.
    """
    if days <= 0 or video.type is not VideoType.VOD or video.pinned:
        return False
    end = video.finished_at or video.ended_at
    return end is not None and now - end >= timedelta(days=days)


def retention_query(now: datetime, days: float, limit: int) -> Select[int, datetime]:
    """The videos `past_retention` may delete at `now`, oldest first, at most `limit`: (id, end).

    A range of the index (type, pinned, finished_at) in its order, so a pass reads `limit` rows however many
    videos there are. A VOD whose finished_at is NULL (none is made so today) is read first and kept to
    its ended_at; `past_retention` decides again under the row lock.
    """
    cutoff = now - timedelta(days=days)
    old = or_(Video.finished_at <= cutoff, and_(Video.finished_at.is_(None), Video.ended_at <= cutoff))
    return (
        select(Video.id, func.coalesce(Video.finished_at, Video.ended_at))
        .where(Video.type == VideoType.VOD, Video.pinned == false(), old)
        .order_by(Video.finished_at, Video.id)
        .limit(limit)
    )


def expire_videos(services: Services, now: datetime, limit: int = RETENTION_BATCH) -> int:
    """Delete the finished videos past RETENTION_DAYS at `now` (at most `limit`, oldest first); return how many.

    Each goes through ingest.delete_when (`video.deleted` with reason "retention"), which decides again under
    the row lock: a video pinned since the query stays. Its media go as far as the store answers.
    """
    days = services.config.RETENTION_DAYS
    if days <= 0:
        return 0
    with services.sessions() as session:
        candidates = session.execute(retention_query(now, days, limit)).all()
        session.rollback()
        return sum(expire_video(services, session, video_id, end, days) for video_id, end in candidates)


def expire_video(services: Services, session: Session, video_id: int, end: datetime, days: float) -> bool:
    """Delete one video found by retention_query if `past_retention` still says so under its lock."""
    if not delete_when(services, session, video_id, "retention", lambda change: past_retention(change.video, change.now, days)):
        return False  # pinned, or deleted, meanwhile
    log.info("video %s deleted: finished %s, more than RETENTION_DAYS (%g) ago", video_id, end.isoformat(timespec="seconds"), days)
    return True


STALL_BATCH = 500


def report_stalls(services: Services, now: datetime) -> int:
    """Write `video.stalled` for each live video whose uploads stopped (ingest_health.is_stalled), once per stall.

    Once: a stall is reported unless a `video.stalled` of the video is after its newest upload; an
    upload ends the stall, so the next silence is reported again.
    """
    newest = func.max(Segment.uploaded_at)
    query = (
        select(Video.id, Video.segment_duration_ms, newest)
        .join(Segment, Segment.video_id == Video.id)
        .where(Video.type == VideoType.LIVE, Video.last_segment_id.is_(None))
        .group_by(Video.id, Video.segment_duration_ms)
        .order_by(Video.id)
        .limit(STALL_BATCH)
    )
    reported = 0
    with services.sessions() as session:
        rows = session.execute(query).all()
        session.rollback()
        for video_id, duration_ms, last_upload in rows:
            stalled = is_stalled(last_upload, now=now, segment_seconds=duration_ms / 1000, last_segment_id=None)
            reported_already = stalled and _stall_reported(session, video_id, last_upload)
            session.rollback()
            if stalled and not reported_already:  # checked without a lock first: most passes change nothing
                reported += _report_stall(services, session, video_id)
    return reported


def _stall_reported(session: Session, video_id: int, since: datetime) -> bool:
    """Whether this stall (no upload since `since`) already has its `video.stalled` event."""
    query = select(Event.id).where(Event.video_id == video_id, Event.kind == "video.stalled", Event.at > since)
    return session.scalar(query.limit(1)) is not None


def _report_stall(services: Services, session: Session, video_id: int) -> bool:
    """Decide again under the video's row lock (another reaper, an upload meanwhile) and write the event."""
    try:
        with video_change(session, video_id, services.clock) as change:
            video = change.video
            last_upload = session.scalar(select(func.max(Segment.uploaded_at)).where(Segment.video_id == video_id))
            seconds = video.segment_duration_ms / 1000
            if not is_stalled(last_upload, now=change.now, segment_seconds=seconds, last_segment_id=video.last_segment_id):
                return False
            if last_upload is None or _stall_reported(session, video_id, last_upload):
                return False
            idle = round((change.now - last_upload).total_seconds(), 3)
            change.event("video.stalled", last_upload_at=last_upload.isoformat(), idle=idle)
            return True
    except NotFound:  # deleted meanwhile
        return False
