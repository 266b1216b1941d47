"""Several gearmand in GEARMAN_SERVERS: one stopped or blackholed costs a bounded time and loses no job.

Jobs here are a test function run by real WorkerThreads in this process (fast, no ffmpeg), except the
recording, which goes upload -> two gearmand -> segment_processor -> VOD while one gearmand dies.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from server import create_app
from server.core.jobs import TRANSCODE_SEGMENT
from server.infra.models import SegmentState
from server.infra.queue import CONNECT_TIMEOUT, GearmanQueue, queue_status
from server.worker.threads import WorkerThread
from tests.harness.services import Gearmand, wait_for
from tests.harness.stack import Stack

FUNCTION = "team03.test_spread"


class Ran:
    """The payloads the workers ran, in order."""

    def __init__(self) -> None:
        self.payloads: list[bytes] = []
        self._lock = threading.Lock()

    def __call__(self, data: bytes) -> None:
        with self._lock:
            self.payloads.append(data)

    def count(self, payloads: set[bytes]) -> int:
        with self._lock:
            return len(payloads & set(self.payloads))


@pytest.fixture
def two_gearmand() -> Iterator[tuple[Gearmand, Gearmand]]:
    a, b = Gearmand().start(), Gearmand().start()
    yield a, b
    a.stop()
    b.stop()


@pytest.fixture
def blackhole() -> Iterator[str]:
    """A loopback address whose connects hang: a listener whose one-connection backlog is already full."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    address = listener.getsockname()
    filler = socket.create_connection(address, timeout=2)
    probe = socket.socket()
    probe.settimeout(0.5)
    try:
        with pytest.raises(TimeoutError):  # the kernel now drops SYNs to it, as a dead host's network would
            probe.connect(address)
    finally:
        probe.close()
    yield f"{address[0]}:{address[1]}"
    filler.close()
    listener.close()


def _workers(
    servers: tuple[str, ...], ran: Ran, count: int = 2, function: str = FUNCTION
) -> tuple[threading.Event, list[WorkerThread]]:
    stop = threading.Event()
    threads = [WorkerThread(servers, {function: ran}, stop, i) for i in range(count)]
    for thread in threads:
        thread.start()
    return stop, threads


def _registered(server: str, count: int, function: str = FUNCTION) -> bool:
    status = queue_status((server,), timeout=2.0)
    return status.answered and status.total(function)["workers"] >= count


def _submit(queue: GearmanQueue, payloads: list[bytes], bound: float) -> None:
    """Submit each payload (each must be accepted), each within `bound` seconds."""
    for data in payloads:
        started = time.monotonic()
        queue.submit(FUNCTION, data, unique=data.decode())
        assert time.monotonic() - started < bound, f"submitting {data!r} took {time.monotonic() - started:.1f} s"


def test_a_submit_goes_through_another_server_when_one_is_stopped_or_blackholed(two_gearmand, blackhole):
    a, b = two_gearmand
    queue = GearmanQueue((a.address, b.address, blackhole))
    try:
        _submit(queue, [b"up-%d" % i for i in range(6)], bound=CONNECT_TIMEOUT + 1.0)
        status = queue_status((a.address, b.address), timeout=2.0)
        queued = [s.functions[FUNCTION]["queued"] for s in status.servers]
        assert sum(queued) == 6 and min(queued) >= 1, queued  # spread over the live two
        a.stop()
        _submit(queue, [b"down-%d" % i for i in range(6)], bound=CONNECT_TIMEOUT + 1.0)
        assert queue_status((b.address,), timeout=2.0).total(FUNCTION)["queued"] == queued[1] + 6
    finally:
        queue.close()


def test_workers_keep_taking_jobs_while_one_server_is_down_and_register_again_when_it_returns(two_gearmand):
    a, b = two_gearmand
    servers = (a.address, b.address)
    ran = Ran()
    stop, threads = _workers(servers, ran)
    queue = GearmanQueue(servers)
    try:
        wait_for(lambda: _registered(a.address, 2) and _registered(b.address, 2), 15, "both workers on both servers")
        flowing = [b"before-%d" % i for i in range(20)]
        submitter = threading.Thread(target=_submit, args=(queue, flowing, 3.0))
        submitter.start()
        wait_for(lambda: ran.count(set(flowing)) >= 4, 15, "jobs flowing")
        a.stop()  # mid-run: jobs it held and had not handed out are gone (the reaper's part, see below)
        submitter.join(timeout=60)
        after = [b"after-%d" % i for i in range(20)]
        _submit(queue, after, bound=CONNECT_TIMEOUT + 1.0)
        wait_for(lambda: ran.count(set(after)) == len(after), 30, "every job submitted with one server down ran")

        a.start()  # same port, empty
        wait_for(lambda: _registered(a.address, 2), 30, "both workers registered again with the restarted server")
        only_a = [b"back-%d" % i for i in range(5)]
        to_a = GearmanQueue((a.address,))
        try:
            _submit(to_a, only_a, bound=2.0)
        finally:
            to_a.close()
        wait_for(lambda: ran.count(set(only_a)) == len(only_a), 30, "jobs sent only to the restarted server ran")
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
        queue.close()
    assert not any(thread.is_alive() for thread in threads)


def test_status_reports_each_server_and_their_total_with_one_down(make_config, two_gearmand, admin_auth):
    a, b = two_gearmand
    ran = Ran()
    stop, threads = _workers((a.address, b.address), ran, count=1, function=TRANSCODE_SEGMENT)
    app = create_app(make_config(GEARMAN_SERVERS=(a.address, b.address)))
    try:
        both = (a.address, b.address)
        wait_for(lambda: all(_registered(s, 1, TRANSCODE_SEGMENT) for s in both), 15, "the worker on both servers")
        client = app.test_client()
        queue = client.get("/status.json", headers=admin_auth).json["queue"]
        assert queue["ok"] and queue["workers"] == 1 and set(queue["servers"]) == {a.address, b.address}

        a.stop()
        started = time.monotonic()
        report = client.get("/status.json", headers=admin_auth).json
        assert time.monotonic() - started < 5.0
        queue = report["queue"]
        assert not queue["ok"] and queue["servers"][a.address]["ok"] is False and "error" in queue["servers"][a.address]
        assert queue["servers"][b.address] == {"ok": True, "queued": 0, "running": 0, "workers": 1}
        assert (queue["queued"], queue["running"], queue["workers"]) == (0, 0, 1)  # the total of the servers that answered
        assert report["problems"] == [f"gearmand {a.address} does not answer (ServerUnavailable); jobs go to the others"]

        b.stop()
        report = client.get("/status.json", headers=admin_auth).json
        assert not report["queue"]["ok"] and "workers" not in report["queue"]
        assert all(p.endswith("uploads queue in the database") for p in report["problems"][:2])
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
        app.extensions["team03"].close()


def test_a_recording_survives_one_of_two_gearmand_stopped_mid_run(make_config, two_gearmand, segment_files, tmp_path):
    a, b = two_gearmand
    config = make_config(
        GEARMAN_SERVERS=(a.address, b.address),
        REAPER_INTERVAL=0.5,
        PROCESSING_DEADLINE=15.0,  # a job lost with the stopped gearmand is submitted again after this
        FFMPEG_TIMEOUT=60.0,
    )
    stack = Stack(config, a)
    try:
        stack.start_worker(tmp_path / "worker.log")
        vid = stack.new_video()
        stack.upload(vid, 0, segment_files[0].read_bytes())
        stack.upload(vid, 1, segment_files[1].read_bytes())
        stack.wait(lambda: stack.segment(vid, 0).status.encoded, 90, "segment 0 encoded")
        a.stop()
        stack.upload(vid, 2, segment_files[2].read_bytes())  # answered 201 and queued on the live server
        assert stack.segment(vid, 2).queued_at is not None
        stack.upload(vid, 3, segment_files[3].read_bytes())
        stack.end(vid, 3)
        video = stack.wait_vod(vid, timeout=150)
        assert video.status.value == "OK"
        assert [stack.segment(vid, k).status for k in range(4)] == [SegmentState.PACKAGED] * 4
        assert queue_status((b.address,), timeout=2.0).total(TRANSCODE_SEGMENT)["workers"] == 1
    finally:
        stack.close()
