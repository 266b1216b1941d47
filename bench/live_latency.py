"""Live latency: upload -> live playlist, how many real-time streams the machine keeps up with, where the CPU goes, glass-to-glass.

    python -m bench.live_latency [--streams auto|N|0] [--segments 8] [--workers 2] [--max-streams 6] [--store local|s3]
                                 [--no-browser] [--players hls/hls,videojs/hls,...] [--player-segments 20] [--join-after 8]

A fresh MariaDB database, a private gearmand, `--workers` real `python -m server.segment_processor`
subprocesses and the app (create_app) served over HTTP on 127.0.0.1 by werkzeug's threaded server in this
process (tests.harness.stack.Stack). A "phone" thread per stream creates a video and uploads
ffmpeg-made 1080x720 30 fps segments (2.9-3.1 s) over HTTP exactly as the app does, each one at the
moment its recording would end (creation + end of that segment on the timeline: real time), then ends it.
A poller per stream GETs /video_files/<id>/HIGH/playlist.m3u8 and /manifest.mpd every 100 ms and notes
when each segment id first appears. Everything started here is stopped on the way out.

Before the streams, each ffmpeg step of a job runs alone on one segment with the argv the worker builds
(upload probe, the raw ladder encode, the worker's encode which adds thumbnail and storyboard, the remux):
CPU seconds from RUSAGE_CHILDREN, and the app's CPU per poll.
(a) one stream: p50/p95 of upload response -> first listed, HLS and DASH; floor = the raw ladder encode.
(b) 1, 2, 3 ... concurrent streams (starts staggered by 3 s / n): a count is sustained when the HLS p95 is
    under 2 segment durations and the delay does not grow (mean of the last third of segments minus the
    first third < GROWTH_LIMIT s); the largest sustained count is reported. Each step prints the
    publish lag (packaged_at in the database -> the served playlist lists it, through the served URLs)
    and the CPU seconds per segment of every part (/proc/<pid>/stat of the workers and their reaped
    ffmpeg children, this process minus the bench's own threads, gearmand, MariaDB), with the stream
    count that CPU allows.
(c) each player of --players (player/manifest) on its own fresh real-time stream, one after the other,
    started once --join-after segments are listed (a viewer joining a running stream: where the player
    itself chooses to sit): glass-to-glass = wall clock when a frame is shown minus when the phone
    captured it (creation + its media time: segment k's media starts where k-1 ended), the player's own
    latency figure, stalls after the first frame.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import resource
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import astuple, dataclass, field
from datetime import UTC
from pathlib import Path
from xml.etree import ElementTree

import requests

from bench.common import percentile, stack, store_config
from server.core.transcode import ffmpeg
from server.core.transcode.ladder import parse_ladder, plan_ladder
from server.worker.encoding import THUMBNAIL_WIDTH
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
    phone_cpu: float = 0.0  # CPU seconds of this stream's phone thread (in this process, not the app's)
    poll_cpu: float = 0.0  # and of its poller thread
    polls: int = 0  # poller rounds (one HLS media playlist GET + one MPD GET each)

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
    finally:
        stream.phone_cpu = time.thread_time()


def poll(base: str, stream: Stream, count: int, deadline: float) -> None:
    """Note when each segment id first appears in the HLS HIGH playlist and in the MPD, every POLL_EVERY s."""
    with requests.Session() as http:
        while time.time() < deadline and (len(stream.hls_seen) < count or len(stream.dash_seen) < count):
            started = time.time()
            if stream.video_id >= 0:
                vid = stream.video_id
                stream.polls += 1
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
    stream.poll_cpu = time.thread_time()


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


# --- where the CPU goes -----------------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid: int) -> tuple[float, float]:
    """Return (own, reaped children's) CPU seconds of a process: /proc/<pid>/stat utime+stime, cutime+cstime.

    A worker's ffmpeg runs are its children: they count in cutime once the worker has waited for them.
    """
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return math.nan, math.nan
    utime, stime, cutime, cstime = (int(fields[i]) for i in (11, 12, 13, 14))  # fields 14-17, after pid and comm
    return (utime + stime) / _TICK, (cutime + cstime) / _TICK


def pids_named(name: str) -> list[int]:
    """Return the pids whose /proc/<pid>/comm is `name` (read only: to account for a shared server's CPU)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == name:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@dataclass(frozen=True)
class Cpu:
    """CPU seconds used so far by each part of the stack."""

    ffmpeg: float  # the workers' reaped children: every encode and remux
    worker: float  # the worker processes themselves (Python: gearman, database, file copies, hashing)
    process: float  # this process: the app server's threads plus the bench's phones and pollers
    probe: float  # this process's reaped children: the upload's ffprobe (workers are reaped only at the end)
    gearmand: float
    database: float  # every MariaDB server on the machine: shared with other work, an upper bound

    def __sub__(self, other: Cpu) -> Cpu:
        return Cpu(*(a - b for a, b in zip(astuple(self), astuple(other), strict=True)))


def cpu_now(stack: Stack) -> Cpu:
    """Read the CPU counters of the workers, this process, the private gearmand and MariaDB."""
    workers = [proc_cpu(w.pid) for w in stack.workers]
    own = proc_cpu(os.getpid())
    gearmand = proc_cpu(stack.gearmand.proc.pid)[0] if stack.gearmand.proc else math.nan
    database = sum(proc_cpu(pid)[0] for pid in pids_named("mariadbd") + pids_named("mysqld"))
    return Cpu(sum(w[1] for w in workers), sum(w[0] for w in workers), own[0], own[1], gearmand, database)


@dataclass(frozen=True)
class StepCosts:
    """CPU seconds of one segment's ffmpeg runs, each alone on an idle machine (median of `runs`)."""

    probe: float  # the upload's ffprobe
    raw: float  # the ladder encode alone: what "raw ffmpeg" means
    encode: float  # the worker's encode: the ladder plus thumbnail and storyboard from the same decode
    package: float  # the remux into CMAF fragments and TS
    wall_raw: float
    wall_encode: float


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _measured(run: Callable[[], object]) -> tuple[float, float]:
    """Return (children's CPU seconds, wall seconds) of one call that runs and waits for ffmpeg."""
    cpu, wall = _children_cpu(), time.monotonic()
    run()
    return _children_cpu() - cpu, time.monotonic() - wall


def step_costs(segment: Path, ladder: str, runs: int = 3) -> StepCosts:
    """Measure each ffmpeg step of a job on one segment, with the argv the worker and packager build."""
    info = ffmpeg.probe(segment)
    plan = plan_ladder(parse_ladder(ladder))
    samples: dict[str, list[tuple[float, float]]] = {k: [] for k in ("probe", "raw", "encode", "package")}
    with tempfile.TemporaryDirectory(prefix="team03-steps-") as tmp:
        out = Path(tmp)
        mp4s = {r.name: out / f"{r.name}.mp4" for r in plan}
        tile = ffmpeg.tile_height(plan[-1].width, plan[-1].height, ffmpeg.STORYBOARD_TILE_WIDTH)
        pictures = ffmpeg.Pictures(
            out / "thumb.jpg", out / "strip.jpg", at=min(1.0, info.duration / 2), width=THUMBNAIL_WIDTH, tile_height=tile
        )
        frames = int(info.duration * ffmpeg.AUDIO_RATE) // ffmpeg.AAC_FRAME
        package = ffmpeg.package_argv(
            list(mp4s.values()),
            [out / f"{r.name}.m4s" for r in plan],
            [out / f"{r.name}.ts" for r in plan],
            out / "audio.m4s",
            0,
            0,
            frames,
        )
        for _ in range(runs):
            samples["probe"].append(_measured(lambda: ffmpeg.probe(segment)))
            samples["raw"].append(_measured(lambda: ffmpeg.run(ffmpeg.transcode_argv(segment, plan, mp4s, source=info), 60)))
            argv = ffmpeg.transcode_argv(segment, plan, mp4s, source=info, pictures=pictures)
            samples["encode"].append(_measured(lambda: ffmpeg.run(argv, 60)))  # noqa: B023 (called at once)
            samples["package"].append(_measured(lambda: ffmpeg.run(package, 60)))
    cpu = {k: statistics.median(c for c, _ in v) for k, v in samples.items()}
    wall = {k: statistics.median(w for _, w in v) for k, v in samples.items()}
    return StepCosts(cpu["probe"], cpu["raw"], cpu["encode"], cpu["package"], wall["raw"], wall["encode"])


def request_cost(base: str, video_id: int, count: int = 100) -> float:
    """Return the app's CPU seconds per poll (one HLS media playlist + one MPD GET) of a live video.

    The app serves on this process's threads: its CPU is this process's minus the calling thread's own.
    """
    with requests.Session() as http:
        process, thread = time.process_time(), time.thread_time()
        for _ in range(count):
            http.get(f"{base}/video_files/{video_id}/HIGH/playlist.m3u8", timeout=10).raise_for_status()
            http.get(f"{base}/video_files/{video_id}/manifest.mpd", timeout=10).raise_for_status()
        return ((time.process_time() - process) - (time.thread_time() - thread)) / count


def print_cpu(used: Cpu, streams: list[Stream], segments: int, costs: StepCosts, poll_cost: float, cores: int) -> None:
    """Print the step's CPU seconds per segment by part, beside the same steps run alone, and what they allow."""
    n = len(streams) * segments
    bench = sum(s.phone_cpu + s.poll_cpu for s in streams)
    polls = sum(s.polls for s in streams)
    app = used.process - bench
    parts = {
        "ffmpeg (encode + remux)": used.ffmpeg,
        "worker Python": used.worker,
        "app (uploads, state, playlists)": app - polls * poll_cost,
        "app answering the bench's polls": polls * poll_cost,
        "upload ffprobe": used.probe,
        "gearmand": used.gearmand,
        "MariaDB (shared: upper bound)": used.database,
    }
    total = sum(v for v in parts.values() if not math.isnan(v))
    print(
        f"    CPU seconds per segment ({n} segments; alone on an idle machine: probe {costs.probe:.2f}, raw ladder "
        f"{costs.raw:.2f}, worker encode {costs.encode:.2f}, remux {costs.package:.2f}):"
    )
    print("      " + "  ".join(f"{name} {v / n:.3f}" for name, v in parts.items()))
    print(
        f"      total {total / n:.2f} CPU-s per {SEGMENT_S:.0f} s segment -> at most {cores * SEGMENT_S * n / total:.2f} "
        f"real-time streams on {cores} cores (raw ladder alone: {cores * SEGMENT_S / costs.raw:.2f}); "
        f"the bench's own phones and pollers {bench / n:.3f} (client side, not counted)"
    )


# --- glass to glass, per player ----------------------------------------------------------------

# (player, manifest): each standard player on the protocol it is used with; Shaka reads both.
VIEWERS = ("hls/hls", "videojs/hls", "shaka/hls", "dash/dash", "shaka/dash")
MANIFESTS = {"hls": "master.m3u8", "dash": "manifest.mpd"}
NAMES = {"hls": "hls.js", "dash": "dash.js", "shaka": "Shaka", "videojs": "video.js"}


def publish_lag(stack: Stack, streams: list[Stream]) -> tuple[list[float], list[float]]:
    """Return (HLS, DASH) seconds from a segment's packaged_at (database) to the served playlist first listing it.

    Measured through the served URLs, so it holds however playlists are produced and served.
    """
    hls: list[float] = []
    dash: list[float] = []
    for s in streams:
        video = stack.video(s.video_id) if s.video_id >= 0 else None
        for seg in video.segments if video else []:
            if seg.packaged_at is None:
                continue
            packaged = seg.packaged_at.replace(tzinfo=UTC).timestamp()
            if seg.segment_id in s.hls_seen:
                hls.append(s.hls_seen[seg.segment_id] - packaged)
            if seg.segment_id in s.dash_seen:
                dash.append(s.dash_seen[seg.segment_id] - packaged)
    return hls, dash


def print_publish_lag(stack: Stack, streams: list[Stream]) -> None:
    hls, dash = publish_lag(stack, streams)
    print(f"    publish lag, packaged -> listed: HLS {fmt(hls)}; DASH {fmt(dash)} (polled every {POLL_EVERY:.1f} s)")


@dataclass(frozen=True)
class Viewing:
    """What one player did on its own fresh real-time stream."""

    label: str
    report: dict
    wall: list[float]  # glass-to-glass of every sample while playing
    joined: float  # seconds after POST /videos the player was started
    load: str  # the 1-minute load average then: other work on the machine slows the encodes

    @property
    def stalls(self) -> list[dict]:
        return [s for s in self.report["stalls"] if not s["startup"]]


def watch(base: str, segments: list[bytes], viewer: str, join_after: int) -> tuple[Viewing, Stream]:
    """Play a fresh real-time stream with one player, started once `join_after` segments are listed."""
    from tests.harness.players import play
    from tests.harness.services import wait_for

    player, protocol = viewer.split("/")
    stream = Stream(0)
    total = sum(DURATIONS[i % len(DURATIONS)] for i in range(len(segments)))
    deadline = time.time() + total + 120
    threads = [
        threading.Thread(target=record, args=(base, stream, segments, 0.0), daemon=True),
        threading.Thread(target=poll, args=(base, stream, len(segments), deadline), daemon=True),
    ]
    for t in threads:
        t.start()
    wait_for(
        lambda: stream.error or min(len(stream.hls_seen), len(stream.dash_seen)) >= join_after,
        timeout=join_after * SEGMENT_S + 60,
        message=f"{join_after} segments listed",
    )
    joined = time.time() - stream.created
    load = Path("/proc/loadavg").read_text().split()[0]
    report = play(player, f"{base}/video_files/{stream.video_id}/{MANIFESTS[protocol]}", timeout=total + 60)
    for t in threads:
        t.join(timeout=max(1.0, deadline - time.time()))
    first = report["firstPlayingMs"]
    wall = [
        (report["wallT0"] + s["t"]) / 1000 - (stream.created + s["ct"])
        for s in report["samples"]
        if first is not None and s["t"] >= first and 0 < s["ct"] < total - 0.3
    ]
    label = f"{NAMES[player]} {report.get('version') or '?'} ({protocol.upper()})"
    return Viewing(label, report, wall, joined, load), stream


def print_viewing(v: Viewing) -> None:
    r, lat = v.report, v.report["latency"] or {}
    stalled = sum(s["duration"] or 0 for s in v.stalls)
    shown = f"{percentile(v.wall, 50):.2f} s (min {min(v.wall):.2f}, max {max(v.wall):.2f})" if v.wall else "n/a"
    # Some players (dash.js) fire no `waiting` event when they wait at a segment not listed yet: the
    # picture's growing distance from the camera shows every such wait.
    drift = statistics.median(v.wall[-8:]) - statistics.median(v.wall[:8]) if len(v.wall) >= 16 else math.nan
    print(
        f"  {v.label}: glass-to-glass p50 {shown}, drift over the play {drift:+.2f} s; its own latency mean {lat.get('mean', math.nan):.2f} s "
        f"(min {lat.get('min', math.nan):.2f}, max {lat.get('max', math.nan):.2f}); stalls {len(v.stalls)} ({stalled:.1f} s); "
        f"errors {len(r['errors'])}; ended {r['ended']}; joined {v.joined:.1f} s in, load average {v.load}"
    )
    asked, minutes = r.get("requests") or {}, (r.get("elapsed") or math.nan) / 60
    print(
        f"    requests per minute of play: playlists {asked.get('playlists', 0) / minutes:.0f}, media "
        f"{asked.get('media', 0) / minutes:.0f} ({asked.get('ranged', 0) / minutes:.0f} with a Range)"
    )


def glass_to_glass(stack: Stack, segments: list[bytes], viewers: Sequence[str], join_after: int) -> None:
    """Play each viewer on its own fresh real-time stream, one after the other, and print what it shows."""
    for viewer in viewers:
        viewing, stream = watch(stack.base_url, segments, viewer, join_after)
        print_viewing(viewing)
        print(f"    stream: {breakdown(stack, [stream])}")
        print_publish_lag(stack, [stream])


# --- main -------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.live_latency", description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", default="auto", help="auto: ramp 1, 2, 3 ... until not sustained; N: run N only; 0: none")
    parser.add_argument("--segments", type=int, default=8, help="segments per stream (3 s each, default 8)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--max-streams", type=int, default=6, help="stop the ramp here (default 6)")
    parser.add_argument("--no-browser", action="store_true", help="skip (c), the players' glass-to-glass runs")
    parser.add_argument(
        "--players", default=",".join(VIEWERS), help=f"player/manifest list for (c) (default {','.join(VIEWERS)})"
    )
    parser.add_argument("--player-segments", type=int, default=20, help="segments of each (c) stream (default 20)")
    parser.add_argument("--join-after", type=int, default=8, help="(c) starts the player once this many are listed (default 8)")
    parser.add_argument("--store", choices=("local", "s3"), default="local", help="MEDIA_STORE (default local)")
    args = parser.parse_args(argv)
    if args.streams != "auto" and not args.streams.isdigit():
        parser.error("--streams must be auto or a number")
    viewers = [v for v in args.players.split(",") if v]
    if any(v.count("/") != 1 or v.split("/")[0] not in NAMES or v.split("/")[1] not in MANIFESTS for v in viewers):
        parser.error(f"--players: a comma list of player/manifest, player in {sorted(NAMES)}, manifest hls or dash")
    started = time.monotonic()
    with served_stack(args.workers, **store_config(args.store)) as stack:
        print(f"media store: {args.store}")
        tmp = stack.tmp
        paths = make_segments(tmp / "phone", max(args.segments, args.player_segments))
        segments = [p.read_bytes() for p in paths]
        costs = step_costs(paths[0], stack.config.LADDER)
        floor = costs.wall_raw
        cores = os.cpu_count() or 1
        print(f"machine: {_cpu()}; {args.workers} workers; {args.segments} segments of 2.9-3.1 s per stream, 1080x720 30 fps")
        print(f"floor: one segment's ladder encode ({stack.config.LADDER}) alone: {floor:.2f} s wall, {costs.raw:.2f} CPU-s")
        print(
            f"one segment's ffmpeg steps alone (CPU-s): upload probe {costs.probe:.2f}, worker encode with thumbnail and "
            f"storyboard {costs.encode:.2f} ({costs.wall_encode:.2f} s wall; +{costs.encode - costs.raw:.2f} over the raw "
            f"ladder), remux {costs.package:.2f}"
        )
        poll_cost = request_cost(stack.base_url, live_video(stack.base_url, segments[0]))
        print(f"the app's CPU per poll (HLS media playlist + MPD of a live video): {poll_cost * 1000:.1f} ms")
        counts = [] if args.streams == "0" else [int(args.streams)] if args.streams != "auto" else range(1, args.max_streams + 1)
        best: Step | None = None
        if counts:
            print("(a)+(b) real-time streams, upload response -> first listed (polled every 100 ms):")
        for count in counts:
            log_before = len(worker_job_times(tmp / "workers.log"))
            before = cpu_now(stack)
            streams = run_streams(stack.base_url, count, segments[: args.segments])
            used = cpu_now(stack) - before
            step = summarize(count, streams, args.segments)
            print_step(step, floor)
            print(f"    medians: {breakdown(stack, streams)}")
            print_publish_lag(stack, streams)
            print_cpu(used, streams, args.segments, costs, poll_cost, cores)
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
        if not args.no_browser and viewers:
            print(
                f"(c) glass-to-glass, each player on its own fresh real-time stream, started once {args.join_after} "
                f"segments are listed:"
            )
            glass_to_glass(stack, segments[: args.player_segments], viewers, args.join_after)
    print(f"total run time {time.monotonic() - started:.0f} s")
    return 0


def live_video(base: str, segment: bytes) -> int:
    """Create a video, upload its segment 0 and return its id once the HLS playlist lists it (left live)."""
    from tests.harness.services import wait_for

    with requests.Session() as http:
        response = http.post(f"{base}/videos", json={"title": "bench poll cost"}, timeout=20)
        response.raise_for_status()
        vid = int(response.json()["video_id"])
        body, content_type = segment_upload(0, segment)
        http.post(f"{base}/video_segment/{vid}", data=body, headers={"Content-Type": content_type}, timeout=60).raise_for_status()
        wait_for(
            lambda: "000000.m4s" in http.get(f"{base}/video_files/{vid}/HIGH/playlist.m3u8", timeout=10).text,
            timeout=60,
            message="segment 0 listed",
        )
    return vid


def _cpu() -> str:
    model = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if "model name" in line), "?"
    )
    return f"{os.cpu_count()} CPUs ({model}), load average at start {Path('/proc/loadavg').read_text().split()[0]}"


if __name__ == "__main__":
    sys.exit(main())
