"""What players fetch: the Android MPD, legacy and standard HLS, DASH, storyboard, media files."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from flask import Response, request, send_file
from flask_restful import Resource
from werkzeug.wrappers import Response as WerkzeugResponse

from server.core.errors import LinkRefused, NotFound
from server.core.playlists import HLS_VOD
from server.core.transcode.ladder import RUNG_NAME
from server.domain import ingest, publishing
from server.web import answers, caching
from server.web.api.context import services, session
from server.web.api.resource import Answer
from server.web.api.watching import Watched, anonymous_may_watch

MIME = {
    "mpd": "application/dash+xml",
    "m3u8": "application/vnd.apple.mpegurl",
    "vtt": "text/vtt; charset=utf-8",
    "mp4": "video/mp4",
    "m4s": "video/iso.segment",
    "ts": "video/mp2t",
    "jpg": "image/jpeg",
}
# Only these files are served: never originals, logs, temp files or directory listings.
MEDIA_PATH = re.compile(
    rf"^(?:(?P<rung>{RUNG_NAME})/(?:\d{{6}}\.(?:mp4|m4s|ts)|init\.mp4)"
    r"|audio/(?:\d{6}\.m4s|init\.mp4)"
    r"|(?:thumbnails|storyboard)/\d{6}\.jpg)$"
)


def _answer(result: publishing.Rendered, kind: str) -> WerkzeugResponse:  # what make_conditional is typed to return
    response = Response(result.body, mimetype=None, content_type=MIME[kind])
    response.headers["Cache-Control"] = caching.FINISHED if result.finished else caching.LIVE
    for name, value in result.headers:
        response.headers[name] = value
    response.add_etag()
    return response.make_conditional(request)


def _gap() -> float:
    return services().config.GAP_TIMEOUT


# A rendition name in a playlist path; anything else is never a file (and never reaches a path).
TRACK = re.compile(rf"^(?:{RUNG_NAME}|audio)$")


def _published(video_id: int, name: str) -> WerkzeugResponse | None:
    """Answer the playlist file the publisher wrote (server/domain/publishing.py), as nginx does; None before the first.

    The same bytes, type and Cache-Control as deploy/nginx/team03.conf: 1 s, live or not (a finished
    playlist is revalidated by its ETag), which keeps nginx's answer a bare static file.
    """
    media = services().media
    key = media.served(video_id, name)
    body = None if key is None else media.read(key)  # small, replaced whole: never torn
    if body is None:
        return None
    return _answer(publishing.Rendered(body, finished=False), name.rsplit(".", 1)[1])


class AndroidMpd(Watched):
    def get(self, video_id: int) -> Answer:
        raw = request.args.get("last_segment_id")
        after = None if raw is None else ingest.parse_segment_id(raw, "last_segment_id")
        result = answers.rendered(services(), session(), video_id, "android", publishing.android_mpd(_gap(), after), str(after))
        return _answer(result, "mpd")


class LegacyMaster(Watched):
    def get(self, video_id: int) -> Answer:
        if (file := _published(video_id, f"{publishing.LEGACY}/root.m3u8")) is not None:
            return file
        return _answer(answers.rendered(services(), session(), video_id, "legacy-master", publishing.legacy_master), "m3u8")


class LegacyMedia(Watched):
    def get(self, video_id: int, name: str) -> Answer:
        if TRACK.match(name) and (file := _published(video_id, f"{publishing.LEGACY}/{name}/stream.m3u8")) is not None:
            return file
        result = answers.rendered(services(), session(), video_id, "legacy-media", publishing.legacy_media(_gap(), name), name)
        return _answer(result, "m3u8")


class DashManifest(Watched):
    def get(self, video_id: int) -> Answer:
        if (file := _published(video_id, "manifest.mpd")) is not None:
            return file
        render = publishing.dash(_gap(), video_id)
        return _answer(answers.rendered_when_published(services(), session(), video_id, "dash", render), "mpd")


class HlsMaster(Watched):
    def get(self, video_id: int) -> Answer:
        if (file := _published(video_id, "master.m3u8")) is not None:
            return file
        return _answer(answers.rendered(services(), session(), video_id, "hls-master", publishing.hls_master), "m3u8")


class HlsMedia(Watched):
    def get(self, video_id: int, name: str) -> Answer:
        if TRACK.match(name) and (file := _published(video_id, f"{name}/playlist.m3u8")) is not None:
            return file
        render = publishing.hls_media(_gap(), name)
        return _answer(answers.rendered_when_published(services(), session(), video_id, "hls-media", render, name), "m3u8")


class HlsVod(Watched):
    def get(self, video_id: int, name: str) -> Answer:
        """A finished video's VOD media playlist (its master names it); 404 while the video is live."""
        if TRACK.match(name) and (file := _published(video_id, f"{name}/{HLS_VOD}")) is not None:
            return file
        render = publishing.hls_vod(_gap(), name)
        return _answer(answers.rendered(services(), session(), video_id, "hls-vod", render, name), "m3u8")


class Storyboard(Watched):
    def get(self, video_id: int) -> Answer:
        if (file := _published(video_id, "storyboard.vtt")) is not None:
            return file
        return _answer(answers.rendered(services(), session(), video_id, "storyboard", publishing.storyboard(_gap())), "vtt")


class MediaFile(Watched):
    def get(self, video_id: int, path: str) -> Answer:
        if not MEDIA_PATH.match(path):
            raise NotFound(f"no such file: {path[:80]}")
        media = services().media
        key = media.served(video_id, path)
        mimetype = MIME[path.rsplit(".", 1)[1]]
        # Media never changes once written (stored whole), hence immutable.
        local = None if key is None else media.objects.local_path(key)
        response: WerkzeugResponse
        if local is not None:
            response = send_file(local, mimetype=mimetype, conditional=True, etag=True, max_age=caching.YEAR)
        else:  # in a bucket: nginx's cache tier serves these (deploy/nginx); the app answers without it too
            body = None if key is None else media.read(key)
            if body is None:
                raise NotFound(f"no such file: {path[:80]}")
            whole = Response(body, mimetype=mimetype)
            whole.add_etag()
            response = whole.make_conditional(request, accept_ranges=True, complete_length=len(body))
        response.headers["Cache-Control"] = caching.IMMUTABLE
        return response


class Watchable(Resource):
    """204 if a player without key or link may play the video, else 403: nginx's auth_request (deploy/nginx/team03.conf)."""

    def get(self, video_id: int) -> Answer:
        anonymous_may_watch(video_id)
        response = Response(status=204)
        response.headers["Cache-Control"] = "no-store"  # nginx keeps it 1 s at most, by its own micro-cache
        return response


class NotALink(Resource):
    """A path under /s/ that is not a whole signed link to a video's file (server/web/doors.py took none)."""

    def get(self, rest: str) -> Answer:
        raise LinkRefused("not a playback link: /s/<signature>/<expires>/video_files/<video id>/<file>")


class ServerTime(Resource):
    """The server's clock for DASH UTCTiming (urn:mpeg:dash:utc:http-iso:2014)."""

    def get(self) -> Answer:
        now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        response = Response(now, content_type="text/plain; charset=utf-8")
        response.headers["Cache-Control"] = "no-store"
        return response


PLAYER_PATHS = ("/live_mpd/", "/live_m3u8/", "/video_files/", "/time", "/s/")


def add_cors(response: Response) -> Response:
    """Let web players on other origins read playlists, media and the Android headers; browsers never sniff them."""
    if request.path.startswith(PLAYER_PATHS):
        # A picture or segment is what its Content-Type says: bytes that look like HTML are never run as a page.
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Access-Control-Allow-Origin"] = "*"
        response.headers["Access-Control-Allow-Headers"] = "Range, If-None-Match, If-Modified-Since"
        response.headers["Access-Control-Allow-Methods"] = "GET, HEAD, OPTIONS"
        response.headers["Access-Control-Expose-Headers"] = "lastSegmentId, streamEnded, Content-Length, Content-Range, ETag"
        response.headers["Access-Control-Max-Age"] = "86400"
    return response
