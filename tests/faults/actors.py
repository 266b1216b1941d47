"""The fault suite's clients: paced phones, a reader that polls and parses everything, and hostile senders.

Each is a thread bounded by a deadline; every request it makes lands in the shared `Record`.
"""

from __future__ import annotations

import contextlib
import http.client
import itertools
import json
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests

from tests.faults.answers import Torn, check_media, m3u8_urls, mpd_urls
from tests.faults.record import Answer, Record
from tests.harness.android import new_video_body, segment_upload

ANDROID_TIMEOUT = 20.0  # the app's timeouts (docs android-client.md)
BACKOFF_CAP = 4.0  # seconds at most between two tries of one upload


def call(record: Record, route: str, send: Callable[[], requests.Response], url: str) -> requests.Response | None:
    """Send one request, record its answer (or that none came); return the response, None on no answer."""
    started = time.monotonic()
    try:
        response = send()
    except requests.RequestException:
        record.answer(Answer(route, url, started, time.monotonic(), None))
        return None
    record.answer(answer_of(route, url, started, response))
    return response


def answer_of(route: str, url: str, started: float, response: requests.Response) -> Answer:
    """The record of one HTTP answer: status, Retry-After, and a 5xx's JSON code (what the server said went wrong)."""
    answer = Answer(route, url, started, time.monotonic(), response.status_code, response.headers.get("Retry-After"))
    if response.status_code >= 500:
        answer.code = error_code(response.content)
    return answer


def error_code(body: bytes) -> str:
    try:
        return str(json.loads(body).get("code"))
    except (ValueError, AttributeError):
        return f"not JSON: {body[:80]!r}"


class Phone(threading.Thread):
    """One recording as the Android app makes it: a segment every `pace` seconds, failed uploads retried later
    with backoff (out of order, maybe twice), then /video_end retried until a 2xx; all before `deadline`."""

    def __init__(self, name: str, base: str, clips: list[bytes], count: int, pace: float, record: Record, deadline: float):
        super().__init__(name=name, daemon=True)
        self.base, self.clips, self.count, self.pace = base, clips, count, pace
        self.record, self.deadline = record, deadline
        self.stop = threading.Event()  # set by the test on its way out (a failure elsewhere)
        self.http = requests.Session()
        self.video_id: int | None = None
        self.stored: set[int] = set()  # segment ids that got a 2xx
        self.tries: dict[int, int] = {}
        self.ended = False
        self.created = threading.Event()

    def run(self) -> None:
        while self.video_id is None and self._going():
            response = self._send("create", "/videos", json=new_video_body(self.name))
            if response is not None and response.status_code == 201:
                self.video_id = response.json()["video_id"]
            else:
                time.sleep(0.5)  # the app's retry pace, not a wait for a fact
        self.created.set()
        if self.video_id is not None:
            self._record()

    def _record(self) -> None:
        due: dict[int, float] = {}  # segment id -> when to try it (next)
        cut_at, cut, end_at = time.monotonic(), 0, 0.0
        while self._going() and (cut < self.count or due or not self.ended):
            now = time.monotonic()
            if cut < self.count and now >= cut_at:
                due[cut], cut, cut_at = now, cut + 1, cut_at + self.pace
            ready = [k for k, at in due.items() if at <= now]
            if ready:
                k = max(ready) if max(ready) == cut - 1 else min(ready)  # the newest first, then the queue
                if self._upload(k):
                    del due[k]
                else:
                    due[k] = time.monotonic() + min(BACKOFF_CAP, 0.25 * 2 ** self.tries[k])
            elif cut == self.count and not self.ended and now >= end_at:
                self.ended = self._end()
                end_at = time.monotonic() + 1.0
            else:
                time.sleep(0.05)  # the phone's own clock: nothing is due yet

    def _going(self) -> bool:
        return time.monotonic() < self.deadline and not self.stop.is_set()

    def _upload(self, segment_id: int) -> bool:
        self.tries[segment_id] = self.tries.get(segment_id, 0) + 1
        body, content_type = segment_upload(segment_id, self.clips[segment_id % len(self.clips)])
        response = self._send("upload", f"/video_segment/{self.video_id}", data=body, headers={"Content-Type": content_type})
        if response is not None and response.ok:
            self.stored.add(segment_id)
            return True
        return False

    def _end(self) -> bool:
        response = self._send("end", f"/video_end/{self.video_id}", data={"last_segment_id": str(self.count - 1)})
        return response is not None and response.ok

    def _send(self, route: str, path: str, **kwargs: object) -> requests.Response | None:
        url = f"{self.base}{path}"
        return call(self.record, route, lambda: self.http.post(url, timeout=ANDROID_TIMEOUT, **kwargs), url)  # type: ignore[arg-type]


@dataclass
class Poll:
    """One playlist a player polls and how to read the URLs it names."""

    route: str
    path: str
    parse: Callable[[str, str], list[str]]


class Reader(threading.Thread):
    """Polls every playlist of every video and fetches each media file they name (once it answered 200),
    parsing every answer, until `stop` is set."""

    def __init__(self, base: str, videos: Callable[[], list[int]], record: Record, stop: threading.Event) -> None:
        super().__init__(name="reader", daemon=True)
        self.base, self.videos, self.record, self.stop = base, videos, record, stop
        self.http = requests.Session()
        self.fetched: set[str] = set()
        self.last_segment: dict[int, str] = {}
        self.rounds = 0

    def run(self) -> None:
        while not self.stop.is_set():
            for video_id in self.videos():
                for poll in self.polls(video_id):
                    self._poll(poll, video_id)
            self.rounds += 1
            self.stop.wait(0.3)

    def polls(self, video_id: int) -> list[Poll]:
        after = self.last_segment.get(video_id)
        polls = [
            Poll("playlist", f"/video_files/{video_id}/manifest.mpd", mpd_urls),
            Poll("playlist", f"/video_files/{video_id}/master.m3u8", m3u8_urls),
            Poll("playlist", f"/live_mpd/{video_id}.mpd", mpd_urls),
            Poll("playlist", f"/live_m3u8/{video_id}/root.m3u8", m3u8_urls),
        ]
        if after is not None:
            polls.append(Poll("playlist", f"/live_mpd/{video_id}.mpd?last_segment_id={after}", mpd_urls))
        return polls

    def _poll(self, poll: Poll, video_id: int) -> None:
        url = f"{self.base}{poll.path}"
        text = self._get(poll.route, url, poll.parse)
        if text is None:
            return
        for named in poll.parse(url, text):
            if named.endswith(".m3u8"):  # a master's variant: a playlist too
                self._get("playlist", named, m3u8_urls, media_of=True)
            elif named not in self.fetched:
                self._get("media", named, None)

    def _get(self, route: str, url: str, parse: Callable[[str, str], list[str]] | None, media_of: bool = False) -> str | None:
        started = time.monotonic()
        try:
            response = self.http.get(url, timeout=ANDROID_TIMEOUT)
            data = response.content
        except requests.RequestException as exc:
            self.record.answer(Answer(route, url, started, time.monotonic(), None, problem=_no_answer(route, exc)))
            return None
        answer = answer_of(route, url, started, response)
        if "/live_mpd/" in url and "lastSegmentId" in response.headers:
            self.last_segment[int(urlsplit(url).path.split("/")[2].split(".")[0])] = response.headers["lastSegmentId"]
        answer.problem = self._judge(route, url, response.status_code, data, parse)
        self.record.answer(answer)
        if response.status_code != 200 or answer.problem:
            return None
        if parse is None:
            self.fetched.add(url)
            return None
        if media_of:
            for named in m3u8_urls(url, data.decode()):
                if named not in self.fetched:
                    self._get("media", named, None)
        return data.decode()

    def _judge(self, route: str, url: str, status: int, data: bytes, parse: Callable[[str, str], list[str]] | None) -> str:
        """A problem with this answer ("" when none): a named file missing, or a body that does not parse."""
        if route == "media" and status == 404:
            return "a playlist named it, but it is not there"
        if status != 200:
            return ""
        try:
            if parse is None:
                check_media(url, data)
            else:
                parse(url, data.decode())
        except (Torn, UnicodeDecodeError) as exc:
            return str(exc)
        return ""


def _no_answer(route: str, exc: Exception) -> str:
    """A reader's request with no answer: a torn body (cut mid-answer) is a problem, a refused connection is not."""
    if isinstance(exc, requests.exceptions.ChunkedEncodingError | requests.exceptions.ContentDecodingError):
        return f"answer cut short: {exc}"
    return ""


def _malformed(video_id: int, clip: bytes = b"") -> list[tuple[str, bytes]]:
    """Requests no client should send: (name, raw HTTP/1.1 bytes). None may store anything or answer 5xx."""
    stray, stray_type = segment_upload(999999, clip)  # a real clip, an id far past the phone's: it would end its stream
    junk = bytes(range(256)) * 8
    garbage = b'--b\r\nContent-Disposition: form-data; name="data"\r\n\r\n' + junk  # no closing boundary
    not_video, not_video_type = segment_upload(999, b"\x00\x00\x00\x18ftypisomnot a video at all")
    head = "Host: x\r\nConnection: close\r\n"
    return [
        ("garbage multipart", _post(f"/video_segment/{video_id}", "multipart/form-data; boundary=b", garbage)),
        ("not a video", _post(f"/video_segment/{video_id}", not_video_type, not_video)),
        ("stray id far ahead", _post(f"/video_segment/{video_id}", stray_type, stray)),
        ("no boundary", _post(f"/video_segment/{video_id}", "multipart/form-data", b"segment_id=1")),
        ("bad id", f"GET /video/99999999999999999999999 HTTP/1.1\r\n{head}\r\n".encode()),
        (
            "bad segment id",
            _post(f"/video_segment/{video_id}", segment_upload("\u0661", b"x")[1], segment_upload("\u0661", b"x")[0]),
        ),
        ("bad end", _post(f"/video_end/{video_id}", "application/x-www-form-urlencoded", b"last_segment_id=-1")),
        ("traversal", f"GET /video_files/{video_id}/../../../etc/passwd HTTP/1.1\r\n{head}\r\n".encode()),
        ("no such video", f"GET /live_mpd/0.mpd?last_segment_id=x HTTP/1.1\r\n{head}\r\n".encode()),
        ("huge header", f"GET /videos HTTP/1.1\r\n{head}X-Big: {'a' * 70000}\r\n\r\n".encode()),
        ("truncated body", _post(f"/video_segment/{video_id}", "multipart/form-data; boundary=b", garbage, extra=5000)),
        ("bad json", _post("/videos", "application/json", b'{"title": ')),
        ("not http", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + junk[:200]),
    ]


def _post(path: str, content_type: str, body: bytes, extra: int = 0) -> bytes:
    """A POST whose Content-Length is `extra` bytes more than the body sent (a truncated body)."""
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: {content_type}\r\n"
    return f"{head}Content-Length: {len(body) + extra}\r\n\r\n".encode() + body


def raw_answer(port: int, payload: bytes, timeout: float) -> tuple[int | None, str | None, str]:
    """Send `payload` on a fresh loopback connection, half-close it; return the answer's status (None: no answer),
    its Retry-After and, for a 5xx, its JSON code."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
            response = http.client.HTTPResponse(sock)
            response.begin()
            body = response.read()
        except (OSError, http.client.HTTPException):
            return None, None, ""
        return response.status, response.getheader("Retry-After"), error_code(body) if response.status >= 500 else ""


class Hostile(threading.Thread):
    """Slow-loris connections held open for the whole run, and one malformed request every `pace` seconds,
    alternately through nginx (`front`) and straight to gunicorn (`app`), until `stop` is set."""

    def __init__(
        self, front: int, app: int, video_id: Callable[[], int], clip: bytes, record: Record, stop: threading.Event
    ) -> None:
        super().__init__(name="hostile", daemon=True)
        self.front, self.app, self.video_id, self.clip, self.record, self.stop = front, app, video_id, clip, record, stop
        self.slow: list[socket.socket] = []
        self.slow_closed = 0  # slow connections the server closed (a header or body timeout)

    def run(self) -> None:
        self._open_slow(6)
        kinds = itertools.cycle(range(len(_malformed(0))))
        ports = itertools.cycle((self.front, self.app))
        while not self.stop.wait(0.25):
            name, payload = _malformed(self.video_id(), self.clip)[next(kinds)]
            port = next(ports)
            started = time.monotonic()
            try:
                status, retry_after, code = raw_answer(port, payload, timeout=ANDROID_TIMEOUT)
            except OSError:
                status, retry_after, code = None, None, ""
            via = "nginx" if port == self.front else "gunicorn"
            self.record.answer(Answer("hostile", f"{name} via {via}", started, time.monotonic(), status, retry_after, code=code))
            self._trickle()
        self._close_slow()

    def _open_slow(self, count: int) -> None:
        """Open `count` connections to nginx that send a request's first bytes and then one byte per round."""
        for k in range(count):
            sock = socket.create_connection(("127.0.0.1", self.front), timeout=5)
            if k % 2:  # headers that never end
                sock.sendall(b"GET /videos HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            else:  # a body that never ends
                sock.sendall(
                    f"POST /video_segment/{self.video_id()} HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n".encode()
                )
            sock.setblocking(False)
            self.slow.append(sock)
            self.record.answer(Answer("slow-loris", "opened", time.monotonic(), time.monotonic(), None))

    def _trickle(self) -> None:
        for sock in list(self.slow):
            try:
                sock.send(b"a")
            except OSError:  # the server gave up on it (nginx's client_header/body_timeout)
                self.slow.remove(sock)
                self.slow_closed += 1
                sock.close()

    def _close_slow(self) -> None:
        for sock in self.slow:
            with contextlib.suppress(OSError):
                sock.close()
        self.slow.clear()


_SEGMENT_NAME = re.compile(r"/([0-9]+)\.(?:m4s|mp4|ts)$")


class ForwardReader(Reader):
    """The reader, also holding every playlist to "never backwards" across reads: each URL's list of segments
    only grows, a playlist that ended (EXT-X-ENDLIST, a static MPD) stays ended, and the video's revision and
    the revision its files show (`revisions(video_id)`, read from the database each round) never decrease."""

    def __init__(
        self,
        base: str,
        videos: Callable[[], list[int]],
        record: Record,
        stop: threading.Event,
        revisions: Callable[[int], tuple[int, int] | None],
    ) -> None:
        super().__init__(base, videos, record, stop)
        self.revisions = revisions
        self.seen: dict[str, tuple[set[int], bool]] = {}  # URL -> (segment ids it listed, ended) at its last read
        self.last_revision: dict[int, tuple[int, int]] = {}
        self.backwards: list[str] = []
        self.compared = 0  # playlist reads compared with an earlier read of the same URL

    def polls(self, video_id: int) -> list[Poll]:
        """The round's polls; first, the video's revisions, compared with the last round's (once per round)."""
        found = self.revisions(video_id)
        last = self.last_revision.get(video_id)
        if found is not None:
            if last is not None and (found[0] < last[0] or found[1] < last[1]):
                self.backwards.append(f"video {video_id}: (revision, published) went {last} -> {found}")
            self.last_revision[video_id] = found
        return super().polls(video_id)

    def _get(self, route: str, url: str, parse: Callable[[str, str], list[str]] | None, media_of: bool = False) -> str | None:
        text = super()._get(route, url, parse, media_of)
        if text is not None and parse is not None:
            ids = {int(m.group(1)) for name in parse(url, text) if (m := _SEGMENT_NAME.search(name.split("?")[0]))}
            self._compare(url, ids, "#EXT-X-ENDLIST" in text or 'type="static"' in text)
        return text

    def _compare(self, url: str, ids: set[int], ended: bool) -> None:
        before = self.seen.get(url)
        if before is not None:
            self.compared += 1
            if not ids >= before[0]:
                self.backwards.append(f"{url}: listed {sorted(before[0] - ids)}, then no more")
            if before[1] and not ended:
                self.backwards.append(f"{url}: ended, then live again")
        self.seen[url] = (ids, ended)
