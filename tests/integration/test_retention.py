"""How long things are kept, on real MariaDB, gearmand, ffmpeg and media: RETENTION_DAYS and KEEP_ORIGINALS.

Time is a FakeClock moved by the test: 30 days pass without a sleep. The pure rule (`reaper.past_retention`)
has its table of cases in tests/unit/test_retention.py; here are the query (batch, order, index), the
deletion through the reaper's pass (rows, media, the event and its webhook), the pin that comes meanwhile
and a store that is down.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select, update

from server.core.errors import StorageUnavailable
from server.core.states import VideoStatus, VideoType
from server.domain import ingest, lifecycle
from server.infra.models import Attempt, Event, Rendition, Segment, SegmentRendition, Video
from server.infra.services import Services
from server.ops import reaper, webhooks
from server.ops.webhooks import Dispatcher
from tests.harness.clock import FakeClock
from tests.harness.services import free_port
from tests.integration.test_webhooks import Receiver, encode_one, pump, store

DAYS = 30.0
KEEP = DAYS * 86400  # seconds


@pytest.fixture
def build(make_config, gearmand) -> Iterator[Callable[..., Services]]:  # type: ignore[no-untyped-def]
    """Return a factory of Services on a FakeClock, with a real gearmand (no worker: the test encodes)."""
    made: list[Services] = []

    def factory(**overrides: object) -> Services:
        values = {"RETENTION_DAYS": DAYS, "LEASE_SECONDS": 10.0, "GAP_TIMEOUT": 4.0, "WEBHOOK_ALLOW_PRIVATE": True}
        built = Services.build(make_config(GEARMAN_SERVERS=(gearmand.address,), **{**values, **overrides}))
        built.clock = FakeClock()
        made.append(built)
        return built

    yield factory
    for built in made:
        built.close()


@pytest.fixture
def services(build: Callable[..., Services]) -> Services:
    return build()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


def advance(services: Services, seconds: float) -> datetime:
    return services.clock.advance(seconds)  # type: ignore[attr-defined, no-any-return]


def finished_video(services: Services, source: Path) -> int:
    """A recording of one segment, encoded, ended and finished (VOD) now, with its media in the store."""
    with services.sessions() as session:
        vid = ingest.create_video(services, session, "kept?").id
    store(services, vid, 0, source)
    encode_one(services, vid, 0)
    with services.sessions() as session:
        ingest.end_video(services, session, vid, 0)
        assert lifecycle.maybe_finish(services, session, vid)
    return vid


def pin(services: Services, video_id: int) -> None:
    """An admin's pin, as the row has it (the pin's own API is another part of issue 18)."""
    with services.sessions() as session:
        session.execute(update(Video).where(Video.id == video_id).values(pinned=True))
        session.commit()


def objects(services: Services, video_id: int) -> list[str]:
    return services.objects.list(services.media.video_prefix(video_id))


def row_counts(services: Services, video_id: int) -> dict[str, int]:
    """The rows a video owns, table by table."""
    with services.sessions() as session:
        segment_pks = select(Segment.id).where(Segment.video_id == video_id)
        queries = {
            "videos": select(func.count()).select_from(Video).where(Video.id == video_id),
            "renditions": select(func.count()).select_from(Rendition).where(Rendition.video_id == video_id),
            "segments": select(func.count()).select_from(Segment).where(Segment.video_id == video_id),
            "rungs": select(func.count()).select_from(SegmentRendition).where(SegmentRendition.segment_pk.in_(segment_pks)),
            "attempts": select(func.count()).select_from(Attempt).where(Attempt.video_id == video_id),
        }
        return {name: session.scalar(query) or 0 for name, query in queries.items()}


def deletions(services: Services, video_id: int) -> list[dict[str, object]]:
    """The data of the video's `video.deleted` events."""
    with services.sessions() as session:
        query = select(Event.data).where(Event.video_id == video_id, Event.kind == "video.deleted")
        return [json.loads(data or "{}") for data in session.scalars(query)]


def test_a_reaper_pass_deletes_a_finished_video_past_retention_and_keeps_a_pinned_and_a_recent_one(
    services, segment_files, receiver
):
    with services.sessions() as session:
        _made, secret = webhooks.create(
            session, receiver.url("/deleted"), "video.deleted", now=services.clock.now(), allow_private=True
        )
    receiver.secrets["/deleted"] = secret
    old = finished_video(services, segment_files[0])
    pinned = finished_video(services, segment_files[1])
    pin(services, pinned)
    advance(services, KEEP - 3600)
    recent = finished_video(services, segment_files[2])  # finished an hour before `old` is due
    advance(services, 3600 - 1)
    owned = {vid: row_counts(services, vid) for vid in (old, pinned, recent)}
    assert all(counts["segments"] == 1 and counts["rungs"] > 0 and counts["attempts"] == 1 for counts in owned.values())
    assert all(any("/HIGH/" in key for key in objects(services, vid)) for vid in (old, pinned, recent))
    reaper.reap(services)  # a second short of RETENTION_DAYS: nothing goes
    assert row_counts(services, old) == owned[old] and deletions(services, old) == []
    advance(services, 1)
    reaper.reap(services)
    assert row_counts(services, old) == dict.fromkeys(owned[old], 0)
    assert objects(services, old) == []
    assert deletions(services, old) == [{"reason": "retention"}]
    for kept in (pinned, recent):
        assert row_counts(services, kept) == owned[kept] and deletions(services, kept) == []
        assert any("/HIGH/" in key for key in objects(services, kept))
    # The webhook: its receiver is told which video went, and why.
    dispatcher = Dispatcher(services)
    try:
        pump(services, dispatcher)
    finally:
        dispatcher.close()
    (got,) = receiver.received
    assert (got.event, got.signed, got.body["video_id"], got.body["data"]) == ("video.deleted", True, old, {"reason": "retention"})


def add_video(services: Services, kind: VideoType, finished_at: datetime | None, ended_at: datetime | None, pinned: bool) -> int:
    """A video row alone (no segment, no media): the query and the batch only read the videos table."""
    with services.sessions() as session:
        row = Video(
            title="row",
            created_at=services.clock.now(),
            type=kind,
            status=VideoStatus.OK if kind is VideoType.VOD else VideoStatus.EMPTY,
            finished_at=finished_at,
            ended_at=ended_at,
            pinned=pinned,
        )
        session.add(row)
        session.commit()
        return row.id


def test_a_pass_deletes_at_most_its_batch_oldest_first_and_exactly_what_the_rule_says(services):
    now = advance(services, 400 * 86400)
    day = timedelta(days=1)
    due = [  # oldest first: a VOD with no finished_at is kept to its ended_at, and read first
        add_video(services, VideoType.VOD, None, now - 90 * day, False),
        add_video(services, VideoType.VOD, now - 80 * day, now - 81 * day, False),
        add_video(services, VideoType.VOD, now - 60 * day, now - 61 * day, False),
        add_video(services, VideoType.VOD, now - 40 * day, now - 41 * day, False),
        add_video(services, VideoType.VOD, now - 30 * day, now - 30 * day, False),  # exactly at the boundary
    ]
    kept = [
        add_video(services, VideoType.VOD, now - 90 * day, now - 91 * day, True),  # pinned
        add_video(services, VideoType.LIVE, None, None, False),  # still recording
        add_video(services, VideoType.LIVE, None, now - 90 * day, False),  # ended, not finished
        add_video(services, VideoType.VOD, now - 29 * day, now - 90 * day, False),  # ended long ago, finished lately
        add_video(services, VideoType.VOD, None, now - 29 * day, False),
        add_video(services, VideoType.VOD, None, None, False),  # no end known
    ]
    with services.sessions() as session:
        found = [video_id for video_id, _end in session.execute(reaper.retention_query(now, DAYS, 100))]
        rule = sorted(v.id for v in session.scalars(select(Video)) if reaper.past_retention(v, now, DAYS))
    assert found == due and rule == sorted(due)  # the query finds what the rule deletes, oldest first
    assert reaper.expire_videos(services, now, limit=2) == 2
    assert [deletions(services, vid) for vid in due] == [[{"reason": "retention"}]] * 2 + [[]] * 3
    assert reaper.expire_videos(services, now, limit=2) == 2
    assert reaper.expire_videos(services, now, limit=2) == 1
    assert reaper.expire_videos(services, now, limit=2) == 0
    with services.sessions() as session:
        assert sorted(session.scalars(select(Video.id))) == sorted(kept)


def test_zero_days_deletes_nothing(build):
    services = build(RETENTION_DAYS=0.0)
    now = advance(services, 10_000 * 86400)
    vid = add_video(services, VideoType.VOD, now - timedelta(days=9_000), now - timedelta(days=9_000), False)
    assert reaper.expire_videos(services, now) == 0
    assert row_counts(services, vid)["videos"] == 1


def test_a_video_pinned_after_the_query_is_not_deleted(services):
    now = advance(services, 400 * 86400)
    vid = add_video(services, VideoType.VOD, now - timedelta(days=90), now - timedelta(days=90), False)
    with services.sessions() as session:
        ((found, end),) = session.execute(reaper.retention_query(now, DAYS, 100)).all()
        session.rollback()
        pin(services, vid)  # an admin, between the reaper's query and its delete
        assert (found, reaper.expire_video(services, session, found, end, DAYS)) == (vid, False)
    assert row_counts(services, vid)["videos"] == 1 and deletions(services, vid) == []


def test_a_store_that_is_down_loses_neither_the_deletions_nor_the_pass(build):
    """The rows go and every candidate is handled; the objects stay for the operator's purge."""
    services = build(MEDIA_STORE="s3", S3_ENDPOINT_URL=f"http://127.0.0.1:{free_port()}", S3_BUCKET="gone", S3_MAX_ATTEMPTS=1)
    with pytest.raises(StorageUnavailable):  # nothing answers there
        services.objects.list("videos/")
    now = advance(services, 400 * 86400)
    vids = [add_video(services, VideoType.VOD, now - timedelta(days=40 + k), None, False) for k in range(3)]
    with contextlib.suppress(StorageUnavailable):  # the pass's later steps read the store; retention needs only the rows
        reaper.reap(services)
    for vid in vids:
        assert row_counts(services, vid)["videos"] == 0 and deletions(services, vid) == [{"reason": "retention"}]


def test_the_query_reads_the_retention_index_on_mariadb(services):
    """Not a scan of every video: a range of ix_videos_retention, among many live, pinned and recent videos."""
    now = advance(services, 400 * 86400)
    rows = []
    for k in range(3000):
        kind, pinned = [(VideoType.LIVE, False), (VideoType.VOD, True), (VideoType.VOD, False)][k % 3]
        finished = None if kind is VideoType.LIVE else now - timedelta(days=k % 20)  # the unpinned VODs are all recent
        rows.append({"title": "r", "created_at": now, "type": kind, "status": VideoStatus.OK, "finished_at": finished, "pinned": pinned})
    with services.sessions() as session:
        session.execute(insert(Video), rows)
        session.commit()
        session.connection().exec_driver_sql("ANALYZE TABLE videos")
        query = reaper.retention_query(now, DAYS, reaper.RETENTION_BATCH)
        sql = query.compile(dialect=session.get_bind().dialect, compile_kwargs={"literal_binds": True})
        plan = session.connection().exec_driver_sql(f"EXPLAIN {sql}").mappings().all()
    assert [(step["table"], step["key"]) for step in plan] == [("videos", "ix_videos_retention")], plan
    assert int(plan[0]["rows"]) < 1000 and "filesort" not in plan[0]["Extra"], plan  # not the 3000 rows, nor a sort


@pytest.mark.parametrize("keep", [False, True], ids=["originals-removed", "KEEP_ORIGINALS"])
def test_an_original_is_removed_once_its_renditions_exist_unless_keep_originals(build, segment_files, keep):
    services = build(KEEP_ORIGINALS=keep)
    with services.sessions() as session:
        vid = ingest.create_video(services, session, "originals").id
    store(services, vid, 0, segment_files[0])
    original = services.media.original(vid, 0, "mp4")
    assert services.objects.head(original) is not None
    encode_one(services, vid, 0)
    assert any("/HIGH/" in key for key in objects(services, vid))  # the renditions exist
    assert (services.objects.head(original) is not None) is keep
