"""Everything a request or a job needs, built once per process from a Config."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from server.config import Config
from server.core.clock import Clock, SystemClock
from server.core.transcode.ladder import Rung, parse_ladder
from server.infra.cache import Cache, LocalCache, MemcachedCache
from server.infra.db import make_engine, make_sessionmaker
from server.infra.metrics import observed_store
from server.infra.queue import GearmanQueue, JobQueue
from server.store import MediaStore
from server.store.objects import ObjectStore, object_store

log = logging.getLogger(__name__)


class Holds:
    """Requests that hold a thread (one waiting for a video's first segment, an event stream): at most `slots` at once.

    Per process by design, unlike everything else several web processes share (rate-limit counters and
    cached playlists live in memcached, the rest in the database): a slot is a thread of this process
    that a held request keeps busy, so the bound that matters is per process, not per cluster.
    """

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self.held = 0
        self._lock = threading.Lock()

    @contextmanager
    def slot(self) -> Iterator[bool]:
        """Take a slot if one is free; yield whether one was taken."""
        taken = self.take()
        try:
            yield taken
        finally:
            if taken:
                self.release()

    def take(self) -> bool:
        """Take a slot if one is free (the caller releases it exactly once); whether one was taken."""
        with self._lock:
            taken = self.held < self.slots
            self.held += taken
        return taken

    def release(self) -> None:
        with self._lock:
            self.held -= 1


@dataclass
class Services:
    config: Config
    engine: Engine
    sessions: sessionmaker[Session]
    media: MediaStore
    objects: ObjectStore  # MEDIA_STORE's backend, every call measured (team03_store_*); `media` names its keys
    cache: Cache
    ladder: tuple[Rung, ...]
    queue: JobQueue | None = field(default=None)
    clock: Clock = field(default_factory=SystemClock)
    # This process holds the media tree (MEDIA_ROOT of the origin): it packages where it settles.
    has_media: bool = True
    stopping: threading.Event = field(default_factory=threading.Event)  # set by close(): the local reaper ends
    holds: Holds = field(init=False)
    streams: Holds = field(init=False)  # the dashboard's open event streams (ADMIN_STREAMS), each a thread
    ticket_key: bytes | None = None  # segment job tickets' key, loaded once from the database (lifecycle.ticket_key)

    def __post_init__(self) -> None:
        self.holds = Holds(self.config.FIRST_SEGMENT_WAITERS)
        self.streams = Holds(self.config.ADMIN_STREAMS)

    @classmethod
    def build(cls, config: Config) -> Services:
        """Connect to what `config` names; the job queue is attached by the caller."""
        engine = make_engine(config.DATABASE_URL)
        cache: Cache = (
            MemcachedCache(config.MEMCACHED_SERVERS, prefix=config.CACHE_PREFIX) if config.MEMCACHED_SERVERS else LocalCache()
        )
        objects = observed_store(object_store(config))
        services = cls(
            config, engine, make_sessionmaker(engine), MediaStore(objects, config.MEDIA_ROOT), objects, cache, parse_ladder(config.LADDER)
        )
        if config.uses_gearman:
            services.queue = GearmanQueue(config.GEARMAN_SERVERS)
        return services

    def close(self) -> None:
        """Stop this process's local reaper and release connections (tests and clean shutdowns)."""
        self.stopping.set()
        for resource in (self.queue, self.cache):
            close = getattr(resource, "close", None)
            if close is not None:
                close()
        self.engine.dispose()
