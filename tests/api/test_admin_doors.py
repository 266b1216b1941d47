"""The admin API's doors (docs/admin-api.md "Recording keys", "Who may watch", "Audit") on real MariaDB and a
private gearmand with no worker, time on a FakeClock: keys minted, listed and revoked, a video's visibility and
pin, signed links, and the audit trail every admin action writes with who did it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from server import create_app
from server.core.doors import KEY_RE, LinkVerdict, check_link, key_hash
from server.core.states import Visibility
from server.domain import ingest, keys, links
from server.infra.models import Event, RecordingKey, SegmentState, Video
from server.infra.services import Services
from server.web import admin_views
from server.web.api.openapi import document
from tests.api.test_admin_api import T0, VIDEO_ROW, add_segment, new_video, newest_event
from tests.api.test_openapi import assert_answer
from tests.harness.clock import FakeClock

KEY_ROW = {"name", "created_at", "created_by", "revoked_at", "max_live", "quota_bytes", "visibility", "live", "used_bytes"}
AUDIT_ENTRY = {"id", "at", "kind", "by", "video_id", "key", "data"}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def app(make_config, gearmand, clock) -> Iterator[Flask]:  # type: ignore[no-untyped-def]
    services = Services.build(make_config(GEARMAN_SERVERS=(gearmand.address,)))
    services.clock = clock
    app = create_app(services.config, services=services)
    yield app
    services.close()


@pytest.fixture
def services(app: Flask) -> Services:
    return app.extensions["team03"]


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def audit_events(services: Services, after: int = 0) -> list[tuple[str, int | None, dict]]:
    """(kind, video id, data) of every event after `after`."""
    with services.sessions() as db:
        rows = db.scalars(select(Event).where(Event.id > after).order_by(Event.id))
        return [(e.kind, e.video_id, json.loads(e.data) if e.data else {}) for e in rows]


def keyed_video(services: Services, key_name: str, title: str = "keyed") -> int:
    """A live video recorded under the key `key_name` (as the /k/<key>/ routes make one)."""
    video_id = new_video(services, title)
    with services.sessions() as db:
        video = db.get(Video, video_id)
        assert video is not None
        video.key_id = db.scalars(select(RecordingKey.id).where(RecordingKey.name == key_name)).one()
        db.commit()
    return video_id


def mint(client: FlaskClient, auth: dict[str, str], **body: object):  # type: ignore[no-untyped-def]
    return client.post("/api/admin/keys", json=body, headers=auth)


# -- access -----------------------------------------------------------------------------------------

ROUTES = [
    ("GET", "/api/admin/keys", None),
    ("POST", "/api/admin/keys", {"name": "k1"}),
    ("POST", "/api/admin/keys/k1/revoke", None),
    ("PATCH", "/api/admin/videos/{vid}", {"visibility": "private"}),
    ("POST", "/api/admin/videos/{vid}/link", {}),
    ("GET", "/api/admin/audit", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
def test_every_route_needs_an_admin(client: FlaskClient, services: Services, method: str, path: str, body: object) -> None:
    vid = new_video(services)
    with services.sessions() as db:
        keys.mint(services, db, "k1", by="test")
    before = newest_event(services)
    response = client.open(path.format(vid=vid), method=method, json=body)
    assert response.status_code == 401 and response.json["code"] == "unauthorized"
    assert newest_event(services) == before  # nothing changed, nothing logged


@pytest.mark.parametrize(("method", "path", "body"), [r for r in ROUTES if r[0] != "GET"])
def test_every_change_made_with_the_cookie_needs_its_csrf_token(
    app: Flask, services: Services, admin_auth: dict[str, str], method: str, path: str, body: object
) -> None:
    vid = new_video(services)
    client = app.test_client()
    login = client.post("/api/admin/login", json={"username": "root", "password": "s3cret"})
    assert login.status_code == 200
    if "revoke" in path:
        assert mint(client, admin_auth, name="k1").status_code == 201
    before = newest_event(services)
    refused = client.open(path.format(vid=vid), method=method, json=body, headers={"X-CSRF-Token": "wrong"})
    assert refused.status_code == 403 and "X-CSRF-Token" in refused.json["message"]
    assert newest_event(services) == before
    done = client.open(path.format(vid=vid), method=method, json=body, headers={"X-CSRF-Token": login.json["csrf_token"]})
    assert done.status_code in (200, 201), done.json
    *_, (kind, _video, data) = audit_events(services, before)
    assert data["by"] == "root", kind


@pytest.mark.parametrize(("method", "path"), [("POST", "/api/admin/keys/nobody/revoke"), ("PATCH", "/api/admin/videos/99"),
                                              ("POST", "/api/admin/videos/99/link")])  # fmt: skip
def test_unknown_keys_and_videos_are_404(client: FlaskClient, admin_auth: dict[str, str], method: str, path: str) -> None:
    response = client.open(path, method=method, json={"pinned": True}, headers=admin_auth)
    assert response.status_code == 404 and response.json["code"] == "not_found", response.json


# -- recording keys ---------------------------------------------------------------------------------


def test_a_minted_key_is_shown_once_and_listed_without_it(
    client: FlaskClient, services: Services, admin_auth: dict[str, str]
) -> None:
    before = newest_event(services)
    response = mint(client, admin_auth, name="phone-1", max_live=2, quota_bytes=10_000, visibility="unlisted")
    assert response.status_code == 201, response.json
    assert response.headers["Cache-Control"] == "no-store"
    body = response.json
    assert set(body) == KEY_ROW | {"key", "app_url"}
    assert KEY_RE.match(body["key"]) and body["app_url"] == f"http://localhost/k/{body['key']}"
    assert (body["name"], body["max_live"], body["quota_bytes"], body["visibility"]) == ("phone-1", 2, 10_000, "unlisted")
    assert (body["created_by"], body["created_at"], body["revoked_at"], body["live"], body["used_bytes"]) == (
        "root", "2026-01-01T12:00:00.000000Z", None, 0, 0)  # fmt: skip
    with services.sessions() as db:
        assert keys.find(db, body["key"]) is not None  # the key works; only its hash is stored
        assert db.scalars(select(RecordingKey.key_hash)).one() == key_hash(body["key"])
    assert audit_events(services, before) == [
        ("key.minted", None, {"name": "phone-1", "by": "root", "max_live": 2, "quota_bytes": 10_000})
    ]
    assert_answer(document(), "/api/admin/keys", "post", response)
    listing = client.get("/api/admin/keys", headers=admin_auth)
    assert listing.status_code == 200
    assert listing.json == {"keys": [{k: v for k, v in body.items() if k not in ("key", "app_url")}]}
    assert body["key"] not in listing.get_data(as_text=True)
    assert_answer(document(), "/api/admin/keys", "get", listing)
    again = mint(client, admin_auth, name="phone-1")
    assert again.status_code == 409 and again.json["code"] == "conflict"


def test_a_key_behind_a_proxy_names_the_host_the_app_reaches(client: FlaskClient, admin_auth: dict[str, str]) -> None:
    response = client.post("/api/admin/keys", json={"name": "k"}, headers=admin_auth, base_url="https://team03.example")
    assert response.json["app_url"] == f"https://team03.example/k/{response.json['key']}"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "name"),
        ({"name": 7}, "name"),
        ({"name": ""}, "name"),
        ({"name": "-x"}, "name"),
        ({"name": "a/b"}, "name"),
        ({"name": "x" * 65}, "name"),
        ({"name": "k", "max_live": 0}, "max_live"),
        ({"name": "k", "max_live": "2"}, "max_live"),
        ({"name": "k", "max_live": True}, "max_live"),
        ({"name": "k", "max_live": 10_001}, "max_live"),
        ({"name": "k", "quota_bytes": -1}, "quota_bytes"),
        ({"name": "k", "quota_bytes": 1.5}, "quota_bytes"),
        ({"name": "k", "quota_bytes": 2**63}, "quota_bytes"),
        ({"name": "k", "visibility": "secret"}, "visibility"),
        ({"name": "k", "visibility": None, "max_live": []}, "max_live"),
    ],
)
def test_a_bad_key_is_400_naming_its_field_and_nothing_is_stored(
    client: FlaskClient, services: Services, admin_auth: dict[str, str], body: dict, field: str
) -> None:
    before = newest_event(services)
    response = client.post("/api/admin/keys", json=body, headers=admin_auth)
    assert response.status_code == 400, response.json
    assert (response.json["code"], response.json["field"]) == ("invalid_input", field)
    with services.sessions() as db:
        assert db.scalars(select(RecordingKey)).all() == []
    assert newest_event(services) == before
    assert client.post("/api/admin/keys", data="name=k", headers=admin_auth).json["field"] == "body"


def test_revoking_ends_the_keys_live_videos_and_keeps_it_listed(
    client: FlaskClient, services: Services, admin_auth: dict[str, str], clock: FakeClock
) -> None:
    minted = mint(client, admin_auth, name="phone", quota_bytes=1_000_000).json
    mint(client, admin_auth, name="other")
    recording, idle, others = keyed_video(services, "phone"), keyed_video(services, "phone"), keyed_video(services, "other")
    add_segment(services, recording, 0, at=3)
    add_segment(services, others, 0, at=3)
    rows = {k["name"]: k for k in client.get("/api/admin/keys", headers=admin_auth).json["keys"]}
    assert [k for k in rows] == ["other", "phone"]  # newest first
    # Its two live videos; a segment of 1000 bytes and three rungs of 10, 20 and 30.
    assert (rows["phone"]["live"], rows["phone"]["used_bytes"]) == (2, 1060)
    clock.advance(60)
    before = newest_event(services)
    response = client.post("/api/admin/keys/phone/revoke", headers=admin_auth)
    assert response.status_code == 200, response.json
    assert set(response.json) == KEY_ROW | {"ended"}
    assert response.json["ended"] == [recording]  # the one without a segment is the reaper's (LIVE_IDLE_TIMEOUT)
    assert response.json["revoked_at"] == "2026-01-01T12:01:00.000000Z"
    assert_answer(document(), "/api/admin/keys/{name}/revoke", "post", response)
    with services.sessions() as db:
        assert keys.find(db, minted["key"]) is None  # refused from its next request on
        assert db.get(Video, recording).ended_at is not None  # type: ignore[union-attr]
        assert db.get(Video, others).ended_at is None  # type: ignore[union-attr]
    logged = audit_events(services, before)
    assert logged[0] == ("key.revoked", None, {"name": "phone", "by": "root"})
    assert ("video.ended", recording) in [(kind, video) for kind, video, _data in logged]
    again = client.post("/api/admin/keys/phone/revoke", headers=admin_auth)
    assert (again.status_code, again.json["ended"], again.json["revoked_at"]) == (200, [], "2026-01-01T12:01:00.000000Z")
    assert [k for k, *_ in audit_events(services, before)].count("key.revoked") == 1
    listed = {k["name"]: k for k in client.get("/api/admin/keys", headers=admin_auth).json["keys"]}
    assert listed["phone"]["revoked_at"] is not None and listed["other"]["revoked_at"] is None
    assert mint(client, admin_auth, name="phone").status_code == 409  # a revoked key keeps its name
    assert idle in [v["id"] for v in client.get("/api/admin/videos", headers=admin_auth).json["videos"]]


def test_a_revoke_path_that_is_no_key_name_is_404(client: FlaskClient, admin_auth: dict[str, str]) -> None:
    for path in ("/api/admin/keys/" + "x" * 65 + "/revoke", "/api/admin/keys/a%2Fb/revoke", "/api/admin/keys//revoke"):
        assert client.post(path, headers=admin_auth).status_code == 404, path


# -- visibility, pin ----------------------------------------------------------------------------------


def test_rows_say_who_may_watch_whether_pinned_and_which_key(
    client: FlaskClient, services: Services, admin_auth: dict[str, str]
) -> None:
    mint(client, admin_auth, name="phone")
    plain, keyed = new_video(services), keyed_video(services, "phone")
    rows = {v["id"]: v for v in client.get("/api/admin/videos", headers=admin_auth).json["videos"]}
    assert set(rows[plain]) == VIDEO_ROW
    assert (rows[plain]["visibility"], rows[plain]["pinned"], rows[plain]["key"]) == ("public", False, None)
    assert rows[keyed]["key"] == "phone"
    client.post("/api/admin/keys/phone/revoke", headers=admin_auth)
    detail = client.get(f"/api/admin/videos/{keyed}", headers=admin_auth).json
    assert detail["key"] == "phone"  # a revoked key keeps its name on its videos
    assert_answer(document(), "/api/admin/videos/{video_id}", "get", client.get(f"/api/admin/videos/{keyed}", headers=admin_auth))


def test_patch_sets_visibility_and_pin_with_the_admins_name(
    client: FlaskClient, services: Services, admin_auth: dict[str, str]
) -> None:
    vid = new_video(services, "old")
    before = newest_event(services)
    response = client.patch(f"/api/admin/videos/{vid}", json={"visibility": "private", "pinned": True}, headers=admin_auth)
    assert response.status_code == 200, response.json
    assert set(response.json) == VIDEO_ROW
    assert (response.json["visibility"], response.json["pinned"], response.json["title"]) == ("private", True, "old")
    assert_answer(document(), "/api/admin/videos/{video_id}", "patch", response)
    assert audit_events(services, before) == [
        ("video.visibility", vid, {"visibility": "private", "by": "root"}),
        ("video.pinned", vid, {"pinned": True, "by": "root"}),
    ]
    same = client.patch(f"/api/admin/videos/{vid}", json={"visibility": "private"}, headers=admin_auth)
    assert same.status_code == 200 and len(audit_events(services, before)) == 2  # no change, no event
    all_three = client.patch(f"/api/admin/videos/{vid}", json={"title": "new", "visibility": "unlisted", "pinned": False},
                             headers=admin_auth)  # fmt: skip
    assert (all_three.json["title"], all_three.json["visibility"], all_three.json["pinned"]) == ("new", "unlisted", False)
    assert [(k, d["by"]) for k, _v, d in audit_events(services, before)][2:] == [
        ("video.renamed", "root"), ("video.visibility", "root"), ("video.pinned", "root")]  # fmt: skip
    with services.sessions() as db:
        video = db.get(Video, vid)
        assert video is not None and (video.visibility, video.pinned) == (Visibility.UNLISTED, False)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "body"),
        ({"name": "x"}, "body"),
        ({"visibility": "hidden"}, "visibility"),
        ({"visibility": None}, "visibility"),
        ({"visibility": "PRIVATE"}, "visibility"),
        ({"pinned": "yes"}, "pinned"),
        ({"pinned": 1}, "pinned"),
        ({"pinned": None}, "pinned"),
        ({"title": "new", "visibility": "nope"}, "visibility"),  # checked before the title is written
        ({"title": "", "pinned": True}, "title"),
        ({"visibility": "private", "pinned": "no"}, "pinned"),
    ],
)
def test_a_bad_change_is_400_naming_its_field_and_writes_nothing(
    client: FlaskClient, services: Services, admin_auth: dict[str, str], body: dict, field: str
) -> None:
    vid = new_video(services, "old")
    before = newest_event(services)
    response = client.patch(f"/api/admin/videos/{vid}", json=body, headers=admin_auth)
    assert response.status_code == 400 and response.json["field"] == field, response.json
    assert newest_event(services) == before
    row = client.get(f"/api/admin/videos/{vid}", headers=admin_auth).json
    assert (row["title"], row["visibility"], row["pinned"]) == ("old", "public", False)


# -- links --------------------------------------------------------------------------------------------


def test_a_minted_link_is_absolute_and_opens_that_video_until_it_expires(
    client: FlaskClient, services: Services, admin_auth: dict[str, str]
) -> None:
    vid, other = new_video(services), new_video(services)
    before = newest_event(services)
    started = int(time.time())
    response = client.post(f"/api/admin/videos/{vid}/link", json={"ttl": 600}, headers=admin_auth)
    assert response.status_code == 200, response.json
    assert_answer(document(), "/api/admin/videos/{video_id}/link", "post", response)
    url = urlsplit(response.json["url"])
    assert (url.scheme, url.netloc) == ("http", "localhost")
    _, s, signature, expires, video_files, video, file = url.path.split("/")
    assert (s, video_files, video, file) == ("s", "video_files", str(vid), "master.m3u8")
    assert started + 600 <= int(expires) <= int(time.time()) + 600
    assert response.json["expires"] == int(expires)
    expected = admin_views.iso(datetime.fromtimestamp(int(expires), UTC).replace(tzinfo=None))
    assert response.json["expires_at"] == expected
    with services.sessions() as db:
        secret = links.link_secret(services, db)
    assert check_link(secret, vid, signature, expires, time.time()) is LinkVerdict.OK
    assert check_link(secret, other, signature, expires, time.time()) is LinkVerdict.ALTERED
    assert check_link(secret, vid, signature, expires, int(expires) + 1) is LinkVerdict.EXPIRED
    assert audit_events(services, before) == [("video.link", vid, {"by": "root", "expires": int(expires), "file": "master.m3u8"})]
    dash = client.post(f"/api/admin/videos/{vid}/link", json={"dash": True}, headers=admin_auth).json
    assert dash["url"].endswith(f"/video_files/{vid}/manifest.mpd")
    default = client.post(f"/api/admin/videos/{vid}/link", headers=admin_auth).json  # no body: the defaults
    assert default["url"].endswith("/master.m3u8")
    assert started + services.config.LINK_TTL <= default["expires"] <= int(time.time()) + services.config.LINK_TTL


@pytest.mark.parametrize(
    ("body", "field"),
    [({"ttl": 0}, "ttl"), ({"ttl": "60"}, "ttl"), ({"ttl": 366 * 86400 + 1}, "ttl"), ({"ttl": True}, "ttl"),
     ({"dash": "yes"}, "dash"), ({"dash": 1}, "dash"), (["x"], "body")],
)  # fmt: skip
def test_a_bad_link_request_is_400_naming_its_field(
    client: FlaskClient, services: Services, admin_auth: dict[str, str], body: object, field: str
) -> None:
    vid = new_video(services)
    before = newest_event(services)
    response = client.post(f"/api/admin/videos/{vid}/link", json=body, headers=admin_auth)
    assert response.status_code == 400 and response.json["field"] == field, response.json
    assert newest_event(services) == before


# -- the audit trail ----------------------------------------------------------------------------------


def test_every_admin_action_is_in_the_audit_trail_with_who_did_it(
    app: Flask, client: FlaskClient, services: Services, admin_auth: dict[str, str]
) -> None:
    vid, gone = new_video(services), new_video(services)
    add_segment(services, vid, 0, at=3, state=SegmentState.FAILED)
    add_segment(services, vid, 1, at=6, state=SegmentState.FAILED)
    abandoned = new_video(services)
    browser = app.test_client()
    assert browser.post("/api/admin/login", json={"username": "root", "password": "s3cret"},
                        environ_base={"REMOTE_ADDR": "10.1.2.3"}).status_code == 200  # fmt: skip
    client.patch(f"/api/admin/videos/{vid}", json={"title": "renamed", "visibility": "private", "pinned": True}, headers=admin_auth)
    client.post(f"/api/admin/videos/{vid}/link", json={"ttl": 60}, headers=admin_auth)
    client.post(f"/api/admin/videos/{vid}/segments/0/retry", headers=admin_auth)
    client.post(f"/api/admin/videos/{vid}/retry", headers=admin_auth)
    client.post(f"/api/admin/videos/{vid}/retry", headers=admin_auth)  # nothing FAILED any more: nothing to log
    mint(client, admin_auth, name="phone")
    client.post("/api/admin/keys/phone/revoke", headers=admin_auth)
    client.delete(f"/api/admin/videos/{gone}", headers=admin_auth)
    with services.sessions() as db:
        assert ingest.delete_abandoned(services, db, abandoned)  # the reaper's: a reason, no `by`
    response = client.get("/api/admin/audit", headers=admin_auth)
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    assert_answer(document(), "/api/admin/audit", "get", response)
    page = response.json
    assert page["next_before"] is None
    assert all(set(e) == AUDIT_ENTRY for e in page["events"])
    seen = [(e["kind"], e["by"], e["video_id"], e["key"]) for e in reversed(page["events"])]
    assert seen == [
        ("admin.login", "root", None, None),
        ("video.renamed", "root", vid, None),
        ("video.visibility", "root", vid, None),
        ("video.pinned", "root", vid, None),
        ("video.link", "root", vid, None),
        ("video.retried", "root", vid, None),
        ("video.retried", "root", vid, None),
        ("key.minted", "root", None, "phone"),
        ("key.revoked", "root", None, "phone"),
        ("video.deleted", "root", gone, None),
    ]
    data = {e["kind"]: e["data"] for e in page["events"]}
    assert data["admin.login"] == {"address": "10.1.2.3"}
    assert [e["data"]["segments"] for e in page["events"] if e["kind"] == "video.retried"] == [[1], [0]]
    assert data["video.renamed"] == {"title": "renamed"} and page["events"][0]["at"] == "2026-01-01T12:00:00.000000Z"


def test_the_android_routes_admin_changes_are_audited_too(client: FlaskClient, services: Services, admin_auth: dict[str, str]) -> None:
    vid = new_video(services)
    before = newest_event(services)
    assert client.put(f"/video/{vid}", json={"title": "by script"}, headers=admin_auth).status_code == 200
    assert client.delete(f"/video/{vid}", headers=admin_auth).status_code == 204
    assert audit_events(services, before) == [("video.renamed", vid, {"title": "by script", "by": "root"}),
                                              ("video.deleted", vid, {"by": "root"})]  # fmt: skip


def test_the_audit_trail_pages_newest_first(client: FlaskClient, services: Services, admin_auth: dict[str, str]) -> None:
    vid = new_video(services)
    for i in range(5):
        client.patch(f"/api/admin/videos/{vid}", json={"title": f"t{i}"}, headers=admin_auth)
    first = client.get("/api/admin/audit?limit=2", headers=admin_auth).json
    assert [e["data"]["title"] for e in first["events"]] == ["t4", "t3"]
    assert first["next_before"] == first["events"][-1]["id"]
    rest = client.get(f"/api/admin/audit?limit=2&before={first['next_before']}", headers=admin_auth).json
    last = client.get(f"/api/admin/audit?limit=2&before={rest['next_before']}", headers=admin_auth).json
    assert [e["data"]["title"] for e in rest["events"] + last["events"]] == ["t2", "t1", "t0"]
    assert last["next_before"] is None


def test_a_page_skips_what_no_admin_did(client: FlaskClient, services: Services, admin_auth: dict[str, str]) -> None:
    """Entries far apart in the log come in one page (read on the (kind, id) index, not a window of ids)."""
    vid = new_video(services)
    client.patch(f"/api/admin/videos/{vid}", json={"title": "old"}, headers=admin_auth)
    with services.sessions() as db:  # events no admin made between it and the newest
        for _ in range(50):
            db.add(Event(at=T0, kind="segment.queued", video_id=vid))
        db.add(Event(at=T0, kind="video.deleted", video_id=vid, data='{"reason":"retention"}'))  # no `by`: not audited
        db.commit()
    client.patch(f"/api/admin/videos/{vid}", json={"title": "new"}, headers=admin_auth)
    page = client.get("/api/admin/audit?limit=3", headers=admin_auth).json
    assert [e["data"]["title"] for e in page["events"]] == ["new", "old"] and page["next_before"] is None


@pytest.mark.parametrize(
    ("query", "field"),
    [("limit=0", "limit"), ("limit=201", "limit"), ("limit=x", "limit"), ("before=0", "before"), ("before=-1", "before"),
     ("before=99999999999999999999", "before")],
)  # fmt: skip
def test_bad_audit_parameters_are_named(client: FlaskClient, admin_auth: dict[str, str], query: str, field: str) -> None:
    response = client.get(f"/api/admin/audit?{query}", headers=admin_auth)
    assert response.status_code == 400 and response.json["field"] == field, response.json


def test_the_audit_kinds_are_event_kinds_and_the_documents_enum() -> None:
    from server.domain.eventlog import KINDS

    audited = (*admin_views.AUDIT_KINDS, *admin_views.BY_KINDS)
    assert set(audited) <= set(KINDS)
    schemas = document()["components"]["schemas"]
    assert schemas["AuditKind"]["enum"] == list(audited)
    assert schemas["Visibility"]["enum"] == [v.value for v in Visibility]
