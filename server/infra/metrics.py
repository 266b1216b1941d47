"""Every Prometheus metric the service exposes, defined here and nowhere else (README "Metrics").

Two kinds, for where the fact is known:

* Counters and histograms moved in-process, one line at the place the fact happens: an upload stored
  (ingest), an encode finished (encoding), an attempt's outcome committed (lifecycle). Under gunicorn
  each process writes them to PROMETHEUS_MULTIPROC_DIR and a scrape sums every process's files; a
  segment_processor serves its own on METRICS_PORT.
* Facts of the whole system, read at scrape time by `SystemCollector` (web /metrics only): live
  streams, segments per state, gearmand's queue per function, recent upload-to-playable times, the
  publish lag, free space, build info. Each is one bounded query or call, so a scrape costs the same
  whatever the history, and every web process answers the same numbers.

Labels are bounded: an outcome enum, a job function from server/core/jobs, a rung name from the ladder, a
configured gearmand address. Never a video or segment id.
"""

from __future__ import annotations

import platform
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import timedelta
from functools import lru_cache
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics, generate_latest, start_http_server
from prometheus_client.core import REGISTRY, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy import func, select

from server.config import ROOT, Config
from server.core.jobs import FUNCTIONS
from server.infra.models import Attempt, AttemptOutcome, Segment, SegmentState, Video, VideoType
from server.infra.queue import QueueStatus, queue_status
from server.infra.services import Services

PREFIX = "team03_"
# The *_created series exist only without PROMETHEUS_MULTIPROC_DIR: drop them, so both modes expose the same names.
disable_created_metrics()

UPLOADS = Counter(
    "team03_segment_uploads", "Segments stored (new, or replacing a failed one); retries of stored bytes are not counted"
)
UPLOAD_BYTES = Counter("team03_segment_upload_bytes", "Bytes of the segments stored")
UPLOAD_SECONDS = Histogram(
    "team03_segment_upload_seconds",
    "From a segment upload's request start to its bytes and row being durable (body, ffprobe, fsync, commit)",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 20, 30, 60),
)
UPLOAD_RATIO = Histogram(
    "team03_segment_upload_ratio",
    "Upload seconds / the segment's own duration: under 1 a phone keeps up with its live stream",
    buckets=(0.01, 0.02, 0.05, 0.1, 0.2, 0.33, 0.5, 0.75, 1, 1.5, 2, 5),
)
TRANSCODE_SECONDS = Histogram(
    "team03_transcode_seconds",
    "Wall seconds of one segment's encode (one ffmpeg run decodes once and encodes every rung)",
    buckets=(0.25, 0.5, 1, 1.5, 2, 3, 5, 8, 13, 20, 30, 60),
)
TRANSCODE_REALTIME = Histogram(
    "team03_transcode_realtime_ratio",
    "Segment seconds encoded per wall second (x realtime) of one encode, every rung at once; under 1 falls behind live",
    buckets=(0.25, 0.5, 0.75, 1, 1.5, 2, 3, 4, 6, 8, 12),
)
TRANSCODE_OUTPUT_BYTES = Counter(
    "team03_transcode_output_bytes", "Bytes each rung's encodes produced (rung names come from LADDER)", ["rung"]
)


def _counter(name: str, documentation: str, label: str, values: Iterable[str]) -> Counter:
    """A counter with one bounded label, every value a series from the start (at 0), so rates exist before the first."""
    counter = Counter(name, documentation, [label])
    for value in values:
        counter.labels(**{label: value})
    return counter


ATTEMPTS = _counter(
    "team03_attempts",
    "Encode attempts finished, by outcome, counted once committed",
    "outcome",
    [o.value for o in AttemptOutcome],
)

PLAYLIST_PUBLISHES = _counter(
    "team03_playlist_publishes",
    "Publishes of a video's playlist files: written, current (nothing changed), failed (the reaper retries)",
    "result",
    ("written", "current", "failed"),
)
PLAYLIST_PUBLISH_SECONDS = Histogram(
    "team03_playlist_publish_seconds",
    "Seconds to render and write one video's playlist files (under its folder lock)",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)

WEBHOOK_TRIES = _counter(
    "team03_webhook_tries",
    "Webhook delivery tries, by what came of them: delivered, retrying (a later try is due), given_up (after WEBHOOK_GIVE_UP)",
    "result",
    ("delivered", "retrying", "given_up"),
)

UPLOAD_TO_PLAYABLE_WINDOW = 300.0  # seconds of recently packaged segments the upload-to-playable summary covers
UPLOAD_TO_PLAYABLE_LIMIT = 2000  # the newest this many of them, at most: a scrape costs the same under any load
QUANTILES = (0.5, 0.95, 1.0)
QUEUE_TIMEOUT = 1.0  # seconds a scrape waits on each gearmand
QUEUE_CACHE_SECONDS = 2.0  # several scrapers (or processes' threads) within this share one gearmand round-trip


def upload_stored(size: int, seconds: float | None, duration: float) -> None:
    """Count one stored segment; `seconds` is None when the request's start is unknown."""
    UPLOADS.inc()
    UPLOAD_BYTES.inc(size)
    if seconds is not None:
        UPLOAD_SECONDS.observe(seconds)
        if duration > 0:
            UPLOAD_RATIO.observe(seconds / duration)


def encoded(seconds: float, duration: float, outputs: dict[str, int]) -> None:
    """Record one finished encode: its wall time, its speed against the segment's duration, each rung's bytes."""
    TRANSCODE_SECONDS.observe(seconds)
    if seconds > 0:
        TRANSCODE_REALTIME.observe(duration / seconds)
    for rung, size in outputs.items():
        TRANSCODE_OUTPUT_BYTES.labels(rung=rung).inc(size)


def attempt_finished(outcome: str) -> None:
    ATTEMPTS.labels(outcome=outcome).inc()


@lru_cache(maxsize=1)
def software_version() -> str:
    """Return the code's commit (short), or "unknown" outside a git checkout."""
    try:
        done = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return done.stdout.strip() or "unknown"


# -- scrape time -------------------------------------------------------------------------------------


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


def _upload_to_playable(session, now) -> list[float]:  # type: ignore[no-untyped-def]
    """Seconds from upload to packaged of the segments packaged within the window (newest first, bounded)."""
    since = now - timedelta(seconds=UPLOAD_TO_PLAYABLE_WINDOW)
    rows = session.execute(
        select(Segment.uploaded_at, Segment.packaged_at)
        .where(Segment.packaged_at.is_not(None), Segment.packaged_at >= since)
        .order_by(Segment.packaged_at.desc())
        .limit(UPLOAD_TO_PLAYABLE_LIMIT)
    ).all()
    return sorted(max(0.0, (packaged - uploaded).total_seconds()) for uploaded, packaged in rows)


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


# -- exposition ----------------------------------------------------------------------------------------


class _Sources:
    """A registry-like view over several collectors, built for one scrape."""

    def __init__(self, sources: Iterable[object]) -> None:
        self.sources = list(sources)

    def collect(self) -> Iterator[Metric]:
        for source in self.sources:
            yield from source.collect()  # type: ignore[attr-defined]


def process_metrics(config: Config) -> object:
    """This process's counters, or every gunicorn process's when PROMETHEUS_MULTIPROC_DIR is set."""
    if not config.PROMETHEUS_MULTIPROC_DIR:
        return REGISTRY
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=config.PROMETHEUS_MULTIPROC_DIR)
    return registry


def exposition(config: Config, system: SystemCollector) -> bytes:
    """The text a web process answers /metrics with: the processes' counters, then the system's facts."""
    return generate_latest(_Sources([process_metrics(config), system]))  # type: ignore[arg-type]


def serve(config: Config) -> WSGIServer | None:
    """Serve this process's metrics on METRICS_HOST:METRICS_PORT from a thread (a segment_processor); 0 = not at all."""
    if not config.METRICS_PORT:
        return None
    server, _thread = start_http_server(config.METRICS_PORT, addr=config.METRICS_HOST, registry=process_metrics(config))
    return server
