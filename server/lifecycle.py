"""A video's life: from rows to the playlist layer's VideoState, and the one-time LIVE -> VOD switch."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session, selectinload

from server.models import Rendition, Segment, SegmentStatus, Video, VideoStatus, VideoType
from server.playlists.model import RenditionInfo, SegmentState, VideoState
from server.playlists.publish import ready_for_vod
from server.services import Services
from server.transcode.ladder import VIDEO_FPS, Rung, plan_rung
from server.transcode.ladder import Rendition as RenditionPlan

log = logging.getLogger(__name__)


def epoch(value: datetime | None) -> float | None:
    """Return a naive-UTC column value as epoch seconds."""
    return None if value is None else value.replace(tzinfo=UTC).timestamp()


def _segment_state(segment: Segment) -> SegmentState:
    status = {SegmentStatus.OK: "READY", SegmentStatus.ERROR: "FAILED"}.get(segment.status, "PENDING")
    return SegmentState(
        segment_id=segment.segment_id,
        status=status,  # type: ignore[arg-type]
        uploaded_at=epoch(segment.uploaded_at),
        ready_at=epoch(segment.ready_at),
        failed_at=epoch(segment.failed_at),
        start_ticks=segment.start_ticks,
        duration_ticks=segment.duration_ticks,
        audio_start_ticks=segment.audio_start_ticks,
        audio_duration_ticks=segment.audio_duration_ticks,
        packaged=segment.packaged_at is not None,
    )


def rendition_plan(row: Rendition) -> RenditionPlan:
    """Return what the encoder is told for every segment of this rendition: its row, fixed at the video's creation.

    Rows written before the frame rate was stored plan at VIDEO_FPS, as the encoder then did.
    """
    rung = Rung(row.name, row.width, row.height, row.video_bitrate, row.audio_bitrate)
    return plan_rung(rung, row.frame_rate or VIDEO_FPS)


def _rendition_info(row: Rendition) -> RenditionInfo:
    plan = rendition_plan(row)  # what the encoder is told: the same from the first answer to the last
    return RenditionInfo(
        name=row.name,
        width=row.width,
        height=row.height,
        bandwidth=row.bandwidth,
        video_bandwidth=row.video_bitrate,
        codecs=plan.video_codecs,
        frame_rate=plan.fps,
    )


def to_state(video: Video) -> VideoState:
    """Return what the playlist layer needs to know of `video` (renditions and segments loaded)."""
    renditions = tuple(_rendition_info(r) for r in video.renditions)
    return VideoState(
        video_id=video.id,
        title=video.title,
        created_at=epoch(video.created_at) or 0.0,
        renditions=renditions,
        segments=tuple(_segment_state(s) for s in video.segments),
        ended_at=epoch(video.ended_at),
        last_segment_id=video.last_segment_id,
        nominal_duration_ms=video.segment_duration_ms,
        is_vod=video.type is VideoType.VOD,
        audio_bandwidth=video.renditions[0].audio_bitrate if video.renditions else 128_000,
    )


def playlist_state(session: Session, video_id: int) -> VideoState | None:
    """Load `video_id` with everything its playlists need, or None if it is gone."""
    query = select(Video).where(Video.id == video_id).options(selectinload(Video.renditions), selectinload(Video.segments))
    video = session.scalars(query.execution_options(populate_existing=True)).one_or_none()
    return None if video is None else to_state(video)


def maybe_finish(services: Services, session: Session, video_id: int) -> bool:
    """Switch the video to VOD if it is over; True only for the one call that made the switch."""
    state = playlist_state(session, video_id)
    # Not yet when the last remux is still to come: whoever does it calls us again.
    if state is None or not ready_for_vod(state, time.time(), services.config.GAP_TIMEOUT):
        return False
    ready = [s.segment_id for s in state.segments if s.status == "READY"]
    middle = _middle(ready, state.last_segment_id or 0)
    status = VideoStatus.OK if ready else VideoStatus.ERROR
    # The WHERE type=LIVE makes the switch happen exactly once, whoever races here.
    result = session.execute(
        update(Video)
        .where(Video.id == video_id, Video.type == VideoType.LIVE)
        .values(
            type=VideoType.VOD,
            status=status,
            finished_at=datetime.now(UTC).replace(tzinfo=None),
            thumbnail_segment_id=middle,
            revision=Video.revision + 1,
        )
    )
    session.commit()
    if result.rowcount == 1:  # type: ignore[attr-defined]
        log.info("video %s finished: VOD with %d ready segment(s) of %d", video_id, len(ready), (state.last_segment_id or 0) + 1)
        return True
    return False


def _middle(ready: list[int], last: int) -> int | None:
    """Return the ready segment nearest the middle of the recording (its thumbnail becomes the video's)."""
    if not ready:
        return None
    return min(ready, key=lambda k: (abs(k - last / 2), k))
