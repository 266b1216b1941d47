"""What a worker and the origin say to each other about one attempt: pure, JSON both ways.

Both sides import this module: the origin's state machine (server/domain/lifecycle.py) makes these,
and a remote worker (server/worker/remote.py) reads them off the worker API without loading the domain.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from server.core.errors import InvalidInput
from server.core.transcode.ladder import RenditionPlan

PICTURES = ("thumbnail.jpg", "storyboard.jpg")
FUNCTION_NAMES = re.compile(r"^[a-z0-9_.]{1,64}$")
# A worker's capabilities are ffmpeg's version and encoder names (about 2 KB); stored as JSON in a TEXT column.
CAPABILITIES_MAX_BYTES = 16 * 1024
ERROR_TAIL = 4000  # characters of an error (ffmpeg's stderr tail) kept on the attempt and the segment


class AttemptGone(Exception):
    """The attempt is no longer running (expired, cancelled, finished, or its video deleted): 410."""


@dataclass(frozen=True)
class WorkerRef:
    id: int | None
    name: str


@dataclass(frozen=True)
class Claim:
    """What a worker needs to encode one segment, and what it must hand back (JSON both ways)."""

    attempt_id: int
    video_id: int
    segment_id: int
    lease_expires_at: datetime
    source_extension: str
    source_size: int
    source_sha256: str
    source_info: str
    renditions: tuple[RenditionPlan, ...]
    outputs: tuple[str, ...]

    def to_json(self) -> dict[str, object]:
        raw = asdict(self)
        raw["lease_expires_at"] = self.lease_expires_at.isoformat()
        raw["renditions"] = [asdict(r) for r in self.renditions]
        raw["outputs"] = list(self.outputs)
        return raw

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Claim:
        return cls(
            attempt_id=int(raw["attempt_id"]),
            video_id=int(raw["video_id"]),
            segment_id=int(raw["segment_id"]),
            lease_expires_at=datetime.fromisoformat(raw["lease_expires_at"]),
            source_extension=str(raw["source_extension"]),
            source_size=int(raw["source_size"]),
            source_sha256=str(raw["source_sha256"]),
            source_info=str(raw["source_info"]),
            renditions=tuple(RenditionPlan(**r) for r in raw["renditions"]),
            outputs=tuple(str(o) for o in raw["outputs"]),
        )


@dataclass(frozen=True)
class Skip:
    reason: str


def outputs_of(renditions: tuple[RenditionPlan, ...]) -> tuple[str, ...]:
    """The files one attempt hands back: one MP4 per rung, the thumbnail and the storyboard strip."""
    return (*(f"{r.name}.mp4" for r in renditions), *PICTURES)


@dataclass(frozen=True)
class Registration:
    """What a worker says of itself when it starts (POST /api/worker/hello, or directly with the database)."""

    host: str
    version: str
    capabilities: dict[str, Any]
    concurrency: int
    functions: tuple[str, ...]

    @classmethod
    def from_json(cls, raw: object) -> Registration:
        """Validate a hello body; InvalidInput names the first bad field."""
        if not isinstance(raw, dict):
            raise InvalidInput("body", "a JSON object is required")
        host, version = _text(raw, "host", 255), _text(raw, "version", 64)
        capabilities = raw.get("capabilities", {})
        if not isinstance(capabilities, dict):
            raise InvalidInput("capabilities", "a JSON object is required")
        if len(json.dumps(capabilities, separators=(",", ":")).encode()) > CAPABILITIES_MAX_BYTES:
            raise InvalidInput("capabilities", f"at most {CAPABILITIES_MAX_BYTES} bytes of JSON")
        concurrency = raw.get("concurrency")
        if type(concurrency) is not int or not 1 <= concurrency <= 256:
            raise InvalidInput("concurrency", "an integer from 1 to 256 is required")
        functions = raw.get("functions")
        if not isinstance(functions, list) or not all(isinstance(f, str) and FUNCTION_NAMES.match(f) for f in functions):
            raise InvalidInput("functions", "a list of job function names is required")
        if len(",".join(functions)) > 255:  # stored comma-separated in a VARCHAR(255)
            raise InvalidInput("functions", "at most 255 characters of names, comma-separated")
        return cls(host, version, capabilities, concurrency, tuple(functions))

    def to_json(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "version": self.version,
            "capabilities": self.capabilities,
            "concurrency": self.concurrency,
            "functions": list(self.functions),
        }


def _text(raw: dict[str, Any], field: str, limit: int) -> str:
    value = raw.get(field)
    if not isinstance(value, str) or not value or len(value) > limit:
        raise InvalidInput(field, f"a string of 1 to {limit} characters is required")
    return value
