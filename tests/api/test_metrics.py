"""/metrics (names, types, values that move, bounded labels, who may scrape), /healthz, /readyz, the Grafana dashboard."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from server import create_app
from server.config import Config
from server.core.jobs import FUNCTIONS, TRANSCODE_SEGMENT
from server.core.retry import Failure
from server.core.wire import Claim, WorkerRef
from server.domain import lifecycle
from server.domain.changes import video_change
from server.infra.metrics import serve
from server.infra.models import AttemptOutcome, SegmentState
from server.ops.system_metrics import quantile
from server.store.objects import BACKENDS, ERROR_KINDS, OPERATIONS
from tests.harness.android import new_video_body
from tests.harness.services import ROOT, Memcached, free_port, wait_for
from tests.harness.stack import upload

DASHBOARD = ROOT / "deploy/grafana/team03.json"

# Every team03 family /metrics exposes, with its type (prometheus_client's parser names counters without _total).
EXPOSED = {
    "team03_segment_uploads": "counter",
    "team03_segment_upload_bytes": "counter",
    "team03_segment_upload_seconds": "histogram",
    "team03_segment_upload_ratio": "histogram",
    "team03_transcode_seconds": "histogram",
    "team03_transcode_realtime_ratio": "histogram",
    "team03_transcode_output_bytes": "counter",
    "team03_attempts": "counter",
    "team03_build_info": "gauge",
    "team03_live_streams": "gauge",
    "team03_segments": "gauge",
    "team03_attempts_running": "gauge",
    "team03_playlist_publish_lag_seconds": "gauge",
    "team03_playlist_publishes": "counter",
    "team03_playlist_publish_seconds": "histogram",
    "team03_playlist_files_behind": "gauge",
    "team03_webhook_tries": "counter",
    "team03_upload_to_playable_seconds": "gauge",
    "team03_upload_to_playable_segments": "gauge",
    "team03_gearman_up": "gauge",
    "team03_gearman_jobs_queued": "gauge",
    "team03_gearman_jobs_running": "gauge",
    "team03_gearman_workers": "gauge",
    "team03_media_free_bytes": "gauge",
    "team03_store_seconds": "histogram",
    "team03_store_errors": "counter",
}
# What each label may hold: fixed sets, or what the configuration names (rungs, gearmand addresses).
BOUNDED = {
    "outcome": {o.value for o in AttemptOutcome},
    "result": {"written", "current", "busy", "lost", "failed", "delivered", "retrying", "given_up"},
    "state": {s.value.lower() for s in SegmentState},
    "function": set(FUNCTIONS),
    "quantile": {"0.5", "0.95", "1"},
    "rung": {"HIGH", "MEDIUM", "LOW"},
    "operation": set(OPERATIONS),
    "backend": set(BACKENDS),
    "kind": set(ERROR_KINDS),
}


def scrape(client, **kwargs) -> dict[str, object]:  # type: ignore[no-untyped-def]
    response = client.get("/metrics", **kwargs)
    assert response.status_code == 200, response.data[:300]
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    return {f.name: f for f in text_string_to_metric_families(response.get_data(as_text=True))}


def value(families: dict[str, object], sample: str, **labels: str) -> float:
    """The value of one sample (e.g. team03_segment_uploads_total) of one family, with exactly `labels`."""
    family = families[re.sub(r"_(total|count|sum|bucket)$", "", sample)]
    found = [s.value for s in family.samples if s.name == sample and s.labels == labels]  # type: ignore[attr-defined]
    assert len(found) == 1, f"{sample}{labels}: {family.samples}"  # type: ignore[attr-defined]
    return found[0]


def test_every_metric_is_exposed_with_its_type(client, gearmand):
    families = scrape(client)
    assert {name: f.type for name, f in families.items() if name.startswith("team03_")} == EXPOSED  # type: ignore[attr-defined]
    assert value(families, "team03_gearman_up", server=gearmand.address) == 1
    assert value(families, "team03_media_free_bytes") > 0
    (build,) = families["team03_build_info"].samples  # type: ignore[attr-defined]
    assert build.value == 1 and set(build.labels) == {"version", "python"}


def test_an_upload_moves_the_counters_and_the_system_gauges(client, video_id, segment_files):
    before = scrape(client)
    data = segment_files[0].read_bytes()
    assert upload(client, video_id, 0, data).status_code == 201
    assert upload(client, video_id, 0, data).status_code == 201  # the same bytes again: a retry, not a new segment
    after = scrape(client)
    for sample, moved in [
        ("team03_segment_uploads_total", 1),
        ("team03_segment_upload_bytes_total", len(data)),
        ("team03_segment_upload_seconds_count", 1),
        ("team03_segment_upload_ratio_count", 1),
    ]:
        assert value(after, sample) - value(before, sample) == moved, sample
    assert 0 < value(after, "team03_segment_upload_seconds_sum") - value(before, "team03_segment_upload_seconds_sum") < 30
    assert value(after, "team03_live_streams") == 1
    assert value(after, "team03_segments", state="queued") == 1
    # No worker: the job waits in gearmand, whose status a process asks at most every 2 s.
    queued = wait_for(
        lambda: (s := scrape(client)) and value(s, "team03_gearman_jobs_queued", function=TRANSCODE_SEGMENT) == 1 and s,
        10,
        "the transcode job counted as queued in gearmand",
    )
    assert value(queued, "team03_gearman_workers", function=TRANSCODE_SEGMENT) == 0  # type: ignore[arg-type]
    assert 0 <= value(after, "team03_playlist_publish_lag_seconds") < 60  # the queued segment is not published yet


def test_attempt_outcomes_count_once_committed_and_never_on_a_rollback(app, client, video_id, segment_files):
    assert upload(client, video_id, 0, segment_files[0].read_bytes()).status_code == 201
    services = app.extensions["team03"]
    before = scrape(client)
    with services.sessions() as session:
        claim = lifecycle.start_attempt(services, session, video_id, 0, WorkerRef(None, "test"))
        assert isinstance(claim, Claim)
        assert value(scrape(client), "team03_attempts_running") == 1
        lifecycle.fail_attempt(services, session, claim.attempt_id, "ffmpeg crashed", Failure.CRASH)
        ran: list[int] = []
        with pytest.raises(RuntimeError), video_change(session, video_id, services.clock) as change:
            change.on_commit(lambda: ran.append(1))
            raise RuntimeError("rolled back")
        assert ran == []
    after = scrape(client)
    assert value(after, "team03_attempts_total", outcome="failed") - value(before, "team03_attempts_total", outcome="failed") == 1
    assert value(after, "team03_attempts_total", outcome="ok") == value(before, "team03_attempts_total", outcome="ok")
    assert value(after, "team03_attempts_running") == 0


def test_an_encode_moves_the_transcode_metrics_and_upload_to_playable(make_config, segment_files):
    # No gearmand: the local runner encodes in this process, as dev_run.py does.
    app = create_app(make_config(), local_runner=True)
    try:
        client = app.test_client()
        before = scrape(client)
        video_id = client.post("/videos", json=new_video_body("encode")).json["video_id"]
        assert upload(client, video_id, 0, segment_files[0].read_bytes()).status_code == 201
        after = wait_for(
            lambda: (s := scrape(client)) and value(s, "team03_upload_to_playable_segments") == 1 and s,
            60,
            "segment 0 packaged and counted in upload_to_playable",
        )
    finally:
        app.extensions["team03"].close()

    assert value(after, "team03_transcode_seconds_count") - value(before, "team03_transcode_seconds_count") == 1
    assert value(after, "team03_transcode_realtime_ratio_count") - value(before, "team03_transcode_realtime_ratio_count") == 1
    assert value(after, "team03_attempts_total", outcome="ok") - value(before, "team03_attempts_total", outcome="ok") == 1
    for rung in ("HIGH", "MEDIUM", "LOW"):
        assert value(after, "team03_transcode_output_bytes_total", rung=rung) > 0
    playable = value(after, "team03_upload_to_playable_seconds", quantile="0.5")
    assert 0 <= playable < 60 and playable == value(after, "team03_upload_to_playable_seconds", quantile="1")
    assert value(after, "team03_segments", state="packaged") == 1
    assert value(after, "team03_playlist_publish_lag_seconds") == 0


def test_labels_are_bounded(client, gearmand, video_id, segment_files):
    for k in range(3):
        assert upload(client, video_id, k, segment_files[k].read_bytes()).status_code == 201
    allowed = {**BOUNDED, "server": {gearmand.address}, "version": None, "python": None, "le": None}
    for name, family in scrape(client).items():
        if not name.startswith("team03_"):
            continue
        for sample in family.samples:  # type: ignore[attr-defined]
            assert set(sample.labels) <= set(allowed), (name, sample.labels)
            for label, text in sample.labels.items():
                assert allowed[label] is None or text in allowed[label], (name, label, text)  # never a video's id


@pytest.mark.parametrize(
    "environ,headers",
    [
        ({"REMOTE_ADDR": "10.0.0.5"}, {}),
        ({"REMOTE_ADDR": "127.0.0.1"}, {"X-Forwarded-For": "203.0.113.9"}),  # nginx forwarding an outside client
        ({"REMOTE_ADDR": "127.0.0.1"}, {"X-Forwarded-For": "127.0.0.1, 203.0.113.9"}),
    ],
)
def test_without_a_token_only_loopback_callers_may_scrape(client, environ, headers):
    response = client.get("/metrics", environ_overrides=environ, headers=headers)
    assert response.status_code == 403 and response.json["code"] == "forbidden"
    assert "loopback" in response.json["message"]


def test_loopback_callers_may_scrape_over_ipv4_and_ipv6(client):
    assert client.get("/metrics", environ_overrides={"REMOTE_ADDR": "::1"}).status_code == 200
    assert client.get("/metrics", headers={"X-Forwarded-For": "127.0.0.1"}).status_code == 200


def test_behind_a_trusted_proxy_the_forwarded_client_decides(make_config):
    app = create_app(make_config(TRUSTED_PROXIES=1))
    try:
        client = app.test_client()
        refused = client.get("/metrics", headers={"X-Forwarded-For": "198.51.100.7"})
        assert refused.status_code == 403
        assert client.get("/metrics", headers={"X-Forwarded-For": "127.0.0.1"}).status_code == 200
    finally:
        app.extensions["team03"].close()


def test_with_a_token_every_caller_needs_it(make_config):
    app = create_app(make_config(METRICS_TOKEN="scrape-me"))
    try:
        client = app.test_client()
        assert client.get("/metrics").status_code == 403  # loopback is not enough once a token is set
        wrong = client.get("/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 403 and "METRICS_TOKEN" in wrong.json["message"]
        assert client.get("/metrics", headers={"Authorization": "Basic c2NyYXBlLW1l"}).status_code == 403
        good = client.get(
            "/metrics", headers={"Authorization": "Bearer scrape-me"}, environ_overrides={"REMOTE_ADDR": "10.0.0.5"}
        )
        assert good.status_code == 200 and b"team03_segment_uploads_total" in good.data
    finally:
        app.extensions["team03"].close()


def test_healthz_answers_without_touching_the_database(make_config):
    app = create_app(make_config(DATABASE_URL=f"mysql+pymysql://root@127.0.0.1:{free_port()}/nothing"))
    try:
        response = app.test_client().get("/healthz")
        assert response.status_code == 200 and response.json == {"status": "ok"}
        assert response.headers["Cache-Control"] == "no-store"
        ready = app.test_client().get("/readyz")
        assert ready.status_code == 503 and ready.json["down"] == ["database"]
    finally:
        app.extensions["team03"].close()


@pytest.fixture
def memcached() -> Iterator[Memcached]:
    server = Memcached().start()
    yield server
    server.stop()


def test_readyz_names_each_dependency_that_is_down(make_config, gearmand, memcached, tiny_disk):
    app = create_app(
        make_config(GEARMAN_SERVERS=(gearmand.address,), MEMCACHED_SERVERS=(memcached.address,), MAX_SEGMENT_BYTES=1024 * 1024)
    )
    try:
        client = app.test_client()
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json["status"] == "ready" and ready.json["down"] == []
        # Up or down and nothing else to anyone who asks: no server addresses, no free bytes (admins: /status.json).
        assert ready.json["checks"] == {name: {"ok": True} for name in ("database", "gearman", "cache", "disk")}
        gearmand.stop()
        down = client.get("/readyz")
        assert down.status_code == 503 and down.json["down"] == ["gearman"] and down.json["message"] == "down: gearman"
        assert down.headers["Retry-After"] == "5"
        memcached.stop()
        assert client.get("/readyz").json["down"] == ["gearman", "cache"]
        assert gearmand.address.split(":")[1] not in client.get("/readyz").get_data(as_text=True)
    finally:
        app.extensions["team03"].close()
    full = create_app(make_config(MEDIA_ROOT=tiny_disk, MAX_SEGMENT_BYTES=64 * 1024 * 1024))
    try:
        response = full.test_client().get("/readyz")
        assert response.status_code == 503 and response.json["down"] == ["disk"]
        assert response.json["checks"] == {
            "database": {"ok": True},
            "cache": {"ok": True},
            "disk": {"ok": False},
        }  # no gearman: not asked
    finally:
        full.extensions["team03"].close()


def test_the_grafana_dashboard_uses_only_exposed_metrics(client):
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    assert len(exprs) >= 12
    response = client.get("/metrics").get_data(as_text=True)
    exposed = {line.split("{")[0].split(" ")[0] for line in response.splitlines() if line and not line.startswith("#")}
    used = {name for expr in exprs for name in re.findall(r"\bteam03_[a-z0-9_]+", expr)}
    assert used and used <= exposed, sorted(used - exposed)
    assert {re.sub(r"_(total|count|sum|bucket)$", "", n) for n in used} == set(EXPOSED)  # and it shows every one


def test_a_worker_serves_its_own_metrics_on_metrics_port():
    port = free_port()
    server = serve(Config(METRICS_PORT=port))
    assert server is not None and server.server_address[0] == "127.0.0.1"  # loopback unless METRICS_HOST says otherwise
    try:
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    finally:
        server.shutdown()
        server.server_close()
    names = {f.name for f in text_string_to_metric_families(text)}
    assert {"team03_transcode_seconds", "team03_transcode_realtime_ratio", "team03_attempts"} <= names
    assert "team03_live_streams" not in names  # the system's facts are the web's /metrics: a worker may have no database
    assert serve(Config(METRICS_PORT=0)) is None


def test_quantile_is_the_nearest_rank():
    assert [quantile([1.0, 2.0, 3.0, 4.0], q) for q in (0.5, 0.95, 1.0)] == [2.0, 4.0, 4.0]
    assert [quantile([7.0], q) for q in (0.5, 1.0)] == [7.0, 7.0]
