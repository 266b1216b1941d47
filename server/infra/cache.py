"""Hot answers: memcached in production, a small in-process dict otherwise.

Keys carry a per-video revision, so a state change is never answered stale and nothing
needs invalidating; a cache that is down is a miss, never an error.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from typing import Protocol

from pymemcache.client.hash import HashClient

log = logging.getLogger(__name__)


class Cache(Protocol):
    def get(self, key: str) -> bytes | None: ...
    def set(self, key: str, value: bytes, ttl: int) -> None: ...


class MemcachedCache:
    def __init__(self, servers: tuple[str, ...], prefix: str) -> None:
        hosts = [(h.rsplit(":", 1)[0], int(h.rsplit(":", 1)[1])) if ":" in h else (h, 11211) for h in servers]
        # ignore_exc: a restarted or unreachable memcached reads as a miss.
        self._client = HashClient(
            hosts, connect_timeout=0.5, timeout=0.5, ignore_exc=True, retry_attempts=1, dead_timeout=2, use_pooling=True
        )
        self.prefix = prefix

    @property
    def client(self) -> HashClient:
        """The pooled client, for Flask-Limiter's counters (server/web/api/limits.py)."""
        return self._client

    def get(self, key: str) -> bytes | None:
        value: bytes | None = self._client.get(memcached_key(self.prefix + key))  # pymemcache is untyped
        return value

    def set(self, key: str, value: bytes, ttl: int) -> None:
        # Wait for the reply (only on a miss): a fire-and-forget set could lose the race to the next get.
        self._client.set(memcached_key(self.prefix + key), value, expire=ttl, noreply=False)

    def close(self) -> None:
        self._client.close()


MAX_KEY_BYTES = 250
_PLAIN_KEY = re.compile(rf"[!-~]{{1,{MAX_KEY_BYTES}}}")  # printable ASCII, no space


def memcached_key(key: str) -> str:
    """Return `key` if memcached accepts it as is, else a digest of it (keys carry URL parts: spaces, any Unicode)."""
    if _PLAIN_KEY.fullmatch(key):
        return key
    return "sha256:" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


class LocalCache:
    """A bounded in-process cache for the embedded mode."""

    def __init__(self, max_items: int = 2048) -> None:
        self._items: dict[str, tuple[float, bytes]] = {}
        self._lock = threading.Lock()
        self.max_items = max_items

    def get(self, key: str) -> bytes | None:
        with self._lock:
            hit = self._items.get(key)
            if hit is None or hit[0] < time.monotonic():
                return None
            return hit[1]

    def set(self, key: str, value: bytes, ttl: int) -> None:
        with self._lock:
            if len(self._items) >= self.max_items:
                self._items.clear()
            self._items[key] = (time.monotonic() + ttl, value)
