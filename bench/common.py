"""What the benchmarks share beyond tests/harness: the bench stack's settings, statistics, memory, worker logs.

The stack, media and request bodies are the tests' own (tests.harness); everything `stack()` starts is
stopped by the context manager that started it: temp dir, database, private gearmand, workers, HTTP thread.
"""

from __future__ import annotations

import os
import re
import resource
import threading
import uuid
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path

from tests.harness.stack import Stack, fresh_stack

MIB = 1024 * 1024
OK_LINE = re.compile(r"video (\d+) segment (\d+): ok in ([\d.]+)s")
BENCH_CONFIG: dict[str, object] = {
    "LOG_LEVEL": "WARNING",
    # Benchmarks upload far faster than a phone; the limits' own cost is bench.limits'.
    **dict.fromkeys(("RATE_LIMIT_CREATE", "RATE_LIMIT_UPLOAD", "RATE_LIMIT_UPLOAD_PER_VIDEO"), "1000000/minute"),
}


def store_config(name: str) -> dict[str, object]:
    """The settings of MEDIA_STORE `name`: the local tree, or a fresh prefix in a fresh bucket of the S3 gateway
    (S3_ENDPOINT_URL or TEST_S3_ENDPOINT_URL, default the project's Ceph RADOS Gateway, scripts/services.sh)."""
    if name == "local":
        return {"MEDIA_STORE": "local"}
    from tests.harness import s3  # the gateway's keys and a bucket of the bench's own

    os.environ.setdefault("AWS_ACCESS_KEY_ID", s3.ACCESS_KEY)  # worker subprocesses read boto3's variables
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", s3.SECRET_KEY)
    s3.ensure_gateway()
    bucket = os.environ.get("BENCH_S3_BUCKET") or s3.new_bucket()
    os.environ["BENCH_S3_BUCKET"] = bucket  # one bucket per bench process, a prefix per stack
    return {"MEDIA_STORE": "s3", "S3_ENDPOINT_URL": s3.ENDPOINT, "S3_BUCKET": bucket, "S3_PREFIX": f"b{uuid.uuid4().hex[:8]}"}


def stack(database: str = "mysql", **overrides: object) -> AbstractContextManager[Stack]:
    """Return a fresh_stack with the benchmarks' settings (`overrides` win) that tears everything down on exit."""
    return fresh_stack(database, prefix="team03-bench-", **{**BENCH_CONFIG, **overrides})


# --- statistics -------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Return the q-th percentile (0..100) by linear interpolation between closest ranks."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.1f} ms"


def peak_rss_mib() -> float:
    """Return this process's peak resident set size (ru_maxrss is KiB on Linux), children excluded."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class RssSampler:
    """Sample this process's current RSS every few ms on a thread; `peak` is the highest sample (MiB)."""

    def __init__(self, every: float = 0.002) -> None:
        self.every = every
        self.start_rss = current_rss_mib()
        self.peak = self.start_rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.peak = max(self.peak, current_rss_mib())

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, current_rss_mib())

    @property
    def growth(self) -> float:
        return self.peak - self.start_rss


# --- worker logs ------------------------------------------------------------------------------


def ok_lines(log: Path, video_id: int) -> dict[int, float]:
    """Return {segment_id: seconds} from the workers' 'video X segment Y: ok in Z s' lines for one video."""
    found: dict[int, float] = {}
    if log.exists():
        for match in OK_LINE.finditer(log.read_text(errors="replace")):
            if int(match[1]) == video_id:
                found[int(match[2])] = float(match[3])
    return found
