"""The admin API's doors (docs/admin-api.md "Recording keys", "Who may watch", "Audit"); every resource calls
require_admin first, and what it changes is written with the admin's name (`by`), so it is in the audit trail.

The rules are server/domain/keys.py's, links.py's and curation.py's; the answers server/web/admin_views.py's.
"""

from __future__ import annotations

from typing import Any

from flask import request
from flask_restful import Resource

from server.core.doors import MAX_LINK_TTL
from server.core.errors import InvalidInput
from server.core.states import Visibility
from server.domain import curation, keys, links
from server.web import admin_views
from server.web.api.admin import MAX_EVENT_ID, NO_STORE
from server.web.api.auth import require_admin
from server.web.api.context import services, session
from server.web.api.resource import Answer
from server.web.api.videos import _json_object, _query_int

MAX_LIVE = 10_000  # a key's live videos at once: far above any real use, within the column
MAX_QUOTA = 2**62  # bytes: within the BIGINT column, beyond any disk


def _optional_int(body: dict[str, Any], field: str, high: int) -> int | None:
    value = body.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
        raise InvalidInput(field, f"must be an integer from 1 to {high}, or null")
    return int(value)


def _optional_bool(body: dict[str, Any], field: str) -> bool | None:
    value = body.get(field)
    if value is not None and not isinstance(value, bool):
        raise InvalidInput(field, "must be true or false")
    return value


def _key_name(body: dict[str, Any]) -> str:
    name = body.get("name")
    if not isinstance(name, str):
        raise InvalidInput("name", "a string is required")
    return name


def absolute(path: str) -> str:
    """`path` on the host the request came to (as a trusted proxy's X-Forwarded-* say, server/web/api/limits.py)."""
    return request.host_url.rstrip("/") + path


class AdminKeys(Resource):
    def get(self) -> Answer:
        """Every recording key, newest first, with its live videos and bytes stored."""
        require_admin(session())
        return {"keys": [admin_views.key_row(k) for k in keys.list_keys(session())]}, 200, NO_STORE

    def post(self) -> Answer:
        """Mint a key: {"name", "max_live"?, "quota_bytes"?, "visibility"?}; the answer shows the key, this once."""
        admin = require_admin(session())
        body = _json_object()
        name = _key_name(body)
        max_live, quota = _optional_int(body, "max_live", MAX_LIVE), _optional_int(body, "quota_bytes", MAX_QUOTA)
        raw = body.get("visibility")
        visibility = Visibility.PUBLIC if raw is None else curation.parse_visibility(raw)
        row, key = keys.mint(
            services(), session(), name, max_live=max_live, quota_bytes=quota, visibility=visibility, by=admin.name
        )
        answer = {**admin_views.key_detail(session(), row.name), "key": key, "app_url": absolute(f"/k/{key}")}
        return answer, 201, NO_STORE


class AdminKeyRevoke(Resource):
    def post(self, name: str) -> Answer:
        """Revoke a key (refused from its next request on) and end its live videos; the key stays listed, revoked."""
        admin = require_admin(session())
        ended = keys.revoke(services(), session(), name, by=admin.name)
        return {**admin_views.key_detail(session(), name), "ended": ended}, 200, NO_STORE


class AdminVideoLink(Resource):
    def post(self, video_id: int) -> Answer:
        """Mint a signed link that plays the video: {"dash"?: false, "ttl"?: LINK_TTL seconds} -> {url, expires_at}."""
        admin = require_admin(session())
        body = _json_object() if request.get_data() else {}
        dash = bool(_optional_bool(body, "dash"))
        ttl = _optional_int(body, "ttl", MAX_LINK_TTL) or services().config.LINK_TTL
        link = links.mint_link(services(), session(), video_id, dash=dash, ttl=ttl, by=admin.name)
        expires_at = admin_views.iso(admin_views.utc(link.expires))
        return {"url": absolute(link.path), "expires_at": expires_at, "expires": link.expires}, 200, NO_STORE


class AdminAudit(Resource):
    def get(self) -> Answer:
        """A page of the audit trail, newest first: ?limit= (default 50, max 200), ?before=<event id>."""
        require_admin(session())
        limit = _query_int("limit", admin_views.PAGE_DEFAULT, 1, admin_views.PAGE_MAX) or admin_views.PAGE_DEFAULT
        before = _event_before()
        return admin_views.audit(session(), limit=limit, before=before), 200, NO_STORE


def _event_before() -> int | None:
    raw = request.args.get("before")
    if raw is None:
        return None
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 19) or not 1 <= int(raw) <= MAX_EVENT_ID:
        raise InvalidInput("before", f"must be an event id from 1 to {MAX_EVENT_ID}")
    return int(raw)
