"""The Android recorder's side of the protocol (../shared/docs/android-client.md), for the operator's `stream`.

A local video or an http(s) URL is cut as the phone cuts its camera stream (keyframe-aligned ~3 s MP4
segments, by ffmpeg), then uploaded with the app's exact requests: `POST /videos` with its whole Video
object, one multipart `POST /video_segment/<id>` per segment (the app's part headers, byte for byte),
`POST /video_end/<id>` with `last_segment_id`. Like the app it retries a failed call with backoff
(connection errors, timeouts, 5xx, 429) a bounded number of times; every call has a timeout.

The upload order is planned up front (`upload_plan`, pure): in order by default, or shuffled within a
bounded window (the app's retry queue takes up a segment more than 2 behind), with some segments sent
twice (a retry after a lost response). Pacing (`Pacer`) holds each segment until the moment the phone
would have finished recording it, unless asked to go as fast as possible.
"""

from __future__ import annotations

import json
import random
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from server.core.transcode import ffmpeg

CRLF = b"\r\n"
TIMEOUT = 20.0  # seconds, the app's own OkHttp timeouts
RETRIES = 5  # attempts after the first, per call
BACKOFF = 0.5  # seconds before the first retry, doubling
BACKOFF_MAX = 8.0
SHUFFLE_WINDOW = 3  # the app uploads at most this far out of order (a segment 2 behind goes to its retry queue)


class PhoneError(Exception):
    """A call the phone could not complete: one line saying which and why (no traceback for the operator)."""


# -- the app's request bodies ---------------------------------------------------------------------


def _part(name: str, content_type: str, body: bytes, filename: str | None = None) -> bytes:
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
    headers = [
        f"Content-Disposition: {disposition}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
        "Content-Transfer-Encoding: binary",
    ]
    return CRLF.join(h.encode() for h in headers) + CRLF + CRLF + body + CRLF


def segment_upload(segment_id: int | str, data: bytes | None, extension: str | None = "mp4") -> tuple[bytes, str]:
    """Return (body, content_type) of POST /video_segment/<id> as the recorder sends it (Retrofit 1.x over OkHttp)."""
    boundary = str(uuid.uuid4())
    parts = [_part("segment_id", "application/json; charset=UTF-8", str(segment_id).encode())]
    if extension is not None:
        parts.append(_part("original_extension", "text/plain; charset=UTF-8", extension.encode()))
    if data is not None:
        parts.append(_part("data", "multipart/form-data", data, filename=f"video-{segment_id}.mp4"))
    body = b"".join(b"--" + boundary.encode() + CRLF + p for p in parts) + b"--" + boundary.encode() + b"--" + CRLF
    return body, f"multipart/form-data; boundary={boundary}"


def new_video_body(title: str | None = "My recording", created_at_ms: int = 1795860000000) -> dict[str, Any]:
    """The app's whole Video object, most values null, as POST /videos sends it."""
    body: dict[str, Any] = {
        "video_id": None,
        "title": title,
        "created_at": created_at_ms,
        "type": "LIVE",
        "status": "EMPTY",
        "segment_count": None,
        "segment_duration": None,
        "uri_mpd": None,
        "uri_m3u8": None,
        "uri_thumbnail": None,
        "base_url": None,
    }
    for i in (1, 2, 3):
        body.update({f"repr_{i}_name": None, f"repr_{i}_bandwidth": None, f"repr_{i}_width": None, f"repr_{i}_height": None})
    return body


def playback_urls(server: str, video: dict[str, Any]) -> dict[str, str]:
    """Where to watch a video the server described: DASH, HLS (`<server><base_url>/<uri_*>`) and the app's MPD."""
    base = server.rstrip("/") + str(video["base_url"])
    return {
        "mpd": f"{base}/{video['uri_mpd']}",
        "hls": f"{base}/{video['uri_m3u8']}",
        "android": f"{server.rstrip('/')}/live_mpd/{int(video['video_id'])}.mpd",
    }


# -- the source: checked, then cut ----------------------------------------------------------------


def check_source(source: str) -> Path | str:
    """A local file (Path) or an http(s) URL (str); PhoneError naming the problem otherwise."""
    scheme = urllib.parse.urlsplit(source).scheme.lower()
    if scheme in ffmpeg.URL_SCHEMES:
        return source
    if "://" in source or (scheme and len(scheme) > 1 and not Path(source).exists()):
        raise PhoneError(f"unsupported URL scheme {scheme or '?'!r}: only http and https are read")
    path = Path(source)
    if not path.is_file():
        raise PhoneError(f"no such file: {source}")
    return path


@dataclass(frozen=True)
class Cut:
    """One recorded segment: its id (0-based, as the phone counts), file and length."""

    segment_id: int
    path: Path
    seconds: float


def cut(source: Path | str, out_dir: Path, timeout: float) -> tuple[list[Cut], bool]:
    """Cut `source` into out_dir as the phone would; return the segments and whether they were copied (not re-encoded).

    A local file whose keyframes allow it is cut with `-c copy`; a URL is re-encoded (knowing its keyframes
    would take a second read of the stream).
    """
    copy = isinstance(source, Path) and ffmpeg.can_copy_cut(ffmpeg.probe(source, check_decode=True))
    ffmpeg.run(ffmpeg.cut_argv(source, out_dir, copy=copy), timeout)
    listed = ffmpeg.parse_cut_list((out_dir / ffmpeg.CUT_LIST).read_text())
    if not listed:
        raise PhoneError("ffmpeg cut no segment from the source")
    return [Cut(i, out_dir / name, seconds) for i, (name, seconds) in enumerate(listed)], copy


# -- the upload plan (pure) -----------------------------------------------------------------------


def upload_plan(count: int, *, shuffle: bool, duplicate: float, rng: random.Random, window: int = SHUFFLE_WINDOW) -> list[int]:
    """The order segment ids 0..count-1 are sent in: each at least once, a duplicate at most once more.

    Shuffled, each step sends one of the `window` lowest ids not yet sent, so no segment is ever more than
    `window - 1` places early or late (the app's bounded retry queue). A duplicate is sent again within
    the next `window` steps, as a retry after a lost response would be.
    """
    if not 0.0 <= duplicate <= 1.0:
        raise ValueError("duplicate must be a probability between 0 and 1")
    pending = list(range(count))
    plan: list[int] = []
    again: list[tuple[int, int]] = []  # (step at which to resend, segment id)
    for _ in range(2 * count):  # each id is sent at most twice
        due = [item for item in again if item[0] <= len(plan)]
        if due and (not pending or rng.random() < 0.5):
            again.remove(due[0])
            plan.append(due[0][1])
            continue
        if not pending:
            if not again:
                break
            plan.append(again.pop(0)[1])
            continue
        pick = pending.pop(rng.randrange(min(window, len(pending))) if shuffle else 0)
        plan.append(pick)
        if rng.random() < duplicate:
            again.append((len(plan) + rng.randrange(max(1, window)), pick))
    return plan


class Pacer:
    """Hold each segment until the phone would have finished recording it (real time), or never (`fast`)."""

    def __init__(self, cuts: Sequence[Cut], *, fast: bool, clock: Callable[[], float] = time.monotonic) -> None:
        self.ready_at: list[float] = []
        total = 0.0
        for c in cuts:
            total += c.seconds
            self.ready_at.append(total)
        self.fast = fast
        self.clock = clock
        self.start = clock()

    def delay(self, segment_id: int) -> float:
        """Seconds to wait before `segment_id` exists on the phone (0 when it already does, or when fast)."""
        if self.fast:
            return 0.0
        return max(0.0, self.start + self.ready_at[segment_id] - self.clock())


# -- the HTTP calls ---------------------------------------------------------------------------------


class PhoneClient:
    """The app's three recorder calls against one server, each with a timeout and bounded retries with backoff."""

    def __init__(
        self,
        server: str,
        *,
        timeout: float = TIMEOUT,
        retries: int = RETRIES,
        backoff: float = BACKOFF,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if urllib.parse.urlsplit(server).scheme not in ffmpeg.URL_SCHEMES:
            raise PhoneError(f"--server must be an http(s) URL, not {server!r}")
        self.server = server.rstrip("/")
        self.timeout, self.retries, self.backoff, self.sleep = timeout, retries, backoff, sleep
        self.retried = 0  # calls sent again (for the operator's summary)

    def check(self) -> None:
        """GET /videos?limit=1, so an unreachable server, or a recording key it refuses (401), is one error line
        before any cutting starts; the app's list answers under /k/<key>/ as at the root (/healthz only there)."""
        self._call("/videos?limit=1", None, None, "reach the server")

    def create_video(self, title: str) -> dict[str, Any]:
        """POST /videos: the app's whole Video object; the server's answer (201)."""
        body = json.dumps(new_video_body(title, int(time.time() * 1000))).encode()
        return self._call("/videos", body, "application/json; charset=UTF-8", "create the video")

    def upload(self, video_id: int, segment_id: int, data: bytes) -> dict[str, Any]:
        """POST /video_segment/<id> as the app's multipart; the Segment object (201)."""
        body, content_type = segment_upload(segment_id, data)
        return self._call(f"/video_segment/{int(video_id)}", body, content_type, f"upload segment {segment_id}")

    def end(self, video_id: int, last_segment_id: int) -> dict[str, Any]:
        """POST /video_end/<id> with last_segment_id (form-urlencoded); the Video object (200)."""
        body = urllib.parse.urlencode({"last_segment_id": str(int(last_segment_id))}).encode()
        return self._call(f"/video_end/{int(video_id)}", body, "application/x-www-form-urlencoded", "end the video")

    def _call(self, path: str, body: bytes | None, content_type: str | None, what: str) -> dict[str, Any]:
        delay = self.backoff
        for attempt in range(self.retries + 1):
            if attempt:
                self.retried += 1
                self.sleep(delay)
                delay = min(BACKOFF_MAX, delay * 2)
            try:
                return self._post(path, body, content_type)
            except _Retryable as exc:
                last = str(exc)
        raise PhoneError(f"could not {what} at {self.server}: {last} (after {self.retries + 1} tries)")

    def _post(self, path: str, body: bytes | None, content_type: str | None) -> dict[str, Any]:
        """POST `body` (GET when None); the JSON answer of a 2xx."""
        headers = {"Accept": "application/json", "User-Agent": "team03-cli (phone protocol)"}
        if content_type is not None:
            headers["Content-Type"] = content_type
        method = "GET" if body is None else "POST"
        request = urllib.request.Request(self.server + path, data=body, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 - http(s) checked above
                answer: dict[str, Any] = json.loads(response.read() or b"{}")
                return answer
        except urllib.error.HTTPError as exc:
            message = _message(exc)
            if exc.code >= 500 or exc.code in (408, 429):
                raise _Retryable(f"HTTP {exc.code} {message}") from None
            raise PhoneError(f"{path}: HTTP {exc.code} {message}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:  # refused, reset, timed out, a cut answer
            reason = getattr(exc, "reason", exc)
            raise _Retryable(str(reason) or type(exc).__name__) from None


class _Retryable(Exception):
    """A failure the app would retry: no answer, or the server's 5xx/408/429."""


def _message(exc: urllib.error.HTTPError) -> str:
    """The API's one-line error message from its JSON body, or the reason phrase."""
    try:
        body = json.loads(exc.read(4096) or b"{}")
        return str(body.get("message") or exc.reason)
    except (ValueError, OSError, AttributeError):
        return str(exc.reason)


# -- a whole recording ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sent:
    """Progress after one upload: how many distinct segments are stored, of how many, and the bytes sent."""

    stored: int
    total: int
    uploads: int
    bytes: int
    segment_id: int


def record(
    client: PhoneClient,
    title: str,
    cuts: Sequence[Cut],
    plan: Sequence[int],
    pacer: Pacer,
    on_sent: Callable[[Sent], None] = lambda _sent: None,
    sleep: Callable[[float], None] = time.sleep,
    on_created: Callable[[dict[str, Any]], None] = lambda _video: None,
) -> dict[str, Any]:
    """Create a video, upload `plan` (each step waits for its segment to be 'recorded'), then end it; the final Video."""
    video = client.create_video(title)
    video_id = int(video["video_id"])
    on_created(video)
    stored: set[int] = set()
    sent_bytes = reached = 0
    for step, segment_id in enumerate(plan):
        reached = max(reached, segment_id)
        sleep(pacer.delay(reached))  # the phone cannot send what it has not recorded yet
        data = cuts[segment_id].path.read_bytes()
        client.upload(video_id, segment_id, data)
        stored.add(segment_id)
        sent_bytes += len(data)
        on_sent(Sent(len(stored), len(cuts), step + 1, sent_bytes, segment_id))
    return client.end(video_id, len(cuts) - 1)
