"""A segment's life, the one owner of its state machine (docs/workers.md draws it).

RECEIVED -> QUEUED -> RUNNING (an attempt holds a lease) -> ENCODED -> PACKAGED, or FAILED for good.
Every transition goes through `move`, inside a `video_change`, and logs exactly one event. Attempts are
rows with leases: a worker renews its lease while it works; the reaper expires a lease nobody renewed
(`expire_leases`), and what to do after any failure is the pure policy in server/core/retry.py. After any
change that can place segments on the timeline or end a video, callers call `settle`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.orm import Session, selectinload

from server.core.errors import Conflict, NotFound
from server.core.jobs import PACKAGE_VIDEO, TRANSCODE_SEGMENT, PackageJob, SegmentJob
from server.core.playlists.publish import packagable, ready_for_vod
from server.core.retry import Failure, Policy, after_failure
from server.core.states import AttemptOutcome, VideoStatus, VideoType
from server.core.timeline import VIDEO_TIMESCALE
from server.core.transcode import outputs
from server.core.wire import ERROR_TAIL, AttemptGone, Claim, Skip, WorkerRef, outputs_of
from server.domain import eventlog, publishing, registry
from server.domain.changes import Change, video_change
from server.domain.packaging import package_placeable
from server.domain.state import load_view, rendition_plan
from server.domain.transitions import S, move
from server.infra import metrics
from server.infra.models import Attempt, Segment, SegmentRendition, Video, Worker
from server.infra.queue import QueueUnavailable
from server.infra.services import Services
from server.store.media import MediaStore
from server.store.objects import ObjectMissing

log = logging.getLogger(__name__)


def policy(services: Services) -> Policy:
    return Policy(max_attempts=services.config.JOB_MAX_ATTEMPTS, backoff=services.config.RETRY_BACKOFF)


# -- handing segments to the queue ------------------------------------------------------------------


def submit(services: Services, session: Session, video_id: int, segment_id: int) -> bool:
    """Hand a RECEIVED (or lost QUEUED) segment to the queue, live ones first; False leaves it to the reaper."""
    video_type = session.scalar(select(Video.type).where(Video.id == video_id))
    session.rollback()  # hold no transaction while the queue answers
    job = SegmentJob(video_id, segment_id).signed(ticket_key(services), services.clock.time())
    try:
        assert services.queue is not None, "no job queue attached"
        services.queue.submit(
            TRANSCODE_SEGMENT, job.encode(), unique=job.unique, priority=1 if video_type is VideoType.LIVE else 2
        )
    except QueueUnavailable as exc:
        log.warning("video %s segment %s not queued, the reaper will retry: %s", video_id, segment_id, exc)
        return False
    try:
        with video_change(session, video_id, services.clock) as change:
            segment = _segment(session, video_id, segment_id)
            if segment is None:
                return True
            if segment.status is S.RECEIVED:
                move(change, segment, S.QUEUED)
            if segment.status is S.QUEUED:
                segment.queued_at = change.now  # a re-submit moves the time only: no state change
    except NotFound:
        pass
    return True


def ticket_key(services: Services) -> bytes:
    """The key of segment job tickets (server/core/jobs SegmentJob.signed), shared through the database; loaded once."""
    if services.ticket_key is None:
        with services.sessions() as session:
            services.ticket_key = registry.ticket_key(session)
    return services.ticket_key


# -- attempts --------------------------------------------------------------------------------------


def start_attempt(services: Services, session: Session, video_id: int, segment_id: int, worker: WorkerRef) -> Claim | Skip:
    """Claim a segment for `worker` under a fresh lease, or say why there is nothing to do."""
    clock = services.clock
    try:
        with video_change(session, video_id, clock) as change:
            segment = _segment(session, video_id, segment_id)
            if segment is None:
                return Skip("gone")
            if segment.status not in (S.RECEIVED, S.QUEUED, S.RUNNING):
                return Skip(segment.status.value.lower())
            running = _running_attempt(session, segment)
            if running is not None:
                if running.lease_expires_at > change.now:
                    return Skip(f"leased by {running.worker_name} until {running.lease_expires_at.isoformat()}")
                if _expire(services, change, segment, running):
                    return Skip("failed")
            lease = change.now + timedelta(seconds=services.config.LEASE_SECONDS)
            attempt = Attempt(
                segment_pk=segment.id,
                video_id=video_id,
                worker_id=worker.id,
                worker_name=worker.name[:64],
                started_at=change.now,
                lease_expires_at=lease,
                heartbeat_at=change.now,
                progress=0.0,
            )
            session.add(attempt)
            session.flush()
            move(change, segment, S.RUNNING, attempt=attempt.id)
            change.event("attempt.started", segment=segment_id, worker=worker.id, attempt=attempt.id, worker_name=worker.name)
            segment.attempts += 1
            segment.started_at = change.now
            plans = tuple(rendition_plan(r.rendition) for r in _rungs(segment))
            return Claim(
                attempt_id=attempt.id,
                video_id=video_id,
                segment_id=segment_id,
                lease_expires_at=lease,
                source_extension=segment.original_extension,
                source_size=segment.size,
                source_sha256=segment.sha256,
                source_info=segment.source_info or "",
                renditions=plans,
                outputs=outputs_of(plans),
            )
    except NotFound:
        return Skip("gone")


def renew_lease(services: Services, session: Session, attempt_id: int, progress: float | None) -> datetime:
    """Extend a running attempt's lease (a heartbeat); AttemptGone once it is not running.

    A heartbeat writes only its attempt row, with a conditional UPDATE, not the video's: it changes
    nothing a player or the JSON shows, so it takes no video lock and moves no revision.
    """
    now = services.clock.now()
    lease = now + timedelta(seconds=services.config.LEASE_SECONDS)
    values: dict[str, object] = {"lease_expires_at": lease, "heartbeat_at": now}
    if progress is not None:
        values["progress"] = max(0.0, min(1.0, float(progress)))
    # An UPDATE's result is a CursorResult (Session.execute is typed for any statement).
    running = update(Attempt).where(Attempt.id == attempt_id, Attempt.outcome.is_(None))
    renewed = cast(CursorResult[Any], session.execute(running.values(**values)))
    if renewed.rowcount != 1:
        session.rollback()
        raise AttemptGone(f"attempt {attempt_id} is not running")
    if progress is not None:  # for the dashboard: not a transition, and no revision moves
        row = session.execute(
            select(Attempt.video_id, Attempt.worker_id, Segment.segment_id).join(Segment).where(Attempt.id == attempt_id)
        ).one()
        eventlog.record(
            session,
            "attempt.progress",
            at=now,
            video_id=row.video_id,
            segment_id=row.segment_id,
            worker_id=row.worker_id,
            attempt=attempt_id,
            progress=values["progress"],
        )
    session.commit()
    return lease


def complete_attempt(
    services: Services, session: Session, attempt_id: int, *, inline: bool, local_files: Mapping[str, Path] | None = None
) -> bool:
    """Commit a running attempt's staged outputs and mark its segment ENCODED; True if this call did it.

    A second completion of an attempt that succeeded is a no-op (False). An attempt that is no longer
    running (its lease expired and the reaper took it back, or its video went away) is refused with
    AttemptGone and its staged files deleted. Conflict names a missing output.
    """
    media = services.media
    attempt = session.get(Attempt, attempt_id)
    session.rollback()
    if attempt is None:
        raise AttemptGone(f"attempt {attempt_id} does not exist")
    video_id = attempt.video_id
    with media.workspace("complete") as folder:
        try:
            original = _commit_attempt(services, session, video_id, attempt_id, folder, local_files)
        except AttemptGone:
            media.remove_attempt(video_id, attempt_id)
            raise
        except NotFound:
            media.remove_attempt(video_id, attempt_id)
            media.remove_video(video_id)  # deleted while the worker encoded: leave nothing behind
            raise AttemptGone(f"video {video_id} was deleted") from None
    if original is None:
        return False
    media.remove_attempt(video_id, attempt_id)
    if not services.config.KEEP_ORIGINALS:
        # The renditions are committed and the HIGH one is the archive; a failed segment keeps its original.
        media.discard(original)
    settle(services, session, video_id, inline=inline)
    return True


def _commit_attempt(
    services: Services, session: Session, video_id: int, attempt_id: int, folder: Path, local_files: Mapping[str, Path] | None
) -> str | None:
    """Check the outputs, store them in their places and mark the segment ENCODED, under the video's lock.

    The outputs are a worker's of this machine (`local_files`: LocalOrigin's, never staged) or the staged ones
    (a remote worker's, through the worker API). Returns the original's key, or None when the attempt had
    already succeeded. Staged outputs stay until the transaction is committed: a completion retried after a
    lost COMMIT finds them again.
    """
    media = services.media
    with video_change(session, video_id, services.clock) as change:
        attempt = session.get(Attempt, attempt_id, populate_existing=True)
        if attempt is None:
            raise AttemptGone(f"attempt {attempt_id} does not exist")
        if attempt.outcome is AttemptOutcome.OK:
            return None
        if attempt.outcome is not None:
            raise AttemptGone(f"attempt {attempt_id} is {attempt.outcome.value}; its results were discarded")
        segment = _segment_by_pk(session, attempt.segment_pk)
        assert segment is not None  # the attempt's row cascades with it
        rungs = _rungs(segment)
        names = outputs_of(tuple(rendition_plan(r.rendition) for r in rungs))
        if local_files is not None:
            handed = {n: local_files.get(n) for n in names}
        else:
            handed = {n: _staged(media, media.attempt_output(video_id, attempt_id, n), folder) for n in names}
        missing = [n for n, path in handed.items() if path is None]
        if missing:
            raise Conflict(f"attempt {attempt_id} has not handed back {', '.join(missing)}")
        files = {n: path for n, path in handed.items() if path is not None}  # none is missing (above)
        # Whoever encoded them, the outputs are what the plan asks (422 naming the first that is not).
        plan = outputs.Plan(tuple(rendition_plan(r.rendition) for r in rungs), (segment.duration_ms or 0) / 1000)
        videos = plan.check_files(files)
        media.put_many({key: files[name] for name, key in _output_places(services, segment, rungs).items()})
        for rung in rungs:
            rung.size = files[f"{rung.rendition.name}.mp4"].stat().st_size
        video = videos[names[0]]  # every rung has the same frames
        segment.duration_ticks = video.duration * VIDEO_TIMESCALE // video.timescale
        segment.audio_duration_ticks = None  # whole AAC frames, fixed by the packager with the audio start
        segment.error = None
        segment.ready_at = change.now
        _finish_attempt(change, segment, attempt, AttemptOutcome.OK, progress=1.0)
        move(change, segment, S.ENCODED, attempt=attempt_id)
        if segment.segment_id == 0 and change.video.thumbnail_segment_id is None:
            change.video.thumbnail_segment_id = 0  # segment 0's picture is the video's while it is live
        return media.original(video_id, segment.segment_id, segment.original_extension)


def _output_places(services: Services, segment: Segment, rungs: list[SegmentRendition]) -> dict[str, str]:
    """The key each output of an attempt of `segment` is stored under once committed, by its staged name."""
    media, vid, k = services.media, segment.video_id, segment.segment_id
    places = {f"{r.rendition.name}.mp4": media.file(vid, r.rendition.name, k, "mp4") for r in rungs}
    places["thumbnail.jpg"] = media.file(vid, "thumbnails", k, "jpg")
    places["storyboard.jpg"] = media.file(vid, "storyboard", k, "jpg")
    return places


def _staged(media: MediaStore, key: str, folder: Path) -> Path | None:
    """A local file holding one staged output, None if it was never handed back."""
    try:
        return media.readable(key, folder)
    except ObjectMissing:
        return None


def fail_attempt(services: Services, session: Session, attempt_id: int, error: str, failure: Failure) -> None:
    """Record a failed attempt, then retry later or give up, as the retry policy says; AttemptGone if not running."""
    attempt = session.get(Attempt, attempt_id)
    session.rollback()
    if attempt is None:
        raise AttemptGone(f"attempt {attempt_id} does not exist")
    video_id = attempt.video_id
    services.media.remove_attempt(video_id, attempt_id)
    try:
        with video_change(session, video_id, services.clock) as change:
            attempt = session.get(Attempt, attempt_id, populate_existing=True)
            if attempt is None or attempt.outcome is not None:
                raise AttemptGone(f"attempt {attempt_id} is not running")
            segment = _segment_by_pk(session, attempt.segment_pk)
            assert segment is not None
            attempt.error = error[-ERROR_TAIL:]
            _finish_attempt(change, segment, attempt, AttemptOutcome.FAILED, failure=failure.value)
            gave_up = _after_failure(services, change, segment, failure, error)
    except NotFound:
        raise AttemptGone(f"video {video_id} was deleted") from None
    if gave_up:
        settle(services, session, video_id, inline=services.has_media)


def expire_leases(services: Services, session: Session, limit: int = 100) -> int:
    """Take back every attempt whose lease ran out (its worker died or lost the network); return how many."""
    now = services.clock.now()
    expired = session.execute(
        select(Attempt.id, Attempt.video_id).where(Attempt.outcome.is_(None), Attempt.lease_expires_at < now).limit(limit)
    ).all()
    session.rollback()
    taken = 0
    for attempt_id, video_id in expired:
        try:
            with video_change(session, video_id, services.clock) as change:
                attempt = session.get(Attempt, attempt_id, populate_existing=True)
                if attempt is None or attempt.outcome is not None or attempt.lease_expires_at >= change.now:
                    continue  # finished or renewed meanwhile
                segment = _segment_by_pk(session, attempt.segment_pk)
                assert segment is not None
                gave_up = _expire(services, change, segment, attempt)
        except NotFound:
            continue
        taken += 1
        services.media.remove_attempt(video_id, attempt_id)
        if gave_up:
            settle(services, session, video_id, inline=services.has_media)
    return taken


def _expire(services: Services, change: Change, segment: Segment, attempt: Attempt) -> bool:
    """Mark a running attempt expired and apply the policy to its segment; True if the segment failed for good."""
    reason = f"lease expired at {attempt.lease_expires_at.isoformat()} (worker {attempt.worker_name} stopped renewing it)"
    attempt.error = reason
    _finish_attempt(change, segment, attempt, AttemptOutcome.EXPIRED)
    log.warning("video %s segment %s: attempt %s %s", segment.video_id, segment.segment_id, attempt.id, reason)
    return _after_failure(services, change, segment, Failure.LOST, reason)


def _finish_attempt(
    change: Change, segment: Segment, attempt: Attempt, outcome: AttemptOutcome, progress: float | None = None, **data: object
) -> None:
    attempt.outcome = outcome
    attempt.finished_at = change.now
    if progress is not None:  # the attempt's row only, not its event
        attempt.progress = float(progress)
    if attempt.worker_id is not None and outcome is not AttemptOutcome.CANCELLED:  # an operator's act, not the worker's
        counter = Worker.attempts_ok if outcome is AttemptOutcome.OK else Worker.attempts_failed
        change.session.execute(update(Worker).where(Worker.id == attempt.worker_id).values({counter: counter + 1}))
    change.event(eventlog.attempt_kind(outcome), segment=segment.segment_id, worker=attempt.worker_id, attempt=attempt.id, **data)
    change.on_commit(lambda: metrics.attempt_finished(outcome.value))


def _after_failure(services: Services, change: Change, segment: Segment, failure: Failure, error: str) -> bool:
    """Apply the retry policy to a segment whose attempt failed; True if it failed for good."""
    decision = after_failure(policy(services), segment.attempts, failure)
    if not decision.spends_attempt:
        segment.attempts -= 1
    segment.error = f"{error}"[-ERROR_TAIL:]
    segment.queued_at = None
    where = f"video {segment.video_id} segment {segment.segment_id}"
    if decision.give_up:
        segment.failed_at = change.now
        move(change, segment, S.FAILED, failure=failure.value)
        log.warning("%s failed for good after %d attempt(s): %s", where, segment.attempts, segment.error[:500])
        return True
    assert decision.retry_in is not None
    segment.retry_at = change.now + timedelta(seconds=decision.retry_in)
    move(change, segment, S.RECEIVED, failure=failure.value, retry_in=decision.retry_in)
    if not decision.spends_attempt:
        why = "disk full" if failure is Failure.DISK_FULL else "the media store did not answer"
        log.error("%s: %s, retrying in %.1fs without spending an attempt", where, why, decision.retry_in)
    else:
        log.warning("%s attempt %d failed (%s), retrying in %.1fs", where, segment.attempts, failure.value, decision.retry_in)
    return False


# -- an operator's hand (the admin API) ---------------------------------------------------------------


def retry_failed(services: Services, session: Session, video_id: int, segment_id: int) -> Segment:
    """Start a FAILED segment over: RECEIVED with no attempt spent, then submitted; NotFound, or Conflict if not failed."""
    with video_change(session, video_id, services.clock) as change:
        segment = _segment(session, video_id, segment_id)
        if segment is None:
            raise NotFound(f"segment {segment_id} of video {video_id} does not exist")
        if segment.status is not S.FAILED:
            raise Conflict(f"segment {segment_id} is {segment.status.value}, not FAILED")
        segment.attempts = 0
        segment.error = None
        segment.retry_at = segment.failed_at = segment.queued_at = None
        move(change, segment, S.RECEIVED, retry=True)
    submit(services, session, video_id, segment_id)
    return segment


def cancel_attempt(services: Services, session: Session, attempt_id: int) -> Attempt:
    """Cancel a running attempt and retry its segment now (no attempt spent); NotFound, or Conflict if not running.

    Its worker learns at its next heartbeat (AttemptGone) and discards what it made; a completion that
    races this one is refused the same way.
    """
    attempt = session.get(Attempt, attempt_id)
    session.rollback()
    if attempt is None:
        raise NotFound(f"attempt {attempt_id} does not exist")
    video_id = attempt.video_id
    with video_change(session, video_id, services.clock) as change:
        attempt = session.get(Attempt, attempt_id, populate_existing=True)
        if attempt is None:
            raise NotFound(f"attempt {attempt_id} does not exist")
        if attempt.outcome is not None:
            raise Conflict(f"attempt {attempt_id} is not running ({attempt.outcome.value})")
        segment = _segment_by_pk(session, attempt.segment_pk)
        assert segment is not None
        attempt.error = "cancelled by an operator"
        _finish_attempt(change, segment, attempt, AttemptOutcome.CANCELLED)
        segment.attempts = max(0, segment.attempts - 1)
        segment.queued_at = None
        segment.retry_at = change.now
        move(change, segment, S.RECEIVED, cancelled=attempt_id)
        segment_id = segment.segment_id
    services.media.remove_attempt(video_id, attempt_id)
    submit(services, session, video_id, segment_id)
    return attempt


# -- settling a video -------------------------------------------------------------------------------


def settle(services: Services, session: Session, video_id: int, *, inline: bool) -> None:
    """After any change: package what became placeable (here, or through a package job), then maybe finish.

    `inline`: this process has the media tree (a local worker, the reaper, a package job) and packages
    at once; otherwise (the API answering a remote worker) a PACKAGE_VIDEO job does it where the media is.
    """
    view = load_view(session, video_id, services.config.MAX_SEGMENT_AHEAD)
    session.rollback()
    if view is None:
        return
    placeable = [
        p for p in packagable(view, services.clock.time(), services.config.GAP_TIMEOUT) if not view.by_id[p.segment_id].packaged
    ]
    if placeable:
        if inline:
            package_placeable(services, session, video_id)
        else:
            _submit_package(services, video_id)
    maybe_finish(services, session, video_id)


def _submit_package(services: Services, video_id: int) -> None:
    job = PackageJob(video_id)
    try:
        assert services.queue is not None, "no job queue attached"
        # A unique key per call: a package job already running must not swallow this one (gearmand
        # coalesces equal keys); a job that finds nothing left to package costs one query.
        services.queue.submit(PACKAGE_VIDEO, job.encode(), unique=f"{job.unique}:{services.clock.time():.6f}", priority=0)
    except QueueUnavailable as exc:
        log.warning("video %s: package job not queued, the reaper will package it: %s", video_id, exc)


def maybe_finish(services: Services, session: Session, video_id: int) -> bool:
    """Switch the video to VOD if it is over, then publish its playlists where the media tree is.

    The last step after any change (settle, an end, a retry): True only for the one call that made the switch.
    """
    finished = _finish_if_over(services, session, video_id)
    if services.has_media:
        publishing.publish(services, session, video_id)
    return finished


def _finish_if_over(services: Services, session: Session, video_id: int) -> bool:
    """Switch the video to VOD if it is over; True only for the one call that made the switch."""
    view = load_view(session, video_id, services.config.MAX_SEGMENT_AHEAD)
    session.rollback()
    # Not yet when the last remux is still to come: whoever does it settles again.
    if view is None or not ready_for_vod(view, services.clock.time(), services.config.GAP_TIMEOUT):
        return False
    try:
        with video_change(session, video_id, services.clock) as change:
            video = change.video
            if video.type is not VideoType.LIVE:
                return False  # another process made the switch first
            ready = [s.segment_id for s in view.segments if s.status == "READY"]
            video.type = VideoType.VOD
            video.status = VideoStatus.OK if ready else VideoStatus.ERROR
            video.finished_at = change.now
            video.thumbnail_segment_id = _middle(ready, view.last_segment_id or 0)
            change.event("video.finished", ready=len(ready), segments=(view.last_segment_id or 0) + 1)
    except NotFound:
        return False
    log.info("video %s finished: VOD with %d ready segment(s) of %d", video_id, len(ready), (view.last_segment_id or 0) + 1)
    return True


def _middle(ready: list[int], last: int) -> int | None:
    """Return the ready segment nearest the middle of the recording (its thumbnail becomes the video's)."""
    if not ready:
        return None
    return min(ready, key=lambda k: (abs(k - last / 2), k))


# -- rows ------------------------------------------------------------------------------------------


def _segment(session: Session, video_id: int, segment_id: int) -> Segment | None:
    query = (
        select(Segment)
        .where(Segment.video_id == video_id, Segment.segment_id == segment_id)
        .options(selectinload(Segment.renditions).selectinload(SegmentRendition.rendition))
        .execution_options(populate_existing=True)
    )
    return session.scalars(query).one_or_none()


def _segment_by_pk(session: Session, pk: int) -> Segment | None:
    query = (
        select(Segment)
        .where(Segment.id == pk)
        .options(selectinload(Segment.renditions).selectinload(SegmentRendition.rendition))
        .execution_options(populate_existing=True)
    )
    return session.scalars(query).one_or_none()


def _rungs(segment: Segment) -> list[SegmentRendition]:
    return sorted(segment.renditions, key=lambda r: r.rendition.position)


def _running_attempt(session: Session, segment: Segment) -> Attempt | None:
    return session.scalars(select(Attempt).where(Attempt.segment_pk == segment.id, Attempt.outcome.is_(None)).limit(1)).first()
