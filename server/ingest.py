"""Videos and segments arriving from phones: create, upload, end, rename, delete."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from server.config import Config
from server.errors import Conflict, InvalidInput, NotFound, UnprocessableMedia
from server.jobs import TRANSCODE_SEGMENT, SegmentJob
from server.jobs.queue import QueueUnavailable
from server.media.storage import UploadFile
from server.models import Rendition, Segment, SegmentRendition, SegmentStatus, Video, VideoStatus, VideoType
from server.playlists.model import MAX_SEGMENT_ID
from server.services import Services
from server.transcode.ffmpeg import probe
from server.transcode.ladder import SourceInfo, plan_ladder

log = logging.getLogger(__name__)

_DIGITS = re.compile(r"[0-9]+")
EXTENSIONS = frozenset({"mp4", "mov", "m4v", "3gp", "ts", "mkv", "webm"})
MAX_TITLE = 200


def utcnow() -> datetime:
    """Return naive UTC now, the form every timestamp column stores."""
    return datetime.now(UTC).replace(tzinfo=None)


def get_video(session: Session, video_id: int, *, lock: bool = False, fresh: bool = False) -> Video:
    """Return the video (re-read when `fresh`); with `lock`, after taking its row lock (lock_video)."""
    if lock and not lock_video(session, video_id):
        raise NotFound(f"video {video_id} does not exist")
    query = select(Video).where(Video.id == video_id)
    if fresh or lock:  # what the lock protects must be read after it, not taken from the identity map
        query = query.execution_options(populate_existing=True)
    video = session.scalars(query).one_or_none()
    if video is None:
        raise NotFound(f"video {video_id} does not exist")
    return video


def lock_video(session: Session, video_id: int) -> bool:
    """Take the video's row lock; every transaction that writes a video's rows takes it first (no deadlocks).

    Held until commit or rollback; checks made after it see the latest rows and stay true until then.
    SQLite ignores FOR UPDATE, and pysqlite opens a transaction only at its first write: there a no-op
    UPDATE of the row takes the database's write lock at this point instead (other writers wait for it,
    up to the engine's busy timeout), so the same check-then-write code is race-free on both backends.
    """
    if session.get_bind().dialect.name == "sqlite":
        videos = Video.__table__
        claimed = session.execute(update(videos).where(videos.c.id == video_id).values(revision=videos.c.revision))
        return claimed.rowcount == 1  # type: ignore[attr-defined]
    return session.scalar(select(Video.id).where(Video.id == video_id).with_for_update()) is not None


def validate_title(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput("title", "a non-empty string is required")
    if not _is_unicode_text(value):
        raise InvalidInput("title", "must be Unicode text: a lone UTF-16 surrogate (\\ud800-\\udfff) cannot be stored")
    if len(value) > MAX_TITLE:
        raise InvalidInput("title", f"at most {MAX_TITLE} characters")
    return value.strip()


def _is_unicode_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def create_video(services: Services, session: Session, title: str) -> Video:
    """Create a LIVE video with the configured ladder."""
    video = Video(
        title=title,
        created_at=utcnow(),
        type=VideoType.LIVE,
        status=VideoStatus.EMPTY,
        segment_duration_ms=services.config.SEGMENT_DURATION_MS,
        revision=0,
    )
    # The ladder is fixed here for the video's life: every segment is encoded to exactly these rows.
    for position, plan in enumerate(plan_ladder(services.ladder), start=1):
        video.renditions.append(
            Rendition(
                position=position,
                name=plan.name,
                width=plan.width,
                height=plan.height,
                video_bitrate=plan.video_bitrate,
                audio_bitrate=plan.audio_bitrate,
                codecs=plan.codecs,
                frame_rate=plan.fps,
            )
        )
    session.add(video)
    session.commit()
    log.info("video %s created: %r", video.id, title)
    return video


def parse_segment_id(value: str | None, field: str = "segment_id") -> int:
    """Parse a segment id from any route: ASCII digits (Retrofit may quote them), at most MAX_SEGMENT_ID."""
    if value is None:
        raise InvalidInput(field, "missing")
    text = value.strip().strip('"')
    # str.isdigit() is true for other scripts' digits too ("١"); media names and the app use ASCII only.
    if not _DIGITS.fullmatch(text):
        raise InvalidInput(field, f"must be a non-negative integer of ASCII digits, got {value[:20]!r}")
    if len(text.lstrip("0")) > len(str(MAX_SEGMENT_ID)) or int(text) > MAX_SEGMENT_ID:
        raise InvalidInput(field, f"at most {MAX_SEGMENT_ID} (media names have six digits), got {value[:20]!r}")
    return int(text)


def parse_extension(value: str | None) -> str:
    if value is None:
        raise InvalidInput("original_extension", "missing")
    ext = value.strip().lower().lstrip(".")
    if ext not in EXTENSIONS:
        raise InvalidInput("original_extension", f"must be one of {', '.join(sorted(EXTENSIONS))}")
    return ext


@dataclass(frozen=True)
class Accepted:
    segment: Segment
    created: bool


def accept_segment(services: Services, session: Session, video: Video, segment_id: int, ext: str, upload: UploadFile) -> Accepted:
    """Store an uploaded segment durably and record it, or explain why not; the caller discards `upload` on error."""
    existing = _admissible(session, video, segment_id, upload, lock=False)
    if existing is not None and existing.sha256 == upload.sha256:
        upload.discard()
        return Accepted(existing, created=False)  # a retry after a lost response
    # ffprobe runs before the video's row lock is taken: workers wait on that lock.
    info = probe(upload.path, timeout=services.config.PROBE_TIMEOUT)
    check_source_limits(info, services.config)
    if not lock_video(session, video.id):
        raise NotFound(f"video {video.id} does not exist")
    video = get_video(session, video.id, fresh=True)
    existing = _admissible(session, video, segment_id, upload, lock=True)  # again, now that nothing can change
    if existing is not None and existing.sha256 == upload.sha256:
        upload.discard()
        return Accepted(existing, created=False)
    segment = existing or Segment(video_id=video.id, segment_id=segment_id)
    _fill(segment, ext, upload, info)
    if existing is None:
        segment.renditions = [SegmentRendition(rendition_id=r.id) for r in video.renditions]
        session.add(segment)
    for state in segment.renditions:
        state.status, state.size = SegmentStatus.NIL, None
    old_original = services.media.original(video.id, segment_id, existing.original_extension) if existing else None
    # The row is flushed first: its unique key is the lock that keeps two concurrent
    # uploads of the same segment from both renaming into place.
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        raise Conflict(f"segment {segment_id} is being uploaded concurrently; retry") from None
    final = services.media.original(video.id, segment_id, ext)
    upload.commit(final)
    try:
        _touch_video(session, video)
        session.commit()
    except Exception:
        if existing is None:
            final.unlink(missing_ok=True)
        raise
    if old_original is not None and old_original != final:
        old_original.unlink(missing_ok=True)
    publish(services, session, segment, live=video.type is VideoType.LIVE)
    log.info("video %s segment %s stored (%d bytes, %d ms)", video.id, segment_id, segment.size, segment.duration_ms)
    return Accepted(segment, created=True)


def check_source_limits(info: SourceInfo, config: Config) -> None:
    """Refuse (422, before any encode) a segment longer or larger than a phone's ever is."""
    if info.duration > config.MAX_SEGMENT_SECONDS:
        raise UnprocessableMedia(
            f"segment lasts {info.duration:.1f} s, more than MAX_SEGMENT_SECONDS ({config.MAX_SEGMENT_SECONDS:g} s)"
        )
    if info.width * info.height > config.MAX_SOURCE_PIXELS:
        raise UnprocessableMedia(
            f"frame of {info.width}x{info.height} has more pixels than MAX_SOURCE_PIXELS ({config.MAX_SOURCE_PIXELS})"
        )


def _admissible(session: Session, video: Video, segment_id: int, upload: UploadFile, *, lock: bool) -> Segment | None:
    """Return the stored segment this upload repeats or replaces (a failed one), or raise Conflict."""
    if video.last_segment_id is not None and segment_id > video.last_segment_id:
        raise Conflict(f"segment_id {segment_id} is after the last segment ({video.last_segment_id}) of this ended video")
    existing = _find_segment(session, video.id, segment_id, lock=lock)
    if existing is not None and existing.sha256 != upload.sha256 and existing.status is not SegmentStatus.ERROR:
        raise Conflict(f"segment {segment_id} was already uploaded with different content")
    return existing


def _find_segment(session: Session, video_id: int, segment_id: int, *, lock: bool = False) -> Segment | None:
    query = select(Segment).where(Segment.video_id == video_id, Segment.segment_id == segment_id)
    return session.scalars(query.with_for_update() if lock else query).one_or_none()


def find_segment(session: Session, video_id: int, segment_id: int) -> Segment:
    segment = _find_segment(session, video_id, segment_id)
    if segment is None:
        raise NotFound(f"segment {segment_id} of video {video_id} does not exist")
    return segment


def _fill(segment: Segment, ext: str, upload: UploadFile, info: SourceInfo) -> None:
    segment.original_extension = ext
    segment.size = upload.size
    segment.sha256 = upload.sha256
    segment.duration_ms = round(info.duration * 1000)
    segment.source_info = info.to_json()
    segment.status = SegmentStatus.NIL
    segment.attempts = 0
    segment.error = None
    segment.uploaded_at = utcnow()
    segment.queued_at = segment.started_at = segment.retry_at = segment.ready_at = segment.failed_at = None


def _touch_video(session: Session, video: Video) -> None:
    values: dict[str, object] = {"revision": Video.revision + 1}
    if video.status is VideoStatus.EMPTY:
        values["status"] = VideoStatus.UPLOADING
    session.execute(update(Video).where(Video.id == video.id).values(**values))


def publish(services: Services, session: Session, segment: Segment, *, live: bool) -> bool:
    """Hand a stored segment to the job queue (live ones first); on failure leave it for the reaper."""
    job = SegmentJob(segment.video_id, segment.segment_id)
    now = utcnow()
    try:
        assert services.queue is not None, "no job queue attached"
        services.queue.submit(TRANSCODE_SEGMENT, job.encode(), unique=job.unique, high_priority=live)
    except QueueUnavailable as exc:
        log.warning("video %s segment %s not queued, the reaper will retry: %s", job.video_id, job.segment_id, exc)
        session.execute(update(Segment).where(Segment.id == segment.id).values(queued_at=None))
        session.commit()
        return False
    session.execute(update(Segment).where(Segment.id == segment.id).values(queued_at=now))
    session.commit()
    return True


def end_video(session: Session, video_id: int, last_segment_id: int) -> Video:
    """Record the end of the recording; repeating the same call is harmless."""
    video = get_video(session, video_id, lock=True)
    if video.last_segment_id is not None:
        if video.last_segment_id != last_segment_id:
            raise Conflict(f"video already ended at segment {video.last_segment_id}, not {last_segment_id}")
        session.rollback()
        return video
    highest = session.scalar(
        select(Segment.segment_id).where(Segment.video_id == video_id).order_by(Segment.segment_id.desc()).limit(1)
    )
    if highest is not None and highest > last_segment_id:
        raise Conflict(f"segment {highest} is already stored, after last_segment_id {last_segment_id}")
    video.last_segment_id = last_segment_id
    video.ended_at = utcnow()
    video.revision += 1
    session.commit()
    log.info("video %s ended at segment %s", video_id, last_segment_id)
    return video


def rename_video(session: Session, video_id: int, title: str) -> Video:
    video = get_video(session, video_id, lock=True)
    video.title = title
    video.revision += 1
    session.commit()
    return video


def delete_video(services: Services, session: Session, video_id: int) -> None:
    """Delete a video's rows, then every file it owns (workers re-check before and after writing)."""
    video = get_video(session, video_id, lock=True)
    session.delete(video)
    session.commit()
    services.media.remove_video(video_id)
    log.info("video %s deleted", video_id)
