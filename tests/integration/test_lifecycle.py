"""A segment's life on the real database: transitions, events, leases, idempotent and late completions.

Time is a FakeClock moved by the test: no test here sleeps.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from server.core.retry import Failure
from server.core.wire import AttemptGone, Claim, Skip, WorkerRef
from server.domain import eventlog, ingest, lifecycle
from server.domain.changes import video_change
from server.domain.transitions import IllegalTransition
from server.infra.models import Attempt, AttemptOutcome, Event, Segment, SegmentState, Video
from server.infra.services import Services
from server.store.local import UploadFile
from server.worker.encoding import encode
from server.worker.local import LocalOrigin
from tests.harness.tree import tree

WORKER = WorkerRef(None, "test-worker")


class FakeClock:
    def __init__(self) -> None:
        self.at = datetime(2026, 1, 1, 12, 0, 0)

    def now(self) -> datetime:
        return self.at

    def time(self) -> float:
        return self.at.replace(tzinfo=UTC).timestamp()

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


class RecordingQueue:
    """The job queue as seen from the domain: it records what was handed to it."""

    def __init__(self) -> None:
        self.jobs: list[tuple[str, bytes]] = []

    def submit(self, function: str, data: bytes, *, unique: str, priority: int = 1) -> None:
        self.jobs.append((function, data))


@pytest.fixture
def services(make_config) -> Iterator[Services]:  # type: ignore[no-untyped-def]
    config = make_config(LEASE_SECONDS=10.0, JOB_MAX_ATTEMPTS=3, RETRY_BACKOFF=1.0, GAP_TIMEOUT=4.0)
    built = Services.build(config)
    built.clock = FakeClock()
    built.queue = RecordingQueue()
    yield built
    built.close()


def store(services: Services, video_id: int, segment_id: int, source: Path) -> None:
    upload = UploadFile(tree(services).root / "incoming", limit=64 << 20)
    upload.write(source.read_bytes())
    with services.sessions() as session:
        video = ingest.get_video(session, video_id)
        ingest.accept_segment(services, session, video, segment_id, "mp4", upload)


def new_video(services: Services) -> int:
    with services.sessions() as session:
        return ingest.create_video(services, session, "life").id


def claim(services: Services, video_id: int, segment_id: int) -> Claim:
    with services.sessions() as session:
        result = lifecycle.start_attempt(services, session, video_id, segment_id, WORKER)
    assert isinstance(result, Claim), result
    return result


def kinds(services: Services, video_id: int) -> list[str]:
    """The video's events in order, but progress reports (a slow encode has some, a fast one none)."""
    with services.sessions() as session:
        query = select(Event.kind).where(Event.video_id == video_id, Event.kind != "attempt.progress").order_by(Event.id)
        return list(session.scalars(query))


def segment(services: Services, video_id: int, segment_id: int) -> Segment:
    with services.sessions() as session:
        return session.scalars(select(Segment).where(Segment.video_id == video_id, Segment.segment_id == segment_id)).one()


def revision(services: Services, video_id: int) -> int:
    with services.sessions() as session:
        return session.scalar(select(Video.revision).where(Video.id == video_id))  # type: ignore[return-value]


def test_every_transition_writes_exactly_one_event(services, segment_files):
    vid = new_video(services)
    store(services, vid, 0, segment_files[0])
    work = claim(services, vid, 0)
    assert encode(LocalOrigin(services, WORKER), work, services.config) == "ok"
    with services.sessions() as session:
        ingest.end_video(services, session, vid, 0)
        assert lifecycle.maybe_finish(services, session, vid)
    assert kinds(services, vid) == [
        "video.created",
        "segment.received",
        "video.uploading",
        "segment.queued",
        "segment.running",
        "attempt.started",
        "attempt.ok",
        "segment.encoded",
        "segment.packaged",
        "video.ended",
        "video.finished",
    ]
    # The revision moved once per change (creation is revision 0), not once per event.
    changes = ["upload", "queued", "claim", "complete", "package", "end", "finish"]
    assert revision(services, vid) == len(changes)
    with services.sessions() as session:
        data = [json.loads(d) for d in session.scalars(select(Event.data).where(Event.kind == "attempt.ok"))]
    assert data == [{"attempt": work.attempt_id}]


def test_a_rolled_back_change_writes_no_event_and_keeps_the_revision(services):
    vid = new_video(services)
    before = (kinds(services, vid), revision(services, vid))
    with services.sessions() as session, pytest.raises(RuntimeError), video_change(session, vid, services.clock) as change:
        change.video.title = "never"
        change.event("video.renamed", title="never")
        raise RuntimeError("the change fails after its event was added")
    assert (kinds(services, vid), revision(services, vid)) == before
    with services.sessions() as session:
        assert session.get(Video, vid).title == "life"  # type: ignore[union-attr]


def test_a_transition_the_machine_lacks_is_refused(services, segment_files):
    vid = new_video(services)
    store(services, vid, 0, segment_files[0])
    with services.sessions() as session, pytest.raises(IllegalTransition), video_change(session, vid, services.clock) as change:
        row = session.scalars(select(Segment).where(Segment.video_id == vid)).one()
        lifecycle.move(change, row, SegmentState.PACKAGED)
    assert segment(services, vid, 0).status is SegmentState.QUEUED


def test_a_leased_segment_is_not_claimed_twice(services, segment_files):
    vid = new_video(services)
    store(services, vid, 0, segment_files[0])
    first = claim(services, vid, 0)
    with services.sessions() as session:
        second = lifecycle.start_attempt(services, session, vid, 0, WorkerRef(None, "other"))
    assert isinstance(second, Skip) and "leased by test-worker" in second.reason
    services.clock.advance(5)  # type: ignore[attr-defined]
    with services.sessions() as session:
        renewed = lifecycle.renew_lease(services, session, first.attempt_id, 0.5)
    assert renewed == services.clock.now() + timedelta(seconds=10)
    services.clock.advance(8)  # type: ignore[attr-defined]  # past the first lease, within the renewed one
    with services.sessions() as session:
        assert lifecycle.expire_leases(services, session) == 0
        assert isinstance(lifecycle.start_attempt(services, session, vid, 0, WorkerRef(None, "other")), Skip)


def test_an_expired_lease_is_taken_back_and_its_late_result_refused(services, segment_files):
    vid = new_video(services)
    store(services, vid, 0, segment_files[0])
    dead = claim(services, vid, 0)
    staged = tree(services).attempt_dir(vid, dead.attempt_id)
    staged.mkdir(parents=True)
    (staged / "HIGH.mp4").write_bytes(b"a late worker's output")
    services.clock.advance(11)  # type: ignore[attr-defined]
    with services.sessions() as session:
        assert lifecycle.expire_leases(services, session) == 1
    row = segment(services, vid, 0)
    assert row.status is SegmentState.RECEIVED and row.attempts == 1
    assert row.retry_at == services.clock.now() + timedelta(seconds=1.0)
    assert not staged.exists()
    assert kinds(services, vid)[-2:] == ["attempt.expired", "segment.received"]
    # The dead worker comes back: its heartbeat and its completion are refused, its files discarded.
    staged.mkdir(parents=True)
    (staged / "HIGH.mp4").write_bytes(b"a late worker's output")
    with services.sessions() as session:
        with pytest.raises(AttemptGone):
            lifecycle.renew_lease(services, session, dead.attempt_id, 0.9)
        with pytest.raises(AttemptGone):
            lifecycle.complete_attempt(services, session, dead.attempt_id, inline=True)
    assert not staged.exists()
    # Another worker finishes it.
    services.clock.advance(1)  # type: ignore[attr-defined]
    rescue = claim(services, vid, 0)
    assert encode(LocalOrigin(services, WORKER), rescue, services.config) == "ok"
    with services.sessions() as session:
        outcomes = session.scalars(select(Attempt.outcome).where(Attempt.video_id == vid).order_by(Attempt.id)).all()
    assert outcomes == [AttemptOutcome.EXPIRED, AttemptOutcome.OK]
    assert segment(services, vid, 0).status is SegmentState.PACKAGED


def test_a_second_identical_completion_is_a_no_op(services, segment_files):
    vid = new_video(services)
    store(services, vid, 0, segment_files[0])
    work = claim(services, vid, 0)
    assert encode(LocalOrigin(services, WORKER), work, services.config) == "ok"
    events, rev = kinds(services, vid), revision(services, vid)
    with services.sessions() as session:
        assert lifecycle.complete_attempt(services, session, work.attempt_id, inline=True) is False
    assert (kinds(services, vid), revision(services, vid)) == (events, rev)


def test_leases_lost_again_and_again_end_in_failed(services, segment_files):
    vid = new_video(services)
    store(services, vid, 0, segment_files[0])
    for _ in range(services.config.JOB_MAX_ATTEMPTS):
        claim(services, vid, 0)
        services.clock.advance(60)  # type: ignore[attr-defined]
        with services.sessions() as session:
            assert lifecycle.expire_leases(services, session) == 1
    row = segment(services, vid, 0)
    assert row.status is SegmentState.FAILED and row.attempts == 3 and "lease expired" in (row.error or "")
    with services.sessions() as session:
        assert isinstance(lifecycle.start_attempt(services, session, vid, 0, WORKER), Skip)


def test_a_full_disk_spends_no_attempt(services, segment_files):
    vid = new_video(services)
    store(services, vid, 0, segment_files[0])
    for _ in range(5):  # more than JOB_MAX_ATTEMPTS: never given up
        work = claim(services, vid, 0)
        with services.sessions() as session:
            lifecycle.fail_attempt(services, session, work.attempt_id, "OSError: No space left on device", Failure.DISK_FULL)
        services.clock.advance(60)  # type: ignore[attr-defined]
    row = segment(services, vid, 0)
    assert row.status is SegmentState.RECEIVED and row.attempts == 0
    with services.sessions() as session:
        failed = session.scalar(select(func.count()).select_from(Attempt).where(Attempt.outcome == AttemptOutcome.FAILED))
    assert failed == 5


def test_events_older_than_the_retention_are_pruned(services, segment_files):
    vid = new_video(services)
    services.clock.advance(services.config.EVENT_RETENTION + 1)  # type: ignore[attr-defined]
    with services.sessions() as session:
        ingest.rename_video(services, session, vid, "renamed", by="test")
        assert eventlog.prune(session, services.clock.now(), services.config.EVENT_RETENTION) == 1
    assert kinds(services, vid) == ["video.renamed"]


class HoldingOrigin(LocalOrigin):
    """A worker that stages every output, as a remote one does through the worker API, and then stops short of
    completing (the test completes)."""

    def put_output(self, claim: Claim, name: str, path: Path) -> None:
        media = self.services.media
        media.put(media.attempt_output(claim.video_id, claim.attempt_id, name), path)

    def complete(self, claim: Claim) -> None:
        pass


def test_a_completion_whose_commit_failed_after_storing_its_outputs_is_finished_by_its_retry(services, segment_files, monkeypatch):
    """The database goes away mid-commit: the outputs were stored in place, the rows were not; the retry completes."""
    vid = new_video(services)
    store(services, vid, 0, segment_files[0])
    work = claim(services, vid, 0)
    assert encode(HoldingOrigin(services, WORKER), work, services.config) == "ok"
    real_move = lifecycle.move

    def database_gone(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise OperationalError("COMMIT", {}, Exception("Lost connection to MySQL server during query"))

    monkeypatch.setattr(lifecycle, "move", database_gone)
    with services.sessions() as session, pytest.raises(OperationalError):
        lifecycle.complete_attempt(services, session, work.attempt_id, inline=True)
    staged = tree(services).attempt_dir(vid, work.attempt_id)
    # Stored in place, not committed: the staged outputs stay until the completion's transaction is.
    assert (staged / "HIGH.mp4").exists() and tree(services).file(vid, "HIGH", 0, "mp4").is_file()
    assert segment(services, vid, 0).status is SegmentState.RUNNING
    monkeypatch.setattr(lifecycle, "move", real_move)
    with services.sessions() as session:
        assert lifecycle.complete_attempt(services, session, work.attempt_id, inline=True) is True
    assert segment(services, vid, 0).status is SegmentState.PACKAGED


def test_outputs_missing_at_completion_are_a_crash_to_retry_not_bad_media():
    from server.core.errors import Conflict
    from server.worker.encoding import classify

    assert classify(Conflict("attempt 6 has not handed back HIGH.mp4")) is Failure.CRASH
