"""The Android app's requests, byte for byte as Retrofit 1.x and OkHttp send them (built by server/ops/phone.py), its
strict keys, and its player's loop (`android_player`), all against one server URL as the app is configured: the
host (`http://127.0.0.1:5000`) or a recording key's URL (`https://host/k/<key>`)."""

from __future__ import annotations

import time
from urllib.parse import urljoin
from xml.etree import ElementTree

import requests

from server.ops.phone import new_video_body, segment_upload

__all__ = ["APP_HEADERS", "SEGMENT_KEYS", "VIDEO_KEYS", "android_player", "new_video_body", "segment_upload"]

NS = {"d": "urn:mpeg:dash:schema:mpd:2011"}
APP_HEADERS = {"Accept": "application/json", "Cache-control": "public,max-age=0"}
VIDEO_KEYS = {
    "video_id",
    "title",
    "created_at",
    "type",
    "status",
    "segment_count",
    "segment_duration",
    *(f"repr_{i}_{k}" for i in (1, 2, 3) for k in ("name", "bandwidth", "width", "height")),
    "uri_mpd",
    "uri_m3u8",
    "uri_thumbnail",
    "base_url",
}
SEGMENT_KEYS = {
    "video_id",
    "segment_id",
    "original_path",
    "original_extension",
    "media_mpd",
    "media_m3u8",
    "status",
    "repr_1_status",
    "repr_2_status",
    "repr_3_status",
}


def android_player(server: str, vid: int, deadline: float) -> list[str]:
    """Play like the app: poll every 1.5 s with last_segment_id, fetch every new MP4, stop at streamEnded."""
    with requests.Session() as session:
        return _poll(session, server, vid, deadline)


def _poll(session: requests.Session, server: str, vid: int, deadline: float) -> list[str]:
    seen: list[str] = []
    last: str | None = None
    while time.monotonic() < deadline:
        url = f"{server}/live_mpd/{vid}.mpd" + ("" if last is None else f"?last_segment_id={last}")
        response = session.get(url, headers=APP_HEADERS, timeout=20)
        assert response.status_code == 200, (url, response.status_code)
        root = ElementTree.fromstring(response.content)
        reps = sorted(root.findall(".//d:Representation", NS), key=lambda r: -int(r.get("bandwidth")))
        mpd_base = root.find("d:BaseURL", NS).text
        for segment_url in reps[0].findall(".//d:SegmentURL", NS):
            name = segment_url.get("media")
            if seen and name <= seen[-1]:
                continue  # the app compares names as strings
            # ExoPlayer resolves BaseURLs against base_url, then the app strips "/video_files/" and asks its server.
            resolved = urljoin(urljoin(urljoin(f"/video_files/{vid}", mpd_base), reps[0].find("d:BaseURL", NS).text), name)
            assert resolved.startswith("/video_files/")
            mp4 = session.get(server + "/video_files/" + resolved.removeprefix("/video_files/"), timeout=20)
            assert mp4.status_code == 200 and mp4.headers["Content-Type"] == "video/mp4"
            assert mp4.content[4:8] == b"ftyp" and mp4.content.index(b"moov") < mp4.content.index(b"mdat")
            seen.append(name)
        last = response.headers.get("lastSegmentId", last)
        if response.headers["streamEnded"] == "true":
            return seen
        time.sleep(1.5)  # the app's polling interval
    raise AssertionError(f"the player never saw streamEnded; got {seen}")
