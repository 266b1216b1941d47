"""The admin dashboard: the built React app in static/dist, served at / (docs/admin-api.md).

Client routes (/workers, /recording/7, ...) get index.html, which the browser must revalidate every
time (no-cache), so a new build shows on the next load; the hashed files under /assets/ never change
under their name, so they are cached for a year (immutable). The API's and the Android app's paths
never reach this module (SpaPath refuses them), so an unknown one keeps its JSON 404. Without a
build, / says how to make one instead of failing.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from flask import Response, current_app, request, send_from_directory
from flask_restful import Resource
from werkzeug.routing import PathConverter
from werkzeug.wrappers import Response as WerkzeugResponse

from server.config import ROOT
from server.core.errors import NotFound
from server.web import caching
from server.web.api.resource import Answer

DIST = ROOT / "static" / "dist"
ASSET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
# First path parts that belong to the server, never to the dashboard.
SERVER_PATHS = (
    "api",
    "k",  # server/web/doors.py: a recording key's routes; one that matches none is the JSON 404
    "s",  # a signed link's files
    "assets",
    "video_files",
    "videos",
    "video",
    "video_segment",
    "video_end",
    "live_mpd",
    "live_m3u8",
    "time",
    "ping",
    "healthz",
    "readyz",
    "metrics",
    r"status\.json",
)

# The page runs only its own built files (hls.js's worker and the players' MediaSource are blob: URLs; React
# sets styles through the DOM, which style-src does not govern), is framed by no site (clickjacking), sends
# no URL of it to other sites, and every file is taken for the type it is sent as.
HARDENING = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
        "worker-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    ),
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
}

NOT_BUILT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>team03 dashboard not built</title></head>
<body>
<h1>The dashboard is not built yet</h1>
<p><code>scripts/run.sh</code> builds it when it is missing or older than its sources. By hand:</p>
<pre>cd static &amp;&amp; npm ci &amp;&amp; npm run build</pre>
<p>The API under <code>/api/admin/</code> and the Android app's routes work without it.</p>
</body></html>
"""


class SpaPath(PathConverter):
    """A client route of the dashboard: ASCII letters, digits, -, _ and /, not under one of SERVER_PATHS.

    Client routes are only ever those characters, so a lookalike of a server path (/v%C3%ADdeos) or
    anything stranger keeps the JSON 404 rather than getting the app.
    """

    regex = r"(?!(?:" + "|".join(SERVER_PATHS) + r")(?:/|$))[A-Za-z0-9_-][A-Za-z0-9_/-]*"


def dist() -> Path:
    """Where the build is (tests point DASHBOARD_DIST elsewhere)."""
    return Path(current_app.config.get("DASHBOARD_DIST", DIST))


def _index() -> WerkzeugResponse:  # what make_conditional is typed to return
    root = dist()
    if not (root / "index.html").is_file():
        response = Response(NOT_BUILT, status=503, content_type="text/html; charset=utf-8")
        response.headers["Cache-Control"] = "no-store"
        response.headers["Retry-After"] = "60"
        response.headers.update(HARDENING)
        return response
    # Small and read whole: no file handle outlives the request, whoever forgets to close the response.
    data = (root / "index.html").read_bytes()
    response = Response(data, content_type="text/html; charset=utf-8")
    response.set_etag(hashlib.sha256(data).hexdigest()[:32])
    response.headers["Cache-Control"] = "no-cache"
    response.headers.update(HARDENING)
    return response.make_conditional(request)


class DashboardIndex(Resource):
    def get(self) -> Answer:
        return _index()


class DashboardPage(Resource):
    def get(self, path: str) -> Answer:
        return _index()


class DashboardAsset(Resource):
    def get(self, name: str) -> Answer:
        folder = dist() / "assets"
        if not ASSET_NAME.fullmatch(name) or not (folder / name).is_file():
            raise NotFound(f"no such asset: {name[:80]}")
        response = send_from_directory(folder, name, conditional=True, etag=True, max_age=caching.YEAR)
        response.headers["Cache-Control"] = caching.IMMUTABLE
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response
