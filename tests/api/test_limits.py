"""Limits on what anyone can do: source size and length, and request rates (shared through memcached)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import create_engine, func, select, update
from sqlalchemy.orm import Session

from server import create_app
from server.core.clock import SystemClock
from server.core.jobs import TRANSCODE_SEGMENT
from server.infra.models import Segment, SegmentState, Video
from server.infra.queue import queue_status
from server.ops.reaper import end_idle_videos, reap
from tests.harness.android import new_video_body, segment_upload
from tests.harness.services import Memcached
from tests.harness.stack import upload
from tests.harness.tree import tree


def _queued(gearmand) -> int:  # type: ignore[no-untyped-def]
    return queue_status((gearmand.address,)).total(TRANSCODE_SEGMENT)["queued"]


def _count(database_url: str, model: type) -> int:
    engine = create_engine(database_url)
    with Session(engine) as session:
        count = session.scalar(select(func.count()).select_from(model)) or 0
    engine.dispose()
    return count


@pytest.fixture
def make_app(make_config, gearmand):  # type: ignore[no-untyped-def]
    apps = []

    def factory(**overrides: object):  # type: ignore[no-untyped-def]
        app = create_app(make_config(GEARMAN_SERVERS=(gearmand.address,), **overrides))
        apps.append(app)
        return app

    yield factory
    for app in apps:
        app.extensions["team03"].close()


@pytest.fixture
def memcached() -> Iterator[Memcached]:
    server = Memcached().start()
    yield server
    server.stop()


@pytest.mark.parametrize(
    ("overrides", "limit"),
    [({"MAX_SEGMENT_SECONDS": 2.5}, "MAX_SEGMENT_SECONDS"), ({"MAX_SOURCE_PIXELS": 1079 * 720}, "MAX_SOURCE_PIXELS")],
)
def test_a_segment_beyond_the_source_limits_is_422_naming_the_limit_and_stores_nothing(
    make_app, overrides, limit, segment_files, gearmand, database_url
):
    client = make_app(**overrides).test_client()
    vid = client.post("/videos", json=new_video_body()).json["video_id"]
    response = upload(client, vid, 0, segment_files[0].read_bytes())  # 3.0 s of 1080x720
    assert response.status_code == 422, response.json
    assert limit in response.json["message"]
    assert _count(database_url, Segment) == 0
    assert _queued(gearmand) == 0
    assert client.get(f"/video/{vid}").json["status"] == "EMPTY"


def test_a_segment_within_the_source_limits_is_stored(make_app, segment_files):
    client = make_app(MAX_SEGMENT_SECONDS=3.2, MAX_SOURCE_PIXELS=1080 * 720).test_client()
    vid = client.post("/videos", json=new_video_body()).json["video_id"]
    assert upload(client, vid, 0, segment_files[0].read_bytes()).status_code == 201


def _create(client, address: str = "10.0.0.1", **headers: str):  # type: ignore[no-untyped-def]
    return client.post("/videos", json=new_video_body(), environ_base={"REMOTE_ADDR": address}, headers=headers)


def _assert_429(response) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == 429, response.get_data(as_text=True)
    assert response.json["code"] == "too_many_requests"
    assert "per 1 minute" in response.json["message"]
    assert 1 <= int(response.headers["Retry-After"]) <= 60


def test_creating_past_the_per_address_limit_is_429_with_retry_after_and_creates_nothing(make_app, database_url):
    client = make_app(RATE_LIMIT_CREATE="3/minute").test_client()
    assert [_create(client).status_code for _ in range(3)] == [201] * 3
    _assert_429(_create(client))
    assert _count(database_url, Video) == 3
    assert _create(client, "10.0.0.2").status_code == 201  # another address has its own budget


def test_uploading_past_the_per_video_limit_is_429_and_stores_nothing(make_app, segment_files, gearmand, database_url):
    client = make_app(RATE_LIMIT_UPLOAD_PER_VIDEO="2/minute").test_client()
    first, second = (_create(client).json["video_id"] for _ in range(2))
    data = [p.read_bytes() for p in segment_files]
    assert [upload(client, first, k, data[k]).status_code for k in (0, 1)] == [201, 201]
    _assert_429(upload(client, first, 2, data[2]))
    assert _count(database_url, Segment) == 2
    assert _queued(gearmand) == 2
    assert upload(client, second, 0, data[0]).status_code == 201  # the same phone's other video is not held back


def _upload_from(client, address: str, video_id: int, segment_id: int, data: bytes | None):  # type: ignore[no-untyped-def]
    body, content_type = segment_upload(segment_id, data, "mp4")
    return client.post(f"/video_segment/{video_id}", data=body, content_type=content_type, environ_base={"REMOTE_ADDR": address})


def test_refused_uploads_spend_no_budget_and_each_client_has_its_own_per_video(make_app, segment_files, database_url):
    """Issue 15: 61 empty uploads to a live video made the phone's next segments 429 (the limit was a kill switch).

    Only stored uploads count against a video's budget, and per client address: refusals (here 400s, from
    the phone's own address and from another) cost nothing, and another address has its own budget.
    """
    client = make_app(RATE_LIMIT_UPLOAD_PER_VIDEO="3/minute").test_client()
    vid = _create(client).json["video_id"]
    data = [p.read_bytes() for p in segment_files]
    for address in ("10.0.0.1", "10.0.0.66"):
        assert {_upload_from(client, address, vid, 0, None).status_code for _ in range(61)} == {400}
    stored = [_upload_from(client, "10.0.0.1", vid, k, data[k]).status_code for k in range(3)]
    assert stored == [201, 201, 201]
    _assert_429(_upload_from(client, "10.0.0.1", vid, 3, data[3]))
    assert _upload_from(client, "10.0.0.2", vid, 3, data[3]).status_code == 201
    assert _count(database_url, Segment) == 4


def test_uploading_past_the_per_address_limit_is_429(make_app, segment_files, database_url):
    client = make_app(RATE_LIMIT_UPLOAD="3/minute").test_client()
    videos = [_create(client).json["video_id"] for _ in range(4)]
    data = segment_files[0].read_bytes()
    assert [upload(client, vid, 0, data).status_code for vid in videos[:3]] == [201] * 3
    _assert_429(upload(client, videos[3], 0, data))
    assert _count(database_url, Segment) == 3


class _CountingBody(io.BytesIO):
    """A request body that records how much of it the server read."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.taken = 0

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        self.taken += len(chunk)
        return chunk

    def readline(self, size: int | None = -1) -> bytes:
        line = super().readline(size)
        self.taken += len(line)
        return line


def test_a_refused_upload_is_refused_before_its_body_is_read(make_app, segment_files):
    """A 429 is decided before the body is read (no temp file, nothing probed), then the body is read and dropped.

    Dropping it keeps the keep-alive connection usable (server/web/api/uploads.py): left unread, gunicorn would
    close the connection after the answer, and nginx's next request on it, maybe another phone's, would fail.
    """
    app = make_app(RATE_LIMIT_UPLOAD_PER_VIDEO="1/minute")
    client = app.test_client()
    vid = _create(client).json["video_id"]
    data = segment_files[0].read_bytes()
    assert upload(client, vid, 0, data).status_code == 201
    # A file part that is not a video: had the body been received before the limit, this would be a 422.
    body, content_type = segment_upload(1, b"not a video" * 50_000, "mp4")
    stream = _CountingBody(body)
    response = client.post(
        f"/video_segment/{vid}", input_stream=stream, content_type=content_type, headers={"Content-Length": str(len(body))}
    )
    _assert_429(response)
    assert stream.taken == len(body)
    assert tree(app.extensions["team03"]).temp_files() == []


def test_counters_are_shared_by_every_process_through_memcached(make_app, memcached, database_url):
    shared = {"MEMCACHED_SERVERS": (memcached.address,), "CACHE_PREFIX": "shared:", "RATE_LIMIT_CREATE": "4/minute"}
    one, two = make_app(**shared).test_client(), make_app(**shared).test_client()
    assert [_create(c).status_code for c in (one, two, one, two)] == [201] * 4
    _assert_429(_create(two))
    _assert_429(_create(one))
    assert _count(database_url, Video) == 4


def test_x_forwarded_for_counts_only_behind_a_trusted_proxy(make_app):
    direct = make_app(RATE_LIMIT_CREATE="2/minute").test_client()
    spoofed = [_create(direct, "127.0.0.1", **{"X-Forwarded-For": f"192.0.2.{i}"}).status_code for i in range(3)]
    assert spoofed == [201, 201, 429]  # without TRUSTED_PROXIES the header changes nothing
    proxied = make_app(RATE_LIMIT_CREATE="2/minute", TRUSTED_PROXIES=1).test_client()
    behind_nat = [_create(proxied, "127.0.0.1", **{"X-Forwarded-For": "198.51.100.7"}).status_code for _ in range(3)]
    assert behind_nat == [201, 201, 429]
    # One more hop than the proxy adds is the client's own claim: ignored, the proxy's view of it counts.
    assert _create(proxied, "127.0.0.1", **{"X-Forwarded-For": "203.0.113.1, 198.51.100.7"}).status_code == 429
    assert _create(proxied, "127.0.0.1", **{"X-Forwarded-For": "198.51.100.8"}).status_code == 201


def _secure_login(client, address: str, **headers: str) -> bool:  # type: ignore[no-untyped-def]
    response = client.post(
        "/api/admin/login",
        json={"username": "root", "password": "s3cret"},
        environ_base={"REMOTE_ADDR": address},
        headers=headers,
    )
    assert response.status_code == 200, response.json
    return "; Secure" in response.headers["Set-Cookie"]


@pytest.mark.usefixtures("admin_auth")
def test_forwarded_headers_count_only_from_a_trusted_proxy_address(make_app):
    """Issue 15: with TRUSTED_PROXIES set, any direct caller could name its own address (a fresh budget per request)
    and claim https; the headers are believed only from a TCP peer in TRUSTED_PROXY_ADDRESSES (default: loopback)."""
    client = make_app(RATE_LIMIT_CREATE="2/minute", TRUSTED_PROXIES=1).test_client()
    spoofed = [_create(client, "203.0.113.5", **{"X-Forwarded-For": f"192.0.2.{i}"}).status_code for i in range(3)]
    assert spoofed == [201, 201, 429]
    assert _create(client, "::1", **{"X-Forwarded-For": "192.0.2.9"}).status_code == 201  # loopback: nginx
    https = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "198.51.100.7"}
    assert not _secure_login(client, "203.0.113.5", **https)
    assert _secure_login(client, "127.0.0.1", **https)
    lan = make_app(RATE_LIMIT_CREATE="2/minute", TRUSTED_PROXIES=1, TRUSTED_PROXY_ADDRESSES=("10.1.0.0/16",)).test_client()
    assert [_create(lan, "10.1.2.3", **{"X-Forwarded-For": f"192.0.2.{i}"}).status_code for i in range(3)] == [201] * 3
    assert [_create(lan, "127.0.0.1", **{"X-Forwarded-For": f"192.0.2.{i}"}).status_code for i in range(3)] == [201, 201, 429]


def test_a_trusted_proxy_address_that_is_not_one_stops_the_start(make_app):
    with pytest.raises(ValueError, match="TRUSTED_PROXY_ADDRESSES.*'nginx'"):
        make_app(TRUSTED_PROXIES=1, TRUSTED_PROXY_ADDRESSES=("127.0.0.1", "nginx"))


def test_the_default_limits_let_100_phones_behind_one_nat_record_for_a_minute(make_app, memcached):
    """A minute of 100 recordings from one address: 100 creates, then 20 uploads each (one per 3 s).

    The uploads carry no file (each is a quick 400 after the limit check), so this counts requests only.
    """
    client = make_app(MEMCACHED_SERVERS=(memcached.address,)).test_client()
    statuses = [_create(client).status_code for _ in range(100)]
    videos = range(1, 101)
    for _ in range(20):
        for vid in videos:
            statuses.append(upload(client, vid, 0, None).status_code)
    assert 429 not in statuses
    assert statuses.count(201) == 100 and statuses.count(400) == 2000
    _assert_429(_create(client))  # and no more: one address cannot refill the app's 100-video list (issue 15)


def test_a_dead_memcached_never_refuses_a_request(make_app, memcached, segment_files, database_url, caplog):
    client = make_app(MEMCACHED_SERVERS=(memcached.address,), RATE_LIMIT_CREATE="2/minute").test_client()
    vid = _create(client).json["video_id"]
    memcached.stop()
    assert [_create(client).status_code for _ in range(3)] == [201] * 3  # counts nothing, like a cache miss
    assert _count(database_url, Video) == 4
    assert upload(client, vid, 0, segment_files[0].read_bytes()).status_code == 201  # counted after its answer: nothing
    assert "Traceback" not in caplog.text


def test_an_abandoned_live_video_is_ended_at_its_highest_segment_and_becomes_vod(make_app, segment_files, database_url):
    app = make_app(LIVE_IDLE_TIMEOUT=600.0)
    client, services = app.test_client(), app.extensions["team03"]
    dead, empty, active, ended = (_create(client).json["video_id"] for _ in range(4))
    data = [p.read_bytes() for p in segment_files]
    for k in (0, 2):  # segment 1 never arrived: the phone died
        assert upload(client, dead, k, data[k]).status_code == 201
    assert upload(client, ended, 0, data[0]).status_code == 201
    assert client.post(f"/video_end/{ended}", data={"last_segment_id": "0"}).status_code == 200
    now = SystemClock().now()
    with services.sessions() as session:  # all made at `now`; every stored segment failed for good (no worker here)
        session.execute(update(Video).values(created_at=now))
        session.execute(
            update(Segment).values(uploaded_at=now, status=SegmentState.FAILED, failed_at=now - timedelta(seconds=60))
        )
        session.commit()
    assert end_idle_videos(services, now + timedelta(seconds=599)) == 0
    assert upload(client, active, 0, data[0]).status_code == 201  # uploads at the last moment: still live
    assert end_idle_videos(services, now + timedelta(seconds=600)) == 2
    video = client.get(f"/video/{dead}").json
    assert (video["segment_count"], video["type"], video["status"]) == (3, "VOD", "ERROR")
    assert client.get(f"/live_mpd/{dead}.mpd").headers["streamEnded"] == "true"
    assert client.get(f"/video/{empty}").status_code == 404  # nothing was ever uploaded: deleted
    assert client.get(f"/video/{active}").json["segment_count"] == -1
    assert client.get(f"/video/{ended}").json["segment_count"] == 1
    assert end_idle_videos(services, now + timedelta(seconds=600)) == 0  # once


def test_every_reaper_pass_ends_abandoned_videos(make_app, segment_files):
    app = make_app(LIVE_IDLE_TIMEOUT=0.0)  # idle from the first instant
    client = app.test_client()
    vid = _create(client).json["video_id"]
    assert upload(client, vid, 0, segment_files[0].read_bytes()).status_code == 201
    reap(app.extensions["team03"])
    assert client.get(f"/video/{vid}").json["segment_count"] == 1
