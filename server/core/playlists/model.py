"""Frozen inputs and outputs of the playlist layer: what the database knows, what gets published.

Times are epoch seconds (floats) and are always compared with an explicit `now`; nothing here reads a
clock. Media times are integer ticks: video at 90 kHz, audio at 48 kHz, as in the CMAF fragments' tfdt.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

from server.core.timeline import VIDEO_TIMESCALE

# Media names are six digits (000042.mp4) and the Android player compares them as strings.
MAX_SEGMENT_ID = 999_999

SegmentViewStatus = Literal["READY", "FAILED", "PENDING"]
SEGMENT_STATUSES: frozenset[str] = frozenset({"READY", "FAILED", "PENDING"})

# Rendition names become path parts and playlist URIs: keep them to characters that need no escaping.
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


@dataclass(frozen=True)
class RenditionView:
    """One video quality rung; bandwidths are bits/s."""

    name: str
    width: int
    height: int
    bandwidth: int  # peak of video + audio, what HLS BANDWIDTH and the Android MPD advertise
    video_bandwidth: int  # video only, what the DASH video Representation advertises
    codecs: str  # video codecs string, e.g. "avc1.4d401e"
    audio_codecs: str = "mp4a.40.2"
    frame_rate: int = 30
    average_bandwidth: int | None = None  # HLS AVERAGE-BANDWIDTH; defaults to bandwidth

    def __post_init__(self) -> None:
        if not _NAME.match(self.name) or self.name == "audio":
            raise ValueError(f"rendition name {self.name!r} is not a safe path part")
        if min(self.width, self.height, self.bandwidth, self.video_bandwidth, self.frame_rate) <= 0:
            raise ValueError(f"rendition {self.name}: sizes, rates and bandwidths must be positive")


@dataclass(frozen=True)
class Parts:
    """How a packaged segment's fragment files divide into ~1 s parts, one per moof (a keyframe a second).

    HLS lists each part as an EXT-X-BYTERANGE of the segment's file (render.render_hls_media); DASH and the
    Android MPD keep listing the whole file. The video parts last the same in every rendition (one GOP grid);
    `sizes` gives each track's part sizes in bytes, contiguous from byte 0 (the first carries the styp).
    """

    video_ticks: tuple[int, ...]  # 90 kHz duration of each video part
    audio_ticks: tuple[int, ...]  # 48 kHz duration of each audio part
    sizes: tuple[tuple[str, tuple[int, ...]], ...]  # (track: a rendition's name or "audio", part sizes)

    def __post_init__(self) -> None:
        if not self.video_ticks or not self.audio_ticks or min(*self.video_ticks, *self.audio_ticks) <= 0:
            raise ValueError("parts need positive durations")
        for track, sizes in self.sizes:
            count = len(self.audio_ticks if track == "audio" else self.video_ticks)
            if len(sizes) != count or min(sizes) <= 0:
                raise ValueError(f"parts of {track}: {len(sizes)} sizes for {count} durations")

    def ranges(self, track: str) -> list[tuple[int, int, int]] | None:
        """Return (offset, size, duration ticks) of each part of `track`'s file; None if not recorded for it."""
        sizes = dict(self.sizes).get(track)
        if sizes is None:
            return None
        ticks = self.audio_ticks if track == "audio" else self.video_ticks
        offsets = [sum(sizes[:i]) for i in range(len(sizes))]
        return list(zip(offsets, sizes, ticks, strict=True))

    def to_json(self) -> str:
        """Spell the parts as the segment row stores them (segments.parts)."""
        return json.dumps({"video": self.video_ticks, "audio": self.audio_ticks, "sizes": dict(self.sizes)})

    @classmethod
    def from_json(cls, text: str) -> Parts:
        """Read what to_json wrote (ValueError on anything else)."""
        data = json.loads(text)
        sizes = tuple((str(track), tuple(int(n) for n in v)) for track, v in dict(data["sizes"]).items())
        return cls(tuple(int(d) for d in data["video"]), tuple(int(d) for d in data["audio"]), sizes)


@dataclass(frozen=True)
class SegmentView:
    """What is known of one segment; timestamps are epoch seconds, None when it has not happened."""

    segment_id: int
    status: SegmentViewStatus = "PENDING"  # PENDING: not uploaded yet, or still transcoding
    uploaded_at: float | None = None
    ready_at: float | None = None
    failed_at: float | None = None
    start_ticks: int | None = None  # video tfdt (90 kHz); derived from earlier durations when None
    duration_ticks: int | None = None  # video duration (90 kHz); nominal when None
    audio_start_ticks: int | None = None  # 48 kHz; derived (publish.audio_span) until packaged
    audio_duration_ticks: int | None = None  # 48 kHz, whole AAC frames; derived (publish.audio_span) until packaged
    packaged: bool = False  # its timeline files (CMAF fragments, TS) are written: players may be given it
    parts: Parts | None = None  # its fragments' ~1 s parts, once packaged (None: packaged before parts, or not yet)

    def __post_init__(self) -> None:
        if self.segment_id < 0:
            raise ValueError("segment_id must be >= 0")
        if self.status not in SEGMENT_STATUSES:
            raise ValueError(f"unknown segment status {self.status!r}")
        # The skip rule places every fact in time: a settled segment must say when it settled.
        if self.status == "READY" and (self.ready_at is None or self.duration_ticks is None):
            raise ValueError(f"segment {self.segment_id}: READY needs ready_at and duration_ticks")
        if self.status == "FAILED" and self.failed_at is None:
            raise ValueError(f"segment {self.segment_id}: FAILED needs failed_at")


@dataclass(frozen=True)
class VideoView:
    """One recording as the playlist layer sees it."""

    video_id: int
    title: str
    created_at: float
    renditions: tuple[RenditionView, ...]
    segments: tuple[SegmentView, ...] = ()
    ended_at: float | None = None  # when POST /video_end arrived
    last_segment_id: int | None = None  # from POST /video_end
    nominal_duration_ms: int = 3000
    is_vod: bool = False  # the server switched it LIVE -> VOD (once publish.is_finished said so)
    audio_bandwidth: int = 128_000
    max_ahead: int | None = None  # MAX_SEGMENT_AHEAD: the most missing ids one skip may pass over (None: no bound)

    def __post_init__(self) -> None:
        if not self.renditions:
            raise ValueError("a video needs at least one rendition")
        if len(self.by_id) != len(self.segments):
            raise ValueError("segment ids must be unique")

    @cached_property
    def by_id(self) -> dict[int, SegmentView]:
        """Return the segments indexed by id."""
        return {s.segment_id: s for s in self.segments}

    @property
    def ended(self) -> bool:
        """Return whether the end of the stream is known."""
        return self.ended_at is not None and self.last_segment_id is not None

    @cached_property
    def nominal_ticks(self) -> int:
        """Return the nominal segment duration in 90 kHz ticks."""
        return self.nominal_duration_ms * VIDEO_TIMESCALE // 1000


@dataclass(frozen=True)
class Published:
    """One segment as it appears in a playlist.

    `sequence` is the entry's position in the full published list (HLS media sequence number: it counts
    playlist entries, not segment ids, so it differs from segment_id after a skipped segment).
    `discontinuity` marks the first entry after a skipped segment; `discontinuity_sequence` counts such
    marks up to and including this entry.
    """

    segment_id: int
    sequence: int
    start_ticks: int
    duration_ticks: int
    audio_start_ticks: int
    audio_duration_ticks: int
    discontinuity: bool = False
    discontinuity_sequence: int = 0
    parts: Parts | None = None

    @property
    def end_ticks(self) -> int:
        """Return the video end time in 90 kHz ticks."""
        return self.start_ticks + self.duration_ticks

    @property
    def name(self) -> str:
        """Return the 6-digit zero-padded file stem."""
        return f"{self.segment_id:06d}"


@dataclass(frozen=True)
class StoryboardTiles:
    """Geometry of the storyboard sprite strips: one tile every `every_seconds` of each segment."""

    every_seconds: float
    tile_width: int
    tile_height: int
    columns: int

    def __post_init__(self) -> None:
        if self.every_seconds <= 0 or min(self.tile_width, self.tile_height, self.columns) <= 0:
            raise ValueError("storyboard geometry must be positive")
