"""Upload -> gearmand -> segment_processor -> ffmpeg -> files, and every fault on the way."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

from server.core.jobs import TRANSCODE_SEGMENT, SegmentJob
from server.infra.models import AttemptOutcome, SegmentState
from tests.harness.media import box_types, decode_times, make_segment
from tests.harness.tree import tree


def ffprobe(path: Path) -> dict:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", str(path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out)


def _streams(path: Path) -> dict[str, dict]:
    return {s["codec_type"]: s for s in ffprobe(path)["streams"]}


def test_segments_become_renditions_fragments_ts_thumbnails_and_storyboard(stack, segment_files, tmp_path):
    stack.start_worker(tmp_path / "worker.log")
    vid = stack.new_video()
    for k in (1, 3, 0, 2):  # out of order
        stack.upload(vid, k, segment_files[k].read_bytes())
    stack.end(vid, 3)
    video = stack.wait_vod(vid)
    assert video.status.value == "OK"
    media = tree(stack.services)
    sizes = {"HIGH": (720, 480), "MEDIUM": (480, 320), "LOW": (240, 160)}
    for k in range(4):
        segment = stack.segment(vid, k)
        assert segment.status.encoded and segment.attempts == 1
        for name, (w, h) in sizes.items():
            mp4 = media.file(vid, name, k, "mp4")
            streams = _streams(mp4)
            assert (streams["video"]["codec_name"], streams["audio"]["codec_name"]) == ("h264", "aac")
            assert (streams["video"]["width"], streams["video"]["height"]) == (w, h)
            assert abs(float(streams["video"]["duration"]) - segment.duration_ms / 1000) < 0.05
            assert box_types(mp4.read_bytes())[:3] == ["ftyp", "moov", "free"] or box_types(mp4.read_bytes()).index(
                "moov"
            ) < box_types(mp4.read_bytes()).index("mdat")
            ts = _streams(media.file(vid, name, k, "ts"))
            assert set(ts) == {"video", "audio"}
    # CMAF: each fragment's tfdt is where the previous one ended, on actual durations.
    starts = [stack.segment(vid, k).start_ticks for k in range(4)]
    durations = [stack.segment(vid, k).duration_ticks for k in range(4)]
    assert starts[0] == 0
    for k in range(1, 4):
        assert starts[k] == starts[k - 1] + durations[k - 1]
    for name in sizes:
        assert [decode_times(media.file(vid, name, k, "m4s").read_bytes())[0] for k in range(4)] == starts
    # init + fragments concatenate into one stream that decodes cleanly with the summed duration.
    joined = tmp_path / "joined.mp4"
    joined.write_bytes(
        b"".join(
            [(media.rendition_dir(vid, "LOW") / "init.mp4").read_bytes()]
            + [media.file(vid, "LOW", k, "m4s").read_bytes() for k in range(4)]
        )
    )
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(joined), "-f", "null", "-"], check=True)
    assert abs(float(ffprobe(joined)["format"]["duration"]) - sum(durations) / 90000) < 0.1
    # Thumbnails: the middle segment's is the VOD's; storyboard strips exist per segment.
    assert video.thumbnail_segment_id in (1, 2)
    thumb = _streams(media.file(vid, "thumbnails", video.thumbnail_segment_id, "jpg"))["video"]
    assert thumb["codec_name"] == "mjpeg" and thumb["width"] == 320
    assert all(media.file(vid, "storyboard", k, "jpg").stat().st_size > 0 for k in range(4))
    assert media.media.objects.list(f"videos/{vid}/originals/") == []  # deleted once their renditions exist
    assert media.temp_files() == []


def test_a_worker_killed_mid_encode_is_replaced_and_the_segment_completes(stack, tmp_path):
    long = make_segment(tmp_path / "long.mp4", seconds=12, size="1280x720")
    vid = stack.new_video()
    victim = stack.start_worker(tmp_path / "victim.log")
    stack.upload(vid, 0, long.read_bytes())
    stack.wait(
        lambda: (stack.attempts(vid, 0) or [None])[0] is not None and stack.attempts(vid, 0)[0].progress > 0, 30, "progress"
    )
    os.kill(victim.pid, signal.SIGKILL)  # inside ffmpeg: it has reported progress
    victim.wait()
    stack.start_worker(tmp_path / "rescuer.log")
    # Its lease runs out (LEASE_SECONDS), the reaper takes the attempt back and the rescuer encodes it.
    stack.wait(lambda: stack.segment(vid, 0).packaged_at is not None, 90, "segment packaged after kill -9")
    assert stack.segment(vid, 0).status is SegmentState.PACKAGED
    assert stack.segment(vid, 0).attempts == 2
    assert [a.outcome for a in stack.attempts(vid, 0)] == [AttemptOutcome.EXPIRED, AttemptOutcome.OK]
    assert tree(stack.services).temp_files() == [] and tree(stack.services).attempt_dirs() == []


def test_gearmand_restarted_with_an_empty_queue_converges(stack, segment_files, tmp_path):
    vid = stack.new_video()
    stack.upload(vid, 0, segment_files[0].read_bytes())  # queued, no worker yet
    stack.gearmand.stop()
    stack.upload(vid, 1, segment_files[1].read_bytes())  # gearmand down: still a 201
    assert stack.segment(vid, 1).queued_at is None
    stack.gearmand.start()  # same port, empty queue: segment 0's job is lost
    stack.start_worker(tmp_path / "worker.log")
    stack.end(vid, 1)
    stack.wait_vod(vid, timeout=90)
    assert [stack.segment(vid, k).status for k in (0, 1)] == [SegmentState.PACKAGED] * 2


def test_a_corrupt_segment_ends_in_error_while_its_neighbours_succeed(stack, segment_files, tmp_path):
    vid = stack.new_video()
    for k in range(3):
        stack.upload(vid, k, segment_files[k].read_bytes())
    # The stored original rots on disk before any worker reads it.
    original = tree(stack.services).original(vid, 1, "mp4")
    original.write_bytes(original.read_bytes()[:4096] + os.urandom(200_000))
    stack.start_worker(tmp_path / "worker.log")
    stack.end(vid, 2)
    video = stack.wait_vod(vid, timeout=90)
    bad = stack.segment(vid, 1)
    assert bad.status is SegmentState.FAILED
    # Rejected by the probe (no retry: it fails the same way every time) or by ffmpeg mid-decode
    # (retried with backoff, as a crash might be transient), then ERROR with the reason kept.
    unprocessable = "UnprocessableMedia" in bad.error and bad.attempts == 1
    undecodable = "FFmpegError" in bad.error and bad.attempts == stack.config.JOB_MAX_ATTEMPTS
    assert unprocessable or undecodable, (bad.attempts, bad.error)
    assert len(bad.error) > 30
    assert [stack.segment(vid, k).status for k in (0, 2)] == [SegmentState.PACKAGED] * 2
    assert video.status.value == "OK"
    assert sorted(p.name for p in original.parent.iterdir()) == ["000001.mp4"]  # kept for diagnosis
    legacy = stack.client.get(f"/video_segment/{vid}/1").json
    assert legacy["status"] == "ERROR" and legacy["repr_1_status"] == "ERROR"


def test_the_same_job_twice_is_harmless(stack, segment_files, tmp_path):
    vid = stack.new_video()
    stack.upload(vid, 0, segment_files[0].read_bytes())
    job = SegmentJob(vid, 0)
    # Delivered twice at once, to two workers: both may encode; the outputs are the same either way.
    stack.services.queue.submit(TRANSCODE_SEGMENT, job.encode(), unique="dup-" + job.unique)
    stack.start_worker(tmp_path / "w1.log")
    stack.start_worker(tmp_path / "w2.log")
    stack.wait(lambda: stack.segment(vid, 0).packaged_at is not None, 60, "packaged")
    stack.wait(lambda: _outcomes(tmp_path, vid) >= 2, 30, "both deliveries handled")
    first = stack.segment(vid, 0)
    # The attempt rows decide: one delivery claimed it, the other found it leased or done.
    assert first.status is SegmentState.PACKAGED and first.attempts == 1
    assert [a.outcome for a in stack.attempts(vid, 0)] == [AttemptOutcome.OK]
    assert _outcomes(tmp_path, vid, "ok in") == 1
    m4s = tree(stack.services).file(vid, "HIGH", 0, "m4s")
    before = (m4s.stat().st_mtime_ns, m4s.read_bytes())
    # Delivered again after it finished: nothing is redone.
    stack.services.queue.submit(TRANSCODE_SEGMENT, job.encode(), unique="again-" + job.unique)
    stack.wait(lambda: _outcomes(tmp_path, vid) >= 3, 30, "the third delivery handled")
    assert _outcomes(tmp_path, vid, "skipped (packaged)") == 1
    assert stack.segment(vid, 0).attempts == first.attempts
    assert (m4s.stat().st_mtime_ns, m4s.read_bytes()) == before
    assert len(stack.client.get(f"/video_segment/{vid}").json) == 1
    assert tree(stack.services).temp_files() == []


def _outcomes(tmp_path, vid, what: str = "") -> int:
    """How many deliveries of segment 0 the workers' logs report as handled (`what`: of one outcome)."""
    logs = [p.read_text() for p in tmp_path.glob("w*.log")]
    return sum(log.count(f"video {vid} segment 0: {what}") for log in logs)


def test_transient_failures_retry_with_backoff_then_error(make_config, gearmand, tmp_path):
    from tests.harness.stack import Stack

    # An ffmpeg timeout is a transient failure: retried JOB_MAX_ATTEMPTS times, then ERROR with the reason.
    stack = Stack(
        make_config(
            GEARMAN_SERVERS=(gearmand.address,),
            REAPER_INTERVAL=0.3,
            RETRY_BACKOFF=0.2,
            JOB_MAX_ATTEMPTS=3,
            FFMPEG_TIMEOUT=0.2,
            PROCESSING_DEADLINE=20.0,
        ),
        gearmand,
    )
    try:
        vid = stack.new_video()
        stack.upload(vid, 0, make_segment(tmp_path / "s.mp4", seconds=6).read_bytes())
        stack.start_worker(tmp_path / "worker.log")
        stack.wait(lambda: stack.segment(vid, 0).status is SegmentState.FAILED, 60, "ERROR after retries")
        failed = stack.segment(vid, 0)
        assert failed.attempts == 3
        assert "timed out" in failed.error
        assert failed.retry_at is not None and failed.failed_at is not None
        assert tree(stack.services).temp_files() == []
    finally:
        stack.close()


def test_a_video_deleted_while_transcoding_leaves_nothing(stack, tmp_path, admin_auth):
    long = make_segment(tmp_path / "long.mp4", seconds=9, size="1280x720")
    vid = stack.new_video()
    stack.upload(vid, 0, long.read_bytes())
    stack.start_worker(tmp_path / "worker.log")
    stack.wait(lambda: stack.segment(vid, 0).status is SegmentState.RUNNING, 30, "PROCESSING")
    assert stack.client.delete(f"/video/{vid}", headers=admin_auth).status_code == 204
    # Its next heartbeat (or its completion) finds the attempt gone: ffmpeg is stopped, its files deleted.
    stack.wait(lambda: "segment 0: abandoned" in (tmp_path / "worker.log").read_text(), 60, "the encode abandoned")
    assert not tree(stack.services).video_dir(vid).exists()


def test_sigterm_finishes_the_current_job_then_exits(stack, tmp_path):
    long = make_segment(tmp_path / "long.mp4", seconds=9, size="1280x720")
    vid = stack.new_video()
    worker = stack.start_worker(tmp_path / "worker.log")
    stack.upload(vid, 0, long.read_bytes())
    stack.wait(lambda: stack.segment(vid, 0).status is SegmentState.RUNNING, 30, "PROCESSING")
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == 0
    assert stack.segment(vid, 0).status.encoded
    log = (tmp_path / "worker.log").read_text()
    assert "segment 0: ok" in log and "stopped" in log


def test_one_worker_process_runs_worker_concurrency_jobs_at_once(stack, tmp_path):
    long = make_segment(tmp_path / "long.mp4", seconds=9, size="1280x720").read_bytes()
    vid = stack.new_video()
    stack.upload(vid, 0, long)
    stack.upload(vid, 1, long)
    stack.start_worker(tmp_path / "worker.log", concurrency=2)
    both = lambda: all(stack.segment(vid, k).status is SegmentState.RUNNING for k in (0, 1))  # noqa: E731
    stack.wait(both, 30, "both segments PROCESSING at the same time")
    stack.wait(lambda: all(stack.segment(vid, k).status.encoded for k in (0, 1)), 90, "both OK")
