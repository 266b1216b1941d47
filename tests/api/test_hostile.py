"""Hostile requests, table-driven: every one is refused with a JSON 4xx, no traceback is logged, no server path leaks.

The app runs with memcached on (a private instance), as in production: cache keys built from URL parts
are part of what is attacked. Ids above 999,999 answer 400 once the segment-id bounds land (i7-bounds);
until then they are refused as "too large" or by the bounded URL converter, which is a 4xx either way.
"""

from __future__ import annotations

import base64
import logging
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from werkzeug.security import generate_password_hash

from server import create_app
from server.cli import db_upgrade
from server.infra.cache import MemcachedCache, memcached_key
from server.infra.models import Admin
from tests.harness.android import new_video_body, segment_upload
from tests.harness.services import ROOT, Memcached

HUGE = "9" * 5000  # past Python's int max str digits (4300)
ID_2_63 = str(2**63)
NOT_UTF8_PART = b'--b0undary\r\nContent-Disposition: form-data; name="segment_id"\r\n\r\n\xff\xfe\r\n--b0undary--\r\n'
DEEP_LIST = b"[" * 100_000 + b"]" * 100_000
DEEP_OBJECT = b'{"title": ' + b'{"a": ' * 100_000 + b"1" + b"}" * 100_000 + b"}"


@dataclass(frozen=True)
class Case:
    method: str
    path: str
    status: int | tuple[int, ...]  # the 4xx expected (a tuple: any of these)
    kwargs: dict = field(default_factory=dict)


def _multipart(segment_id: str, data: bytes | None = b"not a video" * 50, ext: str | None = "mp4") -> dict:
    body, content_type = segment_upload(segment_id, data, ext)
    return {"data": body, "content_type": content_type}


def _raw_multipart(body: bytes, boundary: str = "b0undary") -> dict:
    return {"data": body, "content_type": f"multipart/form-data; boundary={boundary}"}


def _json(raw: bytes) -> dict:
    return {"data": raw, "content_type": "application/json; charset=UTF-8"}


def _basic(raw: bytes) -> dict:
    return {"headers": {"Authorization": "Basic " + base64.b64encode(raw).decode()}, "json": {"title": "x"}}


V = "{vid}"  # replaced by a real video's id
ADMIN = {"Authorization": "admin"}  # replaced by an admin's credentials
CASES: list[Case] = [
    # ids past BIGINT, past Python's int parsing, negative, not numbers
    Case("GET", f"/video/{ID_2_63}", 404),
    Case("GET", "/video/" + "9" * 40, 404),
    Case("GET", f"/video/{HUGE}", 404),
    Case("PUT", f"/video/{ID_2_63}", 404, {"json": {"title": "x"}}),
    Case("DELETE", f"/video/{ID_2_63}", 404),
    Case("GET", f"/video_segment/{ID_2_63}", 404),
    Case("GET", f"/video_segment/{V}/{ID_2_63}", 404),
    Case("GET", f"/video_segment/{V}/{HUGE}", 404),
    Case("POST", f"/video_end/{ID_2_63}", 404, {"data": {"last_segment_id": "0"}}),
    Case("GET", f"/live_mpd/{ID_2_63}.mpd", 404),
    Case("GET", f"/live_m3u8/{ID_2_63}/root.m3u8", 404),
    Case("GET", f"/video_files/{ID_2_63}/manifest.mpd", 404),
    Case("GET", f"/video_files/{ID_2_63}/master.m3u8", 404),
    Case("GET", f"/video_files/{ID_2_63}/HIGH/000000.mp4", 404),
    Case("GET", "/video/-1", 404),
    Case("GET", "/video/1e3", 404),
    Case("GET", "/video/%00", 404),
    # last_segment_id / segment_id: huge, signed, fractional, non-ASCII digits
    Case("POST", f"/video_end/{V}", 400, {"data": {"last_segment_id": HUGE}}),
    Case("POST", f"/video_end/{V}", 400, {"data": {"last_segment_id": ID_2_63}}),
    Case("POST", f"/video_end/{V}", 400, {"data": {"last_segment_id": "-1"}}),
    Case("POST", f"/video_end/{V}", 400, {"data": {"last_segment_id": "\u0661"}}),
    Case("POST", f"/video_end/{V}", 400, {"data": {"last_segment_id": ""}}),
    Case("POST", f"/video_end/{V}", 400),
    Case("GET", f"/live_mpd/{V}.mpd?last_segment_id={HUGE}", 400),
    Case("GET", f"/live_mpd/{V}.mpd?last_segment_id=abc", 400),
    Case("GET", f"/live_mpd/{V}.mpd?last_segment_id=-5", 400),
    Case("GET", f"/live_mpd/{V}.mpd?last_segment_id=%C2%B9", 400),  # superscript one: str.isdigit() says yes
    Case("GET", f"/live_mpd/{V}.mpd?last_segment_id=%D9%A1", 400),  # Arabic-Indic one
    Case("GET", f"/live_mpd/{V}.mpd?last_segment_id=1000000", 400),
    Case("POST", f"/video_end/{V}", 400, {"data": {"last_segment_id": "1000000"}}),
    Case("POST", f"/video_segment/{V}", 400, _multipart(HUGE)),
    Case("POST", f"/video_segment/{V}", 400, _multipart(ID_2_63)),
    Case("POST", f"/video_segment/{V}", 400, _multipart("1.5")),
    Case("POST", f"/video_segment/{V}", 400, _multipart("\uff11")),
    Case("POST", f"/video_segment/{V}", 400, _multipart("0x10")),
    # JSON bodies: nesting, lone surrogates, numbers, encodings
    Case("POST", "/videos", 400, _json(DEEP_LIST)),
    Case("POST", "/videos", 400, _json(DEEP_OBJECT)),
    Case("POST", "/videos", 400, _json(b'{"title": "\\ud800"}')),
    Case("POST", "/videos", 400, _json(b'{"title": "a\\udfffb"}')),
    Case("POST", "/videos", 400, _json(b'{"title": ' + HUGE.encode() + b"}")),
    Case("POST", "/videos", 400, _json(b'{"title": 1e999999}')),
    Case("POST", "/videos", 400, _json(b"NaN")),
    Case("POST", "/videos", 400, _json(b"\xff\xfe{\x00}")),
    Case("POST", "/videos", 400, _json(b'{"title": "\xc3\x28"}')),
    Case("POST", "/videos", 400, {"data": b"title=x", "content_type": "application/x-www-form-urlencoded"}),
    Case("POST", "/videos", 400, {"data": b"", "content_type": "application/json"}),
    Case("POST", "/videos", 413, _json(b'{"title": "' + b"x" * (10 * 1024 * 1024) + b'"}')),
    Case("PUT", f"/video/{V}", 400, {**_json(DEEP_LIST), "headers": ADMIN}),
    Case("PUT", f"/video/{V}", 400, {**_json(b'{"title": "\\udbff"}'), "headers": ADMIN}),
    # authentication oddities
    Case("PUT", f"/video/{V}", 401, _basic(b"\xff\xfe:\xff")),
    Case("PUT", f"/video/{V}", 401, _basic(b"no-colon")),
    Case("PUT", f"/video/{V}", 401, {"headers": {"Authorization": "Basic !!!not-base64"}, "json": {"title": "x"}}),
    Case("PUT", f"/video/{V}", 401, {"headers": {"Authorization": "Bearer " + "A" * 5000}, "json": {"title": "x"}}),
    Case("GET", "/status.json", 401, {"headers": {"Authorization": "Basic " + "=" * 3}}),
    # multipart oddities
    Case("POST", f"/video_segment/{V}", 400),
    Case("POST", f"/video_segment/{V}", 400, _json(b'{"segment_id": 0}')),
    Case("POST", f"/video_segment/{V}", 400, {"data": b"--x\r\n", "content_type": "multipart/form-data"}),
    Case("POST", f"/video_segment/{V}", 400, _raw_multipart(b"--b0undary\r\nContent-Disposition: form-data; name=")),
    Case("POST", f"/video_segment/{V}", 400, _raw_multipart(b"garbage without any boundary at all")),
    Case("POST", f"/video_segment/{V}", 400, _multipart("0", None)),
    Case("POST", f"/video_segment/{V}", 400, _multipart("0", b"")),
    Case("POST", f"/video_segment/{V}", 400, _multipart("0", ext="../../etc/passwd")),
    Case("POST", f"/video_segment/{V}", 400, _multipart("0", ext="mp4\x00")),
    Case("POST", f"/video_segment/{V}", 422, _multipart("0")),
    Case("POST", f"/video_segment/{V}", 422, _multipart("1", b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 4000)),
    # media and playlist names: traversal, spaces, non-ASCII, control characters (cache keys with memcached on)
    Case("GET", f"/video_files/{V}/../../../etc/passwd", 404),
    Case("GET", f"/video_files/{V}/%2e%2e/%2e%2e/etc/passwd", 404),
    Case("GET", f"/video_files/{V}/originals/000000.mp4", 404),
    Case("GET", f"/video_files/{V}/HIGH/000000.mp4%00", 404),
    Case("GET", f"/video_files/{V}/HIGH/", 404),
    Case("GET", f"/video_files/{V}/HIGH X/playlist.m3u8", 404),
    Case("GET", f"/video_files/{V}/H%C3%96CH/playlist.m3u8", 404),
    Case("GET", f"/video_files/{V}/%E2%80%AE%01%7F/playlist.m3u8", 404),
    Case("GET", f"/video_files/{V}/{'X' * 17}/playlist.m3u8", 404),
    Case("GET", f"/live_m3u8/{V}/HIGH X/stream.m3u8", 404),
    Case("GET", f"/live_m3u8/{V}/%E6%97%A5%E6%9C%AC/stream.m3u8", 404),
    Case("GET", "/v%C3%ADdeos", 404),
    # query parameters of the list
    Case("GET", "/videos?limit=abc", 400),
    Case("GET", "/videos?limit=0", 400),
    Case("GET", "/videos?limit=-1", 400),
    Case("GET", "/videos?limit=1001", 400),
    Case("GET", f"/videos?limit={HUGE}", 400),
    Case("GET", "/videos?before=abc", 400),
    Case("GET", f"/videos?before={HUGE}", 400),
    Case("GET", f"/videos?before={ID_2_63}", 400),
    # bytes that are not UTF-8 where text is expected
    Case("GET", "/videos?limit=%ff", 400),
    Case("GET", f"/live_mpd/{V}.mpd?last_segment_id=%ff%fe", 400),
    Case("GET", f"/video_files/{V}/%ff/playlist.m3u8", 404),
    Case("POST", f"/video_end/{V}", 400, {"data": b"last_segment_id=%ff", "content_type": "application/x-www-form-urlencoded"}),
    Case("POST", f"/video_segment/{V}", 400, _raw_multipart(NOT_UTF8_PART)),
    # methods and headers
    Case("PATCH", "/videos", 405),
    Case("DELETE", "/videos", 405),
    Case("GET", f"/video/{V}", 200, {"headers": {"X-Huge": "x" * 100_000, "Accept": "\x00", "Range": "bytes=-99999999999"}}),
    Case("GET", f"/video/{V}", 200, {"headers": {"X-Forwarded-For": "1.2.3.4, " * 1000, "Content-Length": "-1"}}),
    # the second probe (issue 15): a stray id far ahead of a live video is refused before any probe, its end too
    Case("POST", f"/video_segment/{V}", 409, _multipart("999999")),
    Case("POST", f"/video_end/{V}", 409, {"data": {"last_segment_id": "999999"}}),
    # webhooks never reach the private network, whatever the spelling
    Case(
        "POST", "/api/admin/webhooks", 400, {"headers": ADMIN, "json": {"url": "http://127.0.0.1:3306/", "events": ["video.vod"]}}
    ),
    Case("POST", "/api/admin/webhooks", 400, {"headers": ADMIN, "json": {"url": "http://2130706433/", "events": ["video.vod"]}}),
    Case("POST", "/api/admin/webhooks", 400, {"headers": ADMIN, "json": {"url": "http://[::1]:4730/", "events": ["video.vod"]}}),
    Case(
        "POST",
        "/api/admin/webhooks",
        400,
        {"headers": ADMIN, "json": {"url": "http://169.254.169.254/", "events": ["video.vod"]}},
    ),
]


@pytest.fixture
def memcached() -> Iterator[Memcached]:
    server = Memcached().start()
    yield server
    server.stop()


@pytest.fixture(params=["mariadb", "sqlite"])
def hostile_app(request, make_config, gearmand, memcached, tmp_path):  # type: ignore[no-untyped-def]
    """The app with memcached on, on MariaDB (production) and on SQLite (dev_run.py), with an admin."""
    database = {"sqlite": {"DATABASE_URL": f"sqlite:///{tmp_path / 'hostile.sqlite'}"}}.get(request.param, {})
    config = make_config(
        GEARMAN_SERVERS=(gearmand.address,),
        MEMCACHED_SERVERS=(memcached.address,),
        MAX_SEGMENT_BYTES=8 * 1024 * 1024,
        **database,
    )
    db_upgrade(config)
    app = create_app(config)
    with app.extensions["team03"].sessions() as session:
        session.add(Admin(name="root", password_hash=generate_password_hash("s3cret")))
        session.commit()
    yield app
    app.extensions["team03"].close()


ADMIN_AUTH = {"Authorization": "Basic " + base64.b64encode(b"root:s3cret").decode()}


def _leaks(text: str, media_root: Path) -> list[str]:
    return [p for p in (str(media_root), str(ROOT), "/tmp", "Traceback", "0x7f") if p in text]


def test_hostile_requests_get_a_json_4xx_and_leak_nothing(hostile_app, caplog):
    caplog.set_level(logging.INFO)
    client = hostile_app.test_client()
    vid = client.post("/videos", json=new_video_body("target")).json["video_id"]
    media_root = hostile_app.extensions["team03"].config.MEDIA_ROOT
    assert len(CASES) >= 50
    failures = []
    for case in CASES:
        path = case.path.replace(V, str(vid))
        kwargs = {**case.kwargs, "headers": ADMIN_AUTH} if case.kwargs.get("headers") is ADMIN else case.kwargs
        response = client.open(path, method=case.method, **kwargs)
        expected = case.status if isinstance(case.status, tuple) else (case.status,)
        body = response.get_data(as_text=True)
        problems = []
        if response.status_code not in expected:
            problems.append(f"status {response.status_code}, expected {expected}")
        if response.status_code >= 400 and (not response.is_json or "code" not in (response.json or {})):
            problems.append("not a JSON error body")
        if leaks := _leaks(body, media_root):
            problems.append(f"body reveals {leaks}")
        if problems:
            failures.append(f"{case.method} {path[:80]}: {'; '.join(problems)}: {body[:300]}")
    assert not failures, "\n".join(failures)
    assert "Traceback" not in caplog.text
    assert "Invalid data found when processing input" in caplog.text  # ffprobe's own words: logged, not answered
    assert client.get(f"/video/{vid}").json["title"] == "target"  # nothing above changed the target


def test_control_characters_in_a_title_are_stored_as_given_and_the_mpd_stays_valid_xml(make_config, memcached, segment_files):
    # The local runner encodes the segment in-process; the MPD request is held until it is packaged
    # (an MPD is only rendered once it lists a segment), with room for a slow machine.
    app = create_app(make_config(MEMCACHED_SERVERS=(memcached.address,), FIRST_SEGMENT_WAIT=120.0), local_runner=True)
    try:
        client = app.test_client()
        title = "bell\x07 tab\t nul\x00 esc\x1b del\x7f <&> \ufffe end"
        response = client.post("/videos", json={"title": title})
        assert response.status_code == 201, response.json
        vid = response.json["video_id"]
        assert client.get(f"/video/{vid}").json["title"] == title
        body, content_type = segment_upload(0, segment_files[0].read_bytes(), "mp4")
        assert client.post(f"/video_segment/{vid}", data=body, content_type=content_type).status_code == 201
        assert client.get("/videos").json[0]["title"] == title  # listed from its first segment on
        mpd = client.get(f"/video_files/{vid}/manifest.mpd")
    finally:
        app.extensions["team03"].close()
    assert mpd.status_code == 200, mpd.get_data(as_text=True)
    root = ET.fromstring(mpd.data)  # raises on an invalid character
    titles = [t.text for t in root.iter("{urn:mpeg:dash:schema:mpd:2011}Title")]
    assert titles == ["bell tab\t nul esc del\x7f <&>  end"]


def test_memcached_takes_any_key_the_url_can_make(memcached):
    cache = MemcachedCache((memcached.address,), prefix="t:")
    try:
        for key in ("pl:1:0:hls-media:HIGH X", "pl:1:0:hls-media:日本", "pl:\x00\r\n", "k" * 300, "pl:\ud800", "plain:1"):
            cache.set(key, key.encode("utf-8", "surrogatepass"), 60)
            assert cache.get(key) == key.encode("utf-8", "surrogatepass"), key
        assert memcached_key("t:plain:1") == "t:plain:1"  # readable keys stay readable
    finally:
        cache.close()
