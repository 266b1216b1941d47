"""The Android app's requests, byte for byte as Retrofit 1.x and OkHttp send them (built by server/ops/phone.py), and its strict keys."""

from __future__ import annotations

from server.ops.phone import new_video_body, segment_upload

__all__ = ["SEGMENT_KEYS", "VIDEO_KEYS", "new_video_body", "segment_upload"]

VIDEO_KEYS = {
    "video_id",
    "title",
    "created_at",
    "type",
    "status",
    "segment_count",
    "segment_duration",
    *(f"repr_{i}_{k}" for i in (1, 2, 3) for k in ("name", "bandwidth", "width", "height")),
    "uri_mpd",
    "uri_m3u8",
    "uri_thumbnail",
    "base_url",
}
SEGMENT_KEYS = {
    "video_id",
    "segment_id",
    "original_path",
    "original_extension",
    "media_mpd",
    "media_m3u8",
    "status",
    "repr_1_status",
    "repr_2_status",
    "repr_3_status",
}
