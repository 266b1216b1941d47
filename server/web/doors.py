"""The doors in the URL (server/core/doors.py): `/k/<key>/` before the Android app's routes, `/s/<sig>/<exp>/`
before a video's files. A WSGI middleware takes the prefix off the path, so the one route table serves both,
and leaves what it took in the request's environ, where `path_key()` and `path_link()` find it.

Only the exact shapes are taken: a key of 43 URL-safe characters followed by one of the Android routes
(KEYED_ROUTES), a signature, an expiry and `video_files/<id>/`. Anything else under /k/ or /s/ (a doubled
prefix, `..`, a short key, another route) keeps its path and matches no route: the JSON 404. A key in the
query or a header is never looked at.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from flask import g, request
from sqlalchemy.orm import Session

from server.core.doors import EXPIRES_PATTERN, KEY_PATTERN, KEY_PREFIX, KEYED_ROUTES, LINK_PREFIX, SIGNATURE_PATTERN
from server.core.errors import KeyRequired
from server.domain import keys
from server.infra.models import RecordingKey

KEY_ENV = "team03.recording_key"
LINK_ENV = "team03.link"

_KEYED = re.compile(rf"^{KEY_PREFIX}(?P<key>{KEY_PATTERN})/(?P<rest>(?:{'|'.join(re.escape(r) for r in KEYED_ROUTES)}).*)$")
_LINKED = re.compile(
    rf"^{LINK_PREFIX}(?P<signature>{SIGNATURE_PATTERN})/(?P<expires>{EXPIRES_PATTERN})/(?P<rest>video_files/[0-9]{{1,10}}/.*)$"
)


@dataclass(frozen=True)
class PathLink:
    """A signed link's parts as the path carried them (checked by the playback routes, not here)."""

    signature: str
    expires: str


class DoorPaths:
    """WSGI middleware: a keyed or linked path reaches the route of the path without its prefix."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or ""
        if path.startswith(KEY_PREFIX) and (keyed := _KEYED.match(path)):
            environ["PATH_INFO"] = "/" + keyed["rest"]
            environ[KEY_ENV] = keyed["key"]
        elif path.startswith(LINK_PREFIX) and (linked := _LINKED.match(path)):
            environ["PATH_INFO"] = "/" + linked["rest"]
            environ[LINK_ENV] = PathLink(linked["signature"], linked["expires"])
        return self.app(environ, start_response)


def path_key() -> str | None:
    """The recording key this request came under (/k/<key>/), unchecked; None without one."""
    key = request.environ.get(KEY_ENV)
    return key if isinstance(key, str) else None


def path_link() -> PathLink | None:
    """The signed link this request came under (/s/<sig>/<exp>/), unchecked; None without one."""
    link = request.environ.get(LINK_ENV)
    return link if isinstance(link, PathLink) else None


def request_key(session: Session) -> RecordingKey | None:
    """The row of this request's recording key; None without one; KeyRequired (401) if unknown or revoked.

    Looked up once per request (a revoked key is refused from its next request on).
    """
    key = path_key()
    if key is None:
        return None
    if "recording_key" not in g:
        g.recording_key = keys.find(session, key)
    row: RecordingKey | None = g.recording_key
    if row is None:
        raise KeyRequired("this server URL's recording key is unknown or revoked")
    return row
