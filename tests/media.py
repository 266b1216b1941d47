"""Test media made by ffmpeg at test time (nothing binary is committed)."""

from __future__ import annotations

import subprocess
from pathlib import Path


def make_segment(
    path: Path,
    *,
    seconds: float = 3.0,
    size: str = "1080x720",
    rate: int = 30,
    audio: bool = True,
    offset: float = 0.0,
) -> Path:
    """Write a phone-like MP4 segment: H.264 + AAC, moov first, keyframe at start."""
    argv = [
        "ffmpeg",
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        "-f",
        "lavfi",
        "-i",
        f"testsrc2=size={size}:rate={rate}:duration={seconds}",
    ]
    if audio:
        argv += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=44100:duration={seconds}"]
    argv += [
        "-ss",
        "0",
        "-output_ts_offset",
        str(offset),
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-pix_fmt",
        "yuv420p",
        "-g",
        str(rate),
    ]
    if audio:
        argv += ["-c:a", "aac", "-b:a", "96k"]
    argv += ["-movflags", "+faststart", str(path)]
    subprocess.run(argv, check=True)
    return path
