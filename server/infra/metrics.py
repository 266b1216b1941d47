"""Every Prometheus metric the service exposes, defined here and nowhere else (docs/operations.md "Metrics").

Two kinds, for where the fact is known:

* Counters and histograms moved in-process, one line at the place the fact happens: an upload stored
  (ingest), an encode finished (encoding), an attempt's outcome committed (lifecycle). Under gunicorn
  each process writes them to PROMETHEUS_MULTIPROC_DIR and a scrape sums every process's files; a
  segment_processor serves its own on METRICS_PORT.
* Facts of the whole system, read at scrape time by `SystemCollector` (server/ops/system_metrics.py,
  web /metrics only): live streams, segments per state, gearmand's queue per function, recent
  upload-to-playable times, the publish lag, free space, build info.

The object store (server/store) sits below this layer and cannot import it: it tells `store_called` of
each call through the observer `observed_store` hands it (server/store/objects.py, ObservedObjects).

Labels are bounded: an outcome enum, a job function from server/core/jobs, a rung name from the ladder, a
configured gearmand address, a store operation, backend or error kind (server/store/objects.py). Never a
video or segment id, never an object key.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from functools import lru_cache
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics, start_http_server
from prometheus_client.core import REGISTRY
from prometheus_client.multiprocess import MultiProcessCollector

from server.config import ROOT, Config
from server.core.states import AttemptOutcome
from server.store.objects import ERROR_KINDS, OPERATIONS, ObjectStore, ObservedObjects

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
    "Publishes of a video's playlist files: written, current (nothing changed), busy (another publisher holds the"
    " video's lease), lost (the lease was taken from this publisher), failed (the reaper retries)",
    "result",
    ("written", "current", "busy", "lost", "failed"),
)
PLAYLIST_PUBLISH_SECONDS = Histogram(
    "team03_playlist_publish_seconds",
    "Seconds to render and write one video's playlist files (holding its publish lease)",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)

WEBHOOK_TRIES = _counter(
    "team03_webhook_tries",
    "Webhook delivery tries, by what came of them: delivered, retrying (a later try is due), given_up (after WEBHOOK_GIVE_UP)",
    "result",
    ("delivered", "retrying", "given_up"),
)

STORE_SECONDS = Histogram(
    "team03_store_seconds",
    "Seconds of one object store call as its caller sees it (retries inside included), failed ones too",
    ["operation", "backend"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
STORE_ERRORS = Counter(
    "team03_store_errors",
    "Object store calls that failed, by kind: unavailable (down, refused, timed out, disk full), missing, conflict, other",
    ["operation", "kind"],
)
for _operation in OPERATIONS:
    for _kind in ERROR_KINDS:
        STORE_ERRORS.labels(operation=_operation, kind=_kind)


def store_called(operation: str, backend: str, seconds: float, error: str | None) -> None:
    """Record one object store call (the observer ObservedObjects calls)."""
    STORE_SECONDS.labels(operation=operation, backend=backend).observe(seconds)
    if error is not None:
        STORE_ERRORS.labels(operation=operation, kind=error).inc()


def observed_store(store: ObjectStore) -> ObservedObjects:
    """Return `store` with every call recorded; its backend's series exist from the start (at 0)."""
    for operation in OPERATIONS:
        STORE_SECONDS.labels(operation=operation, backend=store.backend)
    return ObservedObjects(store, store_called)


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


# -- exposition ----------------------------------------------------------------------------------------


def process_metrics(config: Config) -> CollectorRegistry:
    """This process's counters, or every gunicorn process's when PROMETHEUS_MULTIPROC_DIR is set."""
    if not config.PROMETHEUS_MULTIPROC_DIR:
        return REGISTRY
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=config.PROMETHEUS_MULTIPROC_DIR)
    return registry


def serve(config: Config) -> WSGIServer | None:
    """Serve this process's metrics on METRICS_HOST:METRICS_PORT from a thread (a segment_processor); 0 = not at all."""
    if not config.METRICS_PORT:
        return None
    server, _thread = start_http_server(config.METRICS_PORT, addr=config.METRICS_HOST, registry=process_metrics(config))
    return server
