"""The publish lease (server/domain/publishing.py "Order"): two origins publish one video's playlists in turn.

Each origin is a Services of its own (its engine, its sessions) on one database, SQLite and MariaDB, and one
media tree; time is a FakeClock both share, moved by the test. Where a test needs a publisher stopped at a
given step (a holder that stalls, or is killed), it wraps that step of the publishing module to wait there.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select, update

from server.core.errors import InsufficientStorage
from server.core.wire import Claim, WorkerRef
from server.domain import ingest, lifecycle, publishing
from server.domain.changes import video_change
from server.infra.models import Event, Video
from server.infra.services import Services
from server.ops import reaper
from server.store.local import UploadFile
from server.worker.encoding import encode
from server.worker.local import LocalOrigin
from tests.harness.clock import FakeClock
from tests.harness.services import migrate
from tests.harness.tree import tree

WORKER = WorkerRef(None, "lease-worker")
LEASE = publishing.PUBLISH_LEASE.total_seconds()


@dataclass
class Origins:
    a: Services
    b: Services
    clock: FakeClock


BOTH_DATABASES = pytest.mark.parametrize("origins", ["sqlite", "mariadb"], indirect=True)  # the compare-and-set itself


@pytest.fixture
def origins(request, make_config, gearmand, tmp_path) -> Iterator[Origins]:  # type: ignore[no-untyped-def]
    """Two origins (two Services) on one database: MariaDB, or (parametrized) SQLite, the embedded default."""
    overrides: dict[str, object] = {"GEARMAN_SERVERS": (gearmand.address,)}
    if getattr(request, "param", "mariadb") == "sqlite":
        url = f"sqlite:///{tmp_path / 'lease.sqlite'}"
        migrate(url)
        overrides["DATABASE_URL"] = url
    config = make_config(**overrides)
    clock = FakeClock()
    built = [Services.build(config), Services.build(config)]
    for services in built:
        services.clock = clock
    yield Origins(built[0], built[1], clock)
    for services in built:
        services.close()


def vod_video(services: Services, source: Path, title: str = "one") -> int:
    """A finished video of one encoded segment, its playlists published."""
    with services.sessions() as session:
        vid = ingest.create_video(services, session, title).id
    upload = UploadFile(services.media.root / "incoming", limit=64 << 20)
    upload.write(source.read_bytes())
    with services.sessions() as session:
        ingest.accept_segment(services, session, ingest.get_video(session, vid), 0, "mp4", upload)
    with services.sessions() as session:
        claim = lifecycle.start_attempt(services, session, vid, 0, WORKER)
    assert isinstance(claim, Claim), claim
    assert encode(LocalOrigin(services, WORKER), claim, services.config) == "ok"
    with services.sessions() as session:
        ingest.end_video(services, session, vid, 0)
        lifecycle.maybe_finish(services, session, vid)
    assert shown(services, vid) == title and current(services, vid)
    return vid


def rename(services: Services, vid: int, title: str) -> None:
    """Commit a rename and publish nothing (an origin killed between its commit and its publish)."""
    with services.sessions() as session, video_change(session, vid, services.clock) as change:
        change.video.title = title
        change.event("video.renamed", title=title)


def publish(services: Services, vid: int) -> bool:
    with services.sessions() as session:
        return publishing.publish(services, session, vid)


def shown(services: Services, vid: int) -> str | None:
    """The title the published MPD carries (None before it exists)."""
    manifest = tree(services).video_dir(vid) / "manifest.mpd"
    if not manifest.is_file():
        return None
    found = re.search(rb"<Title>(.*?)</Title>", manifest.read_bytes())
    return None if found is None else found.group(1).decode()


def row(services: Services, vid: int) -> Video | None:
    with services.sessions() as session:
        return session.get(Video, vid)


def current(services: Services, vid: int) -> bool:
    """The files show the video's revision, and nobody holds its lease."""
    video = row(services, vid)
    return video is not None and video.published_revision == video.revision and video.publishing_by is None


def publishes(result: str) -> float:
    return REGISTRY.get_sample_value("team03_playlist_publishes_total", {"result": result}) or 0.0


class Stop:
    """Stops the first call of a publishing step, right after it ran, until `go`; later calls pass through."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
        self.reached = threading.Event()
        self.released = threading.Event()
        self._first = True
        step: Callable[..., Any] = getattr(publishing, name)

        def stopped(*args: Any, **kwargs: Any) -> Any:
            result = step(*args, **kwargs)
            if self._first:
                self._first = False
                self.reached.set()
                assert self.released.wait(60), "the test never let the publisher go on"
            return result

        monkeypatch.setattr(publishing, name, stopped)

    def wait(self) -> None:
        assert self.reached.wait(60), "the publisher never reached the step"

    def go(self) -> None:
        self.released.set()


def in_thread(call: Callable[[], object]) -> tuple[threading.Thread, list[object]]:
    results: list[object] = []
    thread = threading.Thread(target=lambda: results.append(call()))
    thread.start()
    return thread, results


@BOTH_DATABASES
def test_a_lease_left_by_a_killed_holder_blocks_publishing_until_it_expires(origins: Origins, segment_files) -> None:  # type: ignore[no-untyped-def]
    """kill -9 between taking the lease and releasing it: nobody writes until it expires, then the reaper does."""
    a, b, clock = origins.a, origins.b, origins.clock
    vid = vod_video(a, segment_files[0])
    with a.sessions() as session:
        held = (
            update(Video)
            .where(Video.id == vid)
            .values(publishing_until=clock.now() + publishing.PUBLISH_LEASE, publishing_by="killed")
        )
        session.execute(held)
        session.commit()
    rename(a, vid, "two")
    busy = publishes("busy")
    assert publish(b, vid) is False
    assert publishes("busy") == busy + 1
    clock.advance(LEASE - 1)
    reaper.reap(b)
    assert shown(a, vid) == "one" and not current(a, vid)  # still held by the dead holder
    clock.advance(1)
    reaper.reap(b)
    assert shown(a, vid) == "two" and current(a, vid)  # expired: taken, written, released


@BOTH_DATABASES
def test_a_publish_that_finds_the_lease_held_returns_and_the_holder_publishes_the_newer_revision(  # type: ignore[no-untyped-def]
    origins: Origins, segment_files, monkeypatch
) -> None:
    a, b = origins.a, origins.b
    vid = vod_video(a, segment_files[0])
    stop = Stop(monkeypatch, "snapshot")  # a holds the lease with a snapshot of "two", not written yet
    rename(a, vid, "two")
    holder, wrote = in_thread(lambda: publish(a, vid))
    stop.wait()
    rename(b, vid, "three")
    assert publish(b, vid) is False  # at once: a holds the lease
    assert shown(a, vid) == "one"  # and b wrote nothing
    stop.go()
    holder.join(60)
    assert wrote == [True]
    assert shown(a, vid) == "three" and current(a, vid)  # a read the revision again once released


def test_two_origins_publishing_at_once_never_write_an_older_revision_after_a_newer(origins: Origins, segment_files) -> None:  # type: ignore[no-untyped-def]
    """Both rename and publish in a loop while a reader polls the MPD: the titles it sees follow the commits' order."""
    a, b = origins.a, origins.b
    vid = vod_video(a, segment_files[0], "start")
    seen: list[str] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            title = shown(a, vid)
            if title is not None and (not seen or seen[-1] != title):
                seen.append(title)

    def origin(services: Services, name: str) -> None:
        for k in range(12):
            with services.sessions() as session:
                ingest.rename_video(services, session, vid, f"{name}{k}", by="test")  # commits, then publishes

    reader, _ = in_thread(read)
    threads = [
        in_thread(lambda services=services, name=name: origin(services, name))[0] for services, name in ((a, "a"), (b, "b"))
    ]
    for thread in threads:
        thread.join(120)
    done.set()
    reader.join(30)
    with a.sessions() as session:  # rename events in commit order: each commit holds the row's lock
        order = [
            e.data
            for e in session.scalars(select(Event).where(Event.video_id == vid, Event.kind == "video.renamed").order_by(Event.id))
        ]
    rank = {"start": -1} | {str(_title(data)): k for k, data in enumerate(order)}
    assert [rank[title] for title in seen] == sorted(rank[title] for title in seen), seen
    if not current(a, vid):
        reaper.reap(b)  # a holder's rounds are bounded: the reaper publishes what is left
    assert current(a, vid) and shown(a, vid) == _title(order[-1])


def _title(data: str | None) -> str:
    return str(json.loads(data or "{}")["title"])


def test_two_reapers_at_once_converge_to_the_newest_revision(origins: Origins, segment_files) -> None:  # type: ignore[no-untyped-def]
    a, b = origins.a, origins.b
    vid = vod_video(a, segment_files[0])
    barrier = threading.Barrier(2)

    def reap(services: Services) -> int:
        barrier.wait()  # both passes start together
        return reaper.reap(services)

    for k in range(4):
        rename(a, vid, f"lagging{k}")
        threads = [in_thread(lambda services=services: reap(services))[0] for services in (a, b)]
        for thread in threads:
            thread.join(60)
        assert shown(a, vid) == f"lagging{k}" and current(a, vid), k


def test_a_holder_that_outlives_its_lease_mid_write_has_its_files_rewritten(origins: Origins, segment_files, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """a stalls past PUBLISH_LEASE between its fence and its writes; b publishes newer meanwhile; a's old files
    land last (a store without conditional overwrite allows it), so a marks the row unpublished and rewrites them."""
    a, b, clock = origins.a, origins.b, origins.clock
    vid = vod_video(a, segment_files[0])
    stop = Stop(monkeypatch, "_renew")
    rename(a, vid, "two")
    holder, wrote = in_thread(lambda: publish(a, vid))
    stop.wait()
    clock.advance(LEASE + 1)
    rename(b, vid, "three")
    lost = publishes("lost")
    assert publish(b, vid) is True and shown(a, vid) == "three"  # the expired lease is b's
    stop.go()
    holder.join(60)
    assert wrote == [True] and publishes("lost") == lost + 1
    assert shown(a, vid) == "three" and current(a, vid)


def test_a_holder_whose_lease_expired_before_it_wrote_writes_nothing(origins: Origins, segment_files, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """a stalls past PUBLISH_LEASE after its snapshot; b takes the expired lease and publishes newer; a's fence
    (the renewal right before writing) fails, and a writes nothing."""
    a, b, clock = origins.a, origins.b, origins.clock
    vid = vod_video(a, segment_files[0])
    stop = Stop(monkeypatch, "snapshot")
    rename(a, vid, "two")
    holder, wrote = in_thread(lambda: publish(a, vid))
    stop.wait()
    clock.advance(LEASE + 1)
    rename(b, vid, "three")
    assert publish(b, vid) is True and shown(a, vid) == "three"
    written = (tree(a).video_dir(vid) / "manifest.mpd").stat().st_ino  # each write is a new file renamed in place
    stop.go()
    holder.join(60)
    assert wrote == [False]
    assert (tree(a).video_dir(vid) / "manifest.mpd").stat().st_ino == written
    assert shown(a, vid) == "three" and current(a, vid)


@pytest.mark.parametrize("step", ["snapshot", "_renew"])
def test_a_video_deleted_while_its_publisher_holds_the_lease_leaves_no_files(
    origins: Origins, segment_files, monkeypatch, step
) -> None:  # type: ignore[no-untyped-def]
    """Deleted before the holder's fence: it writes nothing. After it: it writes, finds no row, removes the files."""
    a, b = origins.a, origins.b
    vid = vod_video(a, segment_files[0])
    stop = Stop(monkeypatch, step)
    rename(a, vid, "two")
    holder, _ = in_thread(lambda: publish(a, vid))
    stop.wait()
    with b.sessions() as session:
        ingest.delete_video(b, session, vid, by="test")
    assert not tree(a).video_dir(vid).exists()
    stop.go()
    holder.join(60)
    assert not tree(a).video_dir(vid).exists()
    assert row(a, vid) is None


def test_the_lease_is_released_when_writing_fails(origins: Origins, segment_files, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A full disk: the publish fails and frees the lease, so the reaper's next pass need not wait PUBLISH_LEASE."""
    a, b = origins.a, origins.b
    vid = vod_video(a, segment_files[0])
    rename(a, vid, "two")

    def disk_full(*args: object, **kwargs: object) -> None:
        raise InsufficientStorage("the server's disk is full; nothing was stored")

    monkeypatch.setattr(a.media, "put_many", disk_full)
    assert publish(a, vid) is False
    video = row(a, vid)
    assert video is not None and video.publishing_by is None and video.publishing_until is None
    monkeypatch.undo()
    reaper.reap(b)
    assert shown(a, vid) == "two" and current(a, vid)
