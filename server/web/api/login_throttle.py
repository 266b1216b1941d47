"""The failed-login throttle (docs/api.md "Admin login"): whose password is checked, and when.

For each limit in RATE_LIMIT_LOGIN_FAILURES (N per window; windows are fixed, starting at multiples of
their length since the epoch, on the service's clock):

* Before its password is checked, an attempt reserves a slot on two counters, one after the other: its
  client address, and (unless that was over its limit) the admin it names, i.e. the row the database finds for the name (MariaDB's collation folds case,
  accents and trailing spaces: "Bôb " is bob's row, so it is bob's counter). A name with no row is
  counted under the name folded likewise, so an unknown name is throttled as a known one is.
* More than N on the address: 429 "from this address". More than N on the admin: 429 "for this
  username", unless the address's slot is its first of the window (no failure, no other attempt in
  flight): an attacker who keeps a name over its limit cannot lock its admin out of an address the
  attacker has not used. Such an address gets that one check; failed, it is no longer clean.
  A refused attempt gives its slots back: it was not checked, so it is no failure.
* A wrong password keeps both slots: they are its failures. A right one gives them back: only
  failures count, and a success resets nothing counted before it.

Reserving before checking is what makes the limit hold under concurrency: of 40 guesses sent at once
from one address, 5 get a slot and have their password checked, 35 are refused.

The counters are memcached's (incr, else add, else incr: atomic across every process) when
MEMCACHED_SERVERS is set, else a dict under a lock (the embedded mode has one process). A memcached
that is down counts nothing, as for every limit (server/web/api/limits.py).
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
import unicodedata
from typing import Protocol

from flask import current_app
from limits import parse_many

from server.core.errors import TooManyRequests
from server.infra.cache import MemcachedCache, memcached_key
from server.infra.services import Services

log = logging.getLogger(__name__)
EXTENSION = "team03.login_throttle"
FROM_ADDRESS = "from this address"
FOR_NAME = "for this username"


def refusal(address_count: int, admin_count: int, limit: int) -> str | None:
    """Why an attempt whose reservations made these counts is refused (None: check its password)."""
    if address_count > limit:
        return FROM_ADDRESS
    if admin_count > limit and address_count > 1:
        return FOR_NAME
    return None


def subject(admin_id: int | None, name: str) -> str:
    """The admin counter's key: the row's id, else the name folded as MariaDB compares it (hashed)."""
    if admin_id is not None:
        return f"admin/{admin_id}"
    stripped = "".join(c for c in unicodedata.normalize("NFKD", name) if not unicodedata.combining(c))
    folded = stripped.rstrip(" ").casefold().encode("utf-8", "surrogatepass")
    return f"name/{hashlib.sha256(folded).hexdigest()[:32]}"


class Counters(Protocol):
    def reserve(self, key: str, ttl: int) -> int:
        """Add one to `key` (created with `ttl` seconds to live); return the new count, 0 if unknown."""
        ...

    def release(self, key: str) -> None:
        """Take one back from `key`."""
        ...


class MemcachedCounters:
    """Counters in memcached, shared by every process; atomic by incr and add."""

    def __init__(self, cache: MemcachedCache) -> None:
        self.client = cache.client

    def reserve(self, key: str, ttl: int) -> int:
        key = memcached_key(key)
        count = self.client.incr(key, 1, noreply=False)
        if count is None:  # no such key: create it, unless another process just did
            if self.client.add(key, b"1", expire=ttl, noreply=False):
                return 1
            count = self.client.incr(key, 1, noreply=False)
        if count is None or count is False:  # False: the client's answer for a server it cannot reach
            log.warning("login throttle: memcached unavailable, not counting")
            return 0
        return int(count)

    def release(self, key: str) -> None:
        self.client.decr(memcached_key(key), 1, noreply=False)


class LocalCounters:
    """Counters in this process, under one lock; keys past their time to live are dropped as it grows."""

    PRUNE_AT = 10_000

    def __init__(self) -> None:
        self._counts: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def reserve(self, key: str, ttl: int) -> int:
        with self._lock:
            if len(self._counts) >= self.PRUNE_AT:
                now = time.monotonic()
                self._counts = {k: v for k, v in self._counts.items() if v[0] > now}
            until, count = self._counts.get(key, (time.monotonic() + ttl, 0))
            self._counts[key] = (until, count + 1)
            return count + 1

    def release(self, key: str) -> None:
        with self._lock:
            if key in self._counts:
                until, count = self._counts[key]
                self._counts[key] = (until, max(0, count - 1))


class LoginThrottle:
    """Failed admin logins per client address and per admin (the module docstring has the rule)."""

    def __init__(self, counters: Counters, limits: str, prefix: str) -> None:
        self.counters = counters
        self.windows = [(item.amount, int(item.get_expiry())) for item in parse_many(limits)]
        self.prefix = f"{prefix}login"

    @classmethod
    def build(cls, services: Services) -> LoginThrottle:
        """The throttle on the services' store: memcached when configured, else this process."""
        cache = services.cache
        counters = MemcachedCounters(cache) if isinstance(cache, MemcachedCache) else LocalCounters()
        return cls(counters, services.config.RATE_LIMIT_LOGIN_FAILURES, services.config.CACHE_PREFIX)

    def reserve(self, address: str, who: str, now: float) -> list[str]:
        """Reserve this attempt's slots (`who` from `subject`); raise TooManyRequests naming the reason."""
        taken: list[str] = []
        for limit, seconds in self.windows:
            window = int(now // seconds)
            base = f"{self.prefix}/{limit}per{seconds}/{window}"
            taken.append(f"{base}/address/{address}")
            address_count = self.counters.reserve(taken[-1], seconds)
            admin_count = 0
            # An attempt over its address's limit never touches the admin's counter: its reservation there, however
            # brief, would refuse "for this username" a concurrent attempt within the address's limit.
            if address_count <= limit:
                taken.append(f"{base}/{who}")
                admin_count = self.counters.reserve(taken[-1], seconds)
            reason = refusal(address_count, admin_count, limit)
            if reason is not None:
                self.release(taken)
                wait = max(1, math.ceil((window + 1) * seconds - now))
                raise TooManyRequests(f"too many failed logins {reason}; retry in {wait} s", retry_after=wait)
        return taken

    def release(self, slots: list[str]) -> None:
        """Give back the slots `reserve` took (the attempt succeeded, or was not checked)."""
        for key in slots:
            self.counters.release(key)


def login_throttle() -> LoginThrottle:
    """Return this app's failed-login throttle (built by server/web/api/limits.py's init_limits)."""
    throttle: LoginThrottle = current_app.extensions[EXTENSION]
    return throttle
