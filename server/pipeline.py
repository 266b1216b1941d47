"""What a worker does with one segment: transcode, package in timeline order, thumbnail, finish.

Deciding is separate from doing: ffmpeg argv come from server.transcode, publishing rules from
server.playlists; this module loads rows, runs the work, and records the outcome. The database is
the source of truth: a job may be delivered twice, run after its video was deleted, or never run at
all (the reaper re-submits), and each case converges.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.orm import Session, selectinload

from server.errors import FFmpegError, ServiceError, TranscodeError
from server.ingest import lock_video, utcnow
from server.jobs import SegmentJob
from server.lifecycle import maybe_finish, playlist_state, rendition_plan
from server.media.storage import atomic_write, commit_file, temp_path_for
from server.models import Segment, SegmentRendition, SegmentStatus, Video
from server.playlists import VIDEO_TIMESCALE, Published
from server.playlists.model import AAC_FRAME
from server.playlists.publish import packagable
from server.services import Services
from server.transcode import ffmpeg
from server.transcode.cmaf import track_durations
from server.transcode.ladder import SourceInfo
from server.transcode.mpegts import continue_counters, next_counters

log = logging.getLogger(__name__)

THUMBNAIL_WIDTH = 320
LIVENESS_WINDOW = 1.5  # seconds without a change that make temp outputs a dead attempt's


def handle_transcode(services: Services, data: bytes) -> None:
    """Run one TRANSCODE_SEGMENT job and log one line about it."""
    job = SegmentJob.decode(data)
    started = time.monotonic()
    outcome = "error"
    try:
        outcome = process_segment(services, job)
    finally:
        log.info("video %s segment %s: %s in %.2fs", job.video_id, job.segment_id, outcome, time.monotonic() - started)


def process_segment(services: Services, job: SegmentJob) -> str:
    """Transcode one segment (unless already done), then package and finish what became possible."""
    leftovers = _dead_temps(services, job)
    if leftovers is None:
        return "skipped (another attempt is writing it)"
    with services.sessions() as session:
        segment = _claim(services, session, job, leftovers)
        if segment is None:
            return "skipped (gone, done, failed for good or being written)"
        try:
            _transcode(services, session, segment)
        except (ServiceError, OSError) as exc:
            _record_failure(services, session, segment, exc)
            if disk_full(exc):
                return "waiting for disk space"
            return f"failed (attempt {segment.attempts}): {exc}"
        if not _video_exists(session, job.video_id):
            services.media.remove_video(job.video_id)  # deleted while we worked: leave nothing behind
            return "dropped (video deleted)"
        package_pending(services, session, job.video_id)
        maybe_finish(services, session, job.video_id)
    return "ok"


def _dead_temps(services: Services, job: SegmentJob) -> list[Path] | None:
    """Return the temp outputs a dead attempt left of this segment, or None while another attempt writes them.

    A dead attempt's files stop changing; a live ffmpeg's grow or are committed within LIVENESS_WINDOW.
    Only files seen unchanged are ever deleted, so a live attempt's outputs are never taken for leftovers.
    """
    before = services.media.segment_temps(job.video_id, job.segment_id)
    if not before:
        return []
    time.sleep(LIVENESS_WINDOW)
    if services.media.segment_temps(job.video_id, job.segment_id) != before:
        return None
    return list(before)


def _claim(services: Services, session: Session, job: SegmentJob, leftovers: list[Path]) -> Segment | None:
    # The video's row lock first, as every writer does: two deliveries of one job claim one after the
    # other, so neither loses the other's attempt count.
    if not lock_video(session, job.video_id):
        session.rollback()
        return None
    query = (
        select(Segment)
        .where(Segment.video_id == job.video_id, Segment.segment_id == job.segment_id)
        .options(selectinload(Segment.renditions).selectinload(SegmentRendition.rendition))
    )
    segment = session.scalars(query).one_or_none()
    if segment is None or segment.status in (SegmentStatus.OK, SegmentStatus.ERROR):
        return None
    if segment.attempts >= services.config.JOB_MAX_ATTEMPTS:
        # Earlier attempts died without recording an outcome (worker killed, ffmpeg hung): stop here.
        _record_failure(
            services, session, segment, TranscodeError(f"gave up after {segment.attempts} attempts that never finished")
        )
        return None
    if set(services.media.segment_temps(job.video_id, job.segment_id)) - set(leftovers):
        return None  # an attempt claimed it and started writing since we looked: it is alive
    for path in leftovers:
        path.unlink(missing_ok=True)
    if leftovers:
        log.warning(
            "video %s segment %s: removed %d temp file(s) of a dead attempt", job.video_id, job.segment_id, len(leftovers)
        )
    segment.status = SegmentStatus.PROCESSING
    segment.attempts += 1
    segment.started_at = utcnow()
    for state in segment.renditions:
        state.status = SegmentStatus.PROCESSING
    session.commit()
    return segment


def _transcode(services: Services, session: Session, segment: Segment) -> None:
    cfg = services.config
    media = services.media
    source = media.original(segment.video_id, segment.segment_id, segment.original_extension)
    # The upload probed it (and checked it decodes); rows from before that was stored are probed here.
    stored = segment.source_info
    info = SourceInfo.from_json(stored) if stored else ffmpeg.probe(source, timeout=cfg.PROBE_TIMEOUT, check_decode=False)
    states = sorted(segment.renditions, key=lambda s: s.rendition.position)
    plan = tuple(rendition_plan(s.rendition) for s in states)  # fixed at the video's creation, whatever this segment is
    finals = {r.name: media.file(segment.video_id, r.name, segment.segment_id, "mp4") for r in plan}
    stills = {kind: media.file(segment.video_id, kind, segment.segment_id, "jpg") for kind in ("thumbnails", "storyboard")}
    temps = {name: _prepared_temp(path) for name, path in [*finals.items(), *stills.items()]}
    # The same decode also writes the thumbnail and the storyboard strip.
    tile = ffmpeg.tile_height(plan[-1].width, plan[-1].height, ffmpeg.STORYBOARD_TILE_WIDTH)  # as playback.storyboard says
    pictures = ffmpeg.Pictures(
        temps["thumbnails"], temps["storyboard"], at=min(1.0, info.duration / 2), width=THUMBNAIL_WIDTH, tile_height=tile
    )
    try:
        ffmpeg.run(ffmpeg.transcode_argv(source, plan, temps, source=info, pictures=pictures), timeout=cfg.FFMPEG_TIMEOUT)
        # Every rung has the same frames; read their durations from the moov instead of launching ffprobe.
        tracks = track_durations(temps[plan[0].name].read_bytes())
        for name, final in [*finals.items(), *stills.items()]:
            commit_file(temps[name], final)
    finally:
        for temp in temps.values():
            temp.unlink(missing_ok=True)
    now = utcnow()
    lock_video(session, segment.video_id)
    for state, rendition in zip(states, plan, strict=True):
        state.status = SegmentStatus.OK
        state.size = finals[rendition.name].stat().st_size
    segment.duration_ticks = _ticks(tracks["vide"], VIDEO_TIMESCALE)
    segment.audio_duration_ticks = None  # whole AAC frames, fixed by the packager with the audio start
    segment.status = SegmentStatus.OK
    segment.error = None
    segment.ready_at = now
    _bump(session, segment.video_id)
    if segment.segment_id == 0:  # segment 0's picture is the video's while it is live
        session.execute(
            update(Video).where(Video.id == segment.video_id, Video.thumbnail_segment_id.is_(None)).values(thumbnail_segment_id=0)
        )
    session.commit()
    if not cfg.KEEP_ORIGINALS:
        # The renditions are committed and the HIGH one is the archive; a failed segment keeps its original.
        source.unlink(missing_ok=True)


def _ticks(track: tuple[int, int], rate: int) -> int:
    duration, timescale = track
    return duration * rate // timescale


def _bump(session: Session, video_id: int) -> None:
    """Move the video's revision on, so cached playlists and JSON are never answered stale."""
    session.execute(update(Video).where(Video.id == video_id).values(revision=Video.revision + 1))


def _prepared_temp(final: Path) -> Path:
    final.parent.mkdir(parents=True, exist_ok=True)
    return temp_path_for(final)


def _record_failure(services: Services, session: Session, segment: Segment, exc: Exception) -> None:
    """Keep the reason; retry later with backoff, or give up after JOB_MAX_ATTEMPTS.

    A full disk is the machine's fault, not the segment's: it spends no attempt and is retried at the
    longest backoff until the operator frees space, so no segment is lost to it.
    """
    cfg = services.config
    session.rollback()
    segment = session.get(Segment, segment.id, populate_existing=True)  # type: ignore[assignment]
    if segment is None or segment.status is SegmentStatus.OK:
        return  # gone, or a duplicate delivery of this job already finished it
    lock_video(session, segment.video_id)
    reason = str(exc)  # for ffmpeg: "exited with N" or "timed out", then the stderr tail
    segment.error = f"{type(exc).__name__}: {reason}"[-4000:]
    full = disk_full(exc)
    if full:
        segment.attempts -= 1
    final = not full and (segment.attempts >= cfg.JOB_MAX_ATTEMPTS or not _retryable(exc))
    status = SegmentStatus.ERROR if final else SegmentStatus.NIL
    segment.status = status
    segment.queued_at = None
    retry_in = cfg.RETRY_BACKOFF * 2 ** ((cfg.JOB_MAX_ATTEMPTS if full else segment.attempts) - 1)
    if final:
        segment.failed_at = utcnow()
    else:
        segment.retry_at = utcnow() + timedelta(seconds=retry_in)
    for state in segment.renditions:
        state.status = status
    _bump(session, segment.video_id)
    session.commit()
    where = f"video {segment.video_id} segment {segment.segment_id}"
    if full:
        log.error("%s: disk full, retrying in %.1fs without spending an attempt: %s", where, retry_in, segment.error)
    else:
        failed = "failed for good" if final else "failed"
        log.warning("%s attempt %d %s: %s", where, segment.attempts, failed, segment.error)
    if final:
        package_pending(services, session, segment.video_id)
        maybe_finish(services, session, segment.video_id)


def disk_full(exc: Exception) -> bool:
    """Whether Python or ffmpeg ran out of space (ENOSPC or a quota)."""
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    return isinstance(exc, FFmpegError) and any(
        s in exc.stderr_tail for s in (os.strerror(errno.ENOSPC), os.strerror(errno.EDQUOT))
    )


def _retryable(exc: Exception) -> bool:
    # Undecodable media fails the same way every time; ffmpeg crashes, timeouts and I/O errors may not.
    return isinstance(exc, (FFmpegError, OSError))


def _video_exists(session: Session, video_id: int) -> bool:
    return session.scalar(select(Video.id).where(Video.id == video_id)) is not None


def package_pending(services: Services, session: Session, video_id: int) -> int:
    """Remux every transcoded segment whose place on the timeline is now decided; return how many."""
    with _PACKAGING[video_id % len(_PACKAGING)]:
        # The video row lock serialises packagers across processes (MySQL); the thread lock within one.
        if not lock_video(session, video_id):
            session.rollback()
            return 0
        state = playlist_state(session, video_id)
        assert state is not None
        pending = {s.segment_id: s for s in _unpackaged(session, video_id)}
        done = 0
        for entry in packagable(state, time.time(), services.config.GAP_TIMEOUT):
            segment = pending.get(entry.segment_id)
            if segment is not None:
                _package(services, segment, entry, follows=not entry.discontinuity)
                done += 1
        if done:
            _bump(session, video_id)
        session.commit()
    return done


_PACKAGING = [threading.Lock() for _ in range(64)]


def _unpackaged(session: Session, video_id: int) -> list[Segment]:
    query = (
        select(Segment)
        .where(Segment.video_id == video_id, Segment.status == SegmentStatus.OK, Segment.packaged_at.is_(None))
        .options(selectinload(Segment.renditions).selectinload(SegmentRendition.rendition))
    )
    return list(session.scalars(query))


def _package(services: Services, segment: Segment, entry: Published, *, follows: bool) -> None:
    """Write the segment's CMAF fragments and TS at its timeline position (one remux, never an encode).

    The audio keeps the whole AAC frames the timeline gave it (publish.audio_span), from its audio start.

    `follows`: the segment comes right after the one before it in the playlists (no discontinuity),
    so its TS continuity counters continue that segment's.
    """
    media, vid, k = services.media, segment.video_id, segment.segment_id
    names = [s.rendition.name for s in sorted(segment.renditions, key=lambda s: s.rendition.position)]
    fragments = [_prepared_temp(media.file(vid, name, k, "m4s")) for name in names]
    streams = [_prepared_temp(media.file(vid, name, k, "ts")) for name in names]
    audio = _prepared_temp(media.file(vid, "audio", k, "m4s"))
    try:
        mp4s = [media.file(vid, name, k, "mp4") for name in names]
        frames = entry.audio_duration_ticks // AAC_FRAME
        argv = ffmpeg.package_argv(mp4s, fragments, streams, audio, entry.start_ticks, entry.audio_start_ticks, frames)
        ffmpeg.run(argv, timeout=services.config.FFMPEG_TIMEOUT)
        for folder, temp in [*zip(names, fragments, strict=True), ("audio", audio)]:
            _write_fragment(media.rendition_dir(vid, folder), k, temp.read_bytes())
        for name, temp in zip(names, streams, strict=True):
            previous = media.file(vid, name, k - 1, "ts") if follows and k else None
            _write_ts(media.file(vid, name, k, "ts"), temp.read_bytes(), previous)
    finally:
        for temp in [*fragments, *streams, audio]:
            temp.unlink(missing_ok=True)
    segment.start_ticks = entry.start_ticks
    segment.audio_start_ticks = entry.audio_start_ticks
    segment.audio_duration_ticks = entry.audio_duration_ticks
    segment.packaged_at = utcnow()


def _write_ts(ts: Path, data: bytes, previous: Path | None) -> None:
    if previous is not None and previous.exists():
        data = continue_counters(data, next_counters(previous.read_bytes()))
    atomic_write(ts, data)


def _write_fragment(folder: Path, segment_id: int, data: bytes) -> None:
    """Write init.mp4 once (identical for every segment of a track) and the media segment NNNNNN.m4s."""
    init, media_segment = ffmpeg.split_init(data)
    if not (folder / "init.mp4").exists():
        atomic_write(folder / "init.mp4", init)
    atomic_write(folder / f"{segment_id:06d}.m4s", media_segment)
