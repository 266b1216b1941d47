"""The object store seen by operators: team03_store_* on /metrics, the `store` check of /readyz, /status.json's
`store`, on the local tree and on Ceph's RADOS Gateway (a spare gateway is stopped or frozen, SIGTERM only).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from server import create_app
from server.core.errors import InsufficientStorage, StorageUnavailable
from server.store.objects import LocalObjects, ObjectMissing, ObservedObjects, PutResult, UnsafeKey
from tests.api.test_metrics import scrape, value
from tests.harness import s3

KEY = "videos/3/HIGH/000001.m4s"
READY_WITHIN = 4.0  # seconds /readyz may take with the gateway stopped or frozen (its check waits at most 2 s)


@pytest.fixture
def s3_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test gateway's keys where boto3 looks for them (S3Objects.from_config passes none)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.SECRET_KEY)


@pytest.fixture
def s3_app(make_config, s3_bucket, s3_env):  # type: ignore[no-untyped-def]
    """Return a factory of apps on the test bucket (each under a prefix of its own); closed after the test."""
    apps = []

    def factory(endpoint: str = s3.ENDPOINT, bucket: str = s3_bucket, **overrides: object):  # type: ignore[no-untyped-def]
        config = make_config(
            MEDIA_STORE="s3", S3_ENDPOINT_URL=endpoint, S3_BUCKET=bucket, S3_PREFIX=uuid.uuid4().hex[:8], **overrides
        )
        apps.append(create_app(config))
        return apps[-1]

    yield factory
    for app in apps:
        app.extensions["team03"].close()


@pytest.fixture
def spare(tmp_path: Path) -> Iterator[s3.SpareGateway]:
    gateway = s3.SpareGateway(tmp_path / "rgw").start()
    yield gateway
    gateway.stop()


def _moved(before, after, sample: str, **labels: str) -> float:  # type: ignore[no-untyped-def]
    return value(after, sample, **labels) - value(before, sample, **labels)


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_store_calls_move_the_latency_and_error_metrics(backend, make_config, request, tmp_path):
    if backend == "s3":
        app = request.getfixturevalue("s3_app")()
    else:
        app = create_app(make_config())
        request.addfinalizer(app.extensions["team03"].close)
    client, objects = app.test_client(), app.extensions["team03"].objects
    before = scrape(client)
    assert objects.put(KEY, b"fragment") is PutResult.CREATED
    assert objects.put(KEY, b"other", if_absent=True) is PutResult.DIFFERENT  # a conflict
    assert objects.get(KEY) == b"fragment"
    objects.download(KEY, tmp_path / "copy")
    assert objects.head(KEY) is not None and objects.list("videos/3/") == [KEY]
    objects.delete(KEY)
    with pytest.raises(ObjectMissing):
        objects.get(KEY)
    assert objects.head(KEY) is None  # asking is no error
    after = scrape(client)
    calls = {"put": 2, "get": 2, "download": 1, "head": 2, "delete": 1, "list": 1}
    for operation, count in calls.items():
        labels = {"operation": operation, "backend": backend}
        assert _moved(before, after, "team03_store_seconds_count", **labels) == count, operation
        assert 0 < _moved(before, after, "team03_store_seconds_sum", **labels) < 30
    errors = {(s.labels["operation"], s.labels["kind"]): s.value for s in after["team03_store_errors"].samples}
    old = {(s.labels["operation"], s.labels["kind"]): s.value for s in before["team03_store_errors"].samples}
    assert len(errors) == 24  # every operation and kind, at 0 from the start
    assert {k: errors[k] - old.get(k, 0) for k in errors if errors[k] != old.get(k, 0)} == {
        ("put", "conflict"): 1,
        ("get", "missing"): 1,
    }


def test_readyz_checks_the_bucket_and_status_says_why(s3_app, spare, admin_auth):
    # S3_TIMEOUT stays 10 s: the readiness check has its own bound.
    app = s3_app(endpoint=spare.endpoint, S3_MAX_ATTEMPTS=1)
    client, objects = app.test_client(), app.extensions["team03"].objects
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json["checks"]["store"] == {"ok": True}, ready.json
    status = client.get("/status.json", headers=admin_auth).json
    assert status["store"] == {"kind": "s3", "ok": True} and status["problems"] == []

    before = scrape(client)
    spare.pause()  # frozen: the kernel accepts, nothing answers
    started = time.monotonic()
    frozen = client.get("/readyz")
    assert time.monotonic() - started < READY_WITHIN
    assert frozen.status_code == 503 and frozen.json["down"] == ["store"] and frozen.json["checks"]["store"] == {"ok": False}
    assert str(spare.port) not in frozen.get_data(as_text=True)  # anonymous: up or down, no address
    spare.resume()
    assert client.get("/readyz").status_code == 200

    spare.stop()
    started = time.monotonic()
    stopped = client.get("/readyz")
    assert time.monotonic() - started < READY_WITHIN
    assert stopped.status_code == 503 and stopped.json["down"] == ["store"]
    status = client.get("/status.json", headers=admin_auth).json
    assert status["status"] == "degraded" and status["store"]["kind"] == "s3" and not status["store"]["ok"]
    assert status["store"]["error"].startswith("the object store did not answer"), status["store"]
    assert [p for p in status["problems"] if "S3_BUCKET" in p], status["problems"]

    # A failed call is counted by its kind (the readiness checks above are not store calls).
    with pytest.raises(StorageUnavailable):
        objects.get(KEY)
    after = scrape(client)
    assert _moved(before, after, "team03_store_errors_total", operation="get", kind="unavailable") == 1
    assert _moved(before, after, "team03_store_errors_total", operation="list", kind="unavailable") == 0


def test_readyz_says_down_for_a_bucket_that_does_not_exist(s3_app, admin_auth):
    client = s3_app(bucket=f"team03-missing-{uuid.uuid4().hex[:8]}").test_client()
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.json["down"] == ["store"]
    store = client.get("/status.json", headers=admin_auth).json["store"]
    assert not store["ok"] and "NoSuchBucket" in store["error"], store


def test_readyz_asks_no_store_when_it_is_local(make_config):
    app = create_app(make_config())
    try:
        assert "store" not in app.test_client().get("/readyz").json["checks"]
    finally:
        app.extensions["team03"].close()


def test_each_failure_is_told_as_its_kind(tiny_disk):
    """The classification ObservedObjects makes, on the local tree: one call, one report, whatever it raised."""
    told: list[tuple[str, str, str | None]] = []
    objects = ObservedObjects(LocalObjects(tiny_disk / "objects"), lambda op, backend, _s, kind: told.append((op, backend, kind)))
    objects.put(KEY, b"kept")
    assert objects.put(KEY, b"kept", if_absent=True) is PutResult.SAME  # an idempotent retry: no error
    with pytest.raises(InsufficientStorage):
        objects.put("videos/3/big", bytes(8 * 1024 * 1024))  # the 4 MiB disk is full
    with pytest.raises(UnsafeKey):
        objects.get("../etc/passwd")
    with pytest.raises(ObjectMissing):
        objects.download("videos/3/none", tiny_disk / "out")
    objects.delete("videos/3/none")
    assert told == [
        ("put", "local", None),
        ("put", "local", None),
        ("put", "local", "unavailable"),
        ("get", "local", "other"),
        ("download", "local", "missing"),
        ("delete", "local", None),
    ]
