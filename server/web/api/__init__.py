"""The HTTP layer: the one route table."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NoReturn

import flask_restful
from flask import Flask
from werkzeug.routing import IntegerConverter, Map

from server.infra.models import MAX_ID
from server.web.api import errors
from server.web.api.admin import (
    AdminAttemptCancel,
    AdminEvents,
    AdminSegmentRetry,
    AdminSystem,
    AdminVideo,
    AdminVideoEnd,
    AdminVideoRetry,
    AdminVideos,
    AdminWorkers,
)
from server.web.api.admin_auth import AdminLogin, AdminLogout, AdminMe
from server.web.api.admin_doors import AdminAudit, AdminKeyRevoke, AdminKeys, AdminVideoLink
from server.web.api.admin_webhooks import AdminWebhook, AdminWebhookDeliveries, AdminWebhooks
from server.web.api.context import FEED, close_session
from server.web.api.health import Healthz, Ping, Readyz, Status
from server.web.api.limits import init_limits
from server.web.api.metrics import Metrics
from server.web.api.openapi import OpenApiDocument
from server.web.api.playback import (
    AndroidMpd,
    DashManifest,
    HlsMaster,
    HlsMedia,
    HlsVod,
    LegacyMaster,
    LegacyMedia,
    MediaFile,
    NotALink,
    ServerTime,
    Storyboard,
    Watchable,
    add_cors,
)
from server.web.api.recording import require_recording_key, resolve_recording_key
from server.web.api.segments import SegmentItem, SegmentList
from server.web.api.spa import DashboardAsset, DashboardIndex, DashboardPage, SpaPath
from server.web.api.uploads import JsonProvider, discard_uploads, receive_body
from server.web.api.videos import VideoEnd, VideoItem, VideoList
from server.web.api.watching import keep_private
from server.web.api.worker_api import (
    AttemptComplete,
    AttemptFail,
    AttemptHeartbeat,
    AttemptList,
    AttemptOutput,
    AttemptSource,
    WorkerAlive,
    WorkerBye,
    WorkerHello,
    authenticate_worker,
)
from server.web.eventfeed import Feed


class DatabaseId(IntegerConverter):
    """`<int:...>` in this table: ASCII digits within the INT columns' range, else no route matches (404).

    Werkzeug's own converter takes any length, so 2^63 reached the database driver (SQLite: OverflowError).
    """

    regex = r"[0-9]{1,10}"

    def __init__(self, map: Map) -> None:  # noqa: A002 - werkzeug's name
        super().__init__(map, max=MAX_ID)


class Api(flask_restful.Api):
    """Flask-RESTful, but errors go to the one mapper in server/web/api/errors.py."""

    def handle_error(self, e: Exception) -> NoReturn:
        raise e


ROUTES = [
    (VideoList, "/videos"),
    (VideoItem, "/video/<int:video_id>"),
    (SegmentList, "/video_segment/<int:video_id>"),
    (SegmentItem, "/video_segment/<int:video_id>/<int:segment_id>"),
    (VideoEnd, "/video_end/<int:video_id>"),
    # Android player (ExoPlayer 1.x MPD, legacy HLS for Apple devices)
    (AndroidMpd, "/live_mpd/<int:video_id>.mpd"),
    (LegacyMaster, "/live_m3u8/<int:video_id>/root.m3u8"),
    (LegacyMedia, "/live_m3u8/<int:video_id>/<string(maxlength=16):name>/stream.m3u8"),
    # Standard players: <base_url>/<uri_mpd>, <base_url>/<uri_m3u8>
    (DashManifest, "/video_files/<int:video_id>/manifest.mpd"),
    (HlsMaster, "/video_files/<int:video_id>/master.m3u8"),
    (HlsMedia, "/video_files/<int:video_id>/<string(maxlength=16):name>/playlist.m3u8"),
    (HlsVod, "/video_files/<int:video_id>/<string(maxlength=16):name>/vod.m3u8"),
    (Storyboard, "/video_files/<int:video_id>/storyboard.vtt"),
    (MediaFile, "/video_files/<int:video_id>/<path:path>"),
    (ServerTime, "/time"),
    # Who may watch (server/web/api/watching.py): nginx's auth_request for anonymous playback from the tree, and
    # what is left under /s/ once server/web/doors.py took the whole links
    (Watchable, "/api/watchable/<int:video_id>"),
    (NotALink, "/s/<path:rest>"),
    # Operations
    (Ping, "/ping"),
    (Status, "/status.json"),
    (Healthz, "/healthz"),
    (Readyz, "/readyz"),
    (Metrics, "/metrics"),
    # This table as OpenAPI 3.1 (server/web/api/openapi.json): a route added here is added there too (tests/api/test_openapi.py)
    (OpenApiDocument, "/openapi.json"),
    # The admin dashboard (docs/admin-api.md): every /api/admin/ route but login calls require_admin first
    (AdminLogin, "/api/admin/login"),
    (AdminLogout, "/api/admin/logout"),
    (AdminMe, "/api/admin/me"),
    # Workers (docs/workers.md): Bearer token, not rate-limited once authenticated
    (WorkerHello, "/api/worker/hello"),
    (WorkerAlive, "/api/worker/heartbeat"),
    (WorkerBye, "/api/worker/bye"),
    (AttemptList, "/api/worker/attempts"),
    (AttemptSource, "/api/worker/attempts/<int:attempt_id>/source"),
    (AttemptHeartbeat, "/api/worker/attempts/<int:attempt_id>/heartbeat"),
    (AttemptOutput, "/api/worker/attempts/<int:attempt_id>/outputs/<string(maxlength=32):name>"),
    (AttemptComplete, "/api/worker/attempts/<int:attempt_id>/complete"),
    (AttemptFail, "/api/worker/attempts/<int:attempt_id>/fail"),
    # The admin dashboard (docs/admin-api.md); its login routes are server/web/api/auth.py's
    (AdminVideos, "/api/admin/videos"),
    (AdminVideo, "/api/admin/videos/<int:video_id>"),
    (AdminVideoEnd, "/api/admin/videos/<int:video_id>/end"),
    (AdminVideoRetry, "/api/admin/videos/<int:video_id>/retry"),
    (AdminSegmentRetry, "/api/admin/videos/<int:video_id>/segments/<int:segment_id>/retry"),
    (AdminWorkers, "/api/admin/workers"),
    (AdminAttemptCancel, "/api/admin/attempts/<int:attempt_id>/cancel"),
    (AdminSystem, "/api/admin/system"),
    (AdminEvents, "/api/admin/events"),
    (AdminWebhooks, "/api/admin/webhooks"),
    (AdminWebhook, "/api/admin/webhooks/<int:webhook_id>"),
    (AdminWebhookDeliveries, "/api/admin/webhooks/<int:webhook_id>/deliveries"),
    # Doors (docs/admin-api.md "Recording keys", "Who may watch", "Audit"): server/web/api/admin_doors.py
    (AdminKeys, "/api/admin/keys"),
    (AdminKeyRevoke, "/api/admin/keys/<string(maxlength=64):name>/revoke"),
    (AdminVideoLink, "/api/admin/videos/<int:video_id>/link"),
    (AdminAudit, "/api/admin/audit"),
    # The dashboard's built app (static/dist): its files, then every client route (SpaPath never matches the paths above)
    (DashboardIndex, "/"),
    (DashboardAsset, "/assets/<string(maxlength=128):name>"),
    (DashboardPage, "/<spa:path>"),
]


# The event-stream server (deploy/gunicorn-events.conf.py, server.create_events_app): the dashboard's
# streams, which nginx sends there, and a health check.
EVENT_ROUTES = [(Ping, "/ping"), (AdminEvents, "/api/admin/events")]


def init_app(app: Flask, routes: Sequence[tuple[type, str]] = ROUTES) -> None:
    app.url_map.converters["int"] = DatabaseId
    app.url_map.converters["spa"] = SpaPath
    app.json = JsonProvider(app)
    app.extensions[FEED] = Feed(app.extensions["team03"])
    api = Api(app)
    for resource, path in routes:
        api.add_resource(resource, path)
    # A recording request's key is looked up before the limits, which count it against that key, and a
    # refused one (no key with RECORDING=keys, unknown, revoked) is 401 after them, before any body is read.
    app.before_request(resolve_recording_key)
    init_limits(app, app.extensions["team03"])
    app.before_request(require_recording_key)
    errors.register(app)
    # A worker route's token is checked before its body is read.
    app.before_request(authenticate_worker)
    # Every body is in before a view opens a session; what a failed request received is deleted.
    app.before_request(receive_body)
    app.teardown_request(discard_uploads)
    app.after_request(add_cors)
    app.after_request(keep_private)
    app.teardown_appcontext(close_session)
