"""What both benchmarks share: a real stack on loopback (database, gearmand, app, workers), media, statistics.

Everything started here is stopped by the context manager that started it: temp dirs, the test
database, the private gearmand, worker subprocesses and the HTTP server thread.
"""

from __future__ import annotations

import logging
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from flask import Flask

from server import create_app, make_dev_server
from server.config import Config
from server.jobs import TRANSCODE_SEGMENT
from server.jobs.queue import queue_status
from server.services import Services
from tests import services as real

ROOT = real.ROOT
MIB = 1024 * 1024
OK_LINE = re.compile(r"video (\d+) segment (\d+): ok in ([\d.]+)s")


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


# --- media ------------------------------------------------------------------------------------


def make_cbr_segment(path: Path, *, seconds: float, video_bitrate: int, size: str = "1080x720") -> Path:
    """Write a phone-like MP4 (testsrc2 + sine, H.264 CBR with filler, AAC) whose size follows the bit rate."""
    rate = str(video_bitrate)
    argv = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
    argv += ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate=30:duration={seconds}"]
    argv += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=44100:duration={seconds}"]
    argv += ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", "30"]
    # nal-hrd=cbr pads with filler NALs: testsrc2 is too easy to reach the bit rate otherwise.
    argv += ["-b:v", rate, "-minrate", rate, "-maxrate", rate, "-bufsize", rate, "-x264-params", "nal-hrd=cbr"]
    argv += ["-c:a", "aac", "-b:a", "96k", "-movflags", "+faststart", str(path)]
    subprocess.run(argv, check=True)
    return path


def make_sized_segment(path: Path, *, size_bytes: int, seconds: float) -> Path:
    """Write a segment of about size_bytes (within ~5%): one calibration encode, then one corrected encode."""
    guess = max(200_000, int(size_bytes * 8 / seconds) - 96_000)
    make_cbr_segment(path, seconds=seconds, video_bitrate=guess)
    actual = path.stat().st_size
    if abs(actual - size_bytes) > 0.05 * size_bytes:
        make_cbr_segment(path, seconds=seconds, video_bitrate=max(100_000, int(guess * size_bytes / actual)))
    return path


# --- the stack --------------------------------------------------------------------------------


@dataclass
class Stack:
    """A fresh database, a private gearmand, a temp MEDIA_ROOT and the app on them."""

    tmp: Path
    database_url: str
    gearmand: real.Gearmand
    config: Config
    app: Flask
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def services(self) -> Services:
        return self.app.extensions["team03"]

    def worker_env(self) -> dict[str, str]:
        """The environment of a worker subprocess: this stack's config, one job at a time."""
        return {**os.environ, **self.config.to_env(), "LOG_LEVEL": "INFO", "WORKER_CONCURRENCY": "1"}

    def start_workers(self, count: int, log: Path, timeout: float = 20.0, command: list[str] | None = None) -> None:
        """Start `count` `python -m server.segment_processor` (or `command`) processes; return once gearmand sees them all."""
        for _ in range(count):
            with open(log, "ab") as stderr:
                proc = subprocess.Popen(
                    command or [sys.executable, "-m", "server.segment_processor"],
                    cwd=ROOT,
                    env=self.worker_env(),
                    stdout=subprocess.DEVNULL,
                    stderr=stderr,
                )
            self.workers.append(proc)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = queue_status(self.config.GEARMAN_SERVERS).total(TRANSCODE_SEGMENT)
            if status["workers"] >= len(self.workers):
                return
            if any(p.poll() is not None for p in self.workers):
                break
            time.sleep(0.1)
        raise RuntimeError(f"workers did not register with gearmand; see {log}")

    def stop_workers(self) -> None:
        """SIGTERM every worker (they finish the job in hand), wait, kill stragglers."""
        real.stop_gracefully(self.workers)
        self.workers.clear()


def new_database(kind: str, tmp: Path) -> str:
    """Create and migrate a fresh database: a MariaDB one like tests/services.py, or a SQLite file in tmp."""
    if kind == "mysql":
        return real.create_database()
    url = f"sqlite:///{tmp / 'bench.sqlite'}"
    real.migrate(url)
    return url


def bench_config(database_url: str, tmp: Path, gearmand: real.Gearmand, **overrides: object) -> Config:
    """Return the Config of a benchmark run: its own database, media root, gearmand and cache keys."""
    values: dict[str, object] = {
        "DATABASE_URL": database_url,
        "MEDIA_ROOT": tmp / "media",
        "GEARMAN_SERVERS": (gearmand.address,),
        "MEMCACHED_SERVERS": (),
        "SECRET_KEY": "bench",
        "CACHE_PREFIX": f"bench{uuid.uuid4().hex[:8]}:",
        "LOG_LEVEL": "WARNING",
        # Benchmarks upload far faster than a phone; the limits' own cost is bench.limits'.
        **dict.fromkeys(("RATE_LIMIT_CREATE", "RATE_LIMIT_UPLOAD", "RATE_LIMIT_UPLOAD_PER_VIDEO"), "1000000/minute"),
    }
    return Config.from_env(**{**values, **overrides})


@contextmanager
def stack(database: str = "mysql", **overrides: object) -> Iterator[Stack]:
    """Yield a Stack on fresh resources; tear every one of them down on the way out."""
    tmp = Path(tempfile.mkdtemp(prefix="team03-bench-"))
    url: str | None = None
    gearmand: real.Gearmand | None = None
    s: Stack | None = None
    try:
        url = new_database(database, tmp)
        gearmand = real.Gearmand().start()
        config = bench_config(url, tmp, gearmand, **overrides)
        s = Stack(tmp, url, gearmand, config, create_app(config))
        yield s
    finally:
        if s is not None:
            s.stop_workers()
            s.services.close()
        if gearmand is not None:
            gearmand.stop()
        if url is not None and database == "mysql":
            real.drop_database(url)
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def http_server(app: Flask) -> Iterator[str]:
    """Serve app with the dev server (werkzeug's threaded WSGI server (HTTP/1.1 keep-alive) on a free loopback port."""
    # werkzeug sets its own logger to INFO on first use: one line per request would be timed too.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = make_dev_server(app, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="bench-http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def ok_lines(log: Path, video_id: int) -> dict[int, float]:
    """Return {segment_id: seconds} from the workers' 'video X segment Y: ok in Z s' lines for one video."""
    found: dict[int, float] = {}
    if log.exists():
        for match in OK_LINE.finditer(log.read_text(errors="replace")):
            if int(match[1]) == video_id:
                found[int(match[2])] = float(match[3])
    return found
