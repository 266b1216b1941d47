"""Facts of the whole system, read at each scrape of a web process's /metrics (docs/operations.md "Metrics").

Each is one bounded query or call, so a scrape costs the same whatever the history, and every web
process answers the same numbers. The in-process counters are server/infra/metrics.py's.
"""

from __future__ import annotations

import platform
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import cast

from prometheus_client import generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from server.config import Config
from server.core.jobs import FUNCTIONS
from server.core.states import SegmentState, VideoType
from server.infra.metrics import PREFIX, process_metrics, software_version
from server.infra.models import Attempt, Segment, Video
from server.infra.queue import QueueStatus, queue_status
from server.infra.services import Services

UPLOAD_TO_PLAYABLE_WINDOW = 300.0  # seconds of recently packaged segments the upload-to-playable summary covers
UPLOAD_TO_PLAYABLE_LIMIT = 2000  # the newest this many of them, at most: a scrape costs the same under any load
QUANTILES = (0.5, 0.95, 1.0)
QUEUE_TIMEOUT = 1.0  # seconds a scrape waits on each gearmand
QUEUE_CACHE_SECONDS = 2.0  # several scrapers (or processes' threads) within this share one gearmand round-trip


class CachedQueueStatus:
    """gearmand's status, asked at most once per `ttl` seconds by this process (a scrape must not hammer it)."""

    def __init__(self, servers: tuple[str, ...], ttl: float = QUEUE_CACHE_SECONDS, clock: Callable[[], float] = time.monotonic):
        self.servers, self.ttl, self.clock = servers, ttl, clock
        self._lock = threading.Lock()
        self._value: QueueStatus | None = None
        self._at = 0.0

    def get(self) -> QueueStatus:
        with self._lock:
            if self._value is None or self.clock() - self._at >= self.ttl:
                self._value = queue_status(self.servers, timeout=QUEUE_TIMEOUT)
                self._at = self.clock()
            return self._value


class SystemCollector:
    """What the database, gearmand and the media disk say now, read at each scrape (see the module docstring)."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.queue = CachedQueueStatus(services.config.GEARMAN_SERVERS) if services.config.GEARMAN_SERVERS else None

    def collect(self) -> Iterator[Metric]:
        yield self._build_info()
        yield from self._database()
        yield from self._queue()
        yield _gauge("media_free_bytes", "Free bytes of the volume holding MEDIA_ROOT", free_bytes(self.services.config))

    def _build_info(self) -> Metric:
        family = GaugeMetricFamily(
            PREFIX + "build_info", "Always 1: the code's commit and Python version", labels=["version", "python"]
        )
        family.add_metric([software_version(), platform.python_version()], 1)
        return family

    def _database(self) -> Iterator[Metric]:
        now = self.services.clock.now()
        with self.services.sessions() as session:
            live = session.scalar(select(func.count()).select_from(Video).where(Video.type == VideoType.LIVE)) or 0
            states = dict(session.execute(select(Segment.status, func.count()).group_by(Segment.status)).all())
            running = session.scalar(select(func.count()).select_from(Attempt).where(Attempt.outcome.is_(None))) or 0
            waits = _upload_to_playable(session, now)
            behind = session.scalar(
                select(func.count())
                .select_from(Video)
                .where(Video.published_revision.is_(None) | (Video.published_revision < Video.revision))
            )
            oldest = session.scalar(
                select(func.min(Segment.uploaded_at))
                .join(Video, Video.id == Segment.video_id)
                .where(Video.type == VideoType.LIVE, Segment.status.in_(UNPUBLISHED))
            )
        yield _gauge("live_streams", "Videos still live (recording, or not yet switched to VOD)", live)
        segments = GaugeMetricFamily(PREFIX + "segments", "Segments stored, by state", labels=["state"])
        for state in SegmentState:
            segments.add_metric([state.value.lower()], states.get(state, 0))
        yield segments
        yield _gauge("attempts_running", "Encode attempts holding a lease now", running)
        lag = 0.0 if oldest is None else max(0.0, (now - oldest).total_seconds())
        yield _gauge(
            "playlist_publish_lag_seconds",
            "How long the oldest uploaded segment of a live stream has waited to be published (0: playlists are current)",
            lag,
        )
        yield _gauge(
            "playlist_files_behind",
            "Videos whose playlist files lag their database revision (the reaper republishes them; 0 when current)",
            behind or 0,
        )
        yield from _playable_summary(waits)

    def _queue(self) -> Iterator[Metric]:
        if self.queue is None:
            return
        status = self.queue.get()
        up = GaugeMetricFamily(PREFIX + "gearman_up", "1 if this configured gearmand answered its status", labels=["server"])
        for server in status.servers:
            up.add_metric([server.server], 0 if server.error else 1)
        yield up
        helps = {
            "queued": "Jobs waiting in gearmand (sum over the servers)",
            "running": "Jobs a worker holds (sum over the servers)",
            "workers": "Workers registered for the function (the most on any one server: each registers with all)",
        }
        for key, text in helps.items():
            family = GaugeMetricFamily(PREFIX + f"gearman_{'jobs_' if key != 'workers' else ''}{key}", text, labels=["function"])
            for function in FUNCTIONS:  # only ours: a shared gearmand's other functions are not our labels
                family.add_metric([function], status.total(function)[key])
            yield family


UNPUBLISHED = (SegmentState.RECEIVED, SegmentState.QUEUED, SegmentState.RUNNING, SegmentState.ENCODED)


def _upload_to_playable(session: Session, now: datetime) -> list[float]:
    """Seconds from upload to packaged of the segments packaged within the window (newest first, bounded)."""
    since = now - timedelta(seconds=UPLOAD_TO_PLAYABLE_WINDOW)
    rows = session.execute(
        select(Segment.uploaded_at, Segment.packaged_at)
        .where(Segment.packaged_at.is_not(None), Segment.packaged_at >= since)
        .order_by(Segment.packaged_at.desc())
        .limit(UPLOAD_TO_PLAYABLE_LIMIT)
    ).all()
    # packaged_at is nullable, but not in these rows (the query asks for it).
    times = cast(Sequence[tuple[datetime, datetime]], rows)
    return sorted(max(0.0, (packaged - uploaded).total_seconds()) for uploaded, packaged in times)


def _playable_summary(waits: list[float]) -> Iterator[Metric]:
    family = GaugeMetricFamily(
        PREFIX + "upload_to_playable_seconds",
        f"Upload to packaged (in the playlists), over the segments packaged in the last {UPLOAD_TO_PLAYABLE_WINDOW:g} s",
        labels=["quantile"],
    )
    for q in QUANTILES:
        family.add_metric([f"{q:g}"], quantile(waits, q) if waits else float("nan"))
    yield family
    yield _gauge("upload_to_playable_segments", "Segments the upload_to_playable_seconds quantiles cover", len(waits))


def quantile(ordered: list[float], q: float) -> float:
    """The nearest-rank quantile of an ascending, non-empty list."""
    rank = max(1, min(len(ordered), round(q * len(ordered) + 0.5 - 1e-9)))
    return ordered[rank - 1]


def free_bytes(config: Config) -> int:
    config.MEDIA_ROOT.mkdir(parents=True, exist_ok=True)
    return shutil.disk_usage(config.MEDIA_ROOT).free


def _gauge(name: str, text: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(PREFIX + name, text, value=value)


class _Sources:
    """A registry-like view over several collectors, built for one scrape."""

    def __init__(self, sources: Iterable[Collector]) -> None:
        self.sources = list(sources)

    def collect(self) -> Iterator[Metric]:
        for source in self.sources:
            yield from source.collect()


def exposition(config: Config, system: SystemCollector) -> bytes:
    """The text a web process answers /metrics with: the processes' counters, then the system's facts."""
    return generate_latest(_Sources([process_metrics(config), system]))
