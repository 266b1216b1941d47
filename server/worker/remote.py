"""RemoteOrigin: a worker's work and results over the worker API (docs/workers.md), for a worker with no database.

Such a worker has Gearman (the job: two ids), this API (everything else) and its own empty MEDIA_ROOT.
Media never goes through gearmand: the original comes down `GET .../source` and each output goes up
`PUT .../outputs/<name>`, both checked end to end by SHA-256.

Every call has a timeout (connect, and each read) and every transfer an overall deadline. A 5xx or a
connection error is retried with exponential backoff, a bounded number of times; a 410 means the attempt
is over (AttemptGone: stop ffmpeg, discard), a 401 that the token is not (or no longer) valid.
Downloads resume with Range after a cut and are verified by size and SHA-256; a mismatch deletes the
file and downloads it again, also a bounded number of times.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from server.core.errors import Conflict, ServiceError, UnprocessableMedia, WorkerUnauthorized
from server.core.jobs import SegmentJob
from server.core.retry import Failure
from server.core.wire import ERROR_TAIL, AttemptGone, Claim, Skip
from server.store.local import file_sha256
from server.worker.encoding import workdir_for

log = logging.getLogger(__name__)

CHUNK = 256 * 1024
SOURCE_NAME = "source"


# Both are I/O failures (an OSError too): the encoder's classify() retries them (Failure.CRASH), it never
# gives a segment up because the network between a worker and the API failed.
class OriginUnavailable(ServiceError, ConnectionError):
    """The worker API did not answer usefully within the retries (down, 5xx, cut transfers): a retryable failure."""

    status = 503
    code = "origin_unavailable"


class TransferCorrupted(ServiceError, OSError):
    """Bytes arrived that do not match their SHA-256 (or size) again and again."""

    status = 502
    code = "transfer_corrupted"


@dataclass(frozen=True)
class Limits:
    """How long and how often: every number a remote worker's HTTP calls obey."""

    connect_timeout: float = 5.0
    read_timeout: float = 30.0  # per socket read, not per body
    transfer_deadline: float = 300.0  # a whole download or upload, retries included
    retries: int = 5  # tries after the first, for 5xx, connection errors and corrupted transfers
    backoff: float = 0.5  # seconds before retry n: backoff * 2^(n-1), at most backoff_cap
    backoff_cap: float = 8.0

    @property
    def timeout(self) -> tuple[float, float]:
        return (self.connect_timeout, self.read_timeout)

    def delay(self, attempt: int) -> float:
        wait: float = self.backoff * 2 ** (attempt - 1)  # int ** int is typed Any (a negative power is a float)
        return min(self.backoff_cap, wait)


class RemoteOrigin:
    """The Origin of a worker without the database: every call goes to the worker API at `api_url`."""

    def __init__(
        self,
        api_url: str,
        token: str,
        *,
        scratch: Path,
        limits: Limits | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base = api_url.rstrip("/") + "/api/worker"
        self.scratch = Path(scratch)
        self.limits = limits or Limits()
        self.sleep = sleep
        self._token = token
        self._local = threading.local()

    @property
    def http(self) -> requests.Session:
        """This thread's HTTP session (the job threads share the origin; a requests.Session is not thread-safe)."""
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            session.headers["Authorization"] = f"Bearer {self._token}"
        return session

    # --- the worker itself -----------------------------------------------------------------------

    def hello(self, registration: dict[str, Any]) -> dict[str, Any]:
        """Register this worker; return {worker_id, lease_seconds}."""
        answer: dict[str, Any] = self._json("POST", "/hello", registration).json()
        return answer

    def alive(self) -> None:
        """Tell the registry this worker is alive (its last_heartbeat_at)."""
        self._json("POST", "/heartbeat", {})

    def bye(self) -> None:
        """Tell the registry this worker drained and stops."""
        self._json("POST", "/bye", {})

    # --- Origin ----------------------------------------------------------------------------------

    def workdir(self, claim: Claim) -> Path:
        """A private, empty directory in this worker's scratch tree (encoding.Scratch; the encoder removes it after)."""
        return workdir_for(self.scratch, claim)

    def claim(self, job: SegmentJob) -> Claim | Skip:
        """Start an attempt at the job's segment, or learn there is nothing to do."""
        body = {"video_id": job.video_id, "segment_id": job.segment_id, "issued": job.issued, "ticket": job.ticket}
        response = self._json("POST", "/attempts", body, ok=(201, 403, 409))
        if response.status_code == 403:  # the job's ticket was refused (expired, or not the origin's): drop the job
            return Skip(f"ticket refused: {_message(response)}")
        if response.status_code == 409:
            return Skip(str(response.json().get("skip", "nothing to do")))
        return Claim.from_json(response.json())

    def heartbeat(self, claim: Claim, progress: float) -> None:
        """Renew the attempt's lease; AttemptGone when it is over."""
        self._json("POST", f"/attempts/{claim.attempt_id}/heartbeat", {"progress": progress})

    def complete(self, claim: Claim) -> None:
        """Commit the uploaded outputs (a second call is a no-op on the server)."""
        self._json("POST", f"/attempts/{claim.attempt_id}/complete", {})

    def fail(self, claim: Claim, error: str, failure: Failure) -> None:
        """Record the attempt's failure; the server's retry policy decides what follows."""
        self._json("POST", f"/attempts/{claim.attempt_id}/fail", {"error": error[-ERROR_TAIL:], "kind": failure.value})

    def fetch_source(self, claim: Claim, workdir: Path) -> Path:
        """Download the original into `workdir`, resuming after cuts; return it once size and SHA-256 match."""
        target = workdir / f"{SOURCE_NAME}.{claim.source_extension}"
        url = f"{self.base}/attempts/{claim.attempt_id}/source"
        started = time.monotonic()
        deadline = started + self.limits.transfer_deadline
        for attempt in range(self.limits.retries + 1):
            if attempt:
                self.sleep(self.limits.delay(attempt))
            try:
                self._download(url, target, claim.source_size, deadline)
            except (
                requests.ConnectionError,
                requests.Timeout,
                requests.exceptions.ChunkedEncodingError,
                OriginUnavailable,
            ) as exc:
                log.warning("attempt %s: source download cut (%s); resuming", claim.attempt_id, exc)
                continue
            if target.stat().st_size == claim.source_size and file_sha256(target) == claim.source_sha256:
                log.info(
                    "transfer down attempt %s %d bytes %.4f s", claim.attempt_id, claim.source_size, time.monotonic() - started
                )
                return target
            log.warning("attempt %s: source arrived corrupted (size or SHA-256); downloading again", claim.attempt_id)
            target.unlink()
        target.unlink(missing_ok=True)
        raise TransferCorrupted(f"attempt {claim.attempt_id}: no intact source after {self.limits.retries + 1} tries")

    def put_output(self, claim: Claim, name: str, path: Path) -> None:
        """Upload one output with its SHA-256; retried on 5xx, cuts and hash mismatches (422)."""
        started = time.monotonic()
        digest = file_sha256(path)
        url = f"{self.base}/attempts/{claim.attempt_id}/outputs/{name}"
        for attempt in range(self.limits.retries + 1):
            if attempt:
                self.sleep(self.limits.delay(attempt))
            with open(path, "rb") as body:
                response = self._send("PUT", url, data=body, headers={"X-Content-SHA256": digest})
            if response is None or response.status_code >= 500:
                continue
            if response.status_code == 422:  # the bytes were damaged on the way: send them again
                log.warning("attempt %s: output %s arrived corrupted; sending again", claim.attempt_id, name)
                continue
            self._check(response, ok=(200, 201))
            size = path.stat().st_size
            log.info("transfer up attempt %s %s %d bytes %.4f s", claim.attempt_id, name, size, time.monotonic() - started)
            return
        raise OriginUnavailable(f"attempt {claim.attempt_id}: output {name} not stored after {self.limits.retries + 1} tries")

    # --- HTTP ------------------------------------------------------------------------------------

    def _download(self, url: str, target: Path, size: int, deadline: float) -> None:
        """Fetch `url` into `target`, asking only for the bytes missing from what is already there."""
        have = target.stat().st_size if target.exists() else 0
        if have > size:  # longer than the original can be: start over
            target.unlink()
            have = 0
        if have == size:
            return
        headers = {"Range": f"bytes={have}-"} if have else {}
        with self.http.get(url, headers=headers, stream=True, timeout=self.limits.timeout) as response:
            if response.status_code >= 500:
                raise OriginUnavailable(f"source: {response.status_code}")
            self._check(response, ok=(200, 206))
            mode = "ab" if response.status_code == 206 else "wb"  # a 200 is the whole file again
            with open(target, mode) as out:
                for chunk in response.iter_content(CHUNK):
                    out.write(chunk)
                    if time.monotonic() > deadline:
                        raise TransferCorrupted(f"source: not downloaded within {self.limits.transfer_deadline:g} s")

    def _json(self, method: str, path: str, body: dict[str, Any], *, ok: tuple[int, ...] = (200, 201)) -> requests.Response:
        """Call a JSON route, retrying 5xx and connection errors; raise on any answer not in `ok`."""
        for attempt in range(self.limits.retries + 1):
            if attempt:
                self.sleep(self.limits.delay(attempt))
            response = self._send(method, self.base + path, json=body)
            if response is not None and response.status_code < 500:
                return self._check(response, ok=ok)
        raise OriginUnavailable(f"{method} {path}: no answer after {self.limits.retries + 1} tries")

    def _send(self, method: str, url: str, **kwargs: Any) -> requests.Response | None:
        """One request; None when the connection failed or timed out (the caller retries)."""
        try:
            return self.http.request(method, url, timeout=self.limits.timeout, **kwargs)
        except (requests.ConnectionError, requests.Timeout) as exc:
            log.warning("%s %s: %s", method, url, exc)
            return None

    @staticmethod
    def _check(response: requests.Response, *, ok: tuple[int, ...]) -> requests.Response:
        if response.status_code in ok:
            return response
        message = _message(response)
        if response.status_code == 401:
            raise WorkerUnauthorized(f"the worker API refused the token: {message}")
        if response.status_code == 410:
            raise AttemptGone(message)
        if response.status_code == 409:
            raise Conflict(message)
        if response.status_code == 422:  # outputs the origin refused (not what the plan asks): bad media, for good
            raise UnprocessableMedia(message)
        raise OriginUnavailable(f"{response.request.method} {response.url}: {response.status_code} {message}")


def _message(response: requests.Response) -> str:
    try:
        return str(response.json().get("message", response.reason))
    except ValueError:
        return response.reason or str(response.status_code)
