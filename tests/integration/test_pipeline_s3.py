"""The pipeline on the object store (MEDIA_STORE=s3 on Ceph's RADOS Gateway, scripts/services.sh): a recording
is uploaded, encoded by a worker process, packaged, published and finished with every byte in the bucket; the
origin's disk keeps nothing (scratch only, empty afterwards), and the app answers players from the bucket.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

from server.core.playlists import HLS_LIVE, HLS_VOD
from tests.harness import s3
from tests.harness.stack import fresh_stack, upload

RUNGS = ("HIGH", "MEDIUM", "LOW")


def test_a_recording_lives_in_the_bucket_and_plays_from_it(s3_bucket: str, segment_files: list[Path], tmp_path: Path) -> None:
    prefix = f"p{uuid.uuid4().hex[:8]}"
    os.environ.setdefault("AWS_ACCESS_KEY_ID", s3.ACCESS_KEY)  # the worker subprocess's credentials, as boto3 reads them
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", s3.SECRET_KEY)
    bucket = s3.s3_objects(s3_bucket, prefix=prefix)
    overrides = {"MEDIA_STORE": "s3", "S3_ENDPOINT_URL": s3.ENDPOINT, "S3_BUCKET": s3_bucket, "S3_PREFIX": prefix}
    with fresh_stack(**overrides, GAP_TIMEOUT=4.0, REAPER_INTERVAL=0.5) as stack:
        stack.start_workers(1, tmp_path / "worker.log")
        vid = stack.new_video()
        clips = [path.read_bytes() for path in segment_files[:3]]
        for k, data in enumerate(clips):
            stack.upload(vid, k, data)
        # The same bytes again are a lost answer (stored, 2xx); other bytes for a stored segment are a conflict (409).
        assert upload(stack.client, vid, 1, clips[1]).status_code == 201
        assert upload(stack.client, vid, 1, clips[2]).status_code == 409
        stack.end(vid, 2)
        stack.wait_vod(vid)
        stack.stop_workers()

        keys = set(bucket.list(f"videos/{vid}/"))
        expected = {f"videos/{vid}/{name}" for name in ("manifest.mpd", "master.m3u8", "storyboard.vtt", "live_m3u8/root.m3u8")}
        for track in (*RUNGS, "audio"):
            expected |= {f"videos/{vid}/{track}/init.mp4", f"videos/{vid}/{track}/{HLS_LIVE}", f"videos/{vid}/{track}/{HLS_VOD}"}
            expected |= {f"videos/{vid}/{track}/{k:06d}.m4s" for k in range(3)}
        for rung in RUNGS:
            expected |= {f"videos/{vid}/{rung}/{k:06d}.{ext}" for k in range(3) for ext in ("mp4", "ts")}
            expected.add(f"videos/{vid}/live_m3u8/{rung}/stream.m3u8")
        expected |= {f"videos/{vid}/{folder}/{k:06d}.jpg" for k in range(3) for folder in ("thumbnails", "storyboard")}
        assert keys == expected, (sorted(keys - expected), sorted(expected - keys))  # no staging, no original left

        # Nothing on the origin's disk but its (empty) scratch.
        assert not (stack.config.MEDIA_ROOT / "videos").exists()
        assert stack.services.media.temp_files() == []

        # The app answers players from the bucket, byte for byte, ranges and revalidation included.
        for name in ("manifest.mpd", "master.m3u8", f"HIGH/{HLS_VOD}", "HIGH/000001.m4s", "audio/init.mp4", "LOW/000002.ts"):
            answer = stack.client.get(f"/video_files/{vid}/{name}")
            assert answer.status_code == 200, name
            assert hashlib.sha256(answer.data).hexdigest() == bucket.head(f"videos/{vid}/{name}").sha256, name
        media = stack.client.get(f"/video_files/{vid}/HIGH/000001.m4s")
        part = stack.client.get(f"/video_files/{vid}/HIGH/000001.m4s", headers={"Range": "bytes=0-99"})
        assert part.status_code == 206 and part.data == media.data[:100]
        again = stack.client.get(f"/video_files/{vid}/HIGH/000001.m4s", headers={"If-None-Match": media.headers["ETag"]})
        assert again.status_code == 304
        assert stack.client.get(f"/video_files/{vid}/originals/000000.mp4").status_code == 404
        android = stack.client.get(f"/live_mpd/{vid}.mpd")
        assert android.headers["streamEnded"] == "true" and android.headers["lastSegmentId"] == "2"

        # Deleting the video deletes its objects.
        stack.services.media.remove_video(vid)
        assert bucket.list(f"videos/{vid}/") == []
