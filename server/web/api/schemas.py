"""The Android app's JSON objects: exactly these keys, all present (Jackson fails on any other)."""

from __future__ import annotations

from email.utils import format_datetime
from typing import Any

from server.core.states import SegmentState
from server.core.transcode.ladder import MIN_RUNGS
from server.infra.models import Segment, Video

LEGACY_RUNGS = MIN_RUNGS  # repr_1..3: every ladder has at least these (server/core/transcode/ladder.py)
URI_MPD = "manifest.mpd"
URI_M3U8 = "master.m3u8"


def video_json(video: Video) -> dict[str, Any]:
    body: dict[str, Any] = {
        "video_id": video.id,
        "title": video.title,
        # RFC 822 with "-0000", as the original Flask-RESTful server sent and Jackson parses.
        "created_at": format_datetime(video.created_at),
        "type": video.type.value,
        "status": video.status.value,
        "segment_count": video.segment_count,
        "segment_duration": video.segment_duration_ms,
    }
    for index in range(1, LEGACY_RUNGS + 1):
        rung = video.renditions[index - 1] if index <= len(video.renditions) else None
        body[f"repr_{index}_name"] = rung.name if rung else None
        body[f"repr_{index}_bandwidth"] = rung.bandwidth if rung else None
        body[f"repr_{index}_width"] = rung.width if rung else None
        body[f"repr_{index}_height"] = rung.height if rung else None
    body["uri_mpd"] = URI_MPD
    body["uri_m3u8"] = URI_M3U8
    body["uri_thumbnail"] = None if video.thumbnail_segment_id is None else f"thumbnails/{video.thumbnail_segment_id:06d}.jpg"
    body["base_url"] = f"/video_files/{video.id}"
    return body


def segment_json(segment: Segment) -> dict[str, Any]:
    by_position = {sr.rendition.position: sr.status for sr in segment.renditions}
    body: dict[str, Any] = {
        "video_id": segment.video_id,
        "segment_id": segment.segment_id,
        # An opaque name, never a server path.
        "original_path": f"{segment.name}.{segment.original_extension}",
        "original_extension": segment.original_extension,
        "media_mpd": f"{segment.name}.mp4",
        "media_m3u8": f"{segment.name}.ts",
        "status": segment.status.android,
    }
    for index in range(1, LEGACY_RUNGS + 1):
        body[f"repr_{index}_status"] = by_position.get(index, SegmentState.RECEIVED).android
    return body
