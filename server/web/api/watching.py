"""Who may watch (docs/api.md "Doors"): the one check every player route makes before it answers anything.

A public or unlisted video plays for anyone with its URL; a private one only under the key that recorded it
(`/k/<key>/...`) or under a signed link made for that video (`/s/<sig>/<exp>/video_files/<id>/...`). The check
runs first in each route of server/web/api/playback.py, before the playlist files, the answer cache
(server/web/answers.py) or the media store are asked, so nothing cached or stored answers a request it refuses.

An anonymous request for a private video is answered exactly as one for a video that does not exist (the same
JSON 404), so probing ids tells nothing. A link that does not open this video (altered, truncated, expired,
signed for another) is a 403 link_refused. The shipped nginx makes the same decisions (deploy/nginx/team03.conf):
signed links itself, anonymous playback from the tree by asking `anonymous_may_watch` (GET /api/watchable/<id>).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

from flask_restful import Resource
from sqlalchemy import select

from server.core.doors import LinkVerdict, check_link, may_watch
from server.core.errors import LinkRefused, NotFound, NotWatchable
from server.domain import links
from server.infra.models import Video
from server.web.api.context import services, session
from server.web.api.resource import Answer
from server.web.doors import PathLink, path_link, request_key


def require_watch(video_id: int) -> None:
    """Refuse this request unless it may play `video_id`: NotFound (hidden or missing), LinkRefused, KeyRequired."""
    link = path_link()
    if link is not None:
        _require_link(video_id, link)
        return
    key = request_key(session())  # an unknown or revoked key: 401, whatever the video
    if not _may_watch(video_id, None if key is None else key.id):
        raise hidden(video_id)


def hidden(video_id: int) -> NotFound:
    """The one answer for a video that does not exist and for one this request may not see."""
    return NotFound(f"video {video_id} does not exist")


def _may_watch(video_id: int, key_id: int | None) -> bool:
    # One primary-key lookup of the two columns the rule needs.
    row = session().execute(select(Video.visibility, Video.key_id).where(Video.id == video_id)).one_or_none()
    return row is not None and may_watch(row.visibility.value, row.key_id, key_id)


def _require_link(video_id: int, link: PathLink) -> None:
    secret = links.link_secret(services(), session())
    verdict = check_link(secret, video_id, link.signature, link.expires, time.time())
    if verdict is LinkVerdict.EXPIRED:
        raise LinkRefused("this playback link has expired: ask for a new one")
    if verdict is not LinkVerdict.OK:
        raise LinkRefused("this playback link does not open this video")


def watched(view: Callable[..., Answer]) -> Callable[..., Answer]:
    """A player route's method, run only once require_watch lets its request play the video (Watched below)."""

    @functools.wraps(view)
    def checked(*args: Any, **kwargs: Any) -> Answer:
        require_watch(kwargs["video_id"])
        return view(*args, **kwargs)

    return checked


class Watched(Resource):
    """A route that answers what players fetch of one video: every method checks who may watch it first."""

    method_decorators = [watched]


def anonymous_may_watch(video_id: int) -> None:
    """Refuse (NotWatchable, 403) unless a request without key or link may play `video_id`: nginx's auth_request."""
    if not _may_watch(video_id, None):
        raise NotWatchable(f"video {video_id} is not open to anonymous players")
