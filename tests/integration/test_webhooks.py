"""Webhooks end to end on real MariaDB and a real HTTP receiver on loopback that checks every signature.

Time is a FakeClock moved by the test (retries, the give-up window, stalls, lost workers): no test sleeps.
Deliveries run on the dispatcher's threads: a test waits for their futures, with a deadline.
Receivers are on loopback, so these hooks need WEBHOOK_ALLOW_PRIVATE=true; the refusals of private
addresses without it need no traffic at all.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, wait
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from prometheus_client import REGISTRY
from sqlalchemy import select

from server import cli, create_app
from server.core.errors import InvalidInput
from server.core.wire import Claim, Registration, WorkerRef
from server.domain import ingest, lifecycle, registry
from server.infra.models import Event, WebhookDelivery
from server.infra.services import Services
from server.ops import reaper, webhooks
from server.ops.webhooks import Dispatcher
from server.store.local import UploadFile
from server.worker.encoding import encode
from server.worker.local import LocalOrigin
from tests.harness.clock import FakeClock
from tests.harness.netns import TestHost
from tests.harness.tree import tree

WORKER = WorkerRef(None, "test-worker")
HANG_LIMIT = 30.0  # a hanging handler is released by the test, or after this at the latest


@dataclass
class Received:
    path: str
    event: str
    body: dict
    signed: bool
    host: str = ""
    at: float = 0.0  # time.monotonic() when it arrived


@dataclass
class Receiver:
    """A threaded HTTP server on loopback: answers each path from a script, checks signatures independently."""

    secrets: dict[str, str] = field(default_factory=dict)  # path -> the hook's secret
    script: dict[str, list[int | str]] = field(default_factory=dict)  # path -> statuses to answer, or "hang"
    received: list[Received] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    hanging: threading.Event = field(default_factory=threading.Event)
    arrived: threading.Event = field(default_factory=threading.Event)
    address: str = "127.0.0.1"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append(
                    Received(
                        self.path,
                        self.headers["X-Team03-Event"],
                        json.loads(body),
                        receiver.signed(self.path, body, self.headers),
                        self.headers["Host"],
                        time.monotonic(),
                    )
                )
                receiver.arrived.set()
                answer = receiver.script.get(self.path, [200])
                status = answer.pop(0) if len(answer) > 1 else answer[0]
                if status == "hang":
                    receiver.hanging.set()
                    receiver.release.wait(HANG_LIMIT)
                    return
                self.send_response(int(status))
                if int(status) in (301, 302, 307, 308):
                    self.send_header("Location", receiver.url("/redirected"))
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer((self.address, 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def count(self, path: str) -> int:
        return sum(r.path == path for r in list(self.received))

    def url(self, path: str) -> str:
        return f"http://{self.address}:{self.server.server_address[1]}{path}"

    def signed(self, path: str, body: bytes, headers: object) -> bool:
        """Check `t=<unix>,v1=<hex>` as a receiver would, without the server's code."""
        parts = dict(p.split("=", 1) for p in headers["X-Team03-Signature"].split(","))  # type: ignore[index]
        mac = hmac.new(self.secrets[path].encode(), parts["t"].encode() + b"." + body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(mac, parts["v1"])

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


class RecordingQueue:
    def submit(self, function: str, data: bytes, *, unique: str, priority: int = 1) -> None:
        pass


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def services(make_config, clock) -> Iterator[Services]:  # type: ignore[no-untyped-def]
    built = Services.build(make_config(WEBHOOK_TIMEOUT=2.0, WEBHOOK_THREADS=4, LEASE_SECONDS=10.0, WEBHOOK_ALLOW_PRIVATE=True))
    built.clock = clock
    built.queue = RecordingQueue()  # type: ignore[assignment]
    yield built
    built.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


@pytest.fixture
def dispatcher(services: Services) -> Iterator[Dispatcher]:
    d = Dispatcher(services)
    yield d
    d.close()


def hook(services: Services, receiver: Receiver, path: str, events: str) -> int:
    with services.sessions() as session:
        made, secret = webhooks.create(session, receiver.url(path), events, now=services.clock.now(), allow_private=True)
    receiver.secrets[path] = secret
    return made["id"]


def settle(futures: list[Future[None]]) -> None:
    done, pending = wait(futures, timeout=15)
    assert not pending, "a delivery did not end within its deadline"
    for future in done:
        future.result()


def pump(services: Services, dispatcher: Dispatcher, rounds: int = 5) -> None:
    """Let events age past the scan's grace, then run passes until nothing more is due (at most `rounds`)."""
    services.clock.advance(webhooks.eventlog.GAP_GRACE + 1)  # type: ignore[attr-defined]
    for _ in range(rounds):
        futures = dispatcher.tick()
        if not futures:
            return
        settle(futures)


def rows(services: Services, hook_id: int) -> list[WebhookDelivery]:
    with services.sessions() as session:
        query = select(WebhookDelivery).where(WebhookDelivery.webhook_id == hook_id).order_by(WebhookDelivery.id)
        return list(session.scalars(query))


def store(services: Services, video_id: int, segment_id: int, source: Path) -> None:
    upload = UploadFile(tree(services).root / "incoming", limit=64 << 20)
    upload.write(source.read_bytes())
    with services.sessions() as session:
        ingest.accept_segment(services, session, ingest.get_video(session, video_id), segment_id, "mp4", upload)


def encode_one(services: Services, video_id: int, segment_id: int) -> None:
    with services.sessions() as session:
        claim = lifecycle.start_attempt(services, session, video_id, segment_id, WORKER)
    assert isinstance(claim, Claim), claim
    assert encode(LocalOrigin(services, WORKER), claim, services.config) == "ok"


def lost_worker(services: Services, name: str = "w1") -> int:
    """A worker that registered and then fell silent past 3 leases: the reaper's rule writes worker.lost."""
    registration = Registration("host", "1", {}, 1, ("team03.transcode_segment",))
    with services.sessions() as session:
        worker_id = registry.register(session, name, registration, now=services.clock.now()).id
    services.clock.advance(3 * services.config.LEASE_SECONDS + 1)  # type: ignore[attr-defined]
    with services.sessions() as session:
        assert registry.mark_lost(session, now=services.clock.now(), lease_seconds=10.0, horizon=3600.0) == [worker_id]
    return worker_id


def test_a_video_going_live_then_vod_delivers_both_signed_once_each(services, receiver, dispatcher, segment_files):
    live_only = hook(services, receiver, "/live", "video.live")
    both = hook(services, receiver, "/both", "video.live,video.vod")
    with services.sessions() as session:
        vid = ingest.create_video(services, session, "webhooks").id
    for k in (0, 1):  # two segments packaged: the video goes live once
        store(services, vid, k, segment_files[k])
        encode_one(services, vid, k)
    pump(services, dispatcher)
    with services.sessions() as session:
        ingest.end_video(services, session, vid, 1)
        assert lifecycle.maybe_finish(services, session, vid)
    pump(services, dispatcher)
    got = [(r.path, r.event, r.body["video_id"], r.signed) for r in receiver.received]
    assert sorted(got) == [
        ("/both", "video.live", vid, True),
        ("/both", "video.vod", vid, True),
        ("/live", "video.live", vid, True),
    ]
    assert [r.event for r in receiver.received if r.path == "/both"] == ["video.live", "video.vod"]
    for hook_id in (live_only, both):
        assert all(d.delivered_at is not None and d.last_result == "2xx" and d.attempts == 1 for d in rows(services, hook_id))
    vod = next(r.body for r in receiver.received if r.event == "video.vod")
    assert vod["data"]["segments"] == 2 and vod["at"].endswith("Z")


def test_a_hook_hears_nothing_from_before_it_was_made_nor_events_it_did_not_ask_for(services, receiver, dispatcher):
    lost_worker(services, "before")
    hook(services, receiver, "/vod", "video.vod")
    hook(services, receiver, "/lost", "worker.lost")
    lost_worker(services, "after")
    pump(services, dispatcher)
    assert [(r.path, r.body["data"]["name"]) for r in receiver.received] == [("/lost", "after")]


def test_a_receiver_answering_500_then_200_gets_a_retry_after_the_backoff(services, receiver, dispatcher):
    receiver.script["/flaky"] = [500, 200]
    hook_id = hook(services, receiver, "/flaky", "worker.lost")
    lost_worker(services)
    pump(services, dispatcher)
    (delivery,) = rows(services, hook_id)
    assert (delivery.attempts, delivery.last_result, delivery.delivered_at) == (1, "5xx", None)
    assert delivery.next_attempt_at == services.clock.now() + timedelta(seconds=10)
    services.clock.advance(9.9)
    assert dispatcher.tick() == []  # not due yet
    services.clock.advance(0.1)
    settle(dispatcher.tick())
    (delivery,) = rows(services, hook_id)
    assert (delivery.attempts, delivery.last_result) == (2, "2xx")
    assert delivery.delivered_at == services.clock.now() and delivery.next_attempt_at is None
    assert [r.signed for r in receiver.received] == [True, True]
    assert receiver.received[0].body == receiver.received[1].body  # the same event, sent again


def test_a_receiver_that_hangs_delays_neither_other_hooks_nor_the_pass(services, receiver, dispatcher):
    receiver.script["/hangs"] = ["hang"]
    stuck = hook(services, receiver, "/hangs", "worker.lost")
    fine = hook(services, receiver, "/fine", "worker.lost")
    lost_worker(services)
    services.clock.advance(webhooks.eventlog.GAP_GRACE + 1)
    started = time.monotonic()
    futures = dispatcher.tick()
    assert time.monotonic() - started < services.config.WEBHOOK_TIMEOUT  # the pass did not wait for a receiver
    assert len(futures) == 2
    assert receiver.hanging.wait(10), "the hanging receiver never got its request"
    deadline = time.monotonic() + 10
    while rows(services, fine)[0].delivered_at is None and time.monotonic() < deadline:
        wait(futures, timeout=0.05)
    assert rows(services, fine)[0].delivered_at is not None
    assert not receiver.release.is_set() and rows(services, stuck)[0].attempts == 0  # still hanging meanwhile
    settle(futures)  # the hanging try is cut at WEBHOOK_TIMEOUT, not HANG_LIMIT
    assert time.monotonic() - started < HANG_LIMIT / 2
    (delivery,) = rows(services, stuck)
    assert delivery.attempts == 1 and delivery.last_result == "timeout"
    assert delivery.next_attempt_at is not None and delivery.delivered_at is None


def test_hanging_receivers_do_not_delay_a_healthy_hook(make_config, clock, receiver):
    """8 receivers that take a request and never answer, and one that answers: its delivery leaves at once.

    Once the hanging hooks' tries have timed out, a new event finds their retries due and older than the
    healthy hook's delivery: they go behind it and share at most half the threads.
    """
    timeout = 1.0
    services = Services.build(
        make_config(WEBHOOK_TIMEOUT=timeout, WEBHOOK_THREADS=4, LEASE_SECONDS=10.0, WEBHOOK_ALLOW_PRIVATE=True)
    )
    services.clock = clock
    dispatcher = Dispatcher(services)
    futures: list[Future[None]] = []
    try:
        for k in range(8):
            receiver.script[f"/hangs{k}"] = ["hang"]
            hook(services, receiver, f"/hangs{k}", "worker.lost")
        healthy = hook(services, receiver, "/healthy", "worker.lost")  # the newest: last by id
        lost_worker(services, "first")
        pump(services, dispatcher, rounds=6)  # every hanging try timed out once, the healthy one delivered
        assert receiver.count("/healthy") == 1 and rows(services, healthy)[0].delivered_at is not None
        assert sum(receiver.count(f"/hangs{k}") for k in range(8)) == 8
        lost_worker(services, "second")  # 31 s later: the hanging hooks' retries are due too
        services.clock.advance(webhooks.eventlog.GAP_GRACE + 1)
        assert webhooks.scan(services) == 9  # the new event's deliveries are made: now only sending is timed
        started = time.monotonic()
        while receiver.count("/healthy") < 2:  # the reaper's passes, as often as a test can afford
            assert time.monotonic() - started < 6 * timeout, "the healthy hook's second delivery never left"
            receiver.arrived.clear()
            futures += dispatcher.send_due()
            receiver.arrived.wait(0.1)
        arrived = [r.at for r in receiver.received if r.path == "/healthy"][-1]
        assert arrived - started < timeout, f"delayed {arrived - started:.2f} s by hooks that hang"
    finally:
        settle(futures)
        dispatcher.close()
        services.close()


@pytest.fixture
def strict(make_config, clock) -> Iterator[Services]:  # type: ignore[no-untyped-def]
    """Services with the default WEBHOOK_ALLOW_PRIVATE=false, on the same database."""
    built = Services.build(make_config(WEBHOOK_TIMEOUT=2.0, WEBHOOK_THREADS=4))
    built.clock = clock
    yield built
    built.close()


PRIVATE_URLS = [
    "http://127.0.0.1:3306/",  # MariaDB on this machine
    "http://127.0.0.1:4790/",
    "http://127.1:11211/",
    "http://localhost:4730/",
    "http://[::1]:8080/",
    "http://[::ffff:127.0.0.1]/",
    "http://2130706433/",  # 127.0.0.1 as one decimal number
    "http://0x7f000001/",
    "http://017700000001/",
    "http://0.0.0.0:3306/",
    "http://169.254.169.254/latest/meta-data/",
    "http://[fe80::1]/",
    "http://10.0.0.1/",
    "http://192.168.1.1/",
    "https://172.16.0.1/",
    "http://100.64.0.1/",
    "http://[fd00::1]/",
    "http://224.0.0.1/",
    "http://240.0.0.1/",
]


def test_a_hook_to_a_private_address_is_refused_at_registration(strict, admin_auth):
    """No traffic: the addresses the host resolves to (literals, or localhost from /etc/hosts) are refused."""
    client = create_app(strict.config, services=strict).test_client()
    for url in PRIVATE_URLS:
        refused = client.post("/api/admin/webhooks", json={"url": url, "events": ["worker.lost"]}, headers=admin_auth)
        assert refused.status_code == 400, (url, refused.json)
        assert (refused.json["code"], refused.json["field"]) == ("invalid_input", "url"), url
        assert "resolves to a" in refused.json["message"], refused.json
    assert client.get("/api/admin/webhooks", headers=admin_auth).json == {"webhooks": []}


def test_a_hook_whose_address_became_private_is_not_sent_to(services, strict, receiver):
    """The check is made again at every send: a hook made while allowed is blocked once it is not."""
    hook_id = hook(services, receiver, "/now-private", "worker.lost")
    lost_worker(strict)
    strict.clock.advance(webhooks.eventlog.GAP_GRACE + 1)  # type: ignore[attr-defined]
    dispatcher = Dispatcher(strict)
    try:
        settle(dispatcher.tick())
    finally:
        dispatcher.close()
    (delivery,) = rows(strict, hook_id)
    assert (delivery.attempts, delivery.last_result, delivery.delivered_at) == (1, "blocked", None)
    assert receiver.received == []


def test_a_receiver_on_a_private_network_needs_the_setting(services, strict, dispatcher):
    """A receiver on this machine's end of a test host's link (10.203.X.1: private, not loopback)."""
    with TestHost("hooks") as host:
        receiver = Receiver(address=host.host_address).start()
        try:
            with strict.sessions() as session, pytest.raises(InvalidInput, match="resolves to a private address"):
                webhooks.create(session, receiver.url("/lan"), "worker.lost", now=strict.clock.now(), allow_private=False)
            hook_id = hook(services, receiver, "/lan", "worker.lost")  # WEBHOOK_ALLOW_PRIVATE=true
            lost_worker(services)
            pump(services, dispatcher)
        finally:
            receiver.stop()
    assert [(r.path, r.signed) for r in receiver.received] == [("/lan", True)]
    assert rows(services, hook_id)[0].last_result == "2xx"


@pytest.fixture
def banner() -> Iterator[tuple[str, threading.Event]]:
    """A service on loopback that is not HTTP: it greets with its name and version, as sshd does."""
    server = socket.create_server(("127.0.0.1", 0))
    done = threading.Event()

    def serve() -> None:
        with contextlib.suppress(OSError):
            while not done.is_set():
                conn, _ = server.accept()
                with conn:
                    conn.sendall(b"SSH-2.0-OpenSSH_9.6p1 secret-build-42\r\n")
                    conn.recv(65536)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/", done
    done.set()
    server.close()
    thread.join(5)


def test_a_delivery_records_a_class_never_the_bytes_a_service_answered(services, dispatcher, banner, client, admin_auth):
    url, _done = banner
    with services.sessions() as session:
        made, _secret = webhooks.create(session, url, "worker.lost", now=services.clock.now(), allow_private=True)
    lost_worker(services)
    pump(services, dispatcher, rounds=1)
    page = client.get(f"/api/admin/webhooks/{made['id']}/deliveries", headers=admin_auth)
    (delivery,) = page.json["deliveries"]
    assert delivery["last_status"] == "not_http" and delivery["last_error"] == webhooks.RESULTS["not_http"]
    assert "SSH" not in page.get_data(as_text=True) and "secret-build" not in page.get_data(as_text=True)


def test_a_redirect_is_not_followed(services, receiver, dispatcher):
    receiver.script["/moved"] = [302]
    hook_id = hook(services, receiver, "/moved", "worker.lost")
    lost_worker(services)
    pump(services, dispatcher, rounds=1)
    assert [r.path for r in receiver.received] == ["/moved"]
    assert rows(services, hook_id)[0].last_result == "3xx"


def test_a_try_connects_to_the_address_that_was_checked(receiver):
    """No second lookup between the check and the connection (DNS rebinding): the name here never resolves."""
    port = receiver.server.server_address[1]
    receiver.secrets["/pinned"] = "s"
    target = webhooks.Target(f"http://hook.invalid:{port}/pinned", ((socket.AF_INET, ("127.0.0.1", port)),))
    body = b"{}"
    headers = {"X-Team03-Event": "worker.lost", webhooks.SIGNATURE_HEADER: webhooks.sign("s", body, int(time.time()))}
    assert webhooks.post(target, body, headers, 2.0) == "2xx"
    (got,) = receiver.received
    assert (got.path, got.host, got.signed) == ("/pinned", f"hook.invalid:{port}", True)
    tls = webhooks.Target(f"https://hook.invalid:{port}/pinned", target.addresses)
    assert webhooks.post(tls, body, headers, 2.0) == "tls"  # the same pinning for https (this receiver speaks HTTP)


def test_a_receiver_down_for_a_day_is_given_up(services, dispatcher):
    with socket.socket() as probe:  # a port nothing listens on: every try is refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with services.sessions() as session:
        url = f"http://127.0.0.1:{port}/down"
        made, _secret = webhooks.create(session, url, "worker.lost", now=services.clock.now(), allow_private=True)
    lost_worker(services)
    pump(services, dispatcher, rounds=1)
    for _ in range(100):
        (delivery,) = rows(services, made["id"])
        if delivery.next_attempt_at is None:
            break
        services.clock.advance((delivery.next_attempt_at - services.clock.now()).total_seconds())
        settle(dispatcher.tick())
    assert delivery.given_up_at is not None and delivery.delivered_at is None
    assert delivery.given_up_at == delivery.created_at + timedelta(seconds=services.config.WEBHOOK_GIVE_UP)
    assert delivery.attempts == 33 and delivery.last_result == "refused"
    services.clock.advance(86400)
    assert dispatcher.tick() == []


def test_a_removed_hook_is_sent_nothing_more(services, receiver, dispatcher):
    receiver.script["/gone"] = [500]
    hook_id = hook(services, receiver, "/gone", "worker.lost")
    lost_worker(services)
    pump(services, dispatcher, rounds=1)
    with services.sessions() as session:
        webhooks.remove(session, hook_id, now=services.clock.now())
    services.clock.advance(3600)
    assert dispatcher.tick() == []
    assert len(receiver.received) == 1


def test_two_dispatchers_send_each_delivery_once(services, receiver):
    hook(services, receiver, "/once", "worker.lost")
    lost_worker(services)
    services.clock.advance(webhooks.eventlog.GAP_GRACE + 1)
    first, second = Dispatcher(services), Dispatcher(services)
    try:
        webhooks.scan(services)
        webhooks.scan(services)  # a second scan of the same events makes nothing new
        settle(first.send_due() + second.send_due())
    finally:
        first.close()
        second.close()
    assert len(receiver.received) == 1


def test_the_reaper_reports_a_stall_once_per_stall(services, segment_files):
    with services.sessions() as session:
        vid = ingest.create_video(services, session, "stalls").id
    store(services, vid, 0, segment_files[0])
    services.clock.advance(9.5)  # 3 segment durations of 3 s without an upload

    def stalls() -> int:
        reaper.reap(services)
        with services.sessions() as session:
            return len(session.scalars(select(Event.id).where(Event.video_id == vid, Event.kind == "video.stalled")).all())

    assert stalls() == 1
    services.clock.advance(30)
    assert stalls() == 1  # the same stall
    store(services, vid, 1, segment_files[1])  # the phone is back: the next silence is a new stall
    services.clock.advance(5)
    assert stalls() == 1
    services.clock.advance(5)
    assert stalls() == 2
    with services.sessions() as session:
        ingest.end_video(services, session, vid, 1)
    store(services, vid, 1, segment_files[1])
    services.clock.advance(60)
    assert stalls() == 2  # an ended video does not stall


def test_a_worker_is_reported_lost_once_per_silence(services):
    registration = Registration("host", "1", {}, 1, ("team03.transcode_segment",))
    with services.sessions() as session:
        worker_id = registry.register(session, "w", registration, now=services.clock.now()).id
        quiet = registry.register(session, "quiet", registration, now=services.clock.now()).id
        registry.stopped(session, quiet, now=services.clock.now())  # drained and exited: not lost

    def lost() -> list[int]:
        with services.sessions() as session:
            return registry.mark_lost(session, now=services.clock.now(), lease_seconds=10.0, horizon=3600.0)

    services.clock.advance(30)
    assert lost() == []  # exactly 3 leases: not yet
    services.clock.advance(0.5)
    assert lost() == [worker_id]
    assert lost() == []
    with services.sessions() as session:
        registry.heartbeat(session, worker_id, now=services.clock.now())
    services.clock.advance(31)
    assert lost() == [worker_id]
    services.clock.advance(3600)
    assert lost() == []  # silent longer than the horizon: not looked at again


# --- The admin API and the CLI -------------------------------------------------------------------


@pytest.fixture
def client(services: Services) -> FlaskClient:
    return create_app(services.config, services=services).test_client()


def test_the_admin_api(client: FlaskClient, services, receiver, dispatcher, admin_auth):
    url = receiver.url("/api")
    assert client.get("/api/admin/webhooks").status_code == 401
    assert client.post("/api/admin/webhooks", json={"url": url, "events": ["worker.lost"]}).status_code == 401
    made = client.post("/api/admin/webhooks", json={"url": url, "events": ["worker.lost"]}, headers=admin_auth)
    assert made.status_code == 201, made.json
    assert set(made.json) == {"id", "url", "events", "created_at", "disabled_at", "secret"}
    assert made.json["events"] == ["worker.lost"] and len(made.json["secret"]) == 64
    receiver.secrets["/api"] = made.json["secret"]
    hook_id = made.json["id"]
    listed = client.get("/api/admin/webhooks", headers=admin_auth).json["webhooks"]
    assert [h["id"] for h in listed] == [hook_id] and "secret" not in listed[0]
    for body, name in [
        ({"url": "ftp://x/", "events": ["worker.lost"]}, "url"),
        ({"url": "http://u:p@x/", "events": ["worker.lost"]}, "url"),
        ({"url": url, "events": ["video.gone"]}, "events"),
        ({"url": url}, "events"),
        ([url], "body"),
    ]:
        refused = client.post("/api/admin/webhooks", json=body, headers=admin_auth)
        assert (refused.status_code, refused.json["code"], refused.json["field"]) == (400, "invalid_input", name)
    lost_worker(services)
    pump(services, dispatcher)
    page = client.get(f"/api/admin/webhooks/{hook_id}/deliveries?limit=5", headers=admin_auth)
    assert page.status_code == 200
    (delivery,) = page.json["deliveries"]
    assert page.json["next_before"] is None
    assert (delivery["event"], delivery["state"], delivery["attempts"], delivery["last_status"], delivery["last_error"]) == (
        "worker.lost",
        "delivered",
        1,
        "2xx",
        None,
    )
    assert client.get(f"/api/admin/webhooks/{hook_id}/deliveries?limit=0", headers=admin_auth).status_code == 400
    assert client.get("/api/admin/webhooks/999/deliveries", headers=admin_auth).status_code == 404
    assert client.delete(f"/api/admin/webhooks/{hook_id}").status_code == 401
    assert client.delete(f"/api/admin/webhooks/{hook_id}", headers=admin_auth).status_code == 204
    assert client.delete(f"/api/admin/webhooks/{hook_id}", headers=admin_auth).status_code == 404
    assert client.get("/api/admin/webhooks", headers=admin_auth).json == {"webhooks": []}
    assert receiver.received[0].signed


def test_the_cli(services, receiver, dispatcher, database_url, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", database_url)
    assert cli.main(["webhook", "add", receiver.url("/cli"), "--events", "worker.lost"]) == 1  # loopback: refused
    assert "url: its host resolves to a loopback address" in capsys.readouterr().err
    monkeypatch.setenv("WEBHOOK_ALLOW_PRIVATE", "true")
    assert cli.main(["webhook", "add", receiver.url("/cli"), "--events", "worker.lost,video.vod"]) == 0
    made = capsys.readouterr()  # the secret alone on stdout, the hook on stderr
    hook_id = int(made.err.split()[1].rstrip(":"))
    assert "(worker.lost,video.vod)" in made.err and re.fullmatch(r"[0-9a-f]{64}\n", made.out)
    receiver.secrets["/cli"] = made.out.strip()
    assert cli.main(["webhook", "add", "ftp://x/", "--events", "worker.lost"]) == 1
    assert "url: only http and https" in capsys.readouterr().err
    assert cli.main(["webhook", "add", receiver.url("/x"), "--events", "video.gone"]) == 1
    assert "events:" in capsys.readouterr().err
    assert cli.main(["webhook", "list", "--json"]) == 0
    assert [h["id"] for h in json.loads(capsys.readouterr().out)] == [hook_id]
    lost_worker(services)
    pump(services, dispatcher)
    assert cli.main(["webhook", "deliveries", str(hook_id)]) == 0
    line = capsys.readouterr().out.strip()
    assert "worker.lost  delivered  tries=1  status=2xx" in line
    assert receiver.received[0].signed
    assert cli.main(["webhook", "remove", str(hook_id)]) == 0
    assert cli.main(["webhook", "remove", str(hook_id)]) == 1
    assert cli.main(["webhook", "list"]) == 0
    assert capsys.readouterr().out.strip().endswith("removed")


def test_a_pass_catches_up_past_one_batch_and_reads_nothing_twice(services, receiver):
    hook_id = hook(services, receiver, "/many", "segment.failed")
    count = 2 * webhooks.SCAN_BATCH + 100
    with services.sessions() as session:
        for k in range(count):  # rows as lifecycle.move writes them for a segment failed for good
            webhooks.eventlog.record(session, "segment.failed", at=services.clock.now(), video_id=1, segment_id=k, failure="x")
            webhooks.eventlog.record(session, "segment.encoded", at=services.clock.now(), video_id=1, segment_id=k)
        session.commit()
    services.clock.advance(webhooks.eventlog.GAP_GRACE + 1)
    assert webhooks.scan(services) == count
    assert webhooks.scan(services) == 0
    assert sorted(json.loads(d.payload)["segment_id"] for d in rows(services, hook_id)) == list(range(count))


def tries(result: str) -> float:
    return REGISTRY.get_sample_value("team03_webhook_tries_total", {"result": result}) or 0.0


def test_finished_deliveries_are_counted_then_pruned_after_the_retention(services, receiver, dispatcher):
    receiver.script["/flaky"] = [500, 200]
    receiver.script["/failing"] = [500, 500]
    done, pending = hook(services, receiver, "/flaky", "worker.lost"), hook(services, receiver, "/failing", "worker.lost")
    before = {result: tries(result) for result in ("delivered", "retrying", "given_up")}
    lost_worker(services)
    pump(services, dispatcher)
    services.clock.advance(10)
    settle(dispatcher.tick())
    assert rows(services, done)[0].delivered_at is not None and rows(services, pending)[0].next_attempt_at is not None
    assert tries("delivered") - before["delivered"] == 1 and tries("retrying") - before["retrying"] == 3
    retention = services.config.EVENT_RETENTION
    with services.sessions() as session:
        assert webhooks.prune(session, services.clock.now() + timedelta(seconds=retention - 60), retention) == 0
        later = services.clock.now() + timedelta(seconds=retention + 60)
        assert webhooks.prune(session, later, retention) == 1  # the delivered one; the one still due stays
    assert rows(services, done) == [] and len(rows(services, pending)) == 1
