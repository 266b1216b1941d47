"""The recording door (docs/api.md "Doors"): keys in the server URL, RECORDING=open|keys, a video's own key,
--max-live, quotas, per-key rate limits and what the JSON read routes show, on SQLite (the embedded default)
and MariaDB, under both RECORDING settings where the rule depends on it."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import pytest
import requests
from flask import Flask
from sqlalchemy import func, select
from werkzeug.test import TestResponse

from server import create_app
from server.cli import db_upgrade
from server.core.doors import KEY_RE, listed, new_key
from server.core.errors import QuotaExceeded
from server.core.states import Visibility
from server.domain import ingest, keys
from server.infra.models import RecordingKey, Segment, SegmentRendition, Video
from tests.harness.android import SEGMENT_KEYS, VIDEO_KEYS, new_video_body, segment_upload
from tests.harness.stack import http_server
from tests.harness.tree import tree


@pytest.fixture(params=["sqlite", "mariadb"])
def make_app(request, make_config, gearmand, tmp_path) -> Iterator[Any]:  # type: ignore[no-untyped-def]
    """Apps on the embedded default (SQLite) and on MariaDB, with a private gearmand and no worker."""
    database = {"sqlite": {"DATABASE_URL": f"sqlite:///{tmp_path / 'doors.sqlite'}"}}.get(request.param, {})
    apps: list[Flask] = []

    def factory(**overrides: object) -> Door:
        config = make_config(GEARMAN_SERVERS=(gearmand.address,), MAX_SEGMENT_BYTES=8 * 1024 * 1024, **database, **overrides)
        db_upgrade(config)
        app = create_app(config)
        apps.append(app)
        return Door(app)

    yield factory
    for app in apps:
        app.extensions["team03"].close()


@pytest.fixture(params=["open", "keys"])
def recording(request) -> str:  # type: ignore[no-untyped-def]
    return str(request.param)


class Door:
    """An app and the phone's three recording calls and the reads, with or without a key in the server URL."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.client = app.test_client()
        self.services = app.extensions["team03"]

    def mint(self, name: str, **limits: Any) -> str:
        with self.services.sessions() as session:
            return keys.mint(self.services, session, name, by="test", **limits)[1]

    def revoke(self, name: str) -> list[int]:
        with self.services.sessions() as session:
            return keys.revoke(self.services, session, name, by="test")

    @staticmethod
    def prefix(key: str | None) -> str:
        return "" if key is None else f"/k/{key}"

    def create(self, key: str | None = None, address: str = "10.0.0.1") -> TestResponse:
        path = self.prefix(key) + "/videos"
        return self.client.post(path, json=new_video_body("door"), environ_base={"REMOTE_ADDR": address})

    def created(self, key: str | None = None) -> int:
        response = self.create(key)
        assert response.status_code == 201, response.json
        return int(response.json["video_id"])

    def upload(self, video_id: int, segment_id: int, data: bytes | None, key: str | None = None, address: str = "10.0.0.1"):  # type: ignore[no-untyped-def]
        body, content_type = segment_upload(segment_id, data)
        path = f"{self.prefix(key)}/video_segment/{video_id}"
        return self.client.post(path, data=body, content_type=content_type, environ_base={"REMOTE_ADDR": address})

    def end(self, video_id: int, last: int, key: str | None = None) -> TestResponse:
        return self.client.post(f"{self.prefix(key)}/video_end/{video_id}", data={"last_segment_id": str(last)})

    def get(self, path: str, key: str | None = None) -> TestResponse:
        return self.client.get(self.prefix(key) + path, headers={"Accept": "application/json"})

    def keyless_video(self) -> int:
        """A video made without a key (as RECORDING=open made it before the setting changed)."""
        with self.services.sessions() as session:
            return ingest.create_video(self.services, session, "keyless").id

    def count(self, model: type, *where: Any) -> int:
        with self.services.sessions() as session:
            return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)

    def video(self, video_id: int) -> Video:
        with self.services.sessions() as session:
            return ingest.get_video(session, video_id)

    def nothing_stored(self, video_id: int) -> bool:
        return self.count(Segment, Segment.video_id == video_id) == 0 and tree(self.services).temp_files() == []


def _refused(response: TestResponse, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.is_json and response.json["code"] == code, response.json
    return dict(response.json)


def _as_missing(door: Door, response: TestResponse, missing: TestResponse, video_id: int) -> None:
    """`response` is exactly what a video that never existed gets (its id aside): reveals nothing."""
    assert response.status_code == missing.status_code == 404
    assert response.json == {k: v.replace("999999", str(video_id)) for k, v in missing.json.items()}


# -- the door: RECORDING, unknown and revoked keys ------------------------------------------------------


def test_anonymous_recording_follows_the_recording_setting(make_app, recording, segment_files):
    door = make_app(RECORDING=recording)
    data = segment_files[0].read_bytes()
    if recording == "open":
        vid = door.created()
        assert door.upload(vid, 0, data).status_code == 201
        assert door.end(vid, 0).status_code == 200
        return
    body = _refused(door.create(), 401, "recording_key_required")
    assert "/k/<key>" in body["message"] and "WWW-Authenticate" not in door.create().headers
    assert door.count(Video) == 0
    vid = door.keyless_video()  # made before RECORDING=keys
    _refused(door.upload(vid, 0, data), 401, "recording_key_required")
    _refused(door.end(vid, 0), 401, "recording_key_required")
    assert door.nothing_stored(vid) and door.video(vid).ended_at is None
    # Reading stays anonymous.
    assert door.get(f"/video/{vid}").status_code == 200 and door.get("/videos").status_code == 200


def test_a_keyed_video_records_its_key_and_takes_its_visibility(make_app, recording, segment_files):
    door = make_app(RECORDING=recording)
    key = door.mint("phone", visibility=Visibility.UNLISTED)
    created = door.create(key)
    assert created.status_code == 201 and set(created.json) == VIDEO_KEYS
    vid = created.json["video_id"]
    video = door.video(vid)
    with door.services.sessions() as session:
        assert video.key_id == session.scalar(select(RecordingKey.id).where(RecordingKey.name == "phone"))
    assert video.visibility is Visibility.UNLISTED
    data = segment_files[0].read_bytes()
    stored = door.upload(vid, 0, data, key)
    assert stored.status_code == 201 and set(stored.json) == SEGMENT_KEYS
    assert door.upload(vid, 0, data, key).status_code == 201  # the same bytes again: a retry after a lost answer
    assert door.end(vid, 0, key).status_code == 200
    assert door.count(Segment, Segment.video_id == vid) == 1


def test_an_unknown_or_revoked_key_is_401_at_its_next_request_and_its_live_videos_end(make_app, recording, segment_files):
    door = make_app(RECORDING=recording)
    data = segment_files[0].read_bytes()
    key = door.mint("phone")
    live = door.created(key)
    idle = door.created(key)  # no segment yet: left to the reaper's abandonment rule
    assert door.upload(live, 0, data, key).status_code == 201
    stranger = new_key()
    _refused(door.create(stranger), 401, "recording_key_required")
    _refused(door.upload(live, 1, data, stranger), 401, "recording_key_required")
    _refused(door.end(live, 1, stranger), 401, "recording_key_required")
    _refused(door.get("/videos", stranger), 401, "recording_key_required")

    assert door.revoke("phone") == [live]
    _refused(door.upload(live, 1, segment_files[1].read_bytes(), key), 401, "recording_key_required")
    _refused(door.create(key), 401, "recording_key_required")
    _refused(door.end(live, 1, key), 401, "recording_key_required")
    _refused(door.get(f"/video/{live}", key), 401, "recording_key_required")
    video = door.video(live)
    assert video.last_segment_id == 0 and video.ended_at is not None
    assert door.count(Segment, Segment.video_id == live) == 1 and tree(door.services).temp_files() == []
    assert door.video(idle).ended_at is None
    assert door.count(Video) == 2


def test_another_keys_video_is_answered_exactly_as_a_missing_one(make_app, recording, segment_files):
    door = make_app(RECORDING=recording)
    data = segment_files[0].read_bytes()
    mine, theirs = door.mint("mine"), door.mint("theirs")
    vid = door.created(mine)
    for key in (theirs,) if recording == "keys" else (theirs, None):
        _as_missing(door, door.upload(vid, 0, data, key), door.upload(999999, 0, data, key), vid)
        _as_missing(door, door.end(vid, 0, key), door.end(999999, 0, key), vid)
    assert door.nothing_stored(vid) and door.video(vid).ended_at is None
    if recording == "open":  # a keyless video takes uploads and its end only without a key
        keyless = door.created()
        _as_missing(door, door.upload(keyless, 0, data, mine), door.upload(999999, 0, data, mine), keyless)
        _as_missing(door, door.end(keyless, 0, mine), door.end(999999, 0, mine), keyless)
        assert door.nothing_stored(keyless)
    assert door.upload(vid, 0, data, mine).status_code == 201


def test_a_refusal_comes_before_the_body_is_read(make_app, recording, segment_files):
    """The client sends 200 bytes of its body and holds the rest: a route that reads the body answers 408 at
    BODY_READ_TIMEOUT, while a refusal decided before the body is the answer (the rest is drained, then dropped)."""
    door = make_app(RECORDING=recording, BODY_READ_TIMEOUT=1.0)
    tight = door.mint("tight", quota_bytes=1000)
    other = door.mint("other")
    vid, others = door.created(tight), door.created(other)
    body, content_type = segment_upload(0, segment_files[0].read_bytes())
    cases = {
        f"/video_segment/{vid}": 401 if recording == "keys" else 404,  # anonymous: the door, or a keyed video
        f"/k/{new_key()}/video_segment/{vid}": 401,
        f"/k/{tight}/video_segment/{vid}": 403,
        f"/k/{other}/video_segment/{vid}": 404,
        f"/k/{other}/video_segment/{others}": 408,  # admitted: its body is read, and never arrives
    }
    with http_server(door.app) as base:
        port = int(base.rsplit(":", 1)[1])
        for path, status in cases.items():
            with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
                head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
                sock.sendall(head.encode() + body[:200])
                answer = sock.recv(4096).decode(errors="replace")
            assert answer.startswith(f"HTTP/1.1 {status} "), (path, answer[:300])
    assert door.nothing_stored(vid) and door.nothing_stored(others)


# -- limits: --max-live, quota, rates ------------------------------------------------------------------


def test_max_live_caps_a_keys_live_videos(make_app, recording, segment_files):
    door = make_app(RECORDING=recording)
    capped, free = door.mint("capped", max_live=2), door.mint("free")
    first, _second = door.created(capped), door.created(capped)
    body = _refused(door.create(capped), 409, "max_live_reached")
    assert body["field"] == "max_live" and "max_live (2)" in body["message"]
    assert door.count(Video) == 2
    door.created(free)  # another key's live videos are its own
    assert door.upload(first, 0, segment_files[0].read_bytes(), capped).status_code == 201
    assert door.end(first, 0, capped).status_code == 200  # ended: no longer live
    door.created(capped)
    _refused(door.create(capped), 409, "max_live_reached")


def test_creates_racing_for_the_last_live_slot_get_one_video(make_app, recording):
    """The key's row is locked from the count to the commit: of 6 creates sent at once, one gets the slot."""
    door = make_app(RECORDING=recording)
    key = door.mint("one-slot", max_live=1)
    with http_server(door.app) as base, ThreadPoolExecutor(6) as pool:
        post = partial(requests.post, f"{base}/k/{key}/videos", json=new_video_body("race"), timeout=30)
        statuses = sorted(answer.status_code for answer in pool.map(lambda _i: post(), range(6)))
    assert statuses == [201] + [409] * 5
    assert door.count(Video) == 1


def test_an_upload_past_the_quota_is_403_naming_it_and_stores_nothing(make_app, recording, segment_files):
    door = make_app(RECORDING=recording)
    data = [p.read_bytes() for p in segment_files]
    tight = door.mint("tight", quota_bytes=1000)
    vid = door.created(tight)
    body = _refused(door.upload(vid, 0, data[0], tight), 403, "quota_exceeded")
    assert body["field"] == "quota_bytes" and "quota_bytes (1000 bytes; 0 used)" in body["message"]
    assert door.nothing_stored(vid)
    # Room for one segment's request, not two: the first is stored, the second refused.
    one = door.mint("one", quota_bytes=len(segment_upload(0, data[0])[0]) + 100)
    vid = door.created(one)
    assert door.upload(vid, 0, data[0], one).status_code == 201
    _refused(door.upload(vid, 1, data[1], one), 403, "quota_exceeded")
    assert door.count(Segment, Segment.video_id == vid) == 1 and tree(door.services).temp_files() == []
    assert door.end(vid, 0, one).status_code == 200  # the end stores nothing: never refused by the quota


def test_a_chunked_upload_is_measured_when_received_and_refused_before_it_is_stored(make_app, recording, segment_files):
    """Without a Content-Length the quota is checked on the received file, before it is stored; the same bytes
    again (a retry after a lost answer) are answered from the stored segment."""
    door = make_app(RECORDING=recording)
    data = segment_files[0].read_bytes()
    small = door.mint("small", quota_bytes=1000)
    room = door.mint("room", quota_bytes=len(data) + 10)
    small_vid, room_vid = door.created(small), door.created(room)
    with http_server(door.app) as base:

        def chunked(key: str, vid: int) -> requests.Response:
            body, content_type = segment_upload(0, data)
            chunks = (body[i : i + 65536] for i in range(0, len(body), 65536))  # a generator: sent chunked
            return requests.post(f"{base}/k/{key}/video_segment/{vid}", data=chunks, headers={"Content-Type": content_type}, timeout=20)

        refused = chunked(small, small_vid)
        assert refused.status_code == 403 and refused.json()["code"] == "quota_exceeded", refused.text
        assert "this upload (" + str(len(data)) + " bytes)" in refused.json()["message"]
        assert chunked(room, room_vid).status_code == 201
        assert chunked(room, room_vid).status_code == 201  # full now, but these bytes are stored
    assert door.nothing_stored(small_vid) and door.count(Segment, Segment.video_id == room_vid) == 1


def test_usage_counts_the_originals_and_renditions_of_a_keys_videos_only(make_app):
    door = make_app()
    door.mint("a", quota_bytes=10_000)
    door.mint("b")
    services = door.services
    with services.sessions() as session:
        a, b = (session.scalars(select(RecordingKey).where(RecordingKey.name == n)).one() for n in ("a", "b"))
        assert keys.usage(session, a.id) == 0
        videos = [ingest.create_video(services, session, t, key) for t, key in (("a1", a), ("a2", a), ("b1", b))]
        videos.append(ingest.create_video(services, session, "keyless"))
        sizes = {videos[0].id: [(1000, [100, 200, None]), (2000, [300, None, None])], videos[1].id: [(4000, [None] * 3)]}
        sizes[videos[2].id] = [(50_000, [5000] * 3)]
        sizes[videos[3].id] = [(70_000, [7000] * 3)]
        for video in videos:
            for n, (size, rungs) in enumerate(sizes[video.id]):
                segment = Segment(
                    video_id=video.id, segment_id=n, original_extension="mp4", size=size, sha256="0" * 64, duration_ms=3000
                )
                segment.uploaded_at = services.clock.now()
                segment.renditions = [
                    SegmentRendition(rendition_id=r.id, size=s) for r, s in zip(video.renditions, rungs, strict=True)
                ]
                session.add(segment)
        session.commit()
        assert keys.usage(session, a.id) == 1000 + 100 + 200 + 2000 + 300 + 4000
        assert keys.usage(session, b.id) == 50_000 + 15_000
        # The rule: used + incoming may reach the quota, never pass it.
        keys.check_quota(session, a, 10_000 - 7600)
        with pytest.raises(QuotaExceeded, match=r"quota_bytes \(10000 bytes; 7600 used\)"):
            keys.check_quota(session, a, 10_000 - 7600 + 1)
        keys.check_quota(session, b, 10**15)  # no quota


def test_rate_limits_count_a_keys_requests_against_the_key(make_app, recording):
    door = make_app(RECORDING=recording, RATE_LIMIT_CREATE="2/minute", RATE_LIMIT_UPLOAD="2/minute")
    one, two = door.mint("one"), door.mint("two")
    assert [door.create(one, "10.0.0.1").status_code for _ in range(2)] == [201, 201]
    _refused(door.create(one, "10.0.0.2"), 429, "too_many_requests")  # its budget, from wherever it calls
    assert door.create(two, "10.0.0.1").status_code == 201  # another key behind the same address
    anonymous = door.create(None, "10.0.0.1").status_code  # the address's own budget is untouched
    assert anonymous == (201 if recording == "open" else 401)
    vid = door.created(two)
    # Every upload counts, refused ones too (here 400s: no file part), before its body is read.
    assert [door.upload(vid, 0, None, two, address).status_code for address in ("10.0.0.1", "10.0.0.3")] == [400, 400]
    _refused(door.upload(vid, 0, None, two, "10.0.0.4"), 429, "too_many_requests")
    # Unknown keys spend their address's budget: a flood of made-up keys is held like anonymous requests.
    stranger = new_key()
    assert [door.create(stranger, "10.0.0.9").status_code for _ in range(2)] == [401, 401]
    _refused(door.create(new_key(), "10.0.0.9"), 429, "too_many_requests")


# -- what the JSON read routes show ----------------------------------------------------------------------


def test_the_read_routes_show_a_private_video_only_under_its_own_key(make_app, recording, segment_files):
    door = make_app(RECORDING=recording)
    data = segment_files[0].read_bytes()
    minted = {v: door.mint(v.value, visibility=v) for v in Visibility}
    vids = {}
    for visibility, key in minted.items():
        vids[visibility] = door.created(key)
        assert door.upload(vids[visibility], 0, data, key).status_code == 201
    private, public, unlisted = vids[Visibility.PRIVATE], vids[Visibility.PUBLIC], vids[Visibility.UNLISTED]

    def listing(key: str | None) -> list[int]:
        response = door.get("/videos", key)
        assert response.status_code == 200 and all(set(v) == VIDEO_KEYS for v in response.json)
        return [v["video_id"] for v in response.json]

    assert listing(None) == [public]
    assert listing(minted[Visibility.PRIVATE]) == [private, public]
    assert listing(minted[Visibility.UNLISTED]) == [unlisted, public]
    assert listing(minted[Visibility.PUBLIC]) == [public]
    for key in (None, minted[Visibility.PUBLIC]):  # anonymous, and another key
        for path in ("/video/{}", "/video_segment/{}", "/video_segment/{}/0"):
            _as_missing(door, door.get(path.format(private), key), door.get(path.format(999999), key), private)
        assert door.get(f"/video/{unlisted}", key).status_code == 200  # unlisted: playable by its URL
    own = minted[Visibility.PRIVATE]
    assert set(door.get(f"/video/{private}", own).json) == VIDEO_KEYS
    assert [set(s) for s in door.get(f"/video_segment/{private}", own).json] == [SEGMENT_KEYS]
    assert set(door.get(f"/video_segment/{private}/0", own).json) == SEGMENT_KEYS


def test_the_list_filter_is_the_listed_rule(make_app):
    """keys.listed_to (SQL) agrees with core.doors.listed for every visibility, video key and request key."""
    door = make_app()
    services = door.services
    door.mint("a")
    door.mint("b")
    with services.sessions() as session:
        a, b = (session.scalars(select(RecordingKey).where(RecordingKey.name == n)).one() for n in ("a", "b"))
        made = []
        for visibility in Visibility:
            for key in (a, b, None):
                video = ingest.create_video(services, session, "x", key)
                video.visibility = visibility
                made.append(video)
        session.commit()
        for asking in (a.id, b.id, None):
            shown = set(session.scalars(select(Video.id).where(keys.listed_to(asking))))
            expected = {v.id for v in made if listed(v.visibility.value, v.key_id, asking)}
            assert shown == expected, asking


# -- the CLI -------------------------------------------------------------------------------------------------


def test_the_key_cli_prints_the_key_alone_and_lists_without_keys(make_app, monkeypatch, capsys):
    from server import cli

    door = make_app()
    for name, value in door.services.config.to_env().items():
        monkeypatch.setenv(name, value)

    def run(*argv: str) -> tuple[int, str, str]:
        code = cli.main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    code, out, err = run("key", "create", "field-phone", "--max-live", "2", "--quota", "5000000", "--visibility", "private")
    assert code == 0 and KEY_RE.match(out.removesuffix("\n")), out
    assert "https://<host>/k/<key>" in err and out.strip() not in err
    key = out.strip()
    with door.services.sessions() as session:
        row = keys.find(session, key)
        assert row is not None and (row.name, row.max_live, row.quota_bytes) == ("field-phone", 2, 5_000_000)
        assert (row.visibility, row.created_by) == (Visibility.PRIVATE, "cli")
    assert door.created(key)
    code, out, _ = run("key", "list")
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ["NAME", "CREATED", "BY", "REVOKED", "VISIBILITY", "LIVE", "STORED"]
    assert lines[1].split()[0] == "field-phone" and "1/2" in lines[1] and key not in out
    assert run("key", "create", "field-phone")[0] == 1  # the name is taken
    with pytest.raises(SystemExit) as usage:  # argparse's usage error
        run("key", "create", "x", "--max-live", "0")
    assert usage.value.code == 2 and "--max-live: must be a whole number of at least 1" in capsys.readouterr().err
    code, out, _ = run("key", "revoke", "field-phone")
    assert code == 0 and "revoked" in out
    _refused(door.create(key), 401, "recording_key_required")
    assert run("key", "revoke", "nobody")[0] == 1
    code, out, _ = run("key", "list", "--json")
    assert code == 0 and '"revoked_at": null' not in out and key not in out

