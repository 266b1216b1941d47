"""The recording door (docs/api.md "Doors"): who may create, upload and end, decided before any body is read.

Two before_request hooks stand around the rate limits (server/web/api/__init__.py orders them):
`resolve_recording_key` looks up the key of a keyed create, upload or end (/k/<key>/) with a session of its
own, closed at once, so the limits count the request against its key; `require_recording_key` then refuses
(401 recording_key_required) an unknown or revoked key, and with RECORDING=keys a request without one. Both
run before `receive_body`, so a refused upload's body is never stored (BodyDeadline drops it unread).
Refused requests have spent their address's budget first, as every create and upload does.
"""

from __future__ import annotations

from flask import g, request

from server.core.errors import KeyRequired
from server.infra.models import RecordingKey
from server.web.api.context import services, session
from server.web.doors import path_key, request_key

# The recording routes by their flask-restful endpoints (POST only): create, upload, end.
RECORDING_ENDPOINTS = frozenset({"videolist", "segmentlist", "videoend"})
REFUSED = "team03.refused_key"


def recording_request() -> bool:
    return request.method == "POST" and request.endpoint in RECORDING_ENDPOINTS


def resolve_recording_key() -> None:
    """Look up a keyed recording request's key (cached in g for the request); note, not raise, a refusal."""
    if not recording_request() or path_key() is None:
        return
    with services().sessions() as db:
        try:
            request_key(db)
        except KeyRequired as refused:
            g.setdefault(REFUSED, refused)


def require_recording_key() -> None:
    """Refuse a recording request whose key is unknown or revoked, or that has none when RECORDING=keys."""
    if not recording_request():
        return
    refused: KeyRequired | None = g.get(REFUSED)
    if refused is not None:
        raise refused
    if path_key() is None and services().config.RECORDING == "keys":
        raise KeyRequired("this server records only under a recording key: set the app's server URL to https://<host>/k/<key>")


def recording_key() -> RecordingKey | None:
    """This request's recording key (None without one); 401 if unknown or revoked."""
    return request_key(session())


def key_id() -> int | None:
    """The id of this request's recording key (None without one); 401 if unknown or revoked."""
    key = recording_key()
    return None if key is None else key.id
