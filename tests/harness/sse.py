"""A Server-Sent Events reader for tests: one thread parses the stream, a test takes what arrived with a deadline."""

from __future__ import annotations

import contextlib
import http.client
import json
import queue
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

END = "end"  # what `next` returns once the server closed the stream


@dataclass(frozen=True)
class Message:
    """One dispatched event (`id`, `event`, `data` parsed as JSON) or a comment (`comment`)."""

    id: int | None = None
    event: str | None = None
    data: dict[str, Any] | None = None
    comment: str | None = None
    at: float = field(default_factory=time.monotonic)


class SseClient:
    """GET `url` with `headers` and read its event stream on a thread until the server ends it or `close()`."""

    def __init__(self, url: str, headers: dict[str, str], timeout: float = 30.0) -> None:
        parts = urlsplit(url)
        self._conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
        try:
            self._conn.request("GET", parts.path + (f"?{parts.query}" if parts.query else ""), headers=headers)
            self._sock = self._conn.sock  # kept: close() shuts it down to wake the reader
            self.response = self._conn.getresponse()
        except BaseException:
            self._conn.close()  # no answer before `timeout`: nothing left open
            raise
        self.status = self.response.status
        self.headers = {k.lower(): v for k, v in self.response.getheaders()}
        self._messages: queue.Queue[Message | str] = queue.Queue()
        self._thread = threading.Thread(target=self._read, name="sse-reader", daemon=True)
        if self.status == 200:
            self._thread.start()

    def _read(self) -> None:
        fields: dict[str, str] = {}
        try:
            while True:
                line = self.response.readline()
                if not line:
                    break
                text = line.decode().rstrip("\r\n")
                if text.startswith(":"):
                    self._messages.put(Message(comment=text[1:].strip()))
                elif text == "":
                    if "data" in fields:
                        event_id = int(fields["id"]) if "id" in fields else None
                        self._messages.put(Message(event_id, fields.get("event"), json.loads(fields["data"])))
                    fields = {}
                else:
                    name, _, value = text.partition(":")
                    fields[name] = value.removeprefix(" ")
        except (OSError, ValueError, http.client.HTTPException):
            pass  # closed by close(), or the connection dropped: the stream is over either way
        self._messages.put(END)

    def next(self, timeout: float) -> Message | str:
        """The next message or END; AssertionError if nothing arrives within `timeout` seconds."""
        try:
            return self._messages.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no event-stream message within {timeout}s") from None

    def events(self, count: int, timeout: float) -> list[Message]:
        """The next `count` events (comments skipped), all within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        found: list[Message] = []
        while len(found) < count:
            message = self.next(max(0.0, deadline - time.monotonic()))
            if message == END:
                raise AssertionError(f"the stream ended after {len(found)} of {count} events")
            assert isinstance(message, Message)
            if message.comment is None:
                found.append(message)
        return found

    def close(self) -> None:
        """Hang up (the server sees the client gone) and wait for the reader thread."""
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self.response.close()
        self._conn.close()
