"""What players are answered: playlists rendered from a snapshot of the database, cached by revision.

Before a video's first segment is published, the standard playlists (DASH, HLS over CMAF) have nothing
true to say: an MPD without segments reads as one segment, and an HLS playlist's EXT-X-MAP names an
init.mp4 that does not exist yet. So they are never rendered then. Such a request is held until the
first segment is published (at most FIRST_SEGMENT_WAIT s, under every player's request timeout), then
answered 503 + Retry-After, which every player retries. The HLS master playlist promises only media
playlists, so it is answered at once: players then wait on a media playlist, which they retry longest.
See README "What players see first".
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from server.errors import NotFound, NotReadyYet
from server.models import Video
from server.playlists import (
    AUDIO,
    Published,
    StoryboardTiles,
    VideoView,
    android_segments,
    render_android_mpd,
    render_dash,
    render_hls_master,
    render_hls_media,
    render_legacy_hls_master,
    render_legacy_hls_media,
    render_storyboard_vtt,
    stream_ended,
)
from server.playlists.publish import listed_segments
from server.services import Services
from server.state import to_view
from server.transcode.ffmpeg import STORYBOARD_COLUMNS, STORYBOARD_EVERY, STORYBOARD_TILE_WIDTH, tile_height

# Live answers also depend on the clock (publishTime), so they live briefly; 2 s because memcached
# expires on whole-second ticks, where 1 s can mean almost nothing. A state change is a new revision.
LIVE_TTL = 2
# How often a held request looks again for a first segment: workers are other processes, so the
# database is the only place to see it.
HOLD_POLL_S = 0.25


@dataclass(frozen=True)
class Snapshot:
    """A video as players see it: its state (which segments have files included) and its revision."""

    state: VideoView
    revision: int

    @property
    def finished(self) -> bool:
        return self.state.is_vod

    def published(self, now: float, gap_timeout: float, *, append_only: bool = False) -> list[Published]:
        """Return the segments players are given (the pure rule: publish.listed_segments)."""
        return listed_segments(self.state, now, gap_timeout, append_only=append_only)


def snapshot(session: Session, video_id: int) -> Snapshot:
    query = select(Video).where(Video.id == video_id).options(selectinload(Video.renditions), selectinload(Video.segments))
    video = session.scalars(query).one_or_none()
    if video is None:
        raise NotFound(f"video {video_id} does not exist")
    return Snapshot(to_view(video), video.revision)


def current_revision(session: Session, video_id: int) -> int:
    revision = session.scalar(select(Video.revision).where(Video.id == video_id))
    if revision is None:
        raise NotFound(f"video {video_id} does not exist")
    return revision


@dataclass(frozen=True)
class Rendered:
    body: bytes
    finished: bool
    headers: tuple[tuple[str, str], ...] = ()


def rendered_when_published(services: Services, session: Session, video_id: int, kind: str, render, extra: str = "") -> Rendered:  # type: ignore[no-untyped-def]
    """Return rendered(...); while `render` says NotReadyYet, hold the request (see the module docstring)."""
    try:
        return rendered(services, session, video_id, kind, render, extra)
    except NotReadyYet as first:
        not_ready = first
    deadline = time.monotonic() + services.config.FIRST_SEGMENT_WAIT
    with services.holds.slot() as held:
        while held and time.monotonic() < deadline:
            # End the read snapshot (the next query sees what workers committed since) and give the
            # connection back to the pool while waiting.
            session.rollback()
            if services.stopping.wait(HOLD_POLL_S):
                break
            try:
                return rendered(services, session, video_id, kind, render, extra)
            except NotReadyYet as again:
                not_ready = again
    raise not_ready


def rendered(services: Services, session: Session, video_id: int, kind: str, render, extra: str = "") -> Rendered:  # type: ignore[no-untyped-def]
    """Return a playlist from the cache (keyed by the video's revision) or render and cache it."""
    key = f"pl:{video_id}:{current_revision(session, video_id)}:{kind}:{extra}"
    hit = services.cache.get(key)
    if hit is not None:
        return _decode(hit)
    snap = snapshot(session, video_id)
    result: Rendered = render(snap, time.time())
    services.cache.set(key, _encode(result), services.config.CACHE_TTL if result.finished else LIVE_TTL)
    return result


def _encode(r: Rendered) -> bytes:
    meta = json.dumps({"finished": r.finished, "headers": r.headers}, separators=(",", ":"))
    return meta.encode() + b"\n" + r.body


def _decode(raw: bytes) -> Rendered:
    meta, _, body = raw.partition(b"\n")
    fields = json.loads(meta)
    return Rendered(body, fields["finished"], tuple((k, v) for k, v in fields["headers"]))


def _playable(s: Snapshot, listed: list[Published]) -> list[Published]:
    """Return `listed` if it lists a segment; else NotReadyYet while live, NotFound once finished."""
    if listed:
        return listed
    if s.finished:
        raise NotFound(f"video {s.state.video_id} has no playable segment")
    raise NotReadyYet(f"video {s.state.video_id} has no segment ready yet; retry shortly")


def dash(gap: float, base_url: str, time_url: str):  # type: ignore[no-untyped-def]
    return lambda s, now: Rendered(
        render_dash(s.state, _playable(s, s.published(now, gap)), now, base_url=base_url, utc_timing_url=time_url).encode(),
        s.finished,
    )


def hls_master(s: Snapshot, _now: float) -> Rendered:
    return Rendered(render_hls_master(s.state).encode(), s.finished)


def hls_media(gap: float, track: str):  # type: ignore[no-untyped-def]
    def render(s: Snapshot, now: float) -> Rendered:
        target = AUDIO if track == AUDIO else _rendition(s.state, track)
        listed = _playable(s, s.published(now, gap, append_only=True))
        return Rendered(render_hls_media(s.state, target, listed).encode(), s.finished)

    return render


def legacy_master(s: Snapshot, _now: float) -> Rendered:
    return Rendered(render_legacy_hls_master(s.state).encode(), s.finished)


def legacy_media(gap: float, name: str):  # type: ignore[no-untyped-def]
    return lambda s, now: Rendered(
        render_legacy_hls_media(s.state, _rendition(s.state, name), s.published(now, gap, append_only=True)).encode(),
        s.finished,
    )


def android_mpd(gap: float, after: int | None):  # type: ignore[no-untyped-def]
    """Render the Android app's MPD: only segments after `after`, with its two headers."""

    def render(s: Snapshot, now: float) -> Rendered:
        listed = android_segments(s.state, after, now, gap)
        headers = [("streamEnded", "true" if stream_ended(s.state) else "false")]
        if listed:
            headers.insert(0, ("lastSegmentId", str(listed[-1].segment_id)))
        return Rendered(render_android_mpd(s.state, listed).encode(), s.finished, tuple(headers))

    return render


def storyboard(gap: float):  # type: ignore[no-untyped-def]
    def render(s: Snapshot, now: float) -> Rendered:
        low = s.state.renditions[-1]
        tiles = StoryboardTiles(
            STORYBOARD_EVERY, STORYBOARD_TILE_WIDTH, tile_height(low.width, low.height, STORYBOARD_TILE_WIDTH), STORYBOARD_COLUMNS
        )
        return Rendered(render_storyboard_vtt(s.state, s.published(now, gap), tiles).encode(), s.finished)

    return render


def _rendition(state: VideoView, name: str):  # type: ignore[no-untyped-def]
    for rendition in state.renditions:
        if rendition.name == name:
            return rendition
    raise NotFound(f"video {state.video_id} has no rendition {name!r}")
