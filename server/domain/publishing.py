"""Playlists published as objects: what players see, rendered from the database and put into the media store.

Every change that can alter a playlist ends in `publish(services, session, video_id)` (lifecycle.maybe_finish,
the last step of settling, of an end and of a rename); the reaper calls it for every video whose files lag
its revision (a process killed between its commit and its publish, a full disk) and for live videos whose
gap timeout passed with no other change. A static server (deploy/nginx/team03.conf) or a CDN then answers
players from these files; Flask answers the same files on the embedded default (server/web/api/playback.py).

    videos/<vid>/manifest.mpd, master.m3u8, storyboard.vtt           the standard players' playlists
    videos/<vid>/<REPR>/playlist.m3u8, audio/playlist.m3u8           HLS media playlists (CMAF)
    videos/<vid>/live_m3u8/root.m3u8, live_m3u8/<REPR>/stream.m3u8   the legacy HLS routes /live_m3u8/<vid>/...

Order: the database decides who publishes, so publishers on several origin machines (web processes, workers,
reapers) write one after the other. A publisher takes the video's publish lease by compare-and-set on its row
(`publishing_until`, `publishing_by`: one row updated, or none because another holds an unexpired lease), then
reads a fresh snapshot, writes the files, and in one statement that checks it still holds the lease records
(published_revision, published_key) and releases it. The next holder reads a snapshot at least as new, so files
only ever move forward in revision order, and an unchanged listing at the same revision writes nothing. A
publisher that finds the lease held returns at once: the holder, once released, reads the revision again and
publishes again if it moved (at most PUBLISH_ROUNDS rounds; the reaper's `lagging` takes what is left). Each
file is one object put (server/store/media.py): a reader gets the old bytes or the new ones, never a torn file.

A holder killed mid-publish (kill -9) leaves its lease: the next publisher takes it once PUBLISH_LEASE has
passed (the reaper republishes the lagging video then). PUBLISH_LEASE is far above a publish (a few
milliseconds to render, a few files to write) and above the clock skew of NTP-synced origins, whose clocks
the lease times come from. A store with no conditional overwrite cannot refuse a stale writer's file, so
fencing is as close as the holder can get: right before writing it renews the lease (only if still its own
and unexpired), which gives it a whole PUBLISH_LEASE for the writes. One that still outlives it (stalled
that long mid-write) finds at its release that the lease is no longer its own: its files may have landed
after a newer holder's, so it marks the row unpublished and the reaper rewrites every file (a newer holder
writing at that very moment may record over the mark: the one window left, a stall of PUBLISH_LEASE wide).

A deleted video: its row goes first (a publisher then finds it NotFound), its files after. A holder already
past its renewal may write one more round into the folder being removed; its release then finds no row, and
it removes the video's files itself. A holder killed in that window leaves a folder with no row, which the
operator's purge removes (server/ops/purge.py `orphan_videos`).

The Android MPD (`/live_mpd/<vid>.mpd?last_segment_id=`) stays dynamic: it depends on the query and carries
response headers (answers.py). Before a video's first segment is playable nothing is published, and the
app answers (holds, then 503) as before.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, Table, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from server.core.errors import InsufficientStorage, NotFound, NotReadyYet, StorageUnavailable
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


def dash(gap: float) -> Render:
    """The standard DASH MPD. No BaseURL: its segments resolve against the MPD's own URL (the video's folder), so a
    player that opened it under a signed link (/s/<sig>/<exp>/video_files/<id>/) asks every file under that link
    too, as HLS players do; a root-relative BaseURL sent them to the plain, refused URL (server/core/doors.py)."""
    return lambda s, now: Rendered(
        render_dash(s.state, _playable(s, s.published(now, gap)), now, utc_timing_url=TIME_URL).encode(),
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
    files["manifest.mpd"] = dash(gap)
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


# How long a publisher may write a video's files (see Order above): a publish takes milliseconds (a bucket's
# puts go in parallel), and a holder killed mid-publish blocks the video's playlists this long.
PUBLISH_LEASE = timedelta(seconds=10)
PUBLISH_ROUNDS = 3  # rounds of one publish while the revision moves under it; the reaper takes what is left


def publish(services: Services, session: Session, video_id: int) -> bool:
    """Bring `video_id`'s playlist files up to the database; True if files were written.

    Returns at once, writing nothing, while another publisher holds the video's lease (it re-checks the
    revision when it releases). Never raises for a storage or database failure: the change it follows is
    already committed, and the reaper publishes any video whose files lag (`lagging`).
    """
    started = time.monotonic()
    outcomes: list[str] = []
    try:
        for _ in range(PUBLISH_ROUNDS):
            outcomes.append(_publish_round(services, session, video_id))
            if outcomes[-1] == "busy" or not _lags(session, video_id):
                break
    except (OSError, InsufficientStorage, StorageUnavailable, SQLAlchemyError) as exc:
        session.rollback()
        metrics.PLAYLIST_PUBLISHES.labels(result="failed").inc()
        log.warning("video %s: playlists not published (%s); the reaper retries", video_id, exc)
        return False
    written = "written" in outcomes
    metrics.PLAYLIST_PUBLISHES.labels(result=next(o for o in ("lost", "written", "busy", "current") if o in outcomes)).inc()
    if written:
        metrics.PLAYLIST_PUBLISH_SECONDS.observe(time.monotonic() - started)
    return written


def _publish_round(services: Services, session: Session, video_id: int) -> str:
    """Take the lease and publish once; return what happened: written, current, busy (another publisher holds
    the lease) or lost (it was taken from us before we wrote, or while we wrote)."""
    token = _take_lease(services, session, video_id)
    if token is None:
        return "busy"
    try:
        return _publish_held(services, session, video_id, token)
    except BaseException:
        session.rollback()
        try:
            _release(session, video_id, token)  # the next publisher need not wait for the lease to expire
        except SQLAlchemyError:
            session.rollback()
        raise


def _publish_held(services: Services, session: Session, video_id: int, token: str) -> str:
    """Holding the lease: write the files of a fresh snapshot unless they show it already; record what they show."""
    try:
        snap = snapshot(session, video_id, services.config.MAX_SEGMENT_AHEAD)
    except NotFound:
        return "current"  # deleted: its lease went with its row
    finally:
        session.rollback()
    now, gap = services.clock.time(), services.config.GAP_TIMEOUT
    key = listing_key(snap, now, gap)
    if snap.published_revision is not None and (
        snap.published_revision > snap.revision or (snap.published_revision == snap.revision and snap.published_key == key)
    ):
        _release(session, video_id, token)
        return "current"  # (or, which the lease rules out, newer than this snapshot)
    # No segment stored yet: nothing to list (the first upload moves the revision).
    rendered = _render_all(snap, now, gap) if snap.state.segments else {}
    if not _renew(services, session, video_id, token):
        return "lost"  # it expired while we rendered and another publisher took it: write nothing
    _write_files(services, video_id, rendered)
    if not _release(session, video_id, token, snap.revision, key):
        _lost_while_writing(services, session, video_id)
        return "lost"
    return "written" if rendered else "current"


MASTERS = ("master.m3u8", f"{LEGACY}/root.m3u8")  # they name the media playlists: written after them


def _write_files(services: Services, video_id: int, rendered: dict[str, Rendered]) -> None:
    """Put every file, the masters last (a master never names a media playlist not yet there; each phase in
    parallel on S3). Not fsynced on the local tree: derived from the database, rewritten by the reaper if lost."""
    media = services.media
    for masters in (False, True):
        files = {media.playlist(video_id, name): r.body for name, r in rendered.items() if (name in MASTERS) == masters}
        media.put_many(files, durable=False)


# --- the publish lease: compare-and-set on the video's row ------------------------------------------


def _videos() -> Table:
    return cast(Table, Video.__table__)  # a mapped class's table; typed as any FromClause


def _updated(session: Session, statement: Any) -> bool:
    """Run an UPDATE and commit it; True if it changed the one row it names."""
    # An UPDATE's result is a CursorResult (Session.execute is typed for any statement).
    done = cast(CursorResult[Any], session.execute(statement))
    session.commit()
    return done.rowcount == 1


def _take_lease(services: Services, session: Session, video_id: int) -> str | None:
    """Take `video_id`'s publish lease if nobody holds an unexpired one; return its token, else None."""
    session.rollback()  # nothing of the caller's is ours to commit
    videos, now, token = _videos(), services.clock.now(), secrets.token_hex(8)
    free = videos.c.publishing_until.is_(None) | (videos.c.publishing_until <= now)
    taken = update(videos).where(videos.c.id == video_id, free).values(publishing_until=now + PUBLISH_LEASE, publishing_by=token)
    return token if _updated(session, taken) else None


def _renew(services: Services, session: Session, video_id: int, token: str) -> bool:
    """Extend the lease right before writing, if it is still ours and unexpired: the fence (module docstring)."""
    videos, now = _videos(), services.clock.now()
    ours = (videos.c.id == video_id) & (videos.c.publishing_by == token) & (videos.c.publishing_until > now)
    return _updated(session, update(videos).where(ours).values(publishing_until=now + PUBLISH_LEASE))


def _release(session: Session, video_id: int, token: str, revision: int | None = None, key: str | None = None) -> bool:
    """Release the lease if it is still ours, recording what the files show when `revision` is given; False if not ours.

    The token is the check: nobody else wrote since we took the lease unless someone took it from us, which
    changed the token. An expired lease nobody took is still ours to record.
    """
    videos = _videos()
    values: dict[str, object] = {"publishing_until": None, "publishing_by": None}
    if revision is not None:
        values.update(published_revision=revision, published_key=key)
    return _updated(session, update(videos).where(videos.c.id == video_id, videos.c.publishing_by == token).values(**values))


def _lost_while_writing(services: Services, session: Session, video_id: int) -> None:
    """The lease was taken from us, or the row deleted, while we wrote: our files may be older than a newer
    holder's (mark the row unpublished: the reaper rewrites them all) or in a folder being removed (remove it)."""
    videos = _videos()
    unpublished = update(videos).where(videos.c.id == video_id).values(published_revision=None, published_key=None)
    if _updated(session, unpublished):
        log.warning(
            "video %s: publish lease lost while writing (over %s); the reaper rewrites its files", video_id, PUBLISH_LEASE
        )
    else:
        services.media.remove_video(video_id)


def _lags(session: Session, video_id: int) -> bool:
    """Whether `video_id`'s files lag its revision now (it moved while we published); False once it is gone."""
    row = session.execute(select(Video.revision, Video.published_revision).where(Video.id == video_id)).first()
    session.rollback()
    return row is not None and (row.published_revision is None or row.published_revision < row.revision)


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
