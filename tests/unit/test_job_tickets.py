"""Segment job tickets (server/core/jobs SegmentJob.signed/valid): only the origin's key, these ids, within the lifetime."""

from __future__ import annotations

from dataclasses import replace

import pytest

from server.core.jobs import TICKET_LIFETIME, SegmentJob

KEY, NOW = b"k" * 32, 1_800_000_000.0
JOB = SegmentJob(7, 3).signed(KEY, NOW)


@pytest.mark.parametrize(
    ("job", "key", "now", "valid"),
    [
        (JOB, KEY, NOW, True),
        (JOB, KEY, NOW + TICKET_LIFETIME, True),
        (JOB, KEY, NOW + TICKET_LIFETIME + 1, False),  # expired
        (JOB, KEY, NOW - 61, False),  # issued in the future, past a minute of skew
        (JOB, b"x" * 32, NOW, False),  # another key
        (replace(JOB, segment_id=4), KEY, NOW, False),  # another segment's ticket
        (replace(JOB, video_id=8), KEY, NOW, False),
        (replace(JOB, issued=JOB.issued + 1), KEY, NOW, False),  # its time moved to outlive the lifetime
        (replace(JOB, ticket="é" * 64), KEY, NOW, False),  # not even ASCII: refused, not a TypeError
        (SegmentJob(7, 3), KEY, NOW, False),  # a job made before tickets
    ],
)
def test_a_ticket_is_valid_only_as_issued(job: SegmentJob, key: bytes, now: float, valid: bool) -> None:
    assert job.valid(key, now) is valid


def test_the_ticket_travels_in_the_payload_and_an_old_payload_decodes_without_one() -> None:
    assert SegmentJob.decode(JOB.encode()) == JOB
    assert SegmentJob.decode(b'{"video_id":7,"segment_id":3}') == SegmentJob(7, 3, 0, "")
