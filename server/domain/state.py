"""Rows as the pure layers see them: a video's rows -> playlists.VideoView, a rendition row -> its plan."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from server.core.clock import epoch
from server.core.playlists.model import Parts, RenditionView, SegmentView, SegmentViewStatus, VideoView
from server.core.states import SegmentState, VideoType
from server.core.transcode.ladder import VIDEO_FPS, RenditionPlan, Rung, plan_rung
from server.infra.models import Rendition, Segment, Video

_VIEW: dict[SegmentState, SegmentViewStatus] = {
    SegmentState.ENCODED: "READY",
    SegmentState.PACKAGED: "READY",
    SegmentState.FAILED: "FAILED",
}


def segment_view(segment: Segment) -> SegmentView:
    return SegmentView(
        segment_id=segment.segment_id,
        status=_VIEW.get(segment.status, "PENDING"),
        uploaded_at=epoch(segment.uploaded_at),
        ready_at=epoch(segment.ready_at),
        failed_at=epoch(segment.failed_at),
        start_ticks=segment.start_ticks,
        duration_ticks=segment.duration_ticks,
        audio_start_ticks=segment.audio_start_ticks,
        audio_duration_ticks=segment.audio_duration_ticks,
        packaged=segment.status is SegmentState.PACKAGED,
        parts=Parts.from_json(segment.parts) if segment.parts and segment.status is SegmentState.PACKAGED else None,
    )


def rendition_plan(row: Rendition) -> RenditionPlan:
    """Return what the encoder is told for every segment of this rendition: its row, fixed at the video's creation.

    Rows written before the frame rate was stored plan at VIDEO_FPS, as the encoder then did.
    """
    rung = Rung(row.name, row.width, row.height, row.video_bitrate, row.audio_bitrate)
    return plan_rung(rung, row.frame_rate or VIDEO_FPS)


def _rendition_view(row: Rendition) -> RenditionView:
    plan = rendition_plan(row)  # what the encoder is told: the same from the first answer to the last
    return RenditionView(
        name=row.name,
        width=row.width,
        height=row.height,
        bandwidth=row.bandwidth,
        video_bandwidth=row.video_bitrate,
        codecs=plan.video_codecs,
        frame_rate=plan.fps,
    )


def arriving_views(video: Video) -> list[SegmentView]:
    """Return the segments being uploaded but not stored yet: uploaded at their request's start, failed if never stored.

    Several uploads of one id (a phone's retries) count from the earliest start until the last expiry.
    """
    stored = {s.segment_id for s in video.segments}
    spans: dict[int, tuple[datetime, datetime]] = {}
    for a in video.arrivals:
        if a.segment_id in stored:
            continue
        start, end = spans.get(a.segment_id, (a.started_at, a.expires_at))
        spans[a.segment_id] = (min(start, a.started_at), max(end, a.expires_at))
    return [SegmentView(k, "PENDING", uploaded_at=epoch(start), failed_at=epoch(end)) for k, (start, end) in spans.items()]


def to_view(video: Video, max_ahead: int) -> VideoView:
    """Return what the playlist layer needs to know of `video` (renditions, segments, arrivals loaded); MAX_SEGMENT_AHEAD."""
    return VideoView(
        video_id=video.id,
        title=video.title,
        created_at=epoch(video.created_at) or 0.0,
        renditions=tuple(_rendition_view(r) for r in video.renditions),
        segments=(*(segment_view(s) for s in video.segments), *arriving_views(video)),
        ended_at=epoch(video.ended_at),
        last_segment_id=video.last_segment_id,
        nominal_duration_ms=video.segment_duration_ms,
        is_vod=video.type is VideoType.VOD,
        audio_bandwidth=video.renditions[0].audio_bitrate if video.renditions else 128_000,
        max_ahead=max_ahead,
    )


def load_video(session: Session, video_id: int) -> Video | None:
    """Load `video_id`'s row fresh, with everything its playlists need (renditions, segments), or None if gone."""
    loaded = (selectinload(Video.renditions), selectinload(Video.segments), selectinload(Video.arrivals))
    query = select(Video).where(Video.id == video_id).options(*loaded)
    return session.scalars(query.execution_options(populate_existing=True)).one_or_none()


def load_view(session: Session, video_id: int, max_ahead: int) -> VideoView | None:
    """Load `video_id` with everything its playlists need, or None if it is gone."""
    video = load_video(session, video_id)
    return None if video is None else to_view(video, max_ahead)
