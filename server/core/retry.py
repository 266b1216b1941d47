"""What to do after an attempt fails: a pure policy, one owner (server/domain/lifecycle.py applies it)."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Failure(enum.Enum):
    MEDIA = "media"  # the source cannot be decoded: it fails the same way every time
    CRASH = "crash"  # ffmpeg exited non-zero, timed out, or an I/O error: may not happen again
    LOST = "lost"  # the lease expired: the worker died, hung or lost the network
    DISK_FULL = "disk_full"  # the machine's fault, not the segment's
    STORE = "store"  # the media store did not answer (MEDIA_STORE=s3 down or cut off): not the segment's either


@dataclass(frozen=True)
class Policy:
    max_attempts: int
    backoff: float  # seconds before the first retry; doubles with each attempt spent


@dataclass(frozen=True)
class Decision:
    give_up: bool
    spends_attempt: bool
    retry_in: float | None  # seconds; None when giving up


def after_failure(policy: Policy, attempts_spent: int, failure: Failure) -> Decision:
    """Decide after a failed attempt; `attempts_spent` counts this one unless it spends none.

    A full disk spends no attempt and waits the longest backoff: the operator frees space, nothing is lost.
    A store that did not answer spends none either and retries after the first backoff: outages pass.
    Undecodable media gives up at once. Anything else retries with doubling backoff until max_attempts.
    """
    longest = policy.backoff * 2 ** max(policy.max_attempts - 1, 0)
    if failure is Failure.DISK_FULL:
        return Decision(give_up=False, spends_attempt=False, retry_in=longest)
    if failure is Failure.STORE:
        return Decision(give_up=False, spends_attempt=False, retry_in=policy.backoff)
    if failure is Failure.MEDIA or attempts_spent >= policy.max_attempts:
        return Decision(give_up=True, spends_attempt=True, retry_in=None)
    return Decision(give_up=False, spends_attempt=True, retry_in=policy.backoff * 2 ** max(attempts_spent - 1, 0))
