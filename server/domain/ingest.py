"""Videos and segments arriving from phones: create, upload, end, rename, delete."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from server.config import Config
from server.core.clock import epoch
from server.core.doors import may_watch
from server.core.errors import Conflict, InvalidInput, NotFound, UnprocessableMedia
from server.core.playlists.model import MAX_SEGMENT_ID
from server.core.playlists.publish import decided
from server.core.states import SegmentState, VideoStatus, VideoType, Visibility
from server.core.transcode.ffmpeg import probe
from server.core.transcode.ladder import SourceInfo, plan_ladder
from server.core.transcode.mpegts import timestamps_go_back
from server.domain import eventlog, keys, lifecycle, publishing, transitions
from server.domain.changes import Change, video_change
from server.domain.state import load_view
from server.infra import metrics
from server.infra.models import RecordingKey, Rendition, Segment, SegmentArrival, SegmentRendition, Video
from server.infra.services import Services
from server.store.local import UploadFile

log = logging.getLogger(__name__)

_DIGITS = re.compile(r"[0-9]+")
EXTENSIONS = frozenset({"mp4", "mov", "m4v", "3gp", "ts", "mkv", "webm"})
MAX_TITLE = 200


def get_video(session: Session, video_id: int) -> Video:
    """Return the video as the database has it now, or raise NotFound."""
    query = select(Video).where(Video.id == video_id).execution_options(populate_existing=True)
    video = session.scalars(query).one_or_none()
    if video is None:
        raise NotFound(f"video {video_id} does not exist")
    return video


def get_recording(session: Session, video_id: int, key_id: int | None) -> Video:
    """get_video for the recording routes (upload, end): a video recorded under another key, or under a key when
    the request has none (and the reverse), is as missing as one never created (docs/api.md "Doors")."""
    video = get_video(session, video_id)
    if video.key_id != key_id:
        raise NotFound(f"video {video_id} does not exist")
    return video


def get_watchable(session: Session, video_id: int, key_id: int | None) -> Video:
    """get_video for the JSON read routes: a video this request may not watch (core.doors.may_watch: a private
    one, but under its own key) is as missing as one never created."""
    video = get_video(session, video_id)
    if not may_watch(video.visibility.value, video.key_id, key_id):
        raise NotFound(f"video {video_id} does not exist")
    return video


# Bidirectional embeddings, overrides and isolates (U+202A-202E, U+2066-2069): one in a title reverses how
# every reader shows what follows it (the dashboard, the Android app, the MPD's <Title>, logs, a terminal),
# so "invoice\u202egpj.exe" reads "invoiceexe.jpg". Dropped here, where a title is made, so no reader has to
# defend itself; dropped rather than refused, so an app that sends one still creates its video.
# Right-to-left text itself needs none of them.
_BIDI_CONTROLS = dict.fromkeys([*range(0x202A, 0x202F), *range(0x2066, 0x206A)])


def validate_title(value: object) -> str:
    if isinstance(value, str):
        value = value.translate(_BIDI_CONTROLS)
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


def create_video(services: Services, session: Session, title: str, key: RecordingKey | None = None) -> Video:
    """Create a LIVE video with the configured ladder, recorded under `key` (None: without one).

    A keyed video takes its key's visibility; the key's row stays locked until the commit, so creates racing
    for its last live slot (--max-live) are counted one after the other.
    """
    now = services.clock.now()
    if key is not None:
        key = keys.hold_live_slot(session, key.id)
    video = Video(
        title=title,
        key_id=None if key is None else key.id,
        visibility=Visibility.PUBLIC if key is None else key.visibility,
        created_at=now,
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
    session.flush()
    eventlog.record(session, "video.created", at=now, video_id=video.id, title=title)
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


def accept_segment(
    services: Services,
    session: Session,
    video: Video,
    segment_id: int,
    ext: str,
    upload: UploadFile,
    *,
    started: float | None = None,
    started_at: datetime | None = None,
    key: RecordingKey | None = None,
) -> Accepted:
    """Store an uploaded segment durably and record it, or explain why not; the caller discards `upload` on error.

    Under a recording key with a quota, new bytes that would take the key past it are refused (403) before
    they are stored; the same bytes again (a retry after a lost answer) are answered from the stored segment.

    `started` is the request's start (time.monotonic()): the segment keeps how long its upload took,
    from then until it was stored (the dashboard's upload ratio). `started_at` is the same instant on the
    service's clock: the segment arrived then, for the skip rule (record_arrival), however long its probe waits.
    """
    existing = _admissible(session, video, segment_id, upload, services.config.MAX_SEGMENT_AHEAD)
    if existing is not None and existing.sha256 == upload.sha256:
        upload.discard()
        return Accepted(_count_duplicate(services, session, video.id, segment_id), created=False)  # a lost response
    if key is not None:
        keys.check_quota(session, key, upload.size)
    session.rollback()
    arrival = record_arrival(services, session, video.id, segment_id, started_at)
    try:
        return _probe_and_store(services, session, video, segment_id, ext, upload, started, arrival)
    except BaseException:
        drop_arrival(session, arrival)
        raise


def _probe_and_store(
    services: Services,
    session: Session,
    video: Video,
    segment_id: int,
    ext: str,
    upload: UploadFile,
    started: float | None,
    arrival: Arrival | None,
) -> Accepted:
    """Probe the upload, then store it under the video's lock: the second half of accept_segment."""
    # ffprobe runs before the video's row lock is taken: workers wait on that lock.
    info = probe(upload.path, timeout=services.config.PROBE_TIMEOUT)
    check_source_limits(info, services.config)
    check_one_piece(upload.path)
    final = services.media.original(video.id, segment_id, ext)
    old_original = None
    with video_change(session, video.id, services.clock) as change:
        video = change.video
        # Every path from here stores the segment or finds it stored: its arrivals are over.
        session.execute(
            delete(SegmentArrival).where(SegmentArrival.video_id == video.id, SegmentArrival.segment_id == segment_id)
        )
        existing = _admissible(session, video, segment_id, upload, services.config.MAX_SEGMENT_AHEAD)  # again, locked
        if existing is not None and existing.sha256 == upload.sha256:
            upload.discard()
            existing.duplicates += 1
            return Accepted(existing, created=False)
        segment = existing or Segment(video_id=video.id, segment_id=segment_id)
        if existing is None:
            segment.status = SegmentState.RECEIVED
            segment.renditions = [SegmentRendition(rendition_id=r.id, status=SegmentState.RECEIVED) for r in video.renditions]
            session.add(segment)
            change.event("segment.received", segment=segment_id, size=upload.size)
        else:  # a FAILED segment uploaded again with new bytes: its life starts over
            old_original = services.media.original(video.id, segment_id, existing.original_extension)
            transitions.move(change, segment, SegmentState.RECEIVED, size=upload.size, reupload=True)
        _fill(segment, ext, upload, info, arrival.arrived(change.now) if arrival else change.now)
        for rung in segment.renditions:
            rung.size = None
        if video.status is VideoStatus.EMPTY:
            video.status = VideoStatus.UPLOADING
            change.event("video.uploading")
        # The row is flushed first: its unique key is the lock that keeps two concurrent
        # uploads of the same segment from both storing.
        try:
            session.flush()
        except IntegrityError:
            raise Conflict(f"segment {segment_id} is being uploaded concurrently; retry") from None
        # The object is whole or absent. Once stored it stays whatever the database says: a COMMIT whose
        # answer was lost (MariaDB gone mid-COMMIT) may have taken effect, and the phone's retry of the
        # same bytes is then answered 2xx from the row. If it did not, the retry stores its own copy.
        services.media.put(final, upload.finished())
        upload.discard()
        segment.upload_ms = None if started is None else round((time.monotonic() - started) * 1000)
    if old_original is not None and old_original != final:
        services.media.discard(old_original)
    metrics.upload_stored(upload.size, None if started is None else time.monotonic() - started, info.duration)
    lifecycle.submit(services, session, video.id, segment_id)
    log.info("video %s segment %s stored (%d bytes, %d ms)", video.id, segment_id, upload.size, round(info.duration * 1000))
    return Accepted(_find_segment(session, video.id, segment_id) or segment, created=True)


ARRIVAL_GRACE = 30.0  # seconds past BODY_READ_TIMEOUT + PROBE_TIMEOUT: the database and the disk, under load


@dataclass(frozen=True)
class Arrival:
    """A recorded arrival (a SegmentArrival row): when the upload began, and until when that counts."""

    id: int
    started_at: datetime
    expires_at: datetime

    def arrived(self, now: datetime) -> datetime:
        """Return the segment's upload time when stored at `now`: the request's start, unless the arrival expired."""
        return self.started_at if now <= self.expires_at else now


def record_arrival(
    services: Services, session: Session, video_id: int, segment_id: int, started_at: datetime | None
) -> Arrival | None:
    """Record, before the probe, that an upload of `segment_id` began at `started_at`: the live list waits for it.

    The skip rule then counts the segment as uploaded at its request's start, not at its commit, which
    ffprobe queued for the CPU can delay past the gap timeout (docs/architecture.md "What is published when"). None (the
    segment counts from its commit, as late) when the live list has already decided `segment_id`: a decision
    taken is never revised. The arrival counts until BODY_READ_TIMEOUT + PROBE_TIMEOUT + a grace after the
    start; a process that dies meanwhile leaves it to expire like a failed segment.
    """
    config = services.config
    now = services.clock.now()
    view = load_view(session, video_id, config.MAX_SEGMENT_AHEAD)
    if view is None:
        session.rollback()
        raise NotFound(f"video {video_id} does not exist")
    start = now if started_at is None else min(started_at, now)
    if view.is_vod or decided(view, segment_id, epoch(now) or 0.0, config.GAP_TIMEOUT):
        session.rollback()
        return None
    expires = start + timedelta(seconds=config.BODY_READ_TIMEOUT + config.PROBE_TIMEOUT + ARRIVAL_GRACE)
    # Arrivals left by processes that died: expired, they only say what the segments' absence says.
    session.execute(delete(SegmentArrival).where(SegmentArrival.video_id == video_id, SegmentArrival.expires_at < now))
    row = SegmentArrival(video_id=video_id, segment_id=segment_id, started_at=start, expires_at=expires)
    session.add(row)
    session.commit()
    return Arrival(row.id, start, expires)


def drop_arrival(session: Session, arrival: Arrival | None) -> None:
    """Delete a refused upload's arrival: its segment is missing again (kept until it expires if the database fails)."""
    if arrival is None:
        return
    try:
        session.rollback()
        session.execute(delete(SegmentArrival).where(SegmentArrival.id == arrival.id))
        session.commit()
    except SQLAlchemyError as exc:
        session.rollback()
        log.warning("arrival %s not deleted (%s): it expires at %s", arrival.id, exc, arrival.expires_at)


def _count_duplicate(services: Services, session: Session, video_id: int, segment_id: int) -> Segment:
    """Count one more upload of a stored segment's very bytes (a phone retrying after a lost answer).

    Not a state change: no event, and the revision (cache keys, playlists) stays where it is.
    """
    with video_change(session, video_id, services.clock):
        segment = _find_segment(session, video_id, segment_id)
        if segment is None:  # deleted meanwhile (an operator's retry of its video): the caller's 404 comes later
            raise NotFound(f"segment {segment_id} of video {video_id} does not exist")
        segment.duplicates += 1
    return segment


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


def check_one_piece(path: Path) -> None:
    """Refuse (422) a TS whose clock runs back: pieces concatenated probe as the first and encode as all of them."""
    jump = timestamps_go_back(path)
    if jump is not None:
        raise UnprocessableMedia(f"not one recording: {jump}")


def _admissible(session: Session, video: Video, segment_id: int, upload: UploadFile, ahead: int) -> Segment | None:
    """Return the stored segment this upload repeats or replaces (a failed one), or raise Conflict."""
    if video.last_segment_id is not None and segment_id > video.last_segment_id:
        raise Conflict(f"segment_id {segment_id} is after the last segment ({video.last_segment_id}) of this ended video")
    if video.last_segment_id is None:
        check_ahead(session, video.id, segment_id, ahead, "segment_id")
    existing = _find_segment(session, video.id, segment_id)
    if existing is not None and existing.sha256 != upload.sha256 and existing.status is not SegmentState.FAILED:
        raise Conflict(f"segment {segment_id} was already uploaded with different content")
    return existing


def check_ahead(session: Session, video_id: int, segment_id: int, ahead: int, field: str) -> None:
    """Refuse an id more than `ahead` past the highest stored one (past 0 before the first): a live stream's bound.

    A single stray id far ahead (a stranger's 999999) would otherwise become the stream's end: the live
    list skips up to it, the Android MPD's lastSegmentId jumps to it and the phone's own /video_end conflicts.
    """
    highest = _highest_segment(session, video_id)
    limit = (highest or 0) + ahead
    if segment_id > limit:
        stored = "0 (no segment is stored yet)" if highest is None else f"the highest stored segment, {highest}"
        raise Conflict(f"{field} {segment_id} is more than MAX_SEGMENT_AHEAD ({ahead}) past {stored}", field=field)


def _find_segment(session: Session, video_id: int, segment_id: int) -> Segment | None:
    query = select(Segment).where(Segment.video_id == video_id, Segment.segment_id == segment_id)
    return session.scalars(query.execution_options(populate_existing=True)).one_or_none()


def find_segment(session: Session, video_id: int, segment_id: int) -> Segment:
    segment = _find_segment(session, video_id, segment_id)
    if segment is None:
        raise NotFound(f"segment {segment_id} of video {video_id} does not exist")
    return segment


def _fill(segment: Segment, ext: str, upload: UploadFile, info: SourceInfo, now: datetime) -> None:
    segment.original_extension = ext
    segment.size = upload.size
    segment.sha256 = upload.sha256
    segment.duration_ms = round(info.duration * 1000)
    segment.source_info = info.to_json()
    segment.attempts = 0
    segment.error = None
    segment.uploaded_at = now
    segment.queued_at = segment.started_at = segment.retry_at = segment.ready_at = segment.failed_at = None


def end_video(services: Services, session: Session, video_id: int, last_segment_id: int) -> Video:
    """Record the end of the recording; repeating the same call is harmless."""
    with video_change(session, video_id, services.clock) as change:
        video = change.video
        if video.last_segment_id is not None:
            if video.last_segment_id != last_segment_id:
                raise Conflict(f"video already ended at segment {video.last_segment_id}, not {last_segment_id}")
            return video
        highest = _highest_segment(session, video_id)
        if highest is not None and highest > last_segment_id:
            raise Conflict(f"segment {highest} is already stored, after last_segment_id {last_segment_id}")
        check_ahead(session, video_id, last_segment_id, services.config.MAX_SEGMENT_AHEAD, "last_segment_id")
        video.last_segment_id = last_segment_id
        video.ended_at = change.now
        change.event("video.ended", last_segment_id=last_segment_id)
    log.info("video %s ended at segment %s", video_id, last_segment_id)
    return video


def end_stuck_video(services: Services, session: Session, video_id: int) -> Video:
    """End (an operator's act) a live video whose phone will never call /video_end, at its highest stored segment.

    Conflict when the video is not live and unended, or has no segment (delete it instead).
    """
    with video_change(session, video_id, services.clock) as change:
        video = change.video
        if video.type is not VideoType.LIVE or video.last_segment_id is not None:
            raise Conflict(f"video {video_id} is not live (it is {video.type.value}, or already ended)")
        highest = _highest_segment(session, video_id)
        if highest is None:
            raise Conflict(f"video {video_id} has no segment to end at; delete it instead")
        video.last_segment_id = highest
        video.ended_at = change.now
        change.event("video.ended", last_segment_id=highest, by="admin")
    log.info("video %s ended by an admin at segment %s", video_id, highest)
    return video


def _highest_segment(session: Session, video_id: int) -> int | None:
    query = select(Segment.segment_id).where(Segment.video_id == video_id).order_by(Segment.segment_id.desc()).limit(1)
    return session.scalar(query)


def rename_video(services: Services, session: Session, video_id: int, title: str) -> Video:
    with video_change(session, video_id, services.clock) as change:
        change.video.title = title
        change.event("video.renamed", title=title)
    if services.has_media:
        publishing.publish(services, session, video_id)  # the DASH MPD carries the title
    return change.video


def delete_video(services: Services, session: Session, video_id: int) -> None:
    """Delete a video's rows, then every file it owns (a worker that finishes later finds it gone)."""
    with video_change(session, video_id, services.clock) as change:
        session.delete(change.video)
        change.event("video.deleted")
    services.media.remove_video(video_id)
    log.info("video %s deleted", video_id)


def delete_abandoned(services: Services, session: Session, video_id: int) -> bool:
    """Delete a live video that never received a segment and was never ended; False if that changed meanwhile."""
    return delete_when(services, session, video_id, "abandoned before its first segment", _never_recorded)


def _never_recorded(change: Change) -> bool:
    first = change.session.scalar(select(Segment.id).where(Segment.video_id == change.video.id).limit(1))
    return change.video.type is VideoType.LIVE and change.video.last_segment_id is None and first is None


def delete_when(services: Services, session: Session, video_id: int, reason: str, due: Callable[[Change], bool]) -> bool:
    """Delete a video the server decided to delete (`reason`), rows then media, if `due` still holds under its row lock.

    The decision was taken without the lock (a reaper's query): a first segment, an end or an admin's pin that
    came meanwhile is seen here, and wins (False, nothing deleted; False too when the video is gone already).
    The `video.deleted` event carries `reason`, so webhooks and the dashboard say why. The media go after the
    commit, as far as the store answers (MediaStore.remove_video): a store that is down keeps the objects for
    the operator's purge, never the row, and never raises here.
    """
    try:
        with video_change(session, video_id, services.clock) as change:
            if not due(change):
                return False
            session.delete(change.video)
            change.event("video.deleted", reason=reason)
    except NotFound:
        return False
    services.media.remove_video(video_id)
    return True
