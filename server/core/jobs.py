"""Job names and payloads. Payloads are small JSON objects, never pickle; media never goes through gearmand."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

TRANSCODE_SEGMENT = "team03.transcode_segment"
PACKAGE_VIDEO = "team03.package_video"
FUNCTIONS = (TRANSCODE_SEGMENT, PACKAGE_VIDEO)
# What `segment_processor --only` names each function.
SHORT_NAMES = {"transcode": TRANSCODE_SEGMENT, "package": PACKAGE_VIDEO}


@dataclass(frozen=True)
class SegmentJob:
    video_id: int
    segment_id: int

    def encode(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def decode(cls, data: bytes) -> SegmentJob:
        raw = json.loads(data)
        return cls(video_id=int(raw["video_id"]), segment_id=int(raw["segment_id"]))

    @property
    def unique(self) -> str:
        # gearmand coalesces queued background jobs with the same unique key: a re-submit
        # by the reaper while the first is still queued costs nothing.
        return f"seg:{self.video_id}:{self.segment_id}"


@dataclass(frozen=True)
class PackageJob:
    video_id: int

    def encode(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def decode(cls, data: bytes) -> PackageJob:
        return cls(video_id=int(json.loads(data)["video_id"]))

    @property
    def unique(self) -> str:
        return f"pkg:{self.video_id}"
