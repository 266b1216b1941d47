"""`python -m server.cli media migrate` on Ceph's RADOS Gateway (scripts/services.sh), run as an operator runs it.

A tree the real pipeline made (MariaDB, a worker subprocess), and trees made by hand from ffmpeg-made files
(SQLite): every object lands with the file's SHA-256, a second run copies nothing, a run killed mid-way
resumes, a different object at a key is a conflict (exit 1, left alone), temp files and attempts' staging
folders stay out, and a deployment not on S3 or a bucket out of reach is refused (exit 2).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from server import cli
from server.config import Config
from server.store.s3 import S3Objects
from tests.harness import s3
from tests.harness.services import ROOT
from tests.harness.stack import Stack

SUMMARY = re.compile(r"copied (\d+), already there (\d+), conflicts (\d+)")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def kept_files(root: Path) -> dict[str, Path]:
    """The oracle: every file under videos/ but attempts' staging folders and dot-named ones, by key."""
    found = {}
    for path in (root / "videos").rglob("*"):
        parts = path.relative_to(root).parts
        if path.is_file() and parts[2] != "attempts" and not any(p.startswith(".") for p in parts):
            found["/".join(parts)] = path
    return found


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    cli.db_upgrade(Config.from_env(DATABASE_URL=url))
    return url


@pytest.fixture
def bucket_env(s3_bucket: str) -> dict[str, str]:
    """MEDIA_STORE=s3 on the test bucket, under a prefix of the test's own."""
    return {
        "MEDIA_STORE": "s3",
        "S3_ENDPOINT_URL": s3.ENDPOINT,
        "S3_BUCKET": s3_bucket,
        "S3_PREFIX": f"m{uuid.uuid4().hex[:8]}",
        "S3_MAX_ATTEMPTS": "2",
        "AWS_ACCESS_KEY_ID": s3.ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": s3.SECRET_KEY,
    }


def bucket(env: dict[str, str]) -> S3Objects:
    return s3.s3_objects(env["S3_BUCKET"], prefix=env["S3_PREFIX"])


def cli_env(env: dict[str, str], media_root: Path, database_url: str) -> dict[str, str]:
    return {**os.environ, **env, "MEDIA_ROOT": str(media_root), "DATABASE_URL": database_url, "GEARMAN_SERVERS": ""}


def migrate(env: dict[str, str], media_root: Path, database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "server.cli", "media", "migrate", *args]
    done = subprocess.run(argv, cwd=ROOT, env=cli_env(env, media_root, database_url), capture_output=True, timeout=300)
    return subprocess.CompletedProcess(argv, done.returncode, done.stdout.decode(), done.stderr.decode())


def summary(done: subprocess.CompletedProcess[str]) -> tuple[int, int, int]:
    found = SUMMARY.search(done.stdout.strip().splitlines()[-1])
    assert found, done.stdout + done.stderr
    return int(found[1]), int(found[2]), int(found[3])


def assert_all_there(env: dict[str, str], root: Path) -> None:
    """The bucket holds exactly the kept files, each with its SHA-256 (hashed from the bytes it sends back)."""
    objects, kept = bucket(env), kept_files(root)
    assert objects.list() == sorted(kept)
    for key, path in kept.items():
        assert hashlib.sha256(objects.get(key)).hexdigest() == sha256(path), key
        assert objects.head(key).sha256 == sha256(path), key


def hand_made_tree(root: Path, segment_files: list[Path], videos: int, per_video: int) -> None:
    """Trees like the pipeline's, of ffmpeg-made files, plus what must stay out: temp files and staging folders."""
    for vid in range(1, videos + 1):
        folder = root / "videos" / str(vid)
        for n in range(per_video):
            source = segment_files[n % len(segment_files)]
            for place in (folder / "originals" / f"{n:06d}.mp4", folder / "HIGH" / f"{n:06d}.mp4"):
                place.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, place)
        (folder / "manifest.mpd").write_text(f"<MPD video='{vid}'/>")
        (folder / "HIGH" / ".000009.mp4.tmp-1a2b3c4d").write_bytes(b"half a file")
        (folder / "originals" / ".upload-0a1b2c3d4e5f").write_bytes(b"an upload in progress")
        staging = folder / "attempts" / "17"
        staging.mkdir(parents=True)
        (staging / "HIGH.mp4").write_bytes(b"staged")


def test_a_tree_the_pipeline_made_is_copied_whole_and_a_second_run_copies_nothing(stack_keep, bucket_env, segment_files):
    stack = stack_keep
    stack.start_workers(1, stack.config.MEDIA_ROOT.parent / "worker.log")
    video_id = stack.new_video()
    for n, path in enumerate(segment_files[:2]):
        stack.upload(video_id, n, path.read_bytes())
    stack.end(video_id, 1)
    stack.wait_vod(video_id)
    stack.stop_workers()
    root = stack.config.MEDIA_ROOT
    staging = root / "videos" / str(video_id) / "attempts" / "999"  # a running attempt's outputs
    staging.mkdir(parents=True)
    (staging / "000000.mp4").write_bytes(b"staged")
    (root / "videos" / str(video_id) / ".manifest.mpd.tmp-00000000").write_bytes(b"a writer died here")
    kept = kept_files(root)
    names = {key.rsplit("/", 1)[-1] for key in kept}
    for wanted in ("000000.m4s", "init.mp4", "manifest.mpd", "master.m3u8", "000000.jpg"):
        assert wanted in names, sorted(names)
    assert any(key.split("/")[2] == "originals" for key in kept), sorted(kept)

    first = migrate(bucket_env, root, stack.config.DATABASE_URL)
    assert first.returncode == 0, first.stderr
    assert summary(first) == (len(kept), 0, 0)
    assert "1 attempt staging folder(s) (videos/*/attempts/ is never copied); 1 temp (dot) file(s)" in first.stderr
    assert re.search(rf"^{len(kept)}/{len(kept)} files  .+/s  ETA ", first.stderr, re.M), first.stderr
    assert_all_there(bucket_env, root)

    again = migrate(bucket_env, root, stack.config.DATABASE_URL)
    assert again.returncode == 0, again.stderr
    assert summary(again) == (0, len(kept), 0)
    assert_all_there(bucket_env, root)


@pytest.fixture
def stack_keep(make_config, gearmand):  # type: ignore[no-untyped-def]
    """The pipeline on MariaDB with a worker subprocess, keeping the originals (they are copied too)."""
    config = make_config(GEARMAN_SERVERS=(gearmand.address,), KEEP_ORIGINALS=True, FFMPEG_TIMEOUT=60.0)
    s = Stack(config, gearmand)
    yield s
    s.close()


def test_a_run_killed_mid_way_resumes_where_it_stopped(tmp_path, sqlite_url, bucket_env, segment_files):
    root = tmp_path / "media"
    hand_made_tree(root, segment_files, videos=6, per_video=5)
    total = len(kept_files(root))
    argv = [sys.executable, "-m", "server.cli", "media", "migrate"]
    env = cli_env(bucket_env, root, sqlite_url)
    with subprocess.Popen(argv, cwd=ROOT, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL) as proc:
        try:
            assert proc.stderr is not None
            for raw in proc.stderr:  # the first progress line comes right after the first file
                if re.match(rb"\d+/\d+ files", raw):
                    break
        finally:
            proc.kill()
    present = bucket(bucket_env).list()
    assert 1 <= len(present) < total

    resumed = migrate(bucket_env, root, sqlite_url)
    assert resumed.returncode == 0, resumed.stderr
    assert summary(resumed) == (total - len(present), len(present), 0)
    assert_all_there(bucket_env, root)


def test_a_different_object_at_a_key_is_a_conflict_left_alone(tmp_path, sqlite_url, bucket_env, segment_files):
    root = tmp_path / "media"
    hand_made_tree(root, segment_files, videos=1, per_video=2)
    total = len(kept_files(root))
    objects = bucket(bucket_env)
    objects.put("videos/1/HIGH/000001.mp4", b"another deployment's bytes")

    done = migrate(bucket_env, root, sqlite_url)
    assert done.returncode == 1, done.stderr
    assert summary(done) == (total - 1, 0, 1)
    lines = [line for line in done.stderr.splitlines() if line.startswith("conflict: ")]
    assert len(lines) == 1 and lines[0].startswith("conflict: videos/1/HIGH/000001.mp4: the bucket holds other bytes (26 B"), (
        lines
    )
    assert objects.get("videos/1/HIGH/000001.mp4") == b"another deployment's bytes"

    again = migrate(bucket_env, root, sqlite_url, "--json")
    assert again.returncode == 1
    answer = json.loads(again.stdout)
    assert (answer["copied"], answer["already"], [c["key"] for c in answer["conflicts"]]) == (
        0,
        total - 1,
        ["videos/1/HIGH/000001.mp4"],
    )
    assert answer["conflicts"][0]["sha256"] == sha256(root / "videos/1/HIGH/000001.mp4")

    replaced = migrate(bucket_env, root, sqlite_url, "--replace")
    assert replaced.returncode == 0, replaced.stderr
    assert "replaced 1" in replaced.stdout
    assert_all_there(bucket_env, root)


def test_a_dry_run_lists_what_it_would_copy_and_copies_nothing(tmp_path, sqlite_url, bucket_env, segment_files):
    root = tmp_path / "media"
    hand_made_tree(root, segment_files, videos=2, per_video=1)
    kept = kept_files(root)
    bucket(bucket_env).put("videos/1/manifest.mpd", (root / "videos/1/manifest.mpd").read_bytes())
    done = migrate(bucket_env, root, sqlite_url, "--dry-run")
    assert done.returncode == 0, done.stderr
    listed = [line.split()[2] for line in done.stdout.splitlines() if line.startswith("would copy ")]
    assert listed == sorted(set(kept) - {"videos/1/manifest.mpd"})
    assert "dry run: would copy 5 (" in done.stdout and "already there 1, conflicts 0" in done.stdout
    assert bucket(bucket_env).list() == ["videos/1/manifest.mpd"]


def test_a_deployment_not_on_s3_or_an_unreachable_bucket_is_refused(tmp_path, sqlite_url, bucket_env, segment_files):
    root = tmp_path / "media"
    hand_made_tree(root, segment_files, videos=1, per_video=1)
    cases = [
        ({**bucket_env, "MEDIA_STORE": "local"}, "set MEDIA_STORE=s3"),
        ({**bucket_env, "S3_BUCKET": f"team03-missing-{uuid.uuid4().hex[:8]}"}, "NoSuchBucket"),
        ({**bucket_env, "AWS_SECRET_ACCESS_KEY": "not-the-secret"}, "HTTP 403"),
        ({**bucket_env, "S3_ENDPOINT_URL": "http://127.0.0.1:9", "S3_TIMEOUT": "1"}, "did not answer"),
    ]
    for env, reason in cases:
        done = migrate(env, root, sqlite_url)
        assert done.returncode == 2, (reason, done.stderr)
        assert done.stdout == "" and done.stderr.count("\n") == 1 and done.stderr.startswith("error: "), done.stderr
        assert reason in done.stderr, done.stderr
    assert bucket(bucket_env).list() == []
