"""What a webhook receiver does with a delivery: the oracle of the server's signature (docs/api.md "Signature")."""

from __future__ import annotations

import hmac

from server.ops.webhooks import sign


def verify(secret: str, body: bytes, header: str, now: float, tolerance: float = 300.0) -> bool:
    """Whether `header` signs `body` with `secret` within `tolerance` seconds of `now`."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(fields.get("t", ""))
    except ValueError:
        return False
    expected = sign(secret, body, timestamp).split("v1=", 1)[1]
    return abs(now - timestamp) <= tolerance and hmac.compare_digest(expected, fields.get("v1", ""))
