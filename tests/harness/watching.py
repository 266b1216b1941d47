"""Who may watch, as a hostile table (issue 18): one table of requests and the answers they must get, run on the
embedded default (tests/api/test_watching.py, the Flask app) and through the shipped nginx in front of gunicorn
(tests/integration/test_watching_nginx.py).

The world: a public, an unlisted and three private videos (key A's, key B's, and one of a key R that is then
revoked), each with every player file of the media layout in its folder (as the publisher writes them), so a
refusal is the check's, never a file's absence. Keys are in the path only (/k/<key>/); links are
/s/<signature>/<expires>/video_files/<id>/<file>. Every answer is checked: its status, a JSON body (but a HEAD's
or a 2xx's), its error code, no title and no server path in it, and that no row and no byte was stored.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from flask import Flask
from sqlalchemy import func, inspect, select, text, update
from sqlalchemy.orm import Session

from server.core.doors import link_path, link_signature
from server.core.states import Visibility
from server.domain import keys
from server.infra.models import Video
from server.infra.services import Services
from tests.harness.android import new_video_body, segment_upload

SECRET = "hostile-table-link-secret-" + "x" * 20  # LINK_SECRET of both runs (nginx's $team03_link_secret too)
FILES = (
    "manifest.mpd",
    "master.m3u8",
    "HIGH/playlist.m3u8",
    "HIGH/vod.m3u8",
    "audio/playlist.m3u8",
    "storyboard.vtt",
    "HIGH/init.mp4",
    "HIGH/000000.m4s",
    "HIGH/000000.ts",
    "audio/init.mp4",
    "audio/000000.m4s",
    "thumbnails/000000.jpg",
    "storyboard/000000.jpg",
    "live_m3u8/root.m3u8",
    "live_m3u8/HIGH/stream.m3u8",
)
PLAYLIST = (".m3u8", ".mpd", ".vtt")
NAMES = ("P", "U", "X", "Y", "Z")  # public (A's), unlisted (B's), private: A's, B's, and R's (R then revoked)


@dataclass
class World:
    """The videos, keys and links the table's paths name ({P}, {X}, {A}, {LX}, ...)."""

    values: dict[str, str]
    titles: list[str]
    files: dict[tuple[int, str], bytes]  # (video id, name) -> bytes written
    media_root: Path

    def path(self, template: str) -> str:
        return template.format(**self.values)


def _title() -> str:
    return f"title-{uuid.uuid4().hex}"


def _file_bytes(video_id: int, name: str, segment: bytes) -> bytes:
    if name.endswith(PLAYLIST):
        return f"#EXTM3U\n# video {video_id} {name}\n".encode() if "m3u8" in name else f"<!-- {video_id} {name} -->\n".encode()
    return segment


def build_world(app: Flask, segment: bytes) -> World:
    """Make the videos (through the app, as a phone does), the keys, the files and the links."""
    services: Services = app.extensions["team03"]
    client = app.test_client()
    titles, ids = [], {}
    for name in NAMES:
        titles.append(_title())
        answer = client.post("/videos", json={"title": titles[-1], "description": "", "tags": ""})
        assert answer.status_code == 201, answer.json
        ids[name] = answer.json["video_id"]
    with services.sessions() as session:
        made = {name: keys.mint(services, session, f"watch-{name}-{uuid.uuid4().hex[:6]}", by="test") for name in "ABR"}
        rows = {name: row.id for name, (row, _) in made.items()}
        owner = {"X": "A", "Y": "B", "Z": "R", "P": "A", "U": "B"}
        seen = {"P": Visibility.PUBLIC, "U": Visibility.UNLISTED, "X": Visibility.PRIVATE, "Y": Visibility.PRIVATE}
        for name, vid in ids.items():
            values = {"key_id": rows[owner[name]], "visibility": seen.get(name, Visibility.PRIVATE)}
            session.execute(update(Video).where(Video.id == vid).values(**values))
        session.commit()
        for name, vid in ids.items():  # a segment each, under its key, as the phone sends it: lists show videos from then on
            body, content_type = segment_upload(0, segment)
            stored = client.post(f"/k/{made[owner[name]][1]}/video_segment/{vid}", data=body, content_type=content_type)
            assert stored.status_code == 201, stored.json
        keys.revoke(services, session, made["R"][0].name, by="test")
        missing = int(session.scalar(select(func.max(Video.id))) or 0) + 1000
    files = {}
    for vid in ids.values():
        for name in FILES:
            data = _file_bytes(vid, name, segment)
            key = services.media.served(vid, name)
            assert key is not None, name
            services.media.put(key, data)
            files[(vid, name)] = data
    values = {name: str(vid) for name, vid in ids.items()} | {"M": str(missing)}
    values |= {name: made[name][1] for name in "ABR"}
    values |= {"W": base64.urlsafe_b64encode(hashlib.sha256(b"wrong").digest()).decode().rstrip("="), "A42": made["A"][1][:42]}
    values |= _links(ids, missing)
    return World(values, titles, files, services.config.MEDIA_ROOT)


def _prefix(secret: str, video_id: int, expires: int) -> str:
    return link_path(secret, video_id, expires, "x").split("/video_files/")[0]


def _links(ids: Mapping[str, int], missing: int) -> dict[str, str]:
    """Link prefixes (/s/<sig>/<exp>): good ones for X and P, and every way one can be wrong."""
    later, past = int(time.time()) + 3600, int(time.time()) - 10
    x = ids["X"]
    good = _prefix(SECRET, x, later)
    sig, exp = good.split("/")[2:4]
    return {
        "LX": good,
        "LP": _prefix(SECRET, ids["P"], later),
        "LY": _prefix(SECRET, ids["Y"], later),
        "LM": _prefix(SECRET, missing, later),
        "LXexpired": _prefix(SECRET, x, past),
        "LXother": _prefix("another-secret", x, later),  # signed, by another secret
        "LXforged": f"/s/{'A' * 22}/{exp}",
        "LXtrunc": f"/s/{sig[:21]}/{exp}",
        "LXpadded": f"/s/{sig}==/{exp}",
        "LXlater": f"/s/{sig}/{later + 1}",  # the expiry moved on, the signature kept
        "LXnoexp": f"/s/{sig}",
        "LXzero": f"/s/{link_signature(SECRET, x, 0)}/0",
    }


@dataclass(frozen=True)
class Case:
    name: str
    method: str
    path: str  # a template for World.path
    status: int | tuple[int, ...]  # a tuple: the front may answer either (the comment says why)
    code: str | None = None  # the JSON error code expected (None: a 2xx or a HEAD)
    headers: dict[str, str] = field(default_factory=dict)
    file: str | None = None  # a 200's body is this file of the video named by `owner`
    owner: str = "X"
    body: str | None = None  # "upload": the Android app's multipart upload of a segment; "create": POST /videos' JSON
    shows: tuple[str, ...] = ()  # videos whose titles this answer may carry (a list's)


HIDDEN, REFUSED, KEY = "not_found", "link_refused", "recording_key_required"
PRIVATE_ROUTES = [
    ("android mpd", "/live_mpd/{V}.mpd"),
    ("android mpd poll", "/live_mpd/{V}.mpd?last_segment_id=0"),
    ("legacy master", "/live_m3u8/{V}/root.m3u8"),
    ("legacy media", "/live_m3u8/{V}/HIGH/stream.m3u8"),
    ("dash mpd", "/video_files/{V}/manifest.mpd"),
    ("hls master", "/video_files/{V}/master.m3u8"),
    ("hls media", "/video_files/{V}/HIGH/playlist.m3u8"),
    ("hls vod", "/video_files/{V}/HIGH/vod.m3u8"),
    ("hls audio", "/video_files/{V}/audio/playlist.m3u8"),
    ("storyboard vtt", "/video_files/{V}/storyboard.vtt"),
    ("init", "/video_files/{V}/HIGH/init.mp4"),
    ("segment", "/video_files/{V}/HIGH/000000.m4s"),
    ("ts segment", "/video_files/{V}/HIGH/000000.ts"),
    ("audio segment", "/video_files/{V}/audio/000000.m4s"),
    ("thumbnail", "/video_files/{V}/thumbnails/000000.jpg"),
    ("storyboard tile", "/video_files/{V}/storyboard/000000.jpg"),
]


def _probes(video: str, prefix: str, status: int, code: str, label: str) -> list[Case]:
    return [Case(f"{label}: {name}", "GET", prefix + path.replace("{V}", "{" + video + "}"), status, code) for name, path in PRIVATE_ROUTES]


CASES: list[Case] = [
    # A private video probed anonymously through every player route, and a missing one: the same 404.
    *_probes("X", "", 404, HIDDEN, "anonymous private"),
    *_probes("M", "", 404, HIDDEN, "missing video"),
    Case("anonymous private: HEAD segment", "HEAD", "/video_files/{X}/HIGH/000000.m4s", 404),
    Case("anonymous private: ranged segment", "GET", "/video_files/{X}/HIGH/000000.m4s", 404, HIDDEN, {"Range": "bytes=0-9"}),
    Case("anonymous private: conditional", "GET", "/video_files/{X}/master.m3u8", 404, HIDDEN, {"If-None-Match": '"x"'}),
    Case("anonymous private: POST", "POST", "/video_files/{X}/master.m3u8", 405, "method_not_allowed"),
    Case("revoked key's private video, anonymous", "GET", "/video_files/{Z}/master.m3u8", 404, HIDDEN),
    Case("watchable: private", "GET", "/api/watchable/{X}", 403, "not_watchable"),
    Case("watchable: missing", "GET", "/api/watchable/{M}", 403, "not_watchable"),
    # The key in the query, a header or a cookie instead of the path: anonymous.
    Case("key in query", "GET", "/video_files/{X}/master.m3u8?key={A}", 404, HIDDEN),
    Case("key in query k", "GET", "/live_mpd/{X}.mpd?k={A}", 404, HIDDEN),
    Case("key in header", "GET", "/video_files/{X}/master.m3u8", 404, HIDDEN, {"X-Recording-Key": "{A}"}),
    Case("key as bearer", "GET", "/video_files/{X}/HIGH/000000.m4s", 404, HIDDEN, {"Authorization": "Bearer {A}"}),
    Case("key as cookie", "GET", "/live_m3u8/{X}/root.m3u8", 404, HIDDEN, {"Cookie": "key={A}"}),
    # Another key's video, a wrong key, a revoked key (on its own video and on a public one).
    *_probes("X", "/k/{B}", 404, HIDDEN, "another key's video")[:6],
    Case("wrong key: private", "GET", "/k/{W}/video_files/{X}/master.m3u8", 401, KEY),
    Case("wrong key: public", "GET", "/k/{W}/video_files/{P}/HIGH/000000.m4s", 401, KEY),
    Case("wrong key: android mpd", "GET", "/k/{W}/live_mpd/{X}.mpd", 401, KEY),
    Case("revoked key: own video", "GET", "/k/{R}/video_files/{Z}/master.m3u8", 401, KEY),
    Case("revoked key: android mpd", "GET", "/k/{R}/live_mpd/{Z}.mpd", 401, KEY),
    Case("revoked key: public video", "GET", "/k/{R}/video_files/{P}/manifest.mpd", 401, KEY),
    # Path tricks under /k/: dot-dot, encoded slashes, doubled prefixes, a short or long key.
    Case("k: dot-dot out of the key", "GET", "/k/{A}/../video_files/{X}/master.m3u8", 404, HIDDEN),
    Case("k: dot-dot to another video", "GET", "/k/{B}/video_files/{Y}/../{X}/master.m3u8", 404, HIDDEN),
    Case("dot-dot from public to private", "GET", "/video_files/{P}/../{X}/master.m3u8", 404, HIDDEN),
    Case("dot-dot from public to private media", "GET", "/video_files/{P}/HIGH/../../{X}/HIGH/000000.m4s", 404, HIDDEN),
    Case("k: encoded slashes, another key", "GET", "/k/{B}/video_files%2F{X}%2Fmaster.m3u8", 404, HIDDEN),
    Case("k: encoded slashes, wrong key", "GET", "/k%2F{W}%2Fvideo_files/{X}/master.m3u8", 401, KEY),
    Case("encoded slashes, anonymous", "GET", "/video_files%2F{X}%2FHIGH%2F000000.m4s", 404, HIDDEN),
    Case("k: doubled prefix", "GET", "/k/{A}/k/{A}/video_files/{X}/master.m3u8", 404, HIDDEN),
    Case("k: key then link", "GET", "/k/{A}{LX}/video_files/{X}/master.m3u8", 404, HIDDEN),
    Case("k: short key", "GET", "/k/{A42}/video_files/{X}/master.m3u8", 404, HIDDEN),
    Case("k: long key", "GET", "/k/{A}A/video_files/{X}/master.m3u8", 404, HIDDEN),
    Case("k: no key", "GET", "/k//video_files/{X}/master.m3u8", 404, HIDDEN),
    # Links: forged, expired, truncated, altered, another secret's, another video's, another route.
    Case("link: another video's", "GET", "{LP}/video_files/{X}/master.m3u8", 403, REFUSED),
    Case("link: another private video's", "GET", "{LY}/video_files/{X}/HIGH/000000.m4s", 403, REFUSED),
    Case("link: forged", "GET", "{LXforged}/video_files/{X}/master.m3u8", 403, REFUSED),
    Case("link: expired", "GET", "{LXexpired}/video_files/{X}/master.m3u8", 403, REFUSED),
    Case("link: expired media", "GET", "{LXexpired}/video_files/{X}/HIGH/000000.m4s", 403, REFUSED),
    Case("link: another secret", "GET", "{LXother}/video_files/{X}/manifest.mpd", 403, REFUSED),
    Case("link: truncated signature", "GET", "{LXtrunc}/video_files/{X}/master.m3u8", 403, REFUSED),
    Case("link: padded signature", "GET", "{LXpadded}/video_files/{X}/master.m3u8", 403, REFUSED),
    Case("link: expiry moved", "GET", "{LXlater}/video_files/{X}/master.m3u8", 403, REFUSED),
    Case("link: no expiry", "GET", "{LXnoexp}/video_files/{X}/master.m3u8", 403, REFUSED),
    Case("link: expiry zero", "GET", "{LXzero}/video_files/{X}/master.m3u8", 403, REFUSED),
    Case("link: truncated path", "GET", "{LX}/video_files/", 403, REFUSED),
    Case("link: on the android mpd", "GET", "{LX}/live_mpd/{X}.mpd", 403, REFUSED),
    Case("link: on legacy hls", "GET", "{LX}/live_m3u8/{X}/root.m3u8", 403, REFUSED),
    Case("link: on the video's json", "GET", "{LX}/video/{X}", 403, REFUSED),
    Case("link: doubled", "GET", "{LX}{LX}/video_files/{X}/master.m3u8", 403, REFUSED),
    Case("link: encoded slashes", "GET", "{LP}/video_files%2F{X}%2Fmaster.m3u8", 403, REFUSED),
    # nginx resolves the dot-dot first (video X, whose link this is not: 403); the app takes the link as P's and
    # then finds no such file of P (404). Either way nothing of X.
    Case("link: dot-dot to another video", "GET", "{LP}/video_files/{P}/../{X}/master.m3u8", (403, 404)),
    Case("link in the query", "GET", "/video_files/{X}/master.m3u8?s={LX}", 404, HIDDEN),
    Case("link: a file outside the layout", "GET", "{LX}/video_files/{X}/originals/000000.mp4", 404, "not_found"),
    # What must open (the table's controls: a check that refused everything would fail these).
    Case("public plays", "GET", "/video_files/{P}/master.m3u8", 200, file="master.m3u8", owner="P"),
    Case("unlisted plays", "GET", "/video_files/{U}/HIGH/000000.m4s", 200, file="HIGH/000000.m4s", owner="U"),
    Case("unlisted legacy", "GET", "/live_m3u8/{U}/root.m3u8", 200, file="live_m3u8/root.m3u8", owner="U"),
    Case("watchable: public", "GET", "/api/watchable/{P}", 204),
    Case("own key: master", "GET", "/k/{A}/video_files/{X}/master.m3u8", 200, file="master.m3u8"),
    Case("own key: segment", "GET", "/k/{A}/video_files/{X}/HIGH/000000.m4s", 200, file="HIGH/000000.m4s"),
    Case("own key: legacy", "GET", "/k/{A}/live_m3u8/{X}/HIGH/stream.m3u8", 200, file="live_m3u8/HIGH/stream.m3u8"),
    Case("own key: android mpd", "GET", "/k/{A}/live_mpd/{X}.mpd", 200),
    Case("another key on a public video", "GET", "/k/{B}/video_files/{P}/storyboard.vtt", 200, file="storyboard.vtt", owner="P"),
    Case("link: master", "GET", "{LX}/video_files/{X}/master.m3u8", 200, file="master.m3u8"),
    Case("link: mpd", "GET", "{LX}/video_files/{X}/manifest.mpd", 200, file="manifest.mpd"),
    Case("link: media playlist", "GET", "{LX}/video_files/{X}/HIGH/playlist.m3u8", 200, file="HIGH/playlist.m3u8"),
    Case("link: segment", "GET", "{LX}/video_files/{X}/HIGH/000000.m4s", 200, file="HIGH/000000.m4s"),
    Case("link: thumbnail", "GET", "{LX}/video_files/{X}/thumbnails/000000.jpg", 200, file="thumbnails/000000.jpg"),
    Case("link: missing video", "GET", "{LM}/video_files/{M}/master.m3u8", 404, HIDDEN),
    # The JSON reads and the recording routes (the recording door, merged from main): a private video is missing
    # to others, a wrong or revoked key is 401 before any body is read, and nothing of a refused upload is stored.
    Case("list: anonymous", "GET", "/videos", 200, shows=("P",)),
    Case("list: key A", "GET", "/k/{A}/videos", 200, shows=("P", "X")),
    Case("list: key B", "GET", "/k/{B}/videos", 200, shows=("P", "U", "Y")),
    Case("list: revoked key", "GET", "/k/{R}/videos", 401, KEY),
    Case("list: key in query", "GET", "/videos?key={A}", 200, shows=("P",)),
    Case("video json: anonymous private", "GET", "/video/{X}", 404, HIDDEN),
    Case("video json: another key's", "GET", "/k/{B}/video/{X}", 404, HIDDEN),
    Case("segments json: anonymous private", "GET", "/video_segment/{X}", 404, HIDDEN),
    Case("upload: revoked key", "POST", "/k/{R}/video_segment/{Z}", 401, KEY, body="upload"),
    Case("upload: wrong key", "POST", "/k/{W}/video_segment/{X}", 401, KEY, body="upload"),
    Case("upload: another key's video", "POST", "/k/{B}/video_segment/{X}", 404, HIDDEN, body="upload"),
    Case("upload: anonymous to a keyed video", "POST", "/video_segment/{X}", 404, HIDDEN, body="upload"),
    Case("upload: under a link", "POST", "{LX}/video_files/{X}/master.m3u8", 405, "method_not_allowed", body="upload"),
    Case("upload: link prefix on the upload route", "POST", "{LX}/video_segment/{X}", 405, "method_not_allowed", body="upload"),
    Case("create: revoked key", "POST", "/k/{R}/videos", 401, KEY, body="create"),
    Case("create: wrong key", "POST", "/k/{W}/videos", 401, KEY, body="create"),
    Case("end: revoked key", "POST", "/k/{R}/video_end/{Z}", 401, KEY, {"Content-Type": "application/x-www-form-urlencoded"}),
]

Send = Callable[[str, str, dict[str, str], bytes | None], tuple[int, dict[str, str], bytes]]  # method, path, headers, body


def snapshot(session: Session, media_root: Path) -> tuple[dict[str, int], dict[str, int]]:
    """Every table's row count and every file under MEDIA_ROOT with its size: what a refused request must not change."""
    session.rollback()  # a fresh read
    tables = [t for t in inspect(session.get_bind()).get_table_names() if t != "alembic_version"]
    counts = {t: int(session.scalar(text(f"SELECT COUNT(*) FROM {t}")) or 0) for t in tables}
    files = {str(p.relative_to(media_root)): p.stat().st_size for p in media_root.rglob("*") if p.is_file()}
    return counts, files


def check(world: World, case: Case, answer: tuple[int, dict[str, str], bytes]) -> list[str]:
    """What is wrong with `answer` to `case` (an empty list: nothing)."""
    status, headers, body = answer
    wrong = []
    expected = case.status if isinstance(case.status, tuple) else (case.status,)
    if status not in expected:
        wrong.append(f"status {status}, expected {case.status}: {body[:200]!r}")
    lowered = body.lower()
    allowed = {world.titles[NAMES.index(name)] for name in case.shows}
    for title in set(world.titles) - allowed:
        if title.encode() in body:
            wrong.append("a title leaked")
    wrong += [f"the list misses {title}" for title in allowed if title.encode() not in body]
    for leak in (str(world.media_root).encode(), b"/srv/", b"traceback", b"/tmp/"):
        if leak.lower() in lowered:
            wrong.append(f"a server path leaked: {leak!r}")
    if status >= 400 and case.method != "HEAD":
        content_type = {k.lower(): v for k, v in headers.items()}.get("content-type", "")
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        if not content_type.startswith("application/json") or not isinstance(payload, dict):
            wrong.append(f"not a JSON error ({content_type}): {body[:200]!r}")
        elif case.code is not None and payload.get("code") != case.code:
            wrong.append(f"code {payload.get('code')!r}, expected {case.code!r}")
    if status == 200 and case.file is not None and body != world.files[(int(world.values[case.owner]), case.file)]:
        wrong.append("not the video's file")
    return wrong


def _body(case: Case, headers: dict[str, str], segment: bytes) -> bytes | None:
    """The body `case` sends (its Content-Type put in `headers`)."""
    if case.body == "upload":
        body, headers["Content-Type"] = segment_upload(0, segment)
        return body
    if case.body == "create":
        headers["Content-Type"] = "application/json"
        return json.dumps(new_video_body("hostile")).encode()
    return b"last_segment_id=0" if case.method == "POST" else None


def run_table(world: World, send: Send, session: Session, segment: bytes) -> None:
    """Send every case; fail naming every case answered wrongly, or that stored a row or a byte."""
    failures = []
    before = snapshot(session, world.media_root)
    for case in CASES:
        headers = {name: world.path(value) for name, value in case.headers.items()}
        data = _body(case, headers, segment)
        answer = send(case.method, world.path(case.path), headers, data)
        failures += [f"{case.name} ({case.method} {case.path}): {problem}" for problem in check(world, case, answer)]
        after = snapshot(session, world.media_root)
        if after != before:
            failures.append(f"{case.name}: stored something")
            before = after
    assert not failures, "\n".join(failures)
    assert len(CASES) >= 60
