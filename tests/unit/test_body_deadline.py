"""The body read deadline (server/web/api/uploads.py): a body still arriving at its deadline is cut there, then 408."""

from __future__ import annotations

import contextlib
import io
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from server.core.errors import RequestTimeout
from server.web.api.uploads import Cutoff, DeadlineInput


class SteppedClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A loopback TCP connection, as a server has it: (server's end, client's end)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    yield server, client
    server.close()
    client.close()


def test_a_read_past_the_deadline_is_refused_without_waiting() -> None:
    clock = SteppedClock()
    body = DeadlineInput(io.BytesIO(b"abc"), deadline=130.0, timeout=30.0, clock=clock, length=3)
    assert body.read(1) == b"a"
    clock.now = 130.0
    with pytest.raises(RequestTimeout, match=r"BODY_READ_TIMEOUT \(30 s\)"):
        body.read(1)


def test_lines_are_read_under_the_same_deadline() -> None:
    clock = SteppedClock()
    body = DeadlineInput(io.BytesIO(b"one\ntwo\n"), deadline=101.0, timeout=1.0, clock=clock, length=8)
    assert list(body) == [b"one\n", b"two\n"]
    assert body.finished
    clock.now = 101.0
    with pytest.raises(RequestTimeout):
        body.readline()


def _watched(sock: socket.socket, cutoff: Cutoff, seconds: float, length: int) -> tuple[DeadlineInput, int]:
    # Buffered, as werkzeug's dev server reads: read(n) loops over recv() until n bytes came (gunicorn's too).
    sock.settimeout(10)  # the test's own bound, far beyond every deadline here: each recv() waits at most that
    body = DeadlineInput(sock.makefile("rb"), time.monotonic() + seconds, seconds, time.monotonic, length)
    return body, cutoff.arm(body, sock)


def test_a_body_dripping_in_is_cut_at_the_deadline(pair) -> None:  # type: ignore[no-untyped-def]
    """Issue 15: each byte within the socket's timeout, the body never timed out; read(n) waited for all n."""
    server, client = pair
    started = time.monotonic()
    body, _ = _watched(server, Cutoff(), 0.5, 10_000)
    stop = threading.Event()

    def drip() -> None:  # 50 bytes a second: the whole body would take 200 s
        with contextlib.suppress(OSError):
            while not stop.wait(0.02) and time.monotonic() - started < 5:
                client.sendall(b"x")

    dripper = threading.Thread(target=drip, daemon=True)
    dripper.start()
    try:
        with pytest.raises(RequestTimeout):
            body.read(10_000)
        waited = time.monotonic() - started
    finally:
        stop.set()
        dripper.join(timeout=5)
    assert 0.5 <= waited < 1.5, f"cut after {waited:.2f} s"


def test_a_stalled_body_is_cut_and_a_finished_one_keeps_its_connection() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        clients = [socket.create_connection(listener.getsockname()) for _ in range(2)]
        (done, _), (stalled, _) = listener.accept(), listener.accept()
    try:
        cutoff = Cutoff()
        (finished, _), (stalling, _) = _watched(done, cutoff, 0.3, 3), _watched(stalled, cutoff, 0.3, 3)
        clients[0].sendall(b"abc")
        clients[1].sendall(b"ab")  # one byte short of what it declared
        assert finished.read(3) == b"abc" and finished.finished
        with pytest.raises(RequestTimeout):
            stalling.read(3)
        assert time.monotonic() < stalling.deadline + 1.0  # cut at its deadline, not by the socket's timeout
        # Both deadlines have passed (the stalled one was cut at the same instant): the finished body's socket
        # still carries the next request of its keep-alive connection.
        clients[0].sendall(b"next")
        assert done.recv(4) == b"next"
    finally:
        for sock in (*clients, done, stalled):
            sock.close()


def test_a_disarmed_body_is_never_cut(pair) -> None:  # type: ignore[no-untyped-def]
    server, client = pair
    cutoff = Cutoff()
    body, watch = _watched(server, cutoff, 0.2, 10)
    cutoff.disarm(watch)  # its request ended (an answer without reading the body)
    other_server, other_client = socket.socketpair()
    try:
        later, _ = _watched(other_server, cutoff, 0.3, 1)
        with pytest.raises(RequestTimeout):  # the cutoff's thread has passed both deadlines
            later.read(1)
    finally:
        other_server.close()
        other_client.close()
    assert not body.cut
    client.sendall(b"still open")
    assert server.recv(10) == b"still open"


def test_drain_reads_no_byte_past_the_body_on_a_keep_alive_socket():
    # The dev server hands the raw socket to the app; its read(n) waits for n bytes. A 401 answered before a
    # small body was read used to drain a whole chunk: it swallowed the client's next request, or waited for it.
    server, client = socket.socketpair()
    server.settimeout(5)
    with server, client, server.makefile("rb") as stream:
        client.sendall(b"x" * 120 + b"NEXT")
        body = DeadlineInput(stream, time.monotonic() + 60, 60, time.monotonic, 120)
        body.drain()
        assert body.finished and body.consumed == 120
        assert stream.read(4) == b"NEXT"
