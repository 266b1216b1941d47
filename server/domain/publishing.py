"""Playlists published as files: what players see, rendered from the database and written into the media tree.

Every change that can alter a playlist ends in `publish(services, session, video_id)` (lifecycle.maybe_finish,
the last step of settling, of an end and of a rename); the reaper calls it for every video whose files lag
its revision (a process killed between its commit and its publish, a full disk) and for live videos whose
gap timeout passed with no other change. A static server (deploy/nginx/team03.conf) or a CDN then answers
players from these files; Flask answers the same files on the embedded default (server/web/api/playback.py).

    videos/<vid>/manifest.mpd, master.m3u8, storyboard.vtt           the standard players' playlists
    videos/<vid>/<REPR>/playlist.m3u8, audio/playlist.m3u8           HLS media playlists (CMAF)
    videos/<vid>/live_m3u8/root.m3u8, live_m3u8/<REPR>/stream.m3u8   the legacy HLS routes /live_m3u8/<vid>/...

Order: a publisher holds the video folder's lock (flock, every process of the host) while it reads a fresh
snapshot, writes the files and records (published_revision, published_key) on the video's row. Whoever
takes the lock next reads a snapshot at least as new, so files only ever move forward in revision order,
and an unchanged listing at the same revision writes nothing. Each file is replaced in one rename: a reader
gets the old bytes or the new ones, never a torn file.

The Android MPD (`/live_mpd/<vid>.mpd?last_segment_id=`) stays dynamic: it depends on the query and carries
response headers (answers.py). Before a video's first segment is playable nothing is published, and the
app answers (holds, then 503) as before.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from server.core.errors import InsufficientStorage, NotFound, NotReadyYet
from server.core.playlists import (
    AUDIO,
    HLS_LIVE,
    HLS_VOD,
    Published,
    RenditionView,
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
from server.core.playlists.publish import listed_segments
from server.core.transcode.ffmpeg import STORYBOARD_COLUMNS, STORYBOARD_EVERY, STORYBOARD_TILE_WIDTH, tile_height
from server.domain.state import load_video, to_view
from server.infra import metrics
from server.infra.models import Video
from server.infra.services import Services

log = logging.getLogger(__name__)

# DASH UTCTiming: root-relative, so one file serves every host name (dash.js and Shaka resolve it against the
# MPD's BaseURL, which is root-relative too).
TIME_URL = "/time"
LEGACY = "live_m3u8"


@dataclass(frozen=True)
class Snapshot:
    """A video as players see it: its state (which segments have files included), its revision, what is published."""

    state: VideoView
    revision: int
    published_revision: int | None = None
    published_key: str | None = None

    @property
    def finished(self) -> bool:
        return self.state.is_vod

    def published(self, now: float, gap_timeout: float, *, append_only: bool = False) -> list[Published]:
        """Return the segments players are given (the pure rule: publish.listed_segments)."""
        return listed_segments(self.state, now, gap_timeout, append_only=append_only)


def snapshot(session: Session, video_id: int, max_ahead: int) -> Snapshot:
    """Read `video_id` with everything its playlists need; NotFound if it is gone."""
    video = load_video(session, video_id)
    if video is None:
        raise NotFound(f"video {video_id} does not exist")
    return Snapshot(to_view(video, max_ahead), video.revision, video.published_revision, video.published_key)


@dataclass(frozen=True)
class Rendered:
    body: bytes
    finished: bool
    headers: tuple[tuple[str, str], ...] = ()


Render = Callable[[Snapshot, float], Rendered]


# --- what each playlist lists -------------------------------------------------------------------------


def _playable(s: Snapshot, listed: list[Published]) -> list[Published]:
    """Return `listed` if it lists a segment; else NotReadyYet while live, NotFound once finished."""
    if listed:
        return listed
    if s.finished:
        raise NotFound(f"video {s.state.video_id} has no playable segment")
    raise NotReadyYet(f"video {s.state.video_id} has no segment ready yet; retry shortly")


def dash(gap: float, video_id: int) -> Render:
    """The standard DASH MPD; its BaseURL is the video's folder, root-relative, as the Android MPD's."""
    base_url = f"/video_files/{video_id}/"
    return lambda s, now: Rendered(
        render_dash(s.state, _playable(s, s.published(now, gap)), now, base_url=base_url, utc_timing_url=TIME_URL).encode(),
        s.finished,
    )


def hls_master(s: Snapshot, _now: float) -> Rendered:
    return Rendered(render_hls_master(s.state).encode(), s.finished)


def hls_media(gap: float, track: str) -> Render:
    def render(s: Snapshot, now: float) -> Rendered:
        target = AUDIO if track == AUDIO else rendition(s.state, track)
        listed = _playable(s, s.published(now, gap, append_only=True))
        return Rendered(render_hls_media(s.state, target, listed).encode(), s.finished)

    return render


def hls_vod(gap: float, track: str) -> Render:
    """A finished video's VOD media playlist: every ready segment, late ones too (the DASH VOD's list)."""

    def render(s: Snapshot, now: float) -> Rendered:
        if not s.finished:
            raise NotFound(f"video {s.state.video_id} is still live: its VOD playlists come when it ends")
        target = AUDIO if track == AUDIO else rendition(s.state, track)
        return Rendered(render_hls_media(s.state, target, _playable(s, s.published(now, gap)), vod=True).encode(), True)

    return render


def legacy_master(s: Snapshot, _now: float) -> Rendered:
    return Rendered(render_legacy_hls_master(s.state).encode(), s.finished)


def legacy_media(gap: float, name: str) -> Render:
    return lambda s, now: Rendered(
        render_legacy_hls_media(s.state, rendition(s.state, name), s.published(now, gap, append_only=True)).encode(),
        s.finished,
    )


def android_mpd(gap: float, after: int | None) -> Render:
    """Render the Android app's MPD: only segments after `after`, with its two headers."""

    def render(s: Snapshot, now: float) -> Rendered:
        listed = android_segments(s.state, after, now, gap)
        headers = [("streamEnded", "true" if stream_ended(s.state) else "false")]
        if listed:
            headers.insert(0, ("lastSegmentId", str(listed[-1].segment_id)))
        return Rendered(render_android_mpd(s.state, listed).encode(), s.finished, tuple(headers))

    return render


def storyboard(gap: float) -> Render:
    def render(s: Snapshot, now: float) -> Rendered:
        low = s.state.renditions[-1]
        tiles = StoryboardTiles(
            STORYBOARD_EVERY, STORYBOARD_TILE_WIDTH, tile_height(low.width, low.height, STORYBOARD_TILE_WIDTH), STORYBOARD_COLUMNS
        )
        return Rendered(render_storyboard_vtt(s.state, s.published(now, gap), tiles).encode(), s.finished)

    return render


def rendition(state: VideoView, name: str) -> RenditionView:
    for candidate in state.renditions:
        if candidate.name == name:
            return candidate
    raise NotFound(f"video {state.video_id} has no rendition {name!r}")


def playlist_files(state: VideoView, gap: float) -> dict[str, Render]:
    """Every published playlist of `state`, by its path under the video's folder (media playlists first)."""
    names = [r.name for r in state.renditions]
    files: dict[str, Render] = {f"{name}/{HLS_LIVE}": hls_media(gap, name) for name in names}
    files[f"{AUDIO}/{HLS_LIVE}"] = hls_media(gap, AUDIO)
    if state.is_vod:
        files.update({f"{track}/{HLS_VOD}": hls_vod(gap, track) for track in (*names, AUDIO)})
    files["master.m3u8"] = hls_master
    files["manifest.mpd"] = dash(gap, state.video_id)
    files["storyboard.vtt"] = storyboard(gap)
    files.update({f"{LEGACY}/{name}/stream.m3u8": legacy_media(gap, name) for name in names})
    files[f"{LEGACY}/root.m3u8"] = legacy_master
    return files


def listing_key(s: Snapshot, now: float, gap: float) -> str:
    """Fingerprint what the files list at `now`: a gap decided with no new revision changes it."""
    dash_ids = [p.segment_id for p in s.published(now, gap)]
    hls_ids = [p.segment_id for p in s.published(now, gap, append_only=True)]
    return hashlib.sha256(f"{s.finished}|{dash_ids}|{hls_ids}".encode()).hexdigest()[:32]


# --- writing them ------------------------------------------------------------------------------------


def publish(services: Services, session: Session, video_id: int) -> bool:
    """Bring `video_id`'s playlist files up to the database; True if files were written.

    Never raises for a storage or database failure: the change it follows is already committed, and the
    reaper publishes any video whose files lag (`lagging`).
    """
    started = time.monotonic()
    try:
        with services.media.video_lock(video_id):
            written = _publish_locked(services, session, video_id)
    except (OSError, InsufficientStorage, SQLAlchemyError) as exc:
        session.rollback()
        metrics.PLAYLIST_PUBLISHES.labels(result="failed").inc()
        log.warning("video %s: playlists not published (%s); the reaper retries", video_id, exc)
        return False
    metrics.PLAYLIST_PUBLISHES.labels(result="written" if written else "current").inc()
    if written:
        metrics.PLAYLIST_PUBLISH_SECONDS.observe(time.monotonic() - started)
    return written


def _publish_locked(services: Services, session: Session, video_id: int) -> bool:
    """Write the files of a fresh snapshot unless they show it already; record what they show."""
    session.rollback()  # a fresh read: everything committed before the lock was taken
    try:
        snap = snapshot(session, video_id, services.config.MAX_SEGMENT_AHEAD)
    except NotFound:
        return False
    finally:
        session.rollback()
    now, gap = services.clock.time(), services.config.GAP_TIMEOUT
    key = listing_key(snap, now, gap)
    if snap.published_revision is not None and (
        snap.published_revision > snap.revision or (snap.published_revision == snap.revision and snap.published_key == key)
    ):
        return False  # current (or, which the lock rules out, newer than this snapshot)
    # No segment stored yet: nothing to list (the first upload moves the revision).
    rendered = _render_all(snap, now, gap) if snap.state.segments else {}
    for name, result in rendered.items():
        services.media.put(services.media.playlist(video_id, name), result.body)
    session.execute(update(Video).where(Video.id == video_id).values(published_revision=snap.revision, published_key=key))
    session.commit()
    return bool(rendered)


def _render_all(snap: Snapshot, now: float, gap: float) -> dict[str, Rendered]:
    """Render every file, or none while the standard playlists have nothing true to say (answers.py)."""
    try:
        return {name: render(snap, now) for name, render in playlist_files(snap.state, gap).items()}
    except (NotReadyYet, NotFound):
        return {}


def lagging(session: Session, limit: int) -> list[int]:
    """Return up to `limit` videos whose files lag their revision (never published, or behind), oldest first."""
    query = (
        select(Video.id)
        .where((Video.published_revision.is_(None)) | (Video.published_revision < Video.revision))
        .order_by(Video.id)
        .limit(limit)
    )
    return list(session.scalars(query))
