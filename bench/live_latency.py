"""Live latency: upload -> live playlist, how many real-time streams the machine keeps up with, glass-to-glass.

    python -m bench.live_latency [--streams auto|N] [--segments 8] [--workers 2] [--max-streams 6] [--no-browser]

A fresh MariaDB database, a private gearmand, `--workers` real `python -m server.segment_processor`
subprocesses and the app (create_app) served over HTTP on 127.0.0.1 by werkzeug's threaded server in this
process (tests.harness.stack.Stack). A "phone" thread per stream creates a video and uploads
ffmpeg-made 1080x720 30 fps segments (2.9-3.1 s) over HTTP exactly as the app does, each one at the
moment its recording would end (creation + end of that segment on the timeline: real time), then ends it.
A poller per stream GETs /video_files/<id>/HIGH/playlist.m3u8 and /manifest.mpd every 100 ms and notes
when each segment id first appears. Everything started here is stopped on the way out.

(a) one stream: p50/p95 of upload response -> first listed, HLS and DASH; floor = the ladder encode of one
    segment by the same ffmpeg argv the worker runs (server.transcode.ffmpeg.transcode_argv), idle machine.
(b) 1, 2, 3 ... concurrent streams (starts staggered by 3 s / n): a count is sustained when the HLS p95 is
    under 2 segment durations and the delay does not grow (mean of the last third of segments minus the
    first third < GROWTH_LIMIT s); the largest sustained count is reported.
(c) hls.js in Chromium (tests.harness.players) on a fresh real-time stream: hls.js's own `latency` (seconds
    behind the live edge of the playlist), and glass-to-glass = wall clock when a frame is shown minus when
    the phone captured it (creation + its media time: segment k's media starts where k-1 ended).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from xml.etree import ElementTree

import requests

from bench.common import percentile, stack
from server.transcode import ffmpeg
from server.transcode.ladder import parse_ladder, plan_ladder
from tests.harness.android import segment_upload
from tests.harness.media import make_segment
from tests.harness.stack import Stack

SEGMENT_S = 3.0
DURATIONS = (3.0, 2.9, 3.1, 3.0, 3.1, 2.9, 3.0, 3.0)
POLL_EVERY = 0.1
GROWTH_LIMIT = 1.0
NS = {"d": "urn:mpeg:dash:schema:mpd:2011"}
M4S = re.compile(r"^(\d{6})\.m4s$", re.M)


# --- statistics -------------------------------------------------------------------------------


def fmt(values: Sequence[float]) -> str:
    if not values:
        return "n/a (nothing seen)"
    return (
        f"p50 {percentile(values, 50):6.2f} s  p95 {percentile(values, 95):6.2f} s  max {max(values):6.2f} s  (n={len(values)})"
    )


# --- the stack --------------------------------------------------------------------------------


@contextmanager
def served_stack(workers: int, **overrides: object) -> Iterator[Stack]:
    """Yield a Stack on a fresh database and private gearmand, served over HTTP, with `workers` workers."""
    with stack(**{"GAP_TIMEOUT": 10.0, **overrides}) as s:
        for _ in range(workers):
            s.start_worker(s.tmp / "workers.log")
        s.serve()
        yield s


def make_segments(folder: Path, count: int) -> list[Path]:
    """Make `count` phone-like segments (1080x720, 30 fps, 2.9-3.1 s), two ffmpeg at a time."""
    folder.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(2) as pool:
        jobs = [pool.submit(make_segment, folder / f"seg{i}.mp4", seconds=DURATIONS[i % len(DURATIONS)]) for i in range(count)]
        return [j.result(timeout=120) for j in jobs]


def encode_floor(segment: Path, ladder: str, runs: int = 3) -> float:
    """Return the median wall time of the worker's one-pass ladder encode of one segment (no DB, no packaging)."""
    info = ffmpeg.probe(segment)
    plan = plan_ladder(parse_ladder(ladder))
    times = []
    with tempfile.TemporaryDirectory(prefix="team03-floor-") as tmp:
        outputs = {r.name: Path(tmp) / f"{r.name}.mp4" for r in plan}
        for _ in range(runs):
            started = time.monotonic()
            ffmpeg.run(ffmpeg.transcode_argv(segment, plan, outputs, source=info), timeout=60)
            times.append(time.monotonic() - started)
    return statistics.median(times)


# --- one live stream ------------------------------------------------------------------------


@dataclass
class Stream:
    """One phone recording in real time and what its poller saw."""

    index: int
    video_id: int = -1
    created: float = 0.0
    uploaded: dict[int, float] = field(default_factory=dict)  # segment id -> upload response received
    hls_seen: dict[int, float] = field(default_factory=dict)
    dash_seen: dict[int, float] = field(default_factory=dict)
    ended: bool = False
    error: str | None = None

    def delays(self, seen: dict[int, float]) -> dict[int, float]:
        return {k: seen[k] - t for k, t in self.uploaded.items() if k in seen}


def dash_ids(body: bytes) -> set[int]:
    """Return the segment ids a dynamic/static MPD lists (video AdaptationSet, $Number$ = segment id)."""
    ids: set[int] = set()
    root = ElementTree.fromstring(body)
    for period in root.findall("d:Period", NS):
        template = period.find("d:AdaptationSet[@contentType='video']/d:SegmentTemplate", NS)
        if template is None:
            continue
        number = int(template.get("startNumber", "1"))
        for s in template.findall("d:SegmentTimeline/d:S", NS):
            for _ in range(int(s.get("r", "0")) + 1):
                ids.add(number)
                number += 1
    return ids


def record(base: str, stream: Stream, segments: list[bytes], start_delay: float) -> None:
    """Be the phone: create a video, upload segment k when its recording ends (real time), end the video."""
    try:
        time.sleep(start_delay)
        with requests.Session() as http:
            before = time.time()
            response = http.post(f"{base}/videos", json={"title": f"bench live {stream.index}"}, timeout=20)
            response.raise_for_status()
            stream.created = (before + time.time()) / 2
            stream.video_id = int(response.json()["video_id"])
            end_of = 0.0
            for k, data in enumerate(segments):
                end_of += DURATIONS[k % len(DURATIONS)]
                time.sleep(max(0.0, stream.created + end_of - time.time()))
                body, content_type = segment_upload(k, data)
                r = http.post(
                    f"{base}/video_segment/{stream.video_id}", data=body, headers={"Content-Type": content_type}, timeout=60
                )
                if r.status_code != 201:
                    raise RuntimeError(f"upload {k}: {r.status_code} {r.text[:200]}")
                stream.uploaded[k] = time.time()
            r = http.post(f"{base}/video_end/{stream.video_id}", data={"last_segment_id": str(len(segments) - 1)}, timeout=20)
            r.raise_for_status()
            stream.ended = True
    except Exception as e:  # reported with the results
        stream.error = f"{type(e).__name__}: {e}"


def poll(base: str, stream: Stream, count: int, deadline: float) -> None:
    """Note when each segment id first appears in the HLS HIGH playlist and in the MPD, every POLL_EVERY s."""
    with requests.Session() as http:
        while time.time() < deadline and (len(stream.hls_seen) < count or len(stream.dash_seen) < count):
            started = time.time()
            if stream.video_id >= 0:
                vid = stream.video_id
                hls = http.get(f"{base}/video_files/{vid}/HIGH/playlist.m3u8", timeout=10)
                now = time.time()
                if hls.status_code == 200:
                    for match in M4S.finditer(hls.text):
                        stream.hls_seen.setdefault(int(match[1]), now)
                mpd = http.get(f"{base}/video_files/{vid}/manifest.mpd", timeout=10)
                now = time.time()
                if mpd.status_code == 200:
                    for k in dash_ids(mpd.content):
                        stream.dash_seen.setdefault(k, now)
            time.sleep(max(0.0, started + POLL_EVERY - time.time()))


def run_streams(base: str, count: int, segments: list[bytes]) -> list[Stream]:
    """Run `count` concurrent real-time streams (starts staggered over one segment) and their pollers."""
    streams = [Stream(i) for i in range(count)]
    deadline = time.time() + sum(DURATIONS[i % len(DURATIONS)] for i in range(len(segments))) + SEGMENT_S + 60
    threads = []
    for s in streams:
        threads.append(threading.Thread(target=record, args=(base, s, segments, s.index * SEGMENT_S / count), daemon=True))
        threads.append(threading.Thread(target=poll, args=(base, s, len(segments), deadline), daemon=True))
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=max(1.0, deadline - time.time() + 5))
    return streams


@dataclass(frozen=True)
class Step:
    count: int
    hls: list[float]
    dash: list[float]
    growth: float
    missing: int
    errors: list[str]

    @property
    def sustained(self) -> bool:
        return not self.errors and not self.missing and percentile(self.hls, 95) < 2 * SEGMENT_S and self.growth < GROWTH_LIMIT


def summarize(count: int, streams: list[Stream], segments: int) -> Step:
    hls = [d for s in streams for d in s.delays(s.hls_seen).values()]
    dash = [d for s in streams for d in s.delays(s.dash_seen).values()]
    by_k = [[s.delays(s.hls_seen)[k] for s in streams if k in s.delays(s.hls_seen)] for k in range(segments)]
    means = [statistics.mean(v) for v in by_k if v]
    third = max(1, len(means) // 3)
    growth = statistics.mean(means[-third:]) - statistics.mean(means[:third]) if means else float("inf")
    missing = sum(segments - len(s.delays(s.hls_seen)) for s in streams)
    errors = [f"stream {s.index}: {s.error}" for s in streams if s.error]
    return Step(count, hls, dash, growth, missing, errors)


def print_step(step: Step, floor: float) -> None:
    verdict = "sustained" if step.sustained else "NOT sustained"
    print(f"  {step.count} stream(s): {verdict}; HLS growth over the run {step.growth:+.2f} s; missing {step.missing}")
    print(f"    upload -> HLS HIGH playlist  {fmt(step.hls)}   p50/floor {percentile(step.hls, 50) / floor:5.2f}x")
    print(f"    upload -> DASH MPD           {fmt(step.dash)}   p50/floor {percentile(step.dash, 50) / floor:5.2f}x")
    for e in step.errors:
        print(f"    error: {e}")


def breakdown(stack: Stack, streams: list[Stream]) -> str:
    """Return the median of each stage, from the database's timestamps: where the delay goes."""
    stages: dict[str, list[float]] = {
        "upload->job start": [],
        "job start->transcoded": [],
        "transcoded->packaged": [],
        "packaged->listed": [],
    }
    for s in streams:
        video = stack.video(s.video_id) if s.video_id >= 0 else None
        for seg in video.segments if video else []:
            at = [seg.uploaded_at, seg.started_at, seg.ready_at, seg.packaged_at]
            if None in at or seg.segment_id not in s.hls_seen:
                continue
            t = [a.replace(tzinfo=UTC).timestamp() for a in at] + [s.hls_seen[seg.segment_id]]
            for i, name in enumerate(stages):
                stages[name].append(t[i + 1] - t[i])
    return "  ".join(f"{name} {statistics.median(v):.2f} s" for name, v in stages.items() if v)


def worker_job_times(log: Path) -> list[float]:
    if not log.exists():
        return []
    return [float(m[1]) for m in re.finditer(r"segment \d+: ok in ([\d.]+)s", log.read_text(errors="replace"))]


# --- glass to glass ----------------------------------------------------------------------------


def glass_to_glass(base: str, segments: list[bytes]) -> None:
    """Play a fresh real-time stream in hls.js at its live edge and print what the viewer experiences."""
    from tests.harness.players import play

    stream = Stream(0)
    phone = threading.Thread(target=record, args=(base, stream, segments, 0.0), daemon=True)
    phone.start()
    deadline = time.time() + 30
    while time.time() < deadline and (stream.video_id < 0 or 0 not in stream.hls_seen):
        if (
            stream.video_id >= 0
            and "000000.m4s" in requests.get(f"{base}/video_files/{stream.video_id}/HIGH/playlist.m3u8", timeout=10).text
        ):
            stream.hls_seen[0] = time.time()
        time.sleep(POLL_EVERY)
    total = sum(DURATIONS[i % len(DURATIONS)] for i in range(len(segments)))
    report = play("hls", f"{base}/video_files/{stream.video_id}/master.m3u8", timeout=total + 40)
    phone.join(timeout=30)
    wall = [
        (report["wallT0"] + s["t"]) / 1000 - (stream.created + s["ct"])
        for s in report["samples"]
        if report["firstPlayingMs"] is not None and s["t"] >= report["firstPlayingMs"] and s["ct"] > 0 and s["ct"] < total - 0.3
    ]
    lat = report["latency"] or {}
    print(
        f"  hls.js {report['version']}: stop {report['stopReason']}, ended {report['ended']}, errors {len(report['errors'])}, "
        f"stalls after start {sum(1 for s in report['stalls'] if not s['startup'])}"
    )
    print(
        f"  first frame shown {report['firstPlayingMs'] / 1000 if report['firstPlayingMs'] else float('nan'):.2f} s after the page "
        f"started, {report['wallT0'] / 1000 + (report['firstPlayingMs'] or 0) / 1000 - stream.created:.2f} s after POST /videos"
    )
    print(
        f"  hls.js latency (behind the playlist's live edge): mean {lat.get('mean', float('nan')):.2f} s  "
        f"min {lat.get('min', float('nan')):.2f}  max {lat.get('max', float('nan')):.2f}  (n={lat.get('count', 0)})"
    )
    if wall:
        print(
            f"  glass-to-glass (capture -> shown):  p50 {percentile(wall, 50):.2f} s  min {min(wall):.2f}  max {max(wall):.2f} s  "
            f"= {percentile(wall, 50) / SEGMENT_S:.2f} segment durations"
        )
    else:
        print("  glass-to-glass: no samples while playing")


# --- main -------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.live_latency", description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", default="auto", help="auto: ramp 1, 2, 3 ... until not sustained; N: run N only")
    parser.add_argument("--segments", type=int, default=8, help="segments per stream (3 s each, default 8)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--max-streams", type=int, default=6, help="stop the ramp here (default 6)")
    parser.add_argument("--no-browser", action="store_true", help="skip (c), the hls.js glass-to-glass run")
    args = parser.parse_args(argv)
    if args.streams != "auto" and not args.streams.isdigit():
        parser.error("--streams must be auto or a number")
    started = time.monotonic()
    with served_stack(args.workers) as stack:
        tmp = stack.tmp
        paths = make_segments(tmp / "phone", args.segments)
        segments = [p.read_bytes() for p in paths]
        floor = encode_floor(paths[0], stack.config.LADDER)
        print(f"machine: {_cpu()}; {args.workers} workers; {args.segments} segments of 2.9-3.1 s per stream, 1080x720 30 fps")
        print(f"floor: one segment's ladder encode ({stack.config.LADDER}) alone: {floor:.2f} s")
        base = stack.base_url
        counts = [int(args.streams)] if args.streams != "auto" else list(range(1, args.max_streams + 1))
        best: Step | None = None
        print("(a)+(b) real-time streams, upload response -> first listed (polled every 100 ms):")
        for count in counts:
            log_before = len(worker_job_times(tmp / "workers.log"))
            cpu = time.process_time()
            streams = run_streams(base, count, segments)
            cpu = time.process_time() - cpu
            step = summarize(count, streams, args.segments)
            print_step(step, floor)
            print(f"    medians: {breakdown(stack, streams)}")
            print(f"    this process (app server + phones + pollers) used {cpu:.1f} CPU-s during the step")
            jobs = worker_job_times(tmp / "workers.log")[log_before:]
            if jobs:
                print(
                    f"    worker job (encode + package + pictures): p50 {percentile(jobs, 50):.2f} s  p95 {percentile(jobs, 95):.2f} s"
                )
            if not step.sustained:
                break
            best = step
        if args.streams == "auto":
            print(f"(b) most concurrent real-time streams sustained: {best.count if best else 0}")
            if best:
                print_step(best, floor)
        if not args.no_browser:
            print("(c) glass-to-glass, hls.js at the live edge of a fresh real-time stream:")
            glass_to_glass(base, segments)
    print(f"total run time {time.monotonic() - started:.0f} s")
    return 0


def _cpu() -> str:
    model = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if "model name" in line), "?"
    )
    return f"{os.cpu_count()} CPUs ({model}), load average at start {Path('/proc/loadavg').read_text().split()[0]}"


if __name__ == "__main__":
    sys.exit(main())
