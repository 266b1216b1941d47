"""Test oracles over ffmpeg: reading back what the server wrote, and one-output remuxes to compare with.

The server never needs these: it packages every rendition in one ffmpeg run (`ffmpeg.package_argv`),
reads its outputs' durations from the MP4 boxes (`cmaf.track_durations`) and lays storyboard tiles out
in the VTT itself. The tests check those against ffprobe, against one remux per output, and against
where a tile lands in the sprite. The remuxes are composed from ffmpeg.py's own option builders, so
the rules of every ffmpeg argv still live there.
"""

from __future__ import annotations

import json
import math
import subprocess
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from server.core.timeline import AUDIO_TIMESCALE, VIDEO_TIMESCALE
from server.core.transcode import ffmpeg
from server.core.transcode.ffmpeg import _FFMPEG, _at, _audio_at, _audio_fragment, _ts, _video_fragment


@dataclass(frozen=True)
class OutputInfo:
    """What ffprobe reports about a file the server wrote."""

    duration: float
    duration_ticks: int
    width: int
    height: int
    video_codec: str
    audio_codec: str | None
    audio_duration_ticks: int | None
    bit_rate: int
    has_audio: bool


def _float(text: Any) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return 0.0
    return value if math.isfinite(value) else 0.0


def _ticks(stream: dict[str, Any], rate: int) -> int:
    """The stream's duration in ticks of `rate`: exact from duration_ts and time_base when ffprobe gives them."""
    base = stream.get("time_base")
    if not base or stream.get("duration_ts") is None:
        return round(_float(stream.get("duration")) * rate)
    return round(int(stream["duration_ts"]) * Fraction(base) * rate)


def probe_output(path: Path, timeout: float = 30.0) -> OutputInfo:
    """Probe a file the server wrote: video duration (seconds and 90 kHz ticks), size, codecs, bit rate."""
    report = json.loads(subprocess.run(ffmpeg.probe_argv(path), capture_output=True, check=True, timeout=timeout).stdout)
    streams = report.get("streams", [])
    video = next((s for s in streams if s.get("codec_type") == "video"), None)
    audio = next((s for s in streams if s.get("codec_type") == "audio"), None)
    assert video is not None, f"{path.name}: no video stream"
    ticks = _ticks(video, VIDEO_TIMESCALE) or round(_float(report.get("format", {}).get("duration")) * VIDEO_TIMESCALE)
    return OutputInfo(
        duration=ticks / VIDEO_TIMESCALE,
        duration_ticks=ticks,
        width=int(video.get("width", 0)),
        height=int(video.get("height", 0)),
        video_codec=str(video.get("codec_name", "")),
        audio_codec=None if audio is None else str(audio.get("codec_name", "")),
        audio_duration_ticks=None if audio is None else _ticks(audio, AUDIO_TIMESCALE),
        bit_rate=int(_float(report.get("format", {}).get("bit_rate"))),
        has_audio=audio is not None,
    )


def package_video_argv(mp4: Path, out: Path, start: int) -> list[str]:
    """The remux of a rendition's video alone into a CMAF fragment whose tfdt is start (90 kHz)."""
    return [*_FFMPEG, "-copyts", *_at(start, VIDEO_TIMESCALE), "-i", str(mp4), *_video_fragment(0, out)]


def package_audio_argv(mp4: Path, out: Path, start: int, frames: int) -> list[str]:
    """The remux of `frames` AAC frames of a rendition's audio alone into a CMAF fragment whose tfdt is start (48 kHz)."""
    return [*_FFMPEG, "-copyts", *_audio_at(start), "-i", str(mp4), *_audio_fragment(0, out, frames)]


def package_ts_argv(mp4: Path, out: Path, start: int, audio_start: int, frames: int) -> list[str]:
    """The remux of one rendition alone into MPEG-TS: video from start + TS_PTS_OFFSET, `frames` AAC frames from audio_start."""
    inputs = [*_at(start, VIDEO_TIMESCALE), "-i", str(mp4), *_audio_at(audio_start), "-i", str(mp4)]
    return [*_FFMPEG, "-copyts", *inputs, *_ts(0, 1, out, frames)]


def storyboard_tile(index: int, *, width: int, height: int, tile_width: int, columns: int) -> tuple[int, int, int, int]:
    """(x, y, w, h) of frame `index` in the sprite, as a WebVTT '#xywh=' fragment names it."""
    h = ffmpeg.tile_height(width, height, tile_width)
    return (index % columns) * tile_width, (index // columns) * h, tile_width, h
