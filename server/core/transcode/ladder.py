"""Pure planning: the quality ladder, fixed for a video's whole life when it is created.

Sizes: each rendition is exactly its rung's box (e.g. 720x480), whatever a segment is: the encode
fits the (rotated) picture inside the box and pads the rest (see ffmpeg.py), so one ``init.mp4`` per
rendition stays true for every segment and players never see a resolution change.

Frame rate: every rendition runs at VIDEO_FPS (frames are dropped or repeated to get there). GOP:
1 s worth of frames (``GOP_SECONDS * fps``), a keyframe at frame 0 and then every second; segments are
~3 s, so every segment starts on a keyframe and its CMAF fragment holds one moof per second, which the
HLS media playlists list as ~1 s byte-range parts (TARGETDURATION 1: players hold back 3 s, not 9 s;
docs/transcoding.md "One-second parts").

Codecs: every rendition is H.264 Main profile without B-frames (see ffmpeg.py for why) at a
forced level, the lowest of 3.1 and up that fits the rendition, plus AAC-LC. The RFC 6381 string
is derived from those forced values, so it matches the avcC x264 writes
(profile_idc 77 = 0x4d, constraint_set1 = 0x40, level_idc), and it is known before any segment.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass

GOP_SECONDS = 1
VIDEO_FPS = 30
# The Android app's video object names exactly three rungs (repr_1..3, server/web/api/schemas.py): a ladder
# has at least that many.
MIN_RUNGS = 3
AUDIO_CODECS = "mp4a.40.2"

# A rung's name: a path component of its files and playlists, so the only names playback serves
# (server/web/api/playback.py builds its paths from this).
RUNG_NAME = r"[A-Z0-9_]{1,16}"
_NAME = re.compile(rf"^{RUNG_NAME}$")
_SIZE = re.compile(r"^(\d{1,5})x(\d{1,5})$")
_RATE = re.compile(r"^(\d{1,9})([kM]?)$")

# (level_idc, max frame size in macroblocks, max macroblocks/s, max Main bit rate in bits/s)
_LEVELS = (
    (31, 3_600, 108_000, 14_000_000),
    (32, 5_120, 216_000, 20_000_000),
    (40, 8_192, 245_760, 20_000_000),
    (41, 8_192, 245_760, 50_000_000),
    (42, 8_704, 522_240, 50_000_000),
    (50, 22_080, 589_824, 135_000_000),
    (51, 36_864, 983_040, 240_000_000),
)


@dataclass(frozen=True)
class Rung:
    """One quality step of the ladder: a bounding box and target bit rates."""

    name: str
    width: int
    height: int
    video_bitrate: int
    audio_bitrate: int = 128_000


DEFAULT_LADDER = (
    Rung("HIGH", 720, 480, 3_000_000, 128_000),
    Rung("MEDIUM", 480, 320, 768_000, 96_000),
    Rung("LOW", 240, 160, 200_000, 64_000),
)


@dataclass(frozen=True)
class SourceInfo:
    """What probing an uploaded segment found (display size, after rotation).

    `keyframe_interval` (seconds, the longest gap between two keyframes) is None in rows probed before
    it was measured, and when the segment holds fewer than two keyframes.
    """

    width: int
    height: int
    duration: float
    fps: float
    has_audio: bool
    video_codec: str
    keyframe_interval: float | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> SourceInfo:
        return cls(**json.loads(text))


@dataclass(frozen=True)
class RenditionPlan:
    """What one rung becomes for one source: exact size, rates and GOP."""

    name: str
    width: int
    height: int
    video_bitrate: int
    audio_bitrate: int
    fps: int
    gop: int

    @property
    def level(self) -> int:
        """Return the H.264 level_idc forced for this rendition (31 = 3.1)."""
        return h264_level(self.width, self.height, self.fps, self.video_bitrate)

    @property
    def video_codecs(self) -> str:
        """Return the RFC 6381 codecs string of the video track."""
        return f"avc1.4d40{self.level:02x}"

    @property
    def codecs(self) -> str:
        """Return the RFC 6381 codecs string of the muxed video + audio."""
        return f"{self.video_codecs},{AUDIO_CODECS}"

    @property
    def bandwidth(self) -> int:
        """Return the nominal total bit rate (video + audio), bits/s."""
        return self.video_bitrate + self.audio_bitrate


def h264_level(width: int, height: int, fps: int, bitrate: int) -> int:
    """Return the lowest level_idc (from 3.1) whose limits fit this picture size, rate and bit rate."""
    mbs = math.ceil(width / 16) * math.ceil(height / 16)
    for level, max_fs, max_mbps, max_br in _LEVELS:
        if mbs <= max_fs and mbs * fps <= max_mbps and bitrate <= max_br:
            return level
    raise ValueError(f"{width}x{height}@{fps} at {bitrate} b/s exceeds H.264 level 5.1")


def parse_ladder(spec: str) -> tuple[Rung, ...]:
    """Parse 'NAME:WxH:VIDEO[:AUDIO],...' (rates like 3000k, 3M or 200000) into rungs."""
    items = [item.strip() for item in spec.split(",") if item.strip()]
    rungs = tuple(_parse_rung(item) for item in items)
    names = [rung.name for rung in rungs]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"ladder: duplicate rung name {', '.join(duplicates)}")
    if len(rungs) < MIN_RUNGS:
        raise ValueError(f"ladder: needs at least {MIN_RUNGS} rungs (the Android app), got {len(rungs)}")
    return rungs


def _parse_rung(item: str) -> Rung:
    """Parse one 'NAME:WxH:VIDEO[:AUDIO]' item."""
    fields = item.split(":")
    if len(fields) not in (3, 4):
        raise ValueError(f"ladder: {item!r} is not NAME:WIDTHxHEIGHT:VIDEO_RATE[:AUDIO_RATE]")
    name, size, video = fields[:3]
    if not _NAME.match(name):
        raise ValueError(f"ladder: name {name!r} must match {_NAME.pattern}")
    width, height = _parse_size(size)
    audio = _parse_rate(fields[3], 16_000, 320_000) if len(fields) == 4 else 128_000
    return Rung(name, width, height, _parse_rate(video, 50_000, 50_000_000), audio)


def _parse_size(size: str) -> tuple[int, int]:
    """Parse 'WxH': even, 16..4096 each, since x264 needs even 4:2:0 sizes."""
    match = _SIZE.match(size)
    if not match:
        raise ValueError(f"ladder: size {size!r} is not WIDTHxHEIGHT")
    width, height = int(match[1]), int(match[2])
    for value in (width, height):
        if not 16 <= value <= 4096 or value % 2:
            raise ValueError(f"ladder: size {size!r} needs even sides between 16 and 4096")
    return width, height


def _parse_rate(text: str, low: int, high: int) -> int:
    """Parse a bit rate like '768k', '3M' or '200000' within low..high bits/s."""
    match = _RATE.match(text)
    if not match:
        raise ValueError(f"ladder: bit rate {text!r} is not a number with optional k or M")
    rate = int(match[1]) * {"": 1, "k": 1_000, "M": 1_000_000}[match[2]]
    if not low <= rate <= high:
        raise ValueError(f"ladder: bit rate {text!r} is outside {low}..{high} bits/s")
    return rate


def plan_ladder(ladder: Iterable[Rung] = DEFAULT_LADDER, fps: int = VIDEO_FPS) -> tuple[RenditionPlan, ...]:
    """Plan every rung of a new video's ladder, in ladder order: the box size, `fps`, a 1 s GOP."""
    return tuple(plan_rung(rung, fps) for rung in ladder)


def plan_rung(rung: Rung, fps: int = VIDEO_FPS) -> RenditionPlan:
    """Plan one rung: exactly its box, `fps`, a fixed GOP; what the encoder is told for every segment."""
    if not 1 <= fps <= 60:
        raise ValueError(f"frame rate {fps} is outside 1..60")
    return RenditionPlan(rung.name, rung.width, rung.height, rung.video_bitrate, rung.audio_bitrate, fps, GOP_SECONDS * fps)
