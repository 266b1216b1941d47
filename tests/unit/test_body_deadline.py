"""The body read deadline (server/web/api/uploads.py): each read waits at most the time left, then 408."""

from __future__ import annotations

import io
import socket
from collections.abc import Iterator

import pytest

from server.core.errors import RequestTimeout
from server.web.api.uploads import DeadlineInput


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    server, client = socket.socketpair()
    yield server, client
    server.close()
    client.close()


def test_reads_wait_at_most_the_time_left_and_restore_the_servers_setting(pair) -> None:  # type: ignore[no-untyped-def]
    server, client = pair
    clock = Clock()
    body = DeadlineInput(server.makefile("rb", buffering=0), server, deadline=130.0, timeout=30.0, clock=clock)
    client.sendall(b"abc")
    clock.now = 110.0
    assert body.read(3) == b"abc"
    assert server.gettimeout() is None  # blocking again, as the server had it, for writing the answer


def test_a_read_past_the_deadline_is_refused_without_waiting() -> None:
    clock = Clock()
    body = DeadlineInput(io.BytesIO(b"abc"), None, deadline=130.0, timeout=30.0, clock=clock)
    assert body.read(1) == b"a"
    clock.now = 130.0
    with pytest.raises(RequestTimeout, match=r"BODY_READ_TIMEOUT \(30 s\)"):
        body.read(1)


def test_a_body_shorter_than_promised_times_out_on_the_socket(pair) -> None:  # type: ignore[no-untyped-def]
    server, client = pair
    clock = Clock()
    # The socket waits deadline - now = 0.2 s of real time for bytes that never come.
    body = DeadlineInput(server.makefile("rb", buffering=0), server, deadline=100.2, timeout=30.0, clock=clock)
    client.sendall(b"ab")
    assert body.read(2) == b"ab"
    with pytest.raises(RequestTimeout):
        body.read(1)
    assert server.gettimeout() is None


def test_lines_are_read_under_the_same_deadline() -> None:
    clock = Clock()
    body = DeadlineInput(io.BytesIO(b"one\ntwo\n"), None, deadline=101.0, timeout=1.0, clock=clock)
    assert list(body) == [b"one\n", b"two\n"]
    clock.now = 101.0
    with pytest.raises(RequestTimeout):
        body.readline()
