"""Job names and payloads. Payloads are small JSON objects, never pickle; media never goes through gearmand."""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import asdict, dataclass, replace

TRANSCODE_SEGMENT = "team03.transcode_segment"
PACKAGE_VIDEO = "team03.package_video"
FUNCTIONS = (TRANSCODE_SEGMENT, PACKAGE_VIDEO)
# What `segment_processor --only` names each function.
SHORT_NAMES = {"transcode": TRANSCODE_SEGMENT, "package": PACKAGE_VIDEO}


# A ticket is good for this long after it was issued: the reaper re-submits a segment no worker took
# within PROCESSING_DEADLINE with a fresh one, so only a replay of an old job is refused by it.
TICKET_LIFETIME = 24 * 3600


@dataclass(frozen=True)
class SegmentJob:
    """Encode this segment; `ticket` (HMAC-SHA256 of the ids and `issued`, with the server's key) says the origin handed it out.

    A remote worker shows the ticket when it claims (POST /api/worker/attempts): a token alone claims
    nothing the origin did not give out. Workers with the database claim directly and need none.
    """

    video_id: int
    segment_id: int
    issued: int = 0  # Unix seconds
    ticket: str = ""

    def encode(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def decode(cls, data: bytes) -> SegmentJob:
        raw = json.loads(data)
        issued, ticket = raw.get("issued", 0), raw.get("ticket", "")
        return cls(int(raw["video_id"]), int(raw["segment_id"]), int(issued), ticket if isinstance(ticket, str) else "")

    def signed(self, key: bytes, now: float) -> SegmentJob:
        """Return this job with a ticket issued at `now`."""
        issued = int(now)
        return replace(self, issued=issued, ticket=_sign(key, self.video_id, self.segment_id, issued))

    def valid(self, key: bytes, now: float) -> bool:
        """Whether the ticket was made with `key` for these ids, and is neither expired nor from the future."""
        age = now - self.issued
        if not -60 <= age <= TICKET_LIFETIME:  # a minute of clock skew between the origin's processes
            return False
        expected = _sign(key, self.video_id, self.segment_id, self.issued)
        return hmac.compare_digest(self.ticket.encode(), expected.encode())

    @property
    def unique(self) -> str:
        # gearmand coalesces queued background jobs with the same unique key: a re-submit
        # by the reaper while the first is still queued costs nothing.
        return f"seg:{self.video_id}:{self.segment_id}"


def _sign(key: bytes, video_id: int, segment_id: int, issued: int) -> str:
    return hmac.new(key, f"segment:{video_id}:{segment_id}:{issued}".encode(), hashlib.sha256).hexdigest()


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
