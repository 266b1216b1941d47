"""Who may watch (docs/api.md "Doors"): the one check every player route makes before it answers anything.

A public or unlisted video plays for anyone with its URL; a private one only under the key that recorded it
(`/k/<key>/...`) or under a signed link made for that video (`/s/<sig>/<exp>/video_files/<id>/...`). The check
runs first in each route of server/web/api/playback.py, before the playlist files, the answer cache
(server/web/answers.py) or the media store are asked, so nothing cached or stored answers a request it refuses.

A logged-in admin (the dashboard's own player: its session cookie, or HTTP Basic) plays every video. What a
private video's key or an admin was let see is sent `Cache-Control: private`: a shared cache in front must never
keep it for the next anonymous player of the same URL.

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

from flask import g, request
from flask_restful import Resource
from sqlalchemy import Row, select
from werkzeug.wrappers import Response

from server.core.doors import LinkVerdict, check_link, may_watch
from server.core.errors import Forbidden, LinkRefused, NotFound, NotWatchable, TooManyRequests, Unauthorized
from server.core.states import Visibility
from server.domain import links
from server.infra.models import Video
from server.web.api.auth import COOKIE, authenticate
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
    row = _rule_columns(video_id)
    if row is None:
        raise hidden(video_id)
    if may_watch(row.visibility.value, row.key_id, None):
        return
    if (key is not None and may_watch(row.visibility.value, row.key_id, key.id)) or _admin():
        g.watched_privately = True
        return
    raise hidden(video_id)


def _admin() -> bool:
    """Whether this request comes from a logged-in admin (a wrong password counts as a failed login, as anywhere)."""
    if "Authorization" not in request.headers and COOKIE not in request.cookies:
        return False
    try:
        authenticate(session())
    except (Unauthorized, Forbidden, TooManyRequests):
        return False
    return True


def keep_private(response: Response) -> Response:
    """After a player route let a key or an admin see a private video: no shared cache may keep the answer."""
    if g.get("watched_privately"):
        cache = response.headers.get("Cache-Control", "")
        response.headers["Cache-Control"] = ", ".join(["private", *(p.strip() for p in cache.split(",") if p.strip() and p.strip() != "public")])
    return response


def hidden(video_id: int) -> NotFound:
    """The one answer for a video that does not exist and for one this request may not see."""
    return NotFound(f"video {video_id} does not exist")


def _rule_columns(video_id: int) -> Row[Visibility, int | None] | None:
    """One primary-key lookup of the two columns the rule needs (None: no such video)."""
    return session().execute(select(Video.visibility, Video.key_id).where(Video.id == video_id)).one_or_none()


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
    row = _rule_columns(video_id)
    if row is None or not may_watch(row.visibility.value, row.key_id, None):
        raise NotWatchable(f"video {video_id} is not open to anonymous players")
