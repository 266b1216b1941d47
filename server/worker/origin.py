"""Where a worker gets its work and hands back its results.

`LocalOrigin` is a worker with the database and the media tree: it calls server/domain/lifecycle.py directly.
A remote worker (API_URL + WORKER_TOKEN, nothing else shared) uses `RemoteOrigin`
(server/worker/remote.py), which makes the same calls through the worker API. server/worker/encoding.py does
the work the same way with either.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Protocol

from server.core.jobs import SegmentJob
from server.core.retry import Failure
from server.domain import lifecycle
from server.domain.lifecycle import Claim, Skip, WorkerRef
from server.infra.services import Services
from server.store.local import commit_file


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


class LocalOrigin:
    """The origin seen from a worker that shares its database and media tree."""

    def __init__(self, services: Services, worker: WorkerRef) -> None:
        self.services = services
        self.worker = worker

    def claim(self, job: SegmentJob) -> Claim | Skip:
        with self.services.sessions() as session:
            return lifecycle.start_attempt(self.services, session, job.video_id, job.segment_id, self.worker)

    def workdir(self, claim: Claim) -> Path:
        # Inside the attempt's staging directory: put_output is then a rename on one filesystem.
        path = self.services.media.attempt_dir(claim.video_id, claim.attempt_id) / ".work"
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path

    def fetch_source(self, claim: Claim, workdir: Path) -> Path:
        return self.services.media.original(claim.video_id, claim.segment_id, claim.source_extension)

    def heartbeat(self, claim: Claim, progress: float) -> None:
        with self.services.sessions() as session:
            lifecycle.renew_lease(self.services, session, claim.attempt_id, progress)

    def put_output(self, claim: Claim, name: str, path: Path) -> None:
        commit_file(path, self.services.media.attempt_dir(claim.video_id, claim.attempt_id) / name)

    def complete(self, claim: Claim) -> None:
        with self.services.sessions() as session:
            lifecycle.complete_attempt(self.services, session, claim.attempt_id, inline=True)

    def fail(self, claim: Claim, error: str, failure: Failure) -> None:
        with self.services.sessions() as session:
            lifecycle.fail_attempt(self.services, session, claim.attempt_id, error, failure)
