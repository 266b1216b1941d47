"""What a worker reports of its ffmpeg when it registers: argv, parsing, and the real binary."""

from __future__ import annotations

from server.core.transcode import ffmpeg

ENCODERS = """Encoders:
 V..... = Video
 A..... = Audio
 S..... = Subtitle
 .F.... = Frame-level multithreading
 ------
 V....D libx264              libx264 H.264 / AVC / MPEG-4 AVC / MPEG-4 part 10 (codec h264)
 VFS..D mjpeg                MJPEG (Motion JPEG)
 A....D aac                  AAC (Advanced Audio Coding)
 S..... webvtt               WebVTT subtitle
"""


def test_capability_argvs() -> None:
    assert ffmpeg.version_argv() == ["ffmpeg", "-nostdin", "-hide_banner", "-version"]
    assert ffmpeg.encoders_argv() == ["ffmpeg", "-nostdin", "-hide_banner", "-encoders"]


def test_parse_encoders_keeps_video_and_audio_names_not_the_legend() -> None:
    assert ffmpeg.parse_encoders(ENCODERS) == ["aac", "libx264", "mjpeg"]


def test_parse_version() -> None:
    text = "ffmpeg version 5.1.9-0+deb12u1 Copyright (c) 2000-2026 the FFmpeg developers\nbuilt with gcc 12\n"
    assert ffmpeg.parse_version(text) == "5.1.9-0+deb12u1"
    assert ffmpeg.parse_version("something else") == "unknown"


def test_this_machines_ffmpeg_has_what_the_encode_uses() -> None:
    found = ffmpeg.capabilities()
    assert found["ffmpeg"] != "unknown"
    assert {"libx264", "aac", "mjpeg"} <= set(found["encoders"])
