"""Admin login (docs/admin-api.md, "Login"): session cookie, CSRF, idle expiry, throttle, and the auth walk.

The walk reads the one route table (server.web.api.ROUTES), so routes added later are covered without
listing them here; `test_the_walk_reports_an_admin_route_that_forgets_require_admin` shows it can fail.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from flask_restful import Resource
from sqlalchemy import func, select
from werkzeug.security import generate_password_hash

import server.web.api
from server import create_app
from server.domain import admins
from server.infra.models import Admin, AdminSession
from server.infra.services import Services
from server.web.api.auth import COOKIE, PRUNE_BATCH, require_admin
from server.web.api.context import session
from tests.harness.android import new_video_body
from tests.harness.clock import FakeClock
from tests.harness.services import Memcached

ROOT = {"username": "root", "password": "s3cret"}  # the admin_auth fixture's admin
IDLE = 600.0


@pytest.fixture
def make_app(make_config, admin_auth) -> Iterator:  # type: ignore[no-untyped-def, type-arg]
    """Apps on the test database (admin root/s3cret) with a FakeClock; closed at the end."""
    apps: list[Flask] = []

    def factory(**overrides: object) -> Flask:
        config = make_config(**{"ADMIN_SESSION_SECONDS": IDLE, **overrides})
        services = Services.build(config)
        services.clock = FakeClock()
        apps.append(create_app(config, services=services))
        return apps[-1]

    yield factory
    for app in apps:
        app.extensions["team03"].close()


@pytest.fixture
def app(make_app) -> Flask:  # type: ignore[no-untyped-def]
    return make_app()


def _login(client: FlaskClient, address: str = "10.0.0.1", **body: str):  # type: ignore[no-untyped-def]
    return client.post("/api/admin/login", json=body or ROOT, environ_base={"REMOTE_ADDR": address})


def _logged_in(app: Flask) -> tuple[FlaskClient, str]:
    """Return a client holding the session cookie, and its CSRF token."""
    client = app.test_client()
    response = _login(client)
    assert response.status_code == 200, response.json
    return client, response.json["csrf_token"]


def _sessions(app: Flask) -> list[AdminSession]:
    with app.extensions["team03"].sessions() as db:
        return list(db.scalars(select(AdminSession)).all())


def _basic(name: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()}


def _assert_401(response) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == 401, response.get_data(as_text=True)
    assert response.json["code"] == "unauthorized"
    assert "WWW-Authenticate" not in response.headers  # a browser never prompts for, so never caches, Basic


# --- login, cookie, me, logout ---


def test_login_answers_name_and_csrf_token_and_sets_a_strict_httponly_cookie_holding_an_unstored_token(app):
    response = _login(app.test_client())
    assert response.status_code == 200, response.json
    assert set(response.json) == {"name", "csrf_token"} and response.json["name"] == "root"
    cookie = response.headers["Set-Cookie"]
    token = re.match(rf"{COOKIE}=([^;]+);", cookie).group(1)  # type: ignore[union-attr]
    attributes = {part.strip().split("=")[0] for part in cookie.split(";")[1:]}
    assert {"HttpOnly", "Path"} <= attributes and "Secure" not in attributes
    assert "SameSite=Strict" in cookie and "Path=/" in cookie
    [row] = _sessions(app)
    assert row.id == hashlib.sha256(token.encode()).hexdigest() != token  # the database holds only a digest
    assert row.csrf_token == response.json["csrf_token"] and row.address == "10.0.0.1"
    assert response.headers["Cache-Control"] == "no-store"


def test_a_wrong_password_and_an_unknown_name_get_the_same_401_and_no_session(app):
    client = app.test_client()
    wrong = _login(client, username="root", password="guess")
    unknown = _login(client, username="nobody", password="s3cret")
    for response in (wrong, unknown):
        _assert_401(response)
        assert "Set-Cookie" not in response.headers
    assert wrong.json == unknown.json
    assert _sessions(app) == []


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"data": b"username=root&password=s3cret", "content_type": "application/x-www-form-urlencoded"}, "body"),
        ({"data": b'{"username": "root", "password": "s3cret"}', "content_type": "text/plain"}, "body"),
        ({"json": ["root", "s3cret"]}, "body"),
        ({"json": {"username": "root"}}, "password"),
        ({"json": {"username": 7, "password": "s3cret"}}, "username"),
        ({"json": {"username": "root", "password": "x" * 1025}}, "password"),
    ],
)
def test_a_login_body_that_is_not_a_json_object_of_two_strings_is_400_naming_the_field(app, kwargs, field):
    response = app.test_client().post("/api/admin/login", **kwargs)
    assert response.status_code == 400, response.json
    assert response.json["field"] == field


def test_the_cookie_is_secure_over_https_and_behind_a_trusted_proxy_only(make_app):
    def secure(app: Flask, **kwargs: object) -> bool:
        response = app.test_client().post("/api/admin/login", json=ROOT, **kwargs)
        assert response.status_code == 200, response.json
        return "; Secure" in response.headers["Set-Cookie"]

    direct, proxied = make_app(), make_app(TRUSTED_PROXIES=1)
    forwarded = {"headers": {"X-Forwarded-Proto": "https", "X-Forwarded-For": "198.51.100.7"}}
    assert not secure(direct)
    assert secure(direct, base_url="https://localhost")
    assert not secure(direct, **forwarded)  # without TRUSTED_PROXIES anyone could claim https
    assert secure(proxied, **forwarded)
    assert not secure(proxied, headers={"X-Forwarded-Proto": "http", "X-Forwarded-For": "198.51.100.7"})


def test_me_names_the_admin_and_logout_deletes_the_session_so_the_cookie_no_longer_works(app):
    client, csrf = _logged_in(app)
    assert client.get("/api/admin/me").json == {"name": "root", "csrf_token": csrf}
    assert client.post("/api/admin/logout").status_code == 403  # a mutation like any other: CSRF token required
    response = client.post("/api/admin/logout", headers={"X-CSRF-Token": csrf})
    assert response.status_code == 204
    assert (
        re.match(rf"{COOKIE}=;", response.headers["Set-Cookie"]) and "Expires=Thu, 01 Jan 1970" in response.headers["Set-Cookie"]
    )
    assert _sessions(app) == []
    _assert_401(client.get("/api/admin/me"))


def test_a_copied_cookie_stops_working_after_logout(app):
    client, csrf = _logged_in(app)
    token = client.get_cookie(COOKIE).value  # type: ignore[union-attr]
    thief = app.test_client()
    thief.set_cookie(COOKIE, token)
    assert thief.get("/api/admin/me").status_code == 200
    assert client.post("/api/admin/logout", headers={"X-CSRF-Token": csrf}).status_code == 204
    _assert_401(thief.get("/api/admin/me"))


def test_me_over_basic_has_no_csrf_token_and_logout_over_basic_deletes_nothing(app, admin_auth):
    client, _csrf = _logged_in(app)
    basic = app.test_client()
    assert basic.get("/api/admin/me", headers=admin_auth).json == {"name": "root", "csrf_token": None}
    assert basic.post("/api/admin/logout", headers=admin_auth).status_code == 204
    assert len(_sessions(app)) == 1
    assert client.get("/api/admin/me").status_code == 200


def test_a_session_ends_after_admin_session_seconds_idle_and_use_slides_the_end(app):
    client, _csrf = _logged_in(app)
    clock: FakeClock = app.extensions["team03"].clock  # type: ignore[assignment]
    [row] = _sessions(app)
    clock.advance(30)
    assert client.get("/api/admin/me").status_code == 200
    assert _sessions(app)[0].last_seen_at == row.last_seen_at  # written at most once a minute
    clock.advance(IDLE - 31)
    assert client.get("/api/admin/me").status_code == 200  # 1 s before the end: used, so the end moves
    [touched] = _sessions(app)
    assert touched.last_seen_at == clock.now() and touched.expires_at == clock.now() + timedelta(seconds=IDLE)
    clock.advance(IDLE - 1)
    assert client.get("/api/admin/me").status_code == 200
    clock.advance(IDLE)
    _assert_401(client.get("/api/admin/me"))


def test_expired_sessions_are_deleted_at_login_a_bounded_batch_at_a_time(app):
    services = app.extensions["team03"]
    now = services.clock.now()
    with services.sessions() as db:
        admin_id = db.scalar(select(Admin.id).where(Admin.name == "root"))
        for i in range(PRUNE_BATCH + 20):
            expired = now - timedelta(seconds=1 + i)
            db.add(
                AdminSession(
                    id=f"{i:064x}",
                    admin_id=admin_id,
                    csrf_token="x",
                    created_at=expired,
                    last_seen_at=expired,
                    expires_at=expired,
                )
            )
        db.commit()
    live, _ = _logged_in(app)
    assert len(_sessions(app)) == 20 + 1
    _logged_in(app)
    assert len(_sessions(app)) == 2  # both live ones
    assert live.get("/api/admin/me").status_code == 200


# --- CSRF on every cookie mutation; HTTP Basic without ---


def test_the_existing_admin_routes_take_the_cookie_and_its_csrf_token(app, admin_auth):
    client, csrf = _logged_in(app)
    vid = client.post("/videos", json=new_video_body("t")).json["video_id"]
    for headers in ({}, {"X-CSRF-Token": "wrong"}, {"X-CSRF-Token": csrf[:-1]}, {"X-CSRF-Token": ""}):
        response = client.put(f"/video/{vid}", json={"title": "renamed"}, headers=headers)
        assert response.status_code == 403, response.json
        assert response.json["code"] == "forbidden" and "X-CSRF-Token" in response.json["message"]
        assert client.delete(f"/video/{vid}", headers=headers).status_code == 403
    assert client.get(f"/video/{vid}").json["title"] == "t"
    assert client.put(f"/video/{vid}", json={"title": "renamed"}, headers={"X-CSRF-Token": csrf}).json["title"] == "renamed"
    assert client.get("/status.json").status_code == 200  # a read needs no token
    assert app.test_client().put(f"/video/{vid}", json={"title": "by script"}, headers=admin_auth).status_code == 200
    assert client.delete(f"/video/{vid}", headers={"X-CSRF-Token": csrf}).status_code == 204


def test_a_csrf_token_belongs_to_its_own_session(app):
    first, _ = _logged_in(app)
    _second, other = _logged_in(app)
    vid = first.post("/videos", json=new_video_body("t")).json["video_id"]
    assert first.put(f"/video/{vid}", json={"title": "x"}, headers={"X-CSRF-Token": other}).status_code == 403


# --- the failed-login throttle ---


def _assert_throttled(response, reason: str) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == 429, response.get_data(as_text=True)
    assert response.json["code"] == "too_many_requests" and reason in response.json["message"]
    assert 1 <= int(response.headers["Retry-After"]) <= 15 * 60


def test_failed_logins_from_one_address_are_throttled_and_other_addresses_are_not(app):
    client = app.test_client()
    for i in range(5):  # different names: only the address's counter reaches 5
        _assert_401(_login(client, "10.0.0.1", username=f"guess{i}", password="x"))
    _assert_throttled(_login(client, "10.0.0.1", username="guess5", password="x"), "from this address")
    _assert_throttled(_login(client, "10.0.0.1"), "from this address")  # refused before the password is checked
    assert _login(client, "10.0.0.2").status_code == 200


def _add_admin(app: Flask, name: str, password: str) -> None:
    with app.extensions["team03"].sessions() as db:
        db.add(Admin(name=name, password_hash=generate_password_hash(password)))
        db.commit()


def test_failed_logins_for_one_name_throttle_it_from_every_address_that_failed_and_other_names_are_not(app):
    _add_admin(app, "ops", "opspw")
    client = app.test_client()
    for i in range(5):  # a botnet: every guess from a new address
        _assert_401(_login(client, f"10.1.0.{i}", username="root", password=f"guess{i}"))
    _assert_throttled(_login(client, "10.1.0.0"), "for this username")  # even the right password
    _assert_throttled(_login(client, "10.1.0.1", username="ROOT ", password="x"), "for this username")  # the same row
    _assert_throttled(
        client.get("/status.json", headers=_basic("root", "s3cret"), environ_base={"REMOTE_ADDR": "10.1.0.2"}),
        "for this username",
    )
    assert _login(client, "10.1.0.3", username="ops", password="opspw").status_code == 200


def test_the_name_limit_counts_the_row_the_database_finds_so_collation_folding_cannot_dodge_it(app):
    _add_admin(app, "bob", "bobpw")
    client = app.test_client()
    assert _login(client, "10.2.0.9", username="bób", password="bobpw").json["name"] == "bob"  # MariaDB folds it
    for i in range(5):
        _assert_401(_login(client, f"10.2.0.{i}", username="bob", password=f"guess{i}"))
    for i, name in enumerate(("bób", "böb", "Bôb", "BOB")):
        _assert_throttled(_login(client, f"10.2.0.{i}", username=name, password="bobpw"), "for this username")


def test_the_right_password_from_a_clean_address_gets_through_a_name_lock_the_attacker_keeps_renewing(app):
    client = app.test_client()
    for window in range(3):  # 5 guesses a window keep the name over its limit
        app.extensions["team03"].clock.advance(15 * 60 if window else 0)
        for i in range(5):
            address = f"10.3.{window}.{i}"
            response = _login(client, address, username="root", password=f"guess{i}")
            assert response.status_code in (401, 429), response.json
        assert _login(client, "10.3.9.9").status_code == 200  # the real admin, from an address with no failure
    # A clean address gets one check through the name lock; its failure makes it unclean.
    _assert_401(_login(client, "10.3.9.8", username="root", password="guess"))
    _assert_throttled(_login(client, "10.3.9.8"), "for this username")
    _assert_throttled(_login(client, "10.3.2.0"), "for this username")  # an address that failed this window


def test_a_memcached_that_is_down_counts_nothing_and_refuses_no_login(make_app, caplog):
    server = Memcached().start()
    app = make_app(MEMCACHED_SERVERS=(server.address,), CACHE_PREFIX="down:")
    server.stop()
    client = app.test_client()
    for i in range(7):
        _assert_401(_login(client, "10.5.0.1", username="root", password=f"guess{i}"))
    assert _login(client, "10.5.0.1").status_code == 200
    assert "login throttle: memcached unavailable, not counting" in caplog.text


def _concurrent_guesses(app: Flask, count: int) -> list[int]:
    """`count` wrong passwords for root from one address, sent at once from as many threads."""
    start = threading.Barrier(count)

    def guess(i: int) -> int:
        client = app.test_client()
        start.wait()
        return _login(client, "10.4.0.1", username="root", password=f"guess{i}").status_code

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(guess, range(count)))


@pytest.mark.parametrize("store", ["in-process", "memcached"])
def test_concurrent_wrong_passwords_get_no_more_password_checks_than_the_limit(make_app, store):
    server = Memcached().start() if store == "memcached" else None
    try:
        app = make_app(**({"MEMCACHED_SERVERS": (server.address,), "CACHE_PREFIX": "race:"} if server else {}))
        codes = _concurrent_guesses(app, 40)
        assert (codes.count(401), codes.count(429)) == (5, 35), codes  # a 401 is a password checked
    finally:
        if server is not None:
            server.stop()


def test_a_success_does_not_reset_the_failures_counted_so_far(app):
    client = app.test_client()
    for i in range(4):
        _assert_401(_login(client, "10.0.0.3", username=f"guess{i}", password="x"))
    assert _login(client, "10.0.0.3").status_code == 200  # an attacker who knows one password gains nothing
    _assert_401(_login(client, "10.0.0.3", username="guess4", password="x"))
    _assert_throttled(_login(client, "10.0.0.3"), "from this address")


def test_failed_http_basic_checks_count_like_failed_logins(app):
    client = app.test_client()
    for i in range(5):
        _assert_401(client.get("/status.json", headers=_basic("root", f"guess{i}"), environ_base={"REMOTE_ADDR": "10.0.0.4"}))
    _assert_throttled(_login(client, "10.0.0.4"), "from this address")


def test_failure_counts_are_shared_by_every_process_through_memcached(make_app):
    server = Memcached().start()
    try:
        shared = {"MEMCACHED_SERVERS": (server.address,), "CACHE_PREFIX": "shared-login:"}
        one, two = make_app(**shared).test_client(), make_app(**shared).test_client()
        for i in range(5):
            _assert_401(_login((one, two)[i % 2], "10.0.0.5", username=f"guess{i}", password="x"))
        _assert_throttled(_login(one, "10.0.0.5"), "from this address")
        _assert_throttled(_login(two, "10.0.0.5"), "from this address")
    finally:
        server.stop()


# --- the admin commands end sessions (python -m server.cli admin ...) ---


def _cli(database_url: str, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """Run the operator CLI as an operator does, on the test database."""
    env = {**os.environ, "DATABASE_URL": database_url, "MEMCACHED_SERVERS": "", "GEARMAN_SERVERS": ""}
    return subprocess.run(
        [sys.executable, "-m", "server.cli", *args], input=stdin, env=env, capture_output=True, text=True, timeout=120
    )


def _two_admins_logged_in(app: Flask) -> tuple[list[FlaskClient], FlaskClient]:
    """Two sessions of root and one of ops (password opspw)."""
    _add_admin(app, "ops", "opspw")
    roots = [_logged_in(app)[0], _logged_in(app)[0]]
    ops = app.test_client()
    assert _login(ops, username="ops", password="opspw").status_code == 200
    return roots, ops


def test_a_new_password_ends_every_session_of_that_admin_and_no_other(app, database_url):
    roots, ops = _two_admins_logged_in(app)
    done = _cli(database_url, "admin", "create", "root", stdin="n3w-pass\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "admin 'root' saved; 2 session(s) ended\n"
    for client in roots:
        _assert_401(client.get("/api/admin/me"))
    assert ops.get("/api/admin/me").status_code == 200
    _assert_401(_login(app.test_client(), "10.0.0.7"))  # the old password
    assert _login(app.test_client(), "10.0.0.7", username="root", password="n3w-pass").status_code == 200


def test_logout_all_ends_every_session_of_that_admin_and_keeps_the_password(app, database_url):
    roots, ops = _two_admins_logged_in(app)
    done = _cli(database_url, "admin", "logout-all", "root")
    assert (done.returncode, done.stdout) == (0, "admin 'root': 2 session(s) ended\n"), done.stderr
    for client in roots:
        _assert_401(client.get("/api/admin/me"))
    assert ops.get("/api/admin/me").status_code == 200
    assert _login(app.test_client()).status_code == 200


def test_delete_removes_the_admin_and_its_sessions(app, database_url):
    roots, ops = _two_admins_logged_in(app)
    done = _cli(database_url, "admin", "delete", "root")
    assert (done.returncode, done.stdout) == (0, "admin 'root' deleted; 2 session(s) ended\n"), done.stderr
    for client in roots:
        _assert_401(client.get("/api/admin/me"))
    assert {row.admin_id for row in _sessions(app)} == {_admin_id(app, "ops")}
    _assert_401(_login(app.test_client()))
    assert ops.get("/api/admin/me").status_code == 200


def test_the_admin_commands_name_an_unknown_admin_on_stderr_and_exit_1(database_url):
    for action in ("logout-all", "delete"):
        done = _cli(database_url, "admin", action, "nobody")
        assert (done.returncode, done.stdout, done.stderr) == (1, "", "error: no admin named 'nobody'\n")


def test_a_login_whose_password_was_changed_after_its_check_opens_no_session(app):
    """open_session asks admins.unchanged, reading the row under a share lock, before it inserts."""
    services = app.extensions["team03"]
    with services.sessions() as login, services.sessions() as other:
        checked = login.scalars(select(Admin).where(Admin.name == "root")).one()  # as check_password loaded it
        assert admins.set_password(other, "root", "n3w-pass") == ("root", 0)
        assert not admins.unchanged(login, checked)
        login.rollback()  # releases the share lock (and reloads the row)
        assert admins.unchanged(login, checked)
        login.rollback()
        checked = login.scalars(select(Admin).where(Admin.name == "root")).one()
        admins.delete_admin(other, "root")
        assert not admins.unchanged(login, checked)


def _admin_id(app: Flask, name: str) -> int:
    with app.extensions["team03"].sessions() as db:
        return db.scalar(select(Admin.id).where(Admin.name == name))  # type: ignore[return-value]


# --- the auth walk over the route table ---


def _url(path: str) -> str:
    """Fill a route's placeholders: 1 for ids, "x" for names and paths."""
    return re.sub(r"<(?:(\w+)(?:\([^)]*\))?:)?\w+>", lambda m: "1" if m.group(1) == "int" else "x", path)


def admin_routes(routes: list[tuple[type[Resource], str]]) -> list[tuple[str, str]]:
    """Every (method, path) of the route table under /api/admin/, login excepted."""
    return sorted(
        (method, path)
        for resource, path in routes
        if path.startswith("/api/admin/") and path != "/api/admin/login"
        for method in resource.methods or ()
    )


def walk(app: Flask, routes: list[tuple[type[Resource], str]]) -> list[str]:
    """Return what is wrong: an admin route an anonymous call gets into, or a cookie mutation without CSRF gets into."""
    anonymous, (cookie, _csrf) = app.test_client(), _logged_in(app)
    problems = []
    for method, path in admin_routes(routes):
        response = anonymous.open(_url(path), method=method, json={})
        if response.status_code != 401 or not response.is_json or response.json.get("code") != "unauthorized":
            problems.append(f"{method} {path}: anonymous call got {response.status_code}")
        elif "WWW-Authenticate" in response.headers:
            problems.append(f"{method} {path}: a 401 carries WWW-Authenticate")
        if method in ("POST", "PUT", "PATCH", "DELETE"):
            response = cookie.open(_url(path), method=method, json={})
            if response.status_code != 403:
                problems.append(f"{method} {path}: cookie call without X-CSRF-Token got {response.status_code}")
    return problems


def test_every_admin_route_refuses_an_anonymous_call_and_a_cookie_mutation_without_csrf(app):
    assert ("GET", "/api/admin/me") in admin_routes(server.web.api.ROUTES)  # the walk sees the table
    assert walk(app, server.web.api.ROUTES) == []


class _Forgetful(Resource):
    """An admin route whose GET checks the login and whose POST forgot to."""

    def get(self, video_id: int):  # type: ignore[no-untyped-def]
        require_admin(session())
        return {"ok": video_id}

    def post(self, video_id: int):  # type: ignore[no-untyped-def]
        return {"ok": video_id}


def test_the_walk_reports_an_admin_route_that_forgets_require_admin(make_app, monkeypatch):
    routes = [*server.web.api.ROUTES, (_Forgetful, "/api/admin/forgetful/<int:video_id>")]
    monkeypatch.setattr(server.web.api, "ROUTES", routes)
    problems = walk(make_app(), routes)
    assert problems == [
        "POST /api/admin/forgetful/<int:video_id>: anonymous call got 200",
        "POST /api/admin/forgetful/<int:video_id>: cookie call without X-CSRF-Token got 200",
    ]


def test_no_admin_is_created_by_building_the_app(make_config, database_url):
    """The first admin and its printed password come from dev_run.py only (never gunicorn's create_app)."""
    app = create_app(make_config())
    try:
        with app.extensions["team03"].sessions() as db:
            assert db.scalar(select(func.count()).select_from(Admin)) == 0
    finally:
        app.extensions["team03"].close()
