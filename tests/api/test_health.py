"""/ping for load balancers, /status.json for operators, and 503 when the database does not answer."""

from __future__ import annotations

import re
from datetime import timedelta

from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import insert, select
from werkzeug.security import generate_password_hash

from server import create_app
from server.core.jobs import TRANSCODE_SEGMENT
from server.infra.db import alembic_config
from server.infra.models import Admin, Segment
from tests.harness.services import free_port
from tests.harness.stack import upload
from tests.harness.tree import tree

HEAD = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()  # the newest migration


def test_ping_is_public_and_never_cached(client):
    response = client.get("/ping")
    assert response.status_code == 200 and response.json == {"status": "ok"}
    assert response.headers["Cache-Control"] == "no-store"


def test_status_needs_an_admin_login(client):
    response = client.get("/status.json")
    assert response.status_code == 401 and response.json["code"] == "unauthorized"


def test_status_reports_a_queue_without_workers_and_the_waiting_segment(client, gearmand, video_id, segment_files, admin_auth):
    assert upload(client, video_id, 0, segment_files[0].read_bytes()).status_code == 201
    report = client.get("/status.json", headers=admin_auth).json
    assert report["status"] == "degraded"
    assert report["problems"] == [f"no segment_processor is registered with gearmand for {TRANSCODE_SEGMENT}"]
    counts = {"queued": 1, "running": 0, "workers": 0}
    assert report["queue"] == {"kind": "gearman", "ok": False, **counts, "servers": {gearmand.address: {"ok": False, **counts}}}
    segments = report["database"]["segments"]
    assert (segments["queued"], segments["running"], segments["packaged"], segments["failed"]) == (1, 0, 0, 0)
    assert 0 <= segments["oldest_waiting_seconds"] < 60
    assert report["database"]["videos"] == {"live": 1, "vod": 0}
    assert report["database"]["ok"] and report["database"]["schema"] == HEAD  # migrated to head
    assert report["media"]["ok"] and report["media"]["free_bytes"] > 0
    assert report["cache"] == {"kind": "local", "ok": True}


def test_status_names_a_dead_gearmand_a_dead_memcached_and_a_full_disk(make_config, tiny_disk, admin_auth):
    nothing = f"127.0.0.1:{free_port()}"
    config = make_config(GEARMAN_SERVERS=(nothing,), MEMCACHED_SERVERS=(nothing,), MEDIA_ROOT=tiny_disk)
    app = create_app(config)
    try:
        report = app.test_client().get("/status.json", headers=admin_auth).json
    finally:
        app.extensions["team03"].close()
    assert report["status"] == "degraded"
    assert report["queue"]["kind"] == "gearman" and not report["queue"]["ok"] and "queued" not in report["queue"]
    assert report["queue"]["servers"][nothing]["error"].startswith("ServerUnavailable")
    assert report["cache"] == {"kind": "memcached", "ok": False}
    assert not report["media"]["ok"] and report["media"]["free_bytes"] < config.MAX_SEGMENT_BYTES
    assert [p.split(" ", 1)[0] for p in report["problems"]] == ["gearmand", "memcached", str(report["media"]["free_bytes"])]


def test_a_database_that_does_not_answer_is_a_503_and_stores_nothing(make_config, segment_files):
    app = create_app(make_config(DATABASE_URL=f"mysql+pymysql://root@127.0.0.1:{free_port()}/nothing"))
    try:
        client = app.test_client()
        ping = client.get("/ping")
        assert ping.status_code == 503 and ping.json["code"] == "database_unavailable"
        assert ping.headers["Retry-After"] == "5"
        assert client.post("/videos", json={"title": "x"}).status_code == 503
        assert upload(client, 1, 0, segment_files[0].read_bytes()).status_code == 503
        assert tree(app.extensions["team03"]).temp_files() == []
    finally:
        app.extensions["team03"].close()


def test_status_names_a_segment_waiting_past_the_processing_deadline(make_config, gearmand, segment_files, admin_auth):
    app = create_app(make_config(GEARMAN_SERVERS=(gearmand.address,), PROCESSING_DEADLINE=60))
    try:
        client = app.test_client()
        vid = client.post("/videos", json={"title": "stuck"}).json["video_id"]
        assert upload(client, vid, 0, segment_files[0].read_bytes()).status_code == 201
        assert not any("waited" in p for p in client.get("/status.json", headers=admin_auth).json["problems"])
        # No worker takes it: move its upload 100 s into the past rather than wait that long.
        with app.extensions["team03"].sessions() as session:
            segment = session.scalars(select(Segment)).one()
            segment.uploaded_at -= timedelta(seconds=100)
            session.commit()
        problems = client.get("/status.json", headers=admin_auth).json["problems"]
    finally:
        app.extensions["team03"].close()
    assert any(re.fullmatch(r"a segment has waited 1\d\d s for a worker \(PROCESSING_DEADLINE is 60 s\)", p) for p in problems)


def test_status_names_a_schema_behind_the_code(make_config, tmp_path, admin_auth):
    # The code was deployed, `db upgrade` was not run: say so, with the command that fixes it.
    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    command.upgrade(alembic_config(url), "0001")
    app = create_app(make_config(DATABASE_URL=url))
    try:
        engine = app.extensions["team03"].engine
        with engine.begin() as conn:  # the login the status page needs, in this database
            conn.execute(insert(Admin).values(name="root", password_hash=generate_password_hash("s3cret")))
        report = app.test_client().get("/status.json", headers=admin_auth).json
    finally:
        app.extensions["team03"].close()
    assert report["status"] == "degraded" and report["database"]["ok"] is False
    expected = f"database schema is at 0001, the code expects {HEAD}: run python -m server.cli db upgrade"
    assert report["problems"] == [expected]
