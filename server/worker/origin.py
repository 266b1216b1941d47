"""Where a worker gets its work and hands back its results.

`LocalOrigin` is a worker with the database and the media tree: it calls server/domain/lifecycle.py directly.
A remote worker (API_URL + WORKER_TOKEN, nothing else shared) uses `RemoteOrigin`
(server/worker/remote.py), which makes the same calls through the worker API. server/worker/encoding.py does
the work the same way with either.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from server.core.jobs import SegmentJob
from server.core.retry import Failure
from server.core.wire import Claim, Skip


class Origin(Protocol):
    def claim(self, job: SegmentJob) -> Claim | Skip: ...
    def workdir(self, claim: Claim) -> Path:
        """A private, empty directory for this attempt's work files (removed by the caller after)."""
        ...

    def fetch_source(self, claim: Claim, workdir: Path) -> Path: ...
    def heartbeat(self, claim: Claim, progress: float) -> None:
        """Renew the lease; raises lifecycle.AttemptGone when the attempt was taken back."""
        ...

    def put_output(self, claim: Claim, name: str, path: Path) -> None: ...
    def complete(self, claim: Claim) -> None: ...
    def fail(self, claim: Claim, error: str, failure: Failure) -> None: ...
