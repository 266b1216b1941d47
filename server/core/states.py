"""The states and kinds the database stores and the API and dashboard show: one list of each (pure)."""

from __future__ import annotations

import enum


class VideoType(enum.Enum):
    LIVE = "LIVE"
    VOD = "VOD"


class VideoStatus(enum.Enum):
    EMPTY = "EMPTY"
    UPLOADING = "UPLOADING"
    OK = "OK"
    ERROR = "ERROR"


class SegmentState(enum.Enum):
    """Where a segment is in its life (server/domain/lifecycle.py owns the transitions; docs/workers.md draws them)."""

    RECEIVED = "RECEIVED"  # stored; waiting to be handed to the queue (now, or at retry_at)
    QUEUED = "QUEUED"  # handed to the queue; no attempt running
    RUNNING = "RUNNING"  # an attempt holds a lease on it
    ENCODED = "ENCODED"  # every rung encoded; waiting for its place on the timeline
    PACKAGED = "PACKAGED"  # fragments and TS written at its timeline position: players list it
    FAILED = "FAILED"  # failed for good

    @property
    def android(self) -> str:
        """The status word the Android app knows (android-client.md: OK, ERROR, PROCESSING, NIL)."""
        return _ANDROID[self]

    @property
    def encoded(self) -> bool:
        return self in (SegmentState.ENCODED, SegmentState.PACKAGED)


_ANDROID = {
    SegmentState.RECEIVED: "NIL",
    SegmentState.QUEUED: "NIL",
    SegmentState.RUNNING: "PROCESSING",
    SegmentState.ENCODED: "OK",
    SegmentState.PACKAGED: "OK",
    SegmentState.FAILED: "ERROR",
}


class AttemptOutcome(enum.Enum):
    OK = "ok"
    FAILED = "failed"
    EXPIRED = "expired"  # its lease ran out: the worker died or lost the network
    CANCELLED = "cancelled"  # its segment or video went away


class Visibility(enum.Enum):
    """Who may watch a video (docs/api.md "Doors"): listed to all, playable by its URL, or only with a signed link."""

    PUBLIC = "public"  # listed in GET /videos and playable by anyone, as before doors
    UNLISTED = "unlisted"  # not listed (but to its own key), playable by anyone who has its URLs
    PRIVATE = "private"  # playable only through a signed link (server/core/doors.py) or its own key's URL
