"""Playlists: pure decisions on what is published, and DASH/HLS/VTT rendering from Jinja2 templates.

No flask, no database, no clock: callers pass frozen VideoView snapshots and `now`.
"""

from server.core.playlists.model import (
    Published,
    RenditionView,
    SegmentView,
    StoryboardTiles,
    VideoView,
)
from server.core.playlists.publish import android_segments, is_finished, live_segments, stream_ended, vod_segments
from server.core.playlists.render import (
    AUDIO,
    HLS_LIVE,
    HLS_VOD,
    render_android_mpd,
    render_dash,
    render_hls_master,
    render_hls_media,
    render_legacy_hls_master,
    render_legacy_hls_media,
    render_storyboard_vtt,
)

__all__ = [
    "AUDIO",
    "HLS_LIVE",
    "HLS_VOD",
    "Published",
    "RenditionView",
    "SegmentView",
    "StoryboardTiles",
    "VideoView",
    "android_segments",
    "is_finished",
    "live_segments",
    "render_android_mpd",
    "render_dash",
    "render_hls_master",
    "render_hls_media",
    "render_legacy_hls_master",
    "render_legacy_hls_media",
    "render_storyboard_vtt",
    "stream_ended",
    "vod_segments",
]
