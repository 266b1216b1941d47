"""An admin's say over a video beyond its title: who may watch it, and whether retention spares it (audited)."""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session

from server.core.errors import InvalidInput
from server.core.states import Visibility
from server.domain.changes import video_change
from server.infra.models import Video
from server.infra.services import Services

log = logging.getLogger(__name__)
VISIBILITIES = tuple(v.value for v in Visibility)


def parse_visibility(raw: object, field: str = "visibility") -> Visibility:
    if not isinstance(raw, str) or raw not in VISIBILITIES:
        raise InvalidInput(field, f"must be one of {', '.join(VISIBILITIES)}")
    return Visibility(raw)


def set_visibility(services: Services, session: Session, video_id: int, visibility: Visibility, *, by: str) -> Video:
    with video_change(session, video_id, services.clock) as change:
        if change.video.visibility is not visibility:
            change.video.visibility = visibility
            change.event("video.visibility", visibility=visibility.value, by=by)
    log.info("video %s is %s (by %s)", video_id, visibility.value, by)
    return change.video


def set_pinned(services: Services, session: Session, video_id: int, pinned: bool, *, by: str) -> Video:
    """Pin (RETENTION_DAYS spares it) or unpin a video."""
    with video_change(session, video_id, services.clock) as change:
        if change.video.pinned != pinned:
            change.video.pinned = pinned
            change.event("video.pinned", pinned=pinned, by=by)
    return change.video


def record_retry(services: Services, session: Session, video_id: int, segments: list[int], *, by: str) -> None:
    """Log that `by` started the video's FAILED `segments` over (video.retried: the audit trail); NotFound if gone.

    The retries themselves are lifecycle.retry_failed's, one change each; this is who asked, once per request.
    """
    with video_change(session, video_id, services.clock) as change:
        change.event("video.retried", segments=segments, by=by)
    log.info("video %s: segments %s retried by %s", video_id, segments, by)
