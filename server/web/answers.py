"""What players are answered: playlists rendered from a snapshot of the database, cached by revision.

Before a video's first segment is published, the standard playlists (DASH, HLS over CMAF) have nothing
true to say: an MPD without segments reads as one segment, and an HLS playlist's EXT-X-MAP names an
init.mp4 that does not exist yet. So they are never rendered then. Such a request is held until the
first segment is published (at most FIRST_SEGMENT_WAIT s, under every player's request timeout), then
answered 503 + Retry-After, which every player retries. The HLS master playlist promises only media
playlists, so it is answered at once: players then wait on a media playlist, which they retry longest.
See docs/architecture.md "What players see first".
"""

from __future__ import annotations

import json
import time

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.core.errors import NotFound, NotReadyYet
from server.domain.publishing import Render, Rendered, snapshot
from server.infra.models import Video
from server.infra.services import Services

# Live answers also depend on the clock (publishTime), so they live briefly; 2 s because memcached
# expires on whole-second ticks, where 1 s can mean almost nothing. A state change is a new revision.
LIVE_TTL = 2
# How often a held request looks again for a first segment: workers are other processes, so the
# database is the only place to see it.
HOLD_POLL_S = 0.25


def current_revision(session: Session, video_id: int) -> int:
    revision = session.scalar(select(Video.revision).where(Video.id == video_id))
    if revision is None:
        raise NotFound(f"video {video_id} does not exist")
    return revision


def rendered_when_published(
    services: Services, session: Session, video_id: int, kind: str, render: Render, extra: str = ""
) -> Rendered:
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


def rendered(services: Services, session: Session, video_id: int, kind: str, render: Render, extra: str = "") -> Rendered:
    """Return a playlist from the cache (keyed by the video's revision) or render and cache it."""
    key = f"pl:{video_id}:{current_revision(session, video_id)}:{kind}:{extra}"
    hit = services.cache.get(key)
    if hit is not None:
        return _decode(hit)
    snap = snapshot(session, video_id, services.config.MAX_SEGMENT_AHEAD)
    result = render(snap, time.time())
    services.cache.set(key, _encode(result), services.config.CACHE_TTL if result.finished else LIVE_TTL)
    return result


def _encode(r: Rendered) -> bytes:
    meta = json.dumps({"finished": r.finished, "headers": r.headers}, separators=(",", ":"))
    return meta.encode() + b"\n" + r.body


def _decode(raw: bytes) -> Rendered:
    meta, _, body = raw.partition(b"\n")
    fields = json.loads(meta)
    return Rendered(body, fields["finished"], tuple((k, v) for k, v in fields["headers"]))
