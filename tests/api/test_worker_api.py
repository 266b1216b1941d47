"""The worker API (docs/workers.md): tokens, claims, source downloads, output uploads, completion."""

from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select, update

from server.core.clock import SystemClock
from server.core.jobs import TICKET_LIFETIME
from server.core.wire import Claim
from server.domain import lifecycle, registry
from server.infra.models import Attempt, AttemptOutcome, Worker
from server.worker.encoding import encode, workdir_for
from tests.harness.stack import ticketed, upload
from tests.harness.tree import tree

SOURCE_ROUTES = [
    ("post", "/api/worker/hello"),
    ("post", "/api/worker/heartbeat"),
    ("post", "/api/worker/bye"),
    ("post", "/api/worker/attempts"),
    ("get", "/api/worker/attempts/1/source"),
    ("post", "/api/worker/attempts/1/heartbeat"),
    ("put", "/api/worker/attempts/1/outputs/HIGH.mp4"),
    ("post", "/api/worker/attempts/1/complete"),
    ("post", "/api/worker/attempts/1/fail"),
]


def hello_body() -> dict:
    capabilities = {"ffmpeg": "5.1", "encoders": ["aac", "libx264"]}
    return {
        "host": "w1",
        "version": "abc123",
        "capabilities": capabilities,
        "concurrency": 2,
        "functions": ["team03.transcode_segment"],
    }


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def services(app):  # type: ignore[no-untyped-def]
    return app.extensions["team03"]


@pytest.fixture
def mint(services):  # type: ignore[no-untyped-def]
    def factory(name: str = "w1") -> dict[str, str]:
        with services.sessions() as session:
            token = registry.mint_token(session, name, now=SystemClock().now())
        return {"Authorization": f"Bearer {token}"}

    return factory


@pytest.fixture
def auth(mint) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return mint("w1")


@pytest.fixture
def claim(client: FlaskClient, services, video_id: int, segment_files, auth) -> dict:  # type: ignore[no-untyped-def]
    """A running attempt of this worker at segment 0 (uploaded)."""
    assert upload(client, video_id, 0, segment_files[0].read_bytes()).status_code == 201
    response = client.post("/api/worker/attempts", json=ticketed(services, video_id, 0), headers=auth)
    assert response.status_code == 201, response.json
    return response.json


class CollectingOrigin:
    """An Origin that encodes from the stored original and keeps the outputs, for the test to PUT itself."""

    def __init__(self, services, where: Path) -> None:  # type: ignore[no-untyped-def]
        self.services, self.where, self.outputs = services, where, {}

    def workdir(self, claim: Claim) -> Path:
        return workdir_for(self.where, claim)

    def fetch_source(self, claim: Claim, workdir: Path) -> Path:
        return tree(self.services).original(claim.video_id, claim.segment_id, claim.source_extension)

    def heartbeat(self, claim: Claim, progress: float) -> None:
        pass

    def put_output(self, claim: Claim, name: str, path: Path) -> None:
        self.outputs[name] = path.read_bytes()

    def complete(self, claim: Claim) -> None:
        pass


@pytest.fixture
def outputs(services, claim, tmp_path: Path) -> dict[str, bytes]:  # type: ignore[no-untyped-def]
    """The claim's real outputs, encoded here as a worker would."""
    origin = CollectingOrigin(services, tmp_path / "worker")
    assert encode(origin, Claim.from_json(claim), services.config) == "ok"  # type: ignore[arg-type]
    assert set(origin.outputs) == set(claim["outputs"])
    return origin.outputs


def put(client: FlaskClient, claim: dict, name: str, data: bytes, auth: dict, digest: str | None = None):  # type: ignore[no-untyped-def]
    headers = {**auth, "X-Content-SHA256": digest or sha(data)}
    return client.put(f"/api/worker/attempts/{claim['attempt_id']}/outputs/{name}", data=data, headers=headers)


@pytest.mark.parametrize(("method", "path"), SOURCE_ROUTES)
def test_every_worker_route_refuses_a_missing_invalid_or_revoked_token(client, services, mint, method, path):
    revoked = mint("gone")
    with services.sessions() as session:
        registry.revoke(session, "gone", now=SystemClock().now())
    for headers in ({}, {"Authorization": "Bearer " + "x" * 43}, {"Authorization": "Basic cm9vdDpzM2NyZXQ="}, revoked):
        response = getattr(client, method)(path, headers=headers, data=b"\0" * 1000)
        assert response.status_code == 401, (headers, response.json)
        assert response.json["code"] == "unauthorized"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert tree(services).temp_files() == []  # a refused body was never received


def test_failed_tokens_are_rate_limited_per_address_but_valid_ones_are_not(make_config, gearmand):  # type: ignore[no-untyped-def]
    from server import create_app

    app = create_app(make_config(GEARMAN_SERVERS=(gearmand.address,), RATE_LIMIT_WORKER_AUTH="3/minute"))
    try:
        client = app.test_client()
        with app.extensions["team03"].sessions() as session:
            good = {"Authorization": f"Bearer {registry.mint_token(session, 'w1', now=SystemClock().now())}"}
        bad = {"Authorization": "Bearer " + "x" * 43}
        assert [client.post("/api/worker/heartbeat", headers=bad).status_code for _ in range(4)] == [401, 401, 401, 429]
        assert [client.post("/api/worker/heartbeat", headers=good).status_code for _ in range(5)] == [200] * 5
    finally:
        app.extensions["team03"].close()


def test_hello_registers_and_bye_records_the_stop(client, services, auth):
    response = client.post("/api/worker/hello", json=hello_body(), headers=auth)
    assert response.status_code == 200, response.json
    assert response.json["lease_seconds"] == services.config.LEASE_SECONDS
    assert client.post("/api/worker/heartbeat", headers=auth).status_code == 200
    assert client.post("/api/worker/bye", headers=auth).status_code == 200
    with services.sessions() as session:
        worker = session.scalars(select(Worker)).one()
        assert (worker.id, worker.host, worker.concurrency) == (response.json["worker_id"], "w1", 2)
        assert registry.capabilities_of(worker)["encoders"] == ["aac", "libx264"]
        assert worker.stopped_at is not None


def test_hello_names_a_bad_field(client, auth):
    response = client.post("/api/worker/hello", json={**hello_body(), "concurrency": "lots"}, headers=auth)
    assert (response.status_code, response.json["field"]) == (400, "concurrency")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("capabilities", {"encoders": ["x" * 1000] * 70}),  # > 64 KB: past a MariaDB TEXT
        ("functions", ["team03.transcode_segment"] * 20),  # past its VARCHAR(255)
    ],
)
def test_hello_with_an_oversized_field_is_a_400_naming_it(client, auth, field, value):  # type: ignore[no-untyped-def]
    response = client.post("/api/worker/hello", json={**hello_body(), field: value}, headers=auth)
    assert (response.status_code, response.json["field"]) == (400, field)


def test_a_database_data_error_is_a_400_not_a_500(make_config, gearmand):  # type: ignore[no-untyped-def]
    """The one error mapper answers a value the database refuses (too long, out of range) as bad input."""
    from sqlalchemy import text

    from server import create_app
    from server.web.api.context import session

    app = create_app(make_config(GEARMAN_SERVERS=(gearmand.address,)))
    try:

        @app.route("/too-long")
        def too_long():  # type: ignore[no-untyped-def]
            session().execute(text("UPDATE workers SET name = :name"), {"name": "x" * 100_000})
            return "unreachable"

        with app.extensions["team03"].sessions() as db:
            registry.mint_token(db, "w1", now=SystemClock().now())
        response = app.test_client().get("/too-long")
        assert (response.status_code, response.json["code"]) == (400, "invalid_input")
    finally:
        app.extensions["team03"].close()


def test_a_claim_answers_what_the_worker_needs_and_a_second_is_a_skip(client, services, claim, video_id, auth):
    assert {"attempt_id", "source_size", "source_sha256", "outputs", "renditions"} <= set(claim)
    again = client.post("/api/worker/attempts", json=ticketed(services, video_id, 0), headers=auth)
    assert again.status_code == 409
    assert again.json["skip"]


def test_a_claim_of_bad_ids_is_400(client, auth):
    response = client.post("/api/worker/attempts", json={"video_id": "1", "segment_id": 0}, headers=auth)
    assert (response.status_code, response.json["field"]) == (400, "video_id")


def test_the_source_comes_whole_or_from_a_range_with_its_sha256(client, claim, segment_files, auth):
    data = segment_files[0].read_bytes()
    url = f"/api/worker/attempts/{claim['attempt_id']}/source"
    with client.get(url, headers=auth) as whole:
        assert whole.status_code == 200
        assert whole.data == data
        assert whole.headers["X-Content-SHA256"] == sha(data) == claim["source_sha256"]
    with client.get(url, headers={**auth, "Range": "bytes=1000-"}) as rest:
        assert rest.status_code == 206
        assert rest.data == data[1000:]


def test_another_workers_attempt_is_not_found(client, claim, mint):
    other = mint("w2")
    with client.get(f"/api/worker/attempts/{claim['attempt_id']}/source", headers=other) as refused:
        assert refused.status_code == 404
    assert put(client, claim, claim["outputs"][0], b"x", other).status_code == 404


def test_an_output_is_stored_once_same_bytes_again_200_different_409_damaged_422(client, services, claim, auth):
    name = claim["outputs"][0]
    assert put(client, claim, name, b"encoded bytes", auth).status_code == 201
    assert put(client, claim, name, b"encoded bytes", auth).status_code == 200
    different = put(client, claim, name, b"other bytes", auth)
    assert (different.status_code, different.json["code"]) == (409, "conflict")
    damaged = put(client, claim, claim["outputs"][1], b"bytes", auth, digest=sha(b"other"))
    assert damaged.status_code == 422
    staged = tree(services).attempt_dir(claim["video_id"], claim["attempt_id"])
    assert sorted(p.name for p in staged.iterdir()) == [name]  # nothing of the refused ones
    assert (staged / name).read_bytes() == b"encoded bytes"
    assert tree(services).temp_files() == []


def test_an_output_needs_its_sha256_a_known_name_and_a_size_within_the_limit(client, services, claim, auth):
    url = f"/api/worker/attempts/{claim['attempt_id']}/outputs/{claim['outputs'][0]}"
    assert client.put(url, data=b"x", headers=auth).json["field"] == "X-Content-SHA256"
    assert put(client, claim, "secret.txt", b"x", auth).status_code == 404
    assert put(client, claim, "..", b"x", auth).status_code == 404
    big = b"\0" * (services.config.MAX_SEGMENT_BYTES + 1)
    assert put(client, claim, claim["outputs"][0], big, auth).status_code == 413
    assert tree(services).temp_files() == []


def test_complete_commits_once_and_refuses_a_missing_output(client, services, claim, auth, outputs):
    url = f"/api/worker/attempts/{claim['attempt_id']}/complete"
    for name in claim["outputs"][1:]:
        assert put(client, claim, name, outputs[name], auth).status_code == 201
    missing = client.post(url, headers=auth)
    assert (missing.status_code, missing.json["code"]) == (409, "conflict")
    assert put(client, claim, claim["outputs"][0], outputs[claim["outputs"][0]], auth).status_code == 201
    first = client.post(url, headers=auth)
    assert (first.status_code, first.json["committed"]) == (200, True)
    again = client.post(url, headers=auth)
    assert (again.status_code, again.json["committed"]) == (200, False)
    # Over now: uploads and heartbeats of it are 410.
    assert put(client, claim, claim["outputs"][0], b"late", auth).status_code == 410
    assert (
        client.post(f"/api/worker/attempts/{claim['attempt_id']}/heartbeat", json={"progress": 1}, headers=auth).status_code
        == 410
    )


def test_heartbeat_renews_the_lease(client, claim, auth):
    response = client.post(f"/api/worker/attempts/{claim['attempt_id']}/heartbeat", json={"progress": 0.5}, headers=auth)
    assert response.status_code == 200, response.json
    assert response.json["lease_expires_at"] >= claim["lease_expires_at"]
    bad = client.post(f"/api/worker/attempts/{claim['attempt_id']}/heartbeat", json={"progress": 2}, headers=auth)
    assert (bad.status_code, bad.json["field"]) == (400, "progress")


def test_a_failed_attempt_is_recorded_and_its_late_completion_refused(client, services, claim, auth):
    attempt = claim["attempt_id"]
    for name in claim["outputs"]:
        assert put(client, claim, name, b"x", auth).status_code == 201
    failed = client.post(f"/api/worker/attempts/{attempt}/fail", json={"error": "ffmpeg exited 1", "kind": "crash"}, headers=auth)
    assert failed.status_code == 200, failed.json
    late = client.post(f"/api/worker/attempts/{attempt}/complete", headers=auth)
    assert (late.status_code, late.json["code"]) == (410, "gone")
    with services.sessions() as session:
        assert session.get(Attempt, attempt).outcome is not None
    assert not tree(services).attempt_dir(claim["video_id"], attempt).exists()  # its staging was discarded


def test_a_failure_kind_that_is_no_string_is_400_not_a_500(client, claim, auth):
    url = f"/api/worker/attempts/{claim['attempt_id']}/fail"
    for kind in (["crash"], {"crash": 1}, 7, None):
        refused = client.post(url, json={"error": "ffmpeg exited 1", "kind": kind}, headers=auth)
        assert (refused.status_code, refused.json["field"]) == (400, "kind"), kind


def test_a_completion_after_the_lease_expired_is_refused_and_its_outputs_discarded(client, services, claim, auth, outputs):
    attempt = claim["attempt_id"]
    for name, data in outputs.items():
        assert put(client, claim, name, data, auth).status_code == 201
    with services.sessions() as session:  # the worker went quiet past its lease; the reaper's pass takes it back
        session.execute(update(Attempt).where(Attempt.id == attempt).values(lease_expires_at=datetime(2000, 1, 1)))
        session.commit()
        assert lifecycle.expire_leases(services, session) == 1
    late = client.post(f"/api/worker/attempts/{attempt}/complete", headers=auth)
    assert (late.status_code, late.json["code"]) == (410, "gone")
    assert not tree(services).attempt_dir(claim["video_id"], attempt).exists()
    with services.sessions() as session:
        assert session.get(Attempt, attempt).outcome is AttemptOutcome.EXPIRED


def test_outputs_that_are_no_mp4_are_refused_at_completion_not_a_500(client, services, claim, auth, outputs):
    for name, data in outputs.items():
        assert put(client, claim, name, b"not an mp4" if name.endswith(".mp4") else data, auth).status_code == 201
    refused = client.post(f"/api/worker/attempts/{claim['attempt_id']}/complete", headers=auth)
    assert (refused.status_code, refused.json["code"]) == (422, "unprocessable_media")
    with services.sessions() as session:
        assert session.get(Attempt, claim["attempt_id"]).outcome is None  # nothing committed; the worker may fail it


def test_a_claim_needs_the_ticket_of_a_job_handed_out_for_that_very_segment(client, services, video_id, segment_files, auth):
    for segment_id in (0, 1):
        assert upload(client, video_id, segment_id, segment_files[segment_id].read_bytes()).status_code == 201
    url, now = "/api/worker/attempts", services.clock.time()
    bare = client.post(url, json={"video_id": video_id, "segment_id": 0}, headers=auth)
    assert (bare.status_code, bare.json["field"]) == (400, "ticket")
    forged = {**ticketed(services, video_id, 0), "ticket": "0" * 64}
    other = {**ticketed(services, video_id, 1), "segment_id": 0}  # segment 1's ticket shown for segment 0
    expired = ticketed(services, video_id, 0, now=now - TICKET_LIFETIME - 1)
    for body in (forged, other, expired):
        refused = client.post(url, json=body, headers=auth)
        assert (refused.status_code, refused.json["code"]) == (403, "ticket_refused"), body
    with services.sessions() as session:
        assert session.scalars(select(Attempt)).all() == []  # nothing was claimed
    assert client.post(url, json=ticketed(services, video_id, 0), headers=auth).status_code == 201


def test_outputs_that_are_not_what_the_plan_asks_are_refused_by_name(client, services, claim, auth, outputs, tmp_path):
    """A token holder's 320x240 file as every rung, or a web page as the thumbnail, is never committed."""
    from tests.harness.media import make_segment

    small = make_segment(tmp_path / "small.mp4", seconds=3.0, size="320x240").read_bytes()
    page = b"<html><script>alert(document.cookie)</script></html>"
    url = f"/api/worker/attempts/{claim['attempt_id']}/complete"
    for name in outputs:
        assert put(client, claim, name, small if name.endswith(".mp4") else page, auth).status_code == 201
    refused = client.post(url, headers=auth)
    assert refused.status_code == 422, refused.json
    assert refused.json["message"].startswith("HIGH.mp4: 320x240, not the rung's 720x480"), refused.json
    with services.sessions() as session:
        assert session.get(Attempt, claim["attempt_id"]).outcome is None  # nothing committed


def test_a_picture_that_is_no_jpeg_is_refused_by_name(client, services, claim, auth, outputs):
    url = f"/api/worker/attempts/{claim['attempt_id']}/complete"
    for name, data in outputs.items():
        body = b"<html><script>alert(1)</script></html>" if name == "thumbnail.jpg" else data
        assert put(client, claim, name, body, auth).status_code == 201
    refused = client.post(url, headers=auth)
    assert (refused.status_code, refused.json["message"]) == (422, "thumbnail.jpg: not a JPEG picture")


def test_a_remote_workers_full_disk_is_its_own_not_the_origins(client, services, claim, auth):
    failed = client.post(
        f"/api/worker/attempts/{claim['attempt_id']}/fail",
        json={"error": "No space left on device", "kind": "disk_full"},
        headers=auth,
    )
    assert failed.status_code == 200
    with services.sessions() as session:
        segment = session.get(Attempt, claim["attempt_id"]).segment
        # An attempt spent and the usual first backoff, not the origin's longest wait with none spent.
        assert segment.attempts == 1
        assert (segment.retry_at - services.clock.now()).total_seconds() <= services.config.RETRY_BACKOFF + 1


def test_media_served_by_the_app_is_never_sniffed(client, services, video_id):
    picture = tree(services).file(video_id, "thumbnails", 0, "jpg")
    picture.parent.mkdir(parents=True, exist_ok=True)
    picture.write_bytes(b"<html><script>alert(1)</script></html>")
    with client.get(f"/video_files/{video_id}/thumbnails/000000.jpg") as response:
        assert response.status_code == 200
        assert (response.headers["Content-Type"], response.headers["X-Content-Type-Options"]) == ("image/jpeg", "nosniff")
