"""The dev server (dev_run.py, and the test and bench harnesses) closes every response, even when the client drops."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator

from server.web.devserver import make_dev_server
from tests.harness.services import wait_for


class Body:
    """A response body that lets the client reset the connection after its last chunk, before the server finishes."""

    def __init__(self, sent: threading.Event, reset: threading.Event) -> None:
        self.sent, self.reset = sent, reset
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        yield b"x" * 1000
        self.sent.set()
        self.reset.wait(10)

    def close(self) -> None:
        self.closed = True


def test_a_response_is_closed_when_the_client_resets_the_connection() -> None:
    # Werkzeug reads what is left of the request after the answer and closes the body after that;
    # a reset there (a player aborting a segment request) skipped the close, and a served file leaked.
    sent, reset = threading.Event(), threading.Event()
    bodies: list[Body] = []

    def app(environ, start_response):  # type: ignore[no-untyped-def]
        start_response("200 OK", [("Content-Length", "1000")])
        bodies.append(Body(sent, reset))
        return bodies[-1]

    server = make_dev_server(app, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = socket.create_connection(("127.0.0.1", server.server_port))
        client.sendall(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
        assert sent.wait(10)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = RST
        client.close()
        reset.set()
        wait_for(lambda: bodies[0].closed, 10, "the response body closed after the client's reset")
    finally:
        server.shutdown()
        server.server_close()
