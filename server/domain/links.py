"""Signed playback links (server/core/doors.py): the secret that signs them, and minting one for a video."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from sqlalchemy.orm import Session

from server.core.doors import MAX_LINK_TTL, link_path
from server.core.errors import InvalidInput
from server.domain import settings
from server.domain.changes import video_change
from server.infra.services import Services

log = logging.getLogger(__name__)
LINK_SECRET = "link_secret"
# What a link opens first: the HLS master (hls.js, Safari, video.js, Shaka) or the DASH MPD (dash.js, Shaka).
HLS_FILE, DASH_FILE = "master.m3u8", "manifest.mpd"


@dataclass(frozen=True)
class Link:
    path: str  # root-relative: /s/<signature>/<expires>/video_files/<id>/<file>
    expires: int  # Unix seconds


def link_secret(services: Services, session: Session) -> str:
    """LINK_SECRET, or (unset, the embedded default) the one kept in the database for every process."""
    return services.config.LINK_SECRET or settings.shared_secret(session, LINK_SECRET)


def mint_link(services: Services, session: Session, video_id: int, *, dash: bool, ttl: int, by: str) -> Link:
    """A link that plays `video_id` for `ttl` seconds (an audit event, video.link). NotFound if no such video."""
    if not 1 <= ttl <= MAX_LINK_TTL:
        raise InvalidInput("ttl", f"must be from 1 to {MAX_LINK_TTL} seconds")
    secret = link_secret(services, session)
    expires = int(time.time()) + ttl  # Unix time, as nginx's secure_link compares it
    file = DASH_FILE if dash else HLS_FILE
    with video_change(session, video_id, services.clock) as change:
        change.event("video.link", by=by, expires=expires, file=file)
    log.info("playback link for video %s minted by %s, until %s", video_id, by, expires)
    return Link(link_path(secret, video_id, expires, file), expires)
