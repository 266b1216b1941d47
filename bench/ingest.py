"""Upload throughput and latency against the bare cost of storing the same bytes durably.

    python -m bench.ingest [--segments 200] [--size-mb 1] [--database mysql|sqlite]

The real app (create_app) on a fresh database, a temp MEDIA_ROOT and a private gearmand with no
worker (jobs just queue), served by werkzeug's threaded WSGI server on a free 127.0.0.1 port in a
thread of this process. One ffmpeg-made segment is uploaded N times as different segment ids, each
body exactly as the Android app sends it (tests.harness.android.segment_upload), over one keep-alive
requests.Session. Baseline, same run, same filesystem: write the same bytes to a temp file, fsync,
rename, fsync the directory (what a 2xx must guarantee). Then ffprobe alone (server.core.transcode.ffmpeg.probe)
on the same file, and peak RSS around one large upload streamed from disk.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from bench.common import MIB, RssSampler, ms, peak_rss_mib, percentile, stack
from server.core.transcode.ffmpeg import probe
from server.store.local import fsync_dir
from tests.harness.android import segment_upload
from tests.harness.media import make_sized_segment
from tests.harness.stack import Stack, http_server

SEGMENTS_PER_VIDEO = 100
BIG_MB = 20
PROBE_RUNS = 40
TIME_BUDGET = 100.0  # seconds for the upload loop: it stops early rather than overrun


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__.split("\n\n")[0])
    parser.add_argument("--segments", type=int, default=200, help="uploads to time (default 200)")
    parser.add_argument("--size-mb", type=float, default=1.0, help="segment size in MiB (default 1)")
    parser.add_argument("--database", choices=("mysql", "sqlite"), default="mysql")
    parser.add_argument("--time-budget", type=float, default=TIME_BUDGET, help="stop the upload loop after this many s")
    args = parser.parse_args(argv)
    with stack(args.database, MAX_SEGMENT_BYTES=(BIG_MB + 12) * MIB) as s:
        run(s, args)
    return 0


def run(s: Stack, args: argparse.Namespace) -> None:
    src_dir = s.tmp / "src"
    src_dir.mkdir()
    started = time.monotonic()
    segment = make_sized_segment(src_dir / "segment.mp4", size_bytes=int(args.size_mb * MIB), seconds=3.0)
    big = make_sized_segment(src_dir / "big.mp4", size_bytes=BIG_MB * MIB, seconds=20.0)
    data = segment.read_bytes()
    print(
        f"media: {len(data) / MIB:.2f} MiB segment and {big.stat().st_size / MIB:.1f} MiB segment made in {time.monotonic() - started:.1f}s"
    )
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} (2 cores; other work on the box shows here)")
    print(f"database: {args.database}; server: werkzeug make_server(threaded=True) in a thread; gearmand without workers")
    with http_server(s.app) as base, requests.Session() as http:
        warm_up(http, base, data)
        rss = big_upload(http, base, big, s.tmp)
        samples = interleaved(http, base, segment, args.segments, args.time_budget, s.config.MEDIA_ROOT / "baseline")
    report(samples, len(data), rss)
    print(f"  control: holding the {BIG_MB} MiB file in memory grows the sampled RSS by {control_rss(big):.1f} MiB")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def new_video(http: requests.Session, base: str, title: str) -> int:
    response = http.post(f"{base}/videos", json={"title": title}, timeout=30)
    response.raise_for_status()
    return int(response.json()["video_id"])


def post_segment(http: requests.Session, base: str, video_id: int, segment_id: int, data: bytes) -> None:
    body, content_type = segment_upload(segment_id, data)
    response = http.post(f"{base}/video_segment/{video_id}", data=body, headers={"Content-Type": content_type}, timeout=60)
    if response.status_code != 201:
        raise RuntimeError(f"upload {video_id}/{segment_id}: {response.status_code} {response.text[:300]}")


def warm_up(http: requests.Session, base: str, data: bytes) -> None:
    video_id = new_video(http, base, "warm-up")
    for segment_id in range(3):
        post_segment(http, base, video_id, segment_id, data)


def big_upload(http: requests.Session, base: str, big: Path, tmp: Path) -> tuple[float, float, float]:
    """Upload the big segment streamed from a body file; return (ru_maxrss before, after, sampled RSS growth) in MiB."""
    # The body file is built by a child process, so this process never holds the big bytes.
    body_file = tmp / "big.body"
    code = (
        "import sys; from tests.harness.android import segment_upload; "
        "body, ct = segment_upload(0, open(sys.argv[1], 'rb').read()); open(sys.argv[2], 'wb').write(body); print(ct)"
    )
    done = subprocess.run([sys.executable, "-c", code, str(big), str(body_file)], capture_output=True, text=True, check=True)
    content_type = done.stdout.strip()
    video_id = new_video(http, base, "big")
    peak_before = peak_rss_mib()
    with RssSampler() as sampler, open(body_file, "rb") as body:
        headers = {"Content-Type": content_type, "Content-Length": str(body_file.stat().st_size)}
        response = http.post(f"{base}/video_segment/{video_id}", data=body, headers=headers, timeout=120)
    if response.status_code != 201:
        raise RuntimeError(f"big upload: {response.status_code} {response.text[:300]}")
    body_file.unlink()
    return peak_before, peak_rss_mib(), sampler.growth


@dataclass
class Samples:
    upload: list[float] = field(default_factory=list)
    baseline: list[float] = field(default_factory=list)
    probe: list[float] = field(default_factory=list)
    upload_wall: float = 0.0  # the sum of the upload requests: the loop's other work is not theirs


def interleaved(http: requests.Session, base: str, segment: Path, count: int, budget: float, directory: Path) -> Samples:
    """Upload count times, each followed by one baseline write (and every few by one probe), within `budget` s.

    Interleaving puts the upload and its baseline under the same load from whatever else runs on the box.
    """
    data = segment.read_bytes()
    directory.mkdir(parents=True, exist_ok=True)
    probe_every = max(1, count // PROBE_RUNS)
    samples = Samples()
    video_id = 0
    started = time.perf_counter()
    for index in range(count):
        if index % SEGMENTS_PER_VIDEO == 0:
            video_id = new_video(http, base, f"bench {index // SEGMENTS_PER_VIDEO}")
        t0 = time.perf_counter()
        post_segment(http, base, video_id, index % SEGMENTS_PER_VIDEO, data)
        samples.upload.append(time.perf_counter() - t0)
        samples.baseline.append(durable_write(data, directory, index))
        if index % probe_every == 0:
            t0 = time.perf_counter()
            probe(segment)
            samples.probe.append(time.perf_counter() - t0)
        if time.perf_counter() - started > budget:
            print(f"time budget of {budget:.0f}s spent: stopped after {index + 1} of {count} uploads")
            break
    samples.upload_wall = sum(samples.upload)
    return samples


def durable_write(data: bytes, directory: Path, index: int) -> float:
    """Time what a 2xx must guarantee: the bytes in a temp file, fsynced, renamed, directory fsynced."""
    final = directory / f"{index:06d}.mp4"
    temp = directory / f".{final.name}.tmp"
    t0 = time.perf_counter()
    with open(temp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(temp, final)
    fsync_dir(directory)
    return time.perf_counter() - t0


def control_rss(big: Path) -> float:
    """Return the sampled RSS growth of holding the big file in memory (shows the sampler would see it)."""
    with RssSampler() as sampler:
        held = big.read_bytes()
        time.sleep(0.05)
        del held
    return sampler.growth


def report(samples: Samples, size: int, rss: tuple[float, float, float]) -> None:
    times, baseline, probes = samples.upload, samples.baseline, samples.probe
    n = len(times)
    up50, up95 = percentile(times, 50), percentile(times, 95)
    base50, base95 = percentile(baseline, 50), percentile(baseline, 95)
    ups = n / samples.upload_wall
    base_ups = n / sum(baseline)
    probe50 = percentile(probes, 50)
    print(f"\nuploads: {n} x {size / MIB:.2f} MiB, sequential, one keep-alive connection")
    print(f"  request time p50 {ms(up50)}   p95 {ms(up95)}   max {ms(max(times))}")
    print(
        f"  throughput       {ups:8.1f} uploads/s   {ups * size / MIB:8.1f} MiB/s   (sum of request times {samples.upload_wall:.1f}s)"
    )
    print("baseline: write + fsync + rename + fsync dir of the same bytes, after each upload, same filesystem")
    print(f"  write time   p50 {ms(base50)}   p95 {ms(base95)}   max {ms(max(baseline))}")
    print(f"  throughput       {base_ups:8.1f} writes/s    {base_ups * size / MIB:8.1f} MiB/s")
    print(f"ratio p50 upload / p50 baseline      {up50 / base50:8.2f}x")
    print(f"ratio throughput upload / baseline   {ups / base_ups:8.3f}  (1.0 = as fast as the bare durable write)")
    print(f"ffprobe alone (server.core.transcode.ffmpeg.probe: 1 ffprobe run) p50 {ms(probe50)} over {len(probes)} runs")
    print(f"  = {probe50 / up50:.0%} of the p50 request; the request without it ~{ms(up50 - probe50)}")
    peak_before, peak_after, growth = rss
    print(f"peak RSS (getrusage ru_maxrss, this process = client + server): {peak_rss_mib():.1f} MiB at the end")
    print(
        f"  {BIG_MB} MiB upload streamed from disk: ru_maxrss {peak_before:.1f} -> {peak_after:.1f} MiB "
        f"(+{peak_after - peak_before:.1f}); current RSS sampled every 2 ms during it grew by at most {growth:.1f} MiB"
    )


if __name__ == "__main__":
    sys.exit(main())
