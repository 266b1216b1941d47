"""memcached or MySQL going away and a full disk under a running stack: answers stay right, every segment lands."""

from __future__ import annotations

from sqlalchemy import create_engine, text

from server.infra.models import SegmentState
from server.web.answers import current_revision
from tests.harness.media import make_segment
from tests.harness.services import MYSQL_BASE, Memcached, fill_disk
from tests.harness.stack import Stack
from tests.harness.tree import tree


def _packaged(stack: Stack, video_id: int, segment_id: int) -> bool:
    return stack.segment(video_id, segment_id).packaged_at is not None


def _cache_key(stack: Stack, video_id: int) -> str:
    with stack.services.sessions() as session:
        return f"pl:{video_id}:{current_revision(session, video_id)}:android:None"


def test_memcached_restarted_is_a_miss_never_an_error(make_config, gearmand, segment_files, tmp_path, admin_auth):
    memcached = Memcached().start()
    stack = Stack(make_config(GEARMAN_SERVERS=(gearmand.address,), MEMCACHED_SERVERS=(memcached.address,)), gearmand)
    try:
        stack.start_worker(tmp_path / "worker.log")
        vid = stack.new_video()
        url = f"/live_mpd/{vid}.mpd"  # the one playlist the app renders (the others are files)
        stack.upload(vid, 0, segment_files[0].read_bytes())
        stack.wait(lambda: _packaged(stack, vid, 0), 60, "segment 0 packaged")
        cached = stack.client.get(url)
        assert cached.status_code == 200 and stack.services.cache.get(_cache_key(stack, vid)) is not None

        assert stack.client.get("/status.json", headers=admin_auth).json["cache"] == {"kind": "memcached", "ok": True}

        memcached.stop()
        assert stack.client.get("/status.json", headers=admin_auth).json["cache"] == {"kind": "memcached", "ok": False}
        down = stack.client.get(url)
        assert (down.status_code, down.data) == (200, cached.data)
        stack.upload(vid, 1, segment_files[1].read_bytes())  # the worker's cache writes fail too
        stack.wait(lambda: _packaged(stack, vid, 1), 60, "segment 1 packaged while memcached is down")
        assert stack.client.get(url).data.count(b"<SegmentURL") == 6  # the new revision, computed without a cache

        memcached.start()  # same port, empty: after the client's dead_timeout it is used again
        key = _cache_key(stack, vid)
        stack.wait(lambda: stack.client.get(url).status_code == 200 and stack.services.cache.get(key), 15, "cached again")
        assert stack.services.cache.get(key).count(b"000001.mp4") == 3  # the entry holds the new playlist
    finally:
        stack.close()
        memcached.stop()


def _drop_connections(database_url: str) -> int:
    """Kill every connection to the test database, as a MySQL restart would (ours comes from elsewhere)."""
    name = database_url.rsplit("/", 1)[1]
    engine = create_engine(MYSQL_BASE)
    try:
        with engine.connect() as conn:
            ids = conn.scalars(text("SELECT id FROM information_schema.processlist WHERE db = :db"), {"db": name}).all()
            for connection_id in ids:
                conn.execute(text(f"KILL CONNECTION {int(connection_id)}"))
        return len(ids)
    finally:
        engine.dispose()


def test_mysql_connections_dropped_mid_encode_lose_nothing(stack, segment_files, tmp_path):
    long = make_segment(tmp_path / "long.mp4", seconds=9, size="1280x720")
    stack.start_worker(tmp_path / "worker.log")
    vid = stack.new_video()
    stack.upload(vid, 0, segment_files[0].read_bytes())
    stack.wait(lambda: _packaged(stack, vid, 0), 60, "segment 0 packaged")
    stack.upload(vid, 1, long.read_bytes())
    stack.wait(lambda: stack.segment(vid, 1).status is SegmentState.RUNNING, 30, "segment 1 PROCESSING")

    # Every pooled connection dies while ffmpeg runs: the app's, the worker's and its reaper's.
    assert _drop_connections(stack.config.DATABASE_URL) >= 2

    stack.upload(vid, 2, segment_files[2].read_bytes())  # the app reconnects
    stack.end(vid, 2)
    stack.wait_vod(vid, timeout=120)
    segments = [stack.segment(vid, k) for k in range(3)]
    assert [s.status for s in segments] == [SegmentState.PACKAGED] * 3
    assert segments[1].attempts == 1  # the encode in flight was recorded, not redone
    assert all(s.packaged_at is not None for s in segments)
    assert tree(stack.services).temp_files() == []


def test_a_full_disk_delays_a_segment_but_never_fails_it(make_config, gearmand, make_tmpfs, segment_files, tmp_path):
    disk = make_tmpfs("24m")  # room for a segment and all its outputs, once the filler is gone
    config = make_config(
        GEARMAN_SERVERS=(gearmand.address,), MEDIA_ROOT=disk, REAPER_INTERVAL=0.3, RETRY_BACKOFF=0.1, JOB_MAX_ATTEMPTS=2
    )
    stack = Stack(config, gearmand)
    log = tmp_path / "worker.log"
    try:
        vid = stack.new_video()
        stack.upload(vid, 0, segment_files[0].read_bytes())
        stack.end(vid, 0)
        filler = fill_disk(disk)
        stack.start_worker(log)
        # Far more failed runs than JOB_MAX_ATTEMPTS allows for a broken segment, and it is still waiting.
        stack.wait(lambda: log.read_text().count("disk full") >= 4, 60, "four disk-full retries")
        waiting = stack.segment(vid, 0)
        assert waiting.status is not SegmentState.FAILED and waiting.attempts <= 1
        assert "No space left on device" in waiting.error
        assert tree(stack.services).temp_files() == []  # each failed run removed its partial outputs

        filler.unlink()  # the operator frees space: the segment lands without anyone re-submitting it
        stack.wait_vod(vid, timeout=60)
        done = stack.segment(vid, 0)
        assert done.status.encoded and done.packaged_at is not None and done.error is None
        assert tree(stack.services).temp_files() == []
    finally:
        stack.close()
