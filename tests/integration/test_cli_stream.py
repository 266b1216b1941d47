"""The operator CLI on real services: `stream` over HTTP to a served app with a worker, to VOD; the database commands.

`stream` runs as the operator runs it (`python -m server.cli`, a subprocess); the database commands run
in-process through `cli.main` with the stack's settings in the environment.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import socket
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from sqlalchemy import select

from server import cli
from server.infra.models import Admin, AdminSession, Event, Segment, SegmentRendition, SegmentState, Video
from server.ops import phone, reaper
from tests.harness.media import make_segment
from tests.harness.services import ROOT
from tests.harness.stack import Stack


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """10 s recordings: keyframes every second (cut with -c copy) and one every 10 s (re-encoded)."""
    folder = tmp_path_factory.mktemp("cli-sources")
    copy = make_segment(folder / "camera.mp4", seconds=10.0, size="640x360")
    sparse = folder / "sparse.mp4"
    argv = ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30:duration=10"]
    argv += [
        "-f",
        "lavfi",
        "-i",
        "sine=duration=10",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-g",
        "300",
        "-c:a",
        "aac",
        str(sparse),
    ]
    subprocess.run(argv, check=True)
    return {"copy": copy, "sparse": sparse}


def stream(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}  # stream talks HTTP only
    argv = [sys.executable, "-m", "server.cli", "stream", *args]
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, timeout=timeout, check=False)
    # decoded by hand: text mode would turn the progress bar's \r into newlines
    return subprocess.CompletedProcess(argv, done.returncode, done.stdout.decode(), done.stderr.decode())


def test_stream_fast_reaches_vod_and_ends_with_the_urls(stack: Stack, sources: dict[str, Path], tmp_path: Path) -> None:
    base = stack.serve()
    stack.start_workers(1, tmp_path / "worker.log")
    done = stream(str(sources["copy"]), "--fast", "--server", base, "--title", "cli")
    assert done.returncode == 0, done.stderr
    last = done.stdout.strip().splitlines()[-1]
    found = re.fullmatch(r"video (\d+) \(4 segments\): MPD (\S+)  HLS (\S+)  Android (\S+)", last)
    assert found, last
    video_id = int(found[1])
    assert found.groups()[1:] == (
        f"{base}/video_files/{video_id}/manifest.mpd",
        f"{base}/video_files/{video_id}/master.m3u8",
        f"{base}/live_mpd/{video_id}.mpd",
    )
    assert "4 segments (copied), 4 uploads as fast as possible" in done.stderr
    assert "\r[##############################] 4/4 segments  4 uploads" in done.stderr
    video = stack.wait_vod(video_id)
    assert (video.title, video.segment_count, sorted(s.segment_id for s in video.segments)) == ("cli", 4, [0, 1, 2, 3])
    for url in found.groups()[1:]:
        assert requests.get(url, timeout=10).status_code == 200, url


def test_shuffled_and_duplicated_uploads_still_reach_vod_with_every_segment_once(
    stack: Stack, sources: dict[str, Path], tmp_path: Path
) -> None:
    base = stack.serve()
    stack.start_workers(1, tmp_path / "worker.log")
    done = stream(str(sources["sparse"]), "--fast", "--server", base, "--shuffle", "--duplicate", "1", "--seed", "5", "--json")
    assert done.returncode == 0, done.stderr
    answer = cli.json.loads(done.stdout)
    assert (answer["segments"], answer["uploads"], answer["copied"]) == (4, 8, False)  # keyframes 10 s apart: re-encoded
    video = stack.wait_vod(answer["video_id"])
    segments = sorted(video.segments, key=lambda s: s.id)  # row order = first-upload order
    expected = phone.upload_plan(4, shuffle=True, duplicate=1.0, rng=random.Random(5))
    assert [s.segment_id for s in segments] == list(dict.fromkeys(expected))
    assert [s.duplicates for s in segments] == [1, 1, 1, 1]
    assert all(s.status is SegmentState.PACKAGED for s in segments)


@pytest.mark.parametrize(
    ("source", "server", "message"),
    [
        ("ftp://127.0.0.1/v.mp4", None, "error: unsupported URL scheme 'ftp': only http and https are read"),
        ("/nonexistent/v.mp4", None, "error: no such file: /nonexistent/v.mp4"),
        ("copy", "closed", "error: could not reach the server at http://127.0.0.1:{port}: [Errno 111] Connection refused"),
    ],
)
def test_stream_errors_are_one_line_and_exit_1(sources: dict[str, Path], source: str, server: str | None, message: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    argv = [str(sources.get(source, source)), "--retries", "1", "--server", f"http://127.0.0.1:{port}"]
    done = stream(*argv, timeout=30)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.splitlines() == [message.format(port=port) + (" (after 2 tries)" if server else "")]


# -- the database commands ----------------------------------------------------------------------------


@pytest.fixture
def run(stack: Stack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    """Run `python -m server.cli ARGS` in-process on the stack's database; return (exit code, stdout, stderr)."""
    for name, value in stack.config.to_env().items():
        monkeypatch.setenv(name, value)

    def call(*argv: str) -> tuple[int, str, str]:
        code = cli.main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return call


def failed_segment(stack: Stack, video_id: int, segment_id: int) -> None:
    """A segment row whose encodes all failed (the state `retry` starts over), as the admin API tests make one."""
    with stack.services.sessions() as db:
        video = db.get(Video, video_id)
        assert video is not None
        now = stack.services.clock.now()
        segment = Segment(
            video_id=video_id,
            segment_id=segment_id,
            original_extension="mp4",
            size=1000,
            sha256=hashlib.sha256(b"x").hexdigest(),
            duration_ms=3000,
            uploaded_at=now,
            status=SegmentState.FAILED,
            attempts=3,
            failed_at=now,
            error="ffmpeg exited with 1",
        )
        segment.renditions = [SegmentRendition(rendition_id=r.id, status=SegmentState.FAILED) for r in video.renditions]
        db.add(segment)
        db.commit()


def test_videos_segments_workers_retry_end_on_a_real_database(stack: Stack, sources: dict[str, Path], run) -> None:  # type: ignore[no-untyped-def]
    live = stack.new_video("live one")
    stack.upload(live, 0, make_segment(Path(stack.config.MEDIA_ROOT).parent / "s0.mp4").read_bytes())
    broken = stack.new_video("broken")
    failed_segment(stack, broken, 0)

    code, out, _ = run("videos")
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ["ID", "TYPE", "STATUS", "SEGMENTS", "FAILED", "DURATION", "CREATED", "TITLE"]
    assert lines[1].split()[:5] == [str(broken), "LIVE", "EMPTY", "live", "1"] and lines[1].endswith("broken")
    assert lines[2].split()[:5] == [str(live), "LIVE", "UPLOADING", "live", "0"] and lines[2].endswith("live one")
    code, out, _ = run("videos", "--filter", "failed", "--json")
    assert code == 0 and [v["id"] for v in cli.json.loads(out)] == [broken]

    code, out, _ = run("segments", str(live))
    assert code == 0 and out.splitlines()[1].split()[:2] == ["SEG", "STATE"] and out.splitlines()[2].startswith("0 ")
    code, out, _ = run("segments", str(live), "--json")
    assert code == 0 and [s["segment_id"] for s in cli.json.loads(out)["segments"]] == [0]

    code, out, _ = run("workers", "--json")
    assert code == 0 and cli.json.loads(out)["workers"] == []

    code, out, _ = run("retry", str(broken))
    assert (code, out) == (0, f"video {broken}: 1 failed segment(s) retried: [0]\n")
    assert stack.segment(broken, 0).status in (SegmentState.RECEIVED, SegmentState.QUEUED)  # no worker runs here
    assert run("retry", str(broken), "--json")[:2] == (0, cli.json.dumps({"video_id": broken, "retried": []}, indent=2) + "\n")

    code, out, _ = run("end", str(live))
    assert code == 0 and out.startswith(f"video {live}: ended at segment 0; now ")
    assert stack.video(live).last_segment_id == 0  # type: ignore[union-attr]
    assert run("end", str(live)) == (1, "", f"error: video {live} is not live (it is LIVE, or already ended)\n")
    assert run("segments", "424242") == (1, "", "error: video 424242 does not exist\n")


def test_purge_lists_then_removes_orphaned_files_and_rows(stack: Stack, run) -> None:  # type: ignore[no-untyped-def]
    kept = stack.new_video("kept")
    media = Path(stack.config.MEDIA_ROOT) / "videos"
    old = (1_000_000_000, 1_000_000_000)
    orphan = media / "999999" / "HIGH" / "000000.mp4"  # a video's media whose row is gone
    staging = media / str(kept) / "attempts" / "424242" / "HIGH.mp4"  # an attempt that is not running
    temp = media / str(kept) / "originals" / ".000000.mp4.tmp"  # a dead writer's temp file
    for path in (orphan, staging, temp):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half")
    os.utime(temp, old)
    now = stack.services.clock.now()
    with stack.services.sessions() as db:
        admin = Admin(name="purger", password_hash="x")
        db.add(admin)
        db.flush()
        past = now - timedelta(days=30)
        db.add(AdminSession(id="a" * 64, admin_id=admin.id, csrf_token="c", created_at=past, last_seen_at=past, expires_at=past))
        db.add(Event(at=now - timedelta(seconds=stack.config.EVENT_RETENTION + 60), kind="video.created", video_id=kept))
        db.commit()

    code, out, _ = run("purge")
    assert code == 0
    assert out.splitlines() == [
        "would remove 1 orphan videos' media",
        "  videos/999999/",
        "would remove 1 staged outputs",
        f"  videos/{kept}/attempts/424242/",
        "would remove 1 temp files",
        f"  {temp}",
        "would remove 1 expired admin sessions",
        "would remove 1 events past retention",
        "dry run: nothing was removed; run again with --yes to remove it",
    ]
    assert orphan.exists() and staging.exists() and temp.exists()

    code, out, _ = run("purge", "--yes", "--json")
    answer = cli.json.loads(out)
    assert code == 0 and answer["removed"] is True
    assert answer["rows"] == {"expired admin sessions": 1, "events past retention": 1}
    assert not orphan.exists() and not staging.exists() and not temp.exists()
    assert (media / str(kept)).exists()
    with stack.services.sessions() as db:
        assert db.scalars(select(AdminSession)).all() == []
        assert stack.video(kept) is not None
    assert run("purge")[1].splitlines()[-1] == "would remove 0 events past retention"


def test_the_reaper_sweeps_staging_and_temp_files_by_the_same_rules(stack: Stack) -> None:
    kept = stack.new_video("kept")
    media = Path(stack.config.MEDIA_ROOT) / "videos"
    staging, temp = media / str(kept) / "attempts" / "7" / "HIGH.mp4", media / str(kept) / ".x.tmp"
    orphan = media / "999999" / "HIGH" / "000000.mp4"
    for path in (staging, temp, orphan):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half")
    os.utime(temp, (1_000_000_000, 1_000_000_000))
    reaper.reap(stack.services)
    assert not staging.exists() and not temp.exists()  # attempt 7 is not running; the temp file is old
    assert orphan.exists()  # an orphaned video's media is the operator's `purge`, never the reaper's
