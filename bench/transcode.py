"""Transcoding speed: the full pipeline against raw ffmpeg doing the same encodes, plus live latency.

    python -m bench.transcode [--segments 8] [--live-segments 10]

S phone-like segments (tests.harness.media.make_segment: 1080x720, 30 fps, 2.9-3.1 s) are made once.

(a) raw: for each segment in turn, the exact argv the worker runs
    (ffmpeg.transcode_argv(src, plan_ladder(ladder), outputs, source=probe(src))); wall time
    of those runs only. Realtime factor = seconds of video / wall seconds.
(b) pipeline: the app (in-process test client) on a fresh MariaDB database and a private gearmand,
    1 then 2 `python -m server.segment_processor` subprocesses; all S segments uploaded back to back;
    wall = first upload -> every segment has packaged_at (the database polled every 50 ms).
    Then where a segment's time goes: each piece of the worker's job timed alone, sequentially, and
    the workers' own "video X segment Y: ok in Z s" lines.
(c) live: 2 workers, one segment uploaded every 3.0 s (paced like a phone); per segment
    upload response received -> packaged_at seen.
(d) remote: the batch of (b) with 1 worker, but that worker is a remote one (no DATABASE_URL, its own
    MEDIA_ROOT, API_URL = the app over loopback HTTP): it downloads each original and uploads each
    output; a `--only package` worker with the database packages. Remote/local throughput (target
    >= 0.9) and the per-segment transfer cost from the remote worker's own "transfer" lines.
    `--remote-only` runs only (b) with 1 worker and (d).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from flask.testing import FlaskClient
from sqlalchemy import event, select, text

from bench.common import ms, ok_lines, percentile, stack, store_config
from server.core.jobs import PACKAGE_VIDEO, TRANSCODE_SEGMENT
from server.core.transcode import ffmpeg
from server.core.transcode.cmaf import track_durations
from server.core.transcode.ladder import Rung, plan_ladder
from server.domain import registry
from server.infra.models import Segment
from server.infra.queue import queue_status
from server.store.objects import LocalObjects
from tests.harness.android import segment_upload
from tests.harness.media import make_segment
from tests.harness.services import ROOT, wait_for
from tests.harness.stack import Stack, http_server

DURATIONS = (3.0, 2.9, 3.1, 2.95, 3.05, 3.0, 2.9, 3.1)
POLL = 0.05
BATCH_DEADLINE = 150.0  # s for one batch to be packaged; the run fails rather than hang
LIVE_INTERVAL = 3.0
PIECE_SEGMENTS = 2
PROFILE_SEGMENTS = 3
PROFILE_LINE = re.compile(r"bench-(ffmpeg|db) (\S+) ([\d.]+)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.transcode", description=__doc__.split("\n\n")[0])
    parser.add_argument("--segments", type=int, default=8, help="segments in the batch runs (default 8)")
    parser.add_argument("--live-segments", type=int, default=10, help="segments in the live run (default 10)")
    parser.add_argument("--remote-only", action="store_true", help="only (b) with 1 worker and (d): the remote/local ratio")
    parser.add_argument("--store", choices=("local", "s3"), default="local", help="MEDIA_STORE of the pipeline runs")
    args = parser.parse_args(argv)
    with stack("mysql", **store_config(args.store)) as s:
        print(f"media store: {args.store}")
        (run_remote if args.remote_only else run)(s, args.segments, args.live_segments)
    return 0


def run_remote(s: Stack, count: int, _live_count: int) -> None:
    """The local 1-worker batch, then the same with a remote worker: their throughput ratio and the transfer cost."""
    sources = [make_segment(s.tmp / f"src{i}.mp4", seconds=DURATIONS[i % len(DURATIONS)]) for i in range(count)]
    seconds = sum(ffmpeg.probe(src).duration for src in sources)
    print(f"load average before: {_load()}; media: {count} segments, {seconds:.2f} s of 1080x720 30 fps video")
    # Alternated, so load from other work on the box falls on both; each pair is printed, then the means.
    ratios = []
    for _round in range(REMOTE_ROUNDS):
        local = batch(s, sources, 1)
        print_batch(local, seconds, local.wall)
        remote = remote_batch(s, sources)
        print_remote(remote, local, seconds)
        ratios.append(local.wall / remote.batch.wall)
        print(f"  load average: {_load()}")
    print(f"\nremote/local throughput over {REMOTE_ROUNDS} alternated pairs: {' '.join(f'{r:.2f}' for r in ratios)}")
    print(f"load average after: {_load()}")


def run(s: Stack, count: int, live_count: int) -> None:
    started = time.monotonic()
    sources = [make_segment(s.tmp / f"src{i}.mp4", seconds=DURATIONS[i % len(DURATIONS)]) for i in range(count)]
    infos = [ffmpeg.probe(src) for src in sources]
    seconds = sum(info.duration for info in infos)
    print(f"load average before: {_load()} (2 cores; other work on the box shows here)")
    print(f"media: {count} segments, {seconds:.2f} s of 1080x720 30 fps video, made in {time.monotonic() - started:.1f}s")
    ladder = s.services.ladder
    track_app_connections(s)
    # Raw before and after the pipeline runs: the mean of the two brackets load from other work on the box.
    raw_before = raw_encodes(sources, ladder, s.tmp / "raw1")
    batches = [batch(s, sources, workers) for workers in (1, 2)]
    raw_after = raw_encodes(sources, ladder, s.tmp / "raw2")
    raw_wall = (sum(raw_before) + sum(raw_after)) / 2
    print_raw(raw_before, raw_after, seconds)
    for result in batches:
        print_batch(result, seconds, raw_wall)
    pieces = time_pieces(sources[:PIECE_SEGMENTS], ladder, s.tmp / "pieces")
    print_pieces(pieces, batches)
    print_profile(profiled_batch(s, sources[:PROFILE_SEGMENTS]))
    print_live(live(s, sources, live_count))
    print_remote(remote_batch(s, sources), batches[0], seconds)
    print(f"load average after: {_load()}")


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# --- (a) raw ffmpeg ---------------------------------------------------------------------------


def raw_encodes(sources: list[Path], ladder: tuple[Rung, ...], out: Path) -> list[float]:
    """Run the pipeline's encode argv on each source in turn; return each run's wall time."""
    out.mkdir()
    times = []
    for index, src in enumerate(sources):
        info = ffmpeg.probe(src)
        plan = plan_ladder(ladder)
        outputs = {r.name: out / f"{r.name}-{index}.mp4" for r in plan}
        argv = ffmpeg.transcode_argv(src, plan, outputs, source=info)
        t0 = time.perf_counter()
        ffmpeg.run(argv, timeout=120)
        times.append(time.perf_counter() - t0)
    return times


def print_raw(before: list[float], after: list[float], seconds: float) -> None:
    print("\n(a) raw ffmpeg, the pipeline's encode argv, segments one after another (run before and after (b))")
    for name, times in (("before", before), ("after", after)):
        wall = sum(times)
        print(
            f"  {name:6s} wall {wall:6.2f} s   per segment p50 {ms(percentile(times, 50))}   realtime factor {seconds / wall:5.2f}x"
        )
    wall = (sum(before) + sum(after)) / 2
    print(f"  mean   wall {wall:6.2f} s   realtime factor {seconds / wall:5.2f}x   (the baseline of the ratios below)")


# --- (b) the pipeline -------------------------------------------------------------------------


LOCK_WAITS = text(
    "SELECT r.trx_mysql_thread_id, r.trx_query, b.trx_mysql_thread_id, b.trx_query"
    " FROM information_schema.INNODB_LOCK_WAITS w"
    " JOIN information_schema.INNODB_TRX r ON r.trx_id = w.requesting_trx_id"
    " JOIN information_schema.INNODB_TRX b ON b.trx_id = w.blocking_trx_id"
    " JOIN information_schema.PROCESSLIST p ON p.ID = r.trx_mysql_thread_id"
    " WHERE p.DB = :db"
)


APP_CONNECTIONS: set[int] = set()  # MariaDB connection ids of this process's engine: the web app's uploads


def track_app_connections(s: Stack) -> None:
    """Record the connection id of every connection the app's engine opens (to tell uploads from workers)."""

    def connected(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
        with dbapi_conn.cursor() as cursor:
            cursor.execute("SELECT CONNECTION_ID()")
            APP_CONNECTIONS.add(int(cursor.fetchone()[0]))

    s.services.engine.dispose()
    event.listen(s.services.engine, "connect", connected)


class Poller(threading.Thread):
    """Poll the database every 50 ms; record when each expected segment is first seen with packaged_at set.

    Each poll also samples MariaDB's transactions of this database waiting for a row lock, and the
    transaction holding it, so `lock_wait` estimates the seconds spent waiting (waiters x 50 ms).
    """

    def __init__(self, s: Stack, video_id: int, expected: set[int], deadline: float) -> None:
        super().__init__(name="packaged-poller", daemon=True)
        self.s, self.video_id, self.expected, self.deadline = s, video_id, expected, deadline
        self.seen: dict[int, float] = {}
        self.lock_wait: Counter[str] = Counter()
        self.app_connections = APP_CONNECTIONS
        self.stop = threading.Event()

    def run(self) -> None:
        query = select(Segment.segment_id).where(Segment.video_id == self.video_id, Segment.packaged_at.is_not(None))
        database = self.s.database_url.rsplit("/", 1)[1]
        end = time.monotonic() + self.deadline
        last = time.monotonic()
        while not self.stop.is_set() and time.monotonic() < end and not self.expected <= self.seen.keys():
            with self.s.services.sessions() as session:
                ids = set(session.scalars(query))
                waiting = list(session.execute(LOCK_WAITS, {"db": database}))
            now = time.monotonic()
            for segment_id in ids - self.seen.keys():
                self.seen[segment_id] = now
            for waiter, statement, blocker, blocking in waiting:
                key = f"{self._who(waiter)} waits: {_short(statement)} | held by {self._who(blocker)}: {_short(blocking)}"
                self.lock_wait[key] += now - last
            last = now
            self.stop.wait(POLL)

    def _who(self, connection_id: int) -> str:
        return "upload" if connection_id in self.app_connections else "worker"

    def finish(self) -> dict[int, float]:
        self.join(self.deadline + 5)
        missing = self.expected - self.seen.keys()
        if missing:
            raise RuntimeError(f"video {self.video_id}: segments {sorted(missing)} not packaged within {self.deadline}s")
        return self.seen


def _short(statement: str | None) -> str:
    """Return a statement's first words; None means the transaction is between statements (running ffmpeg)."""
    return " ".join(statement.split())[:60] if statement else "(between statements)"


def print_lock_wait(lock_wait: Counter[str]) -> None:
    total = sum(lock_wait.values())
    print(f"  MariaDB row-lock waits (sampled every 50 ms): ~{total:.2f} s in total")
    for statement, seconds in lock_wait.most_common(4):
        print(f"    {seconds:6.2f} s  {statement}")


@dataclass
class Batch:
    workers: int
    wall: float
    upload_wall: float
    first_ready: float
    ok_in: dict[int, float] = field(default_factory=dict)
    lock_wait: Counter[str] = field(default_factory=Counter)


def new_video(client: FlaskClient, title: str) -> int:
    response = client.post("/videos", json={"title": title})
    assert response.status_code == 201, response.json
    return int(response.json["video_id"])


def upload(client: FlaskClient, video_id: int, body: tuple[bytes, str]) -> None:
    response = client.post(f"/video_segment/{video_id}", data=body[0], content_type=body[1])
    if response.status_code != 201:
        raise RuntimeError(f"upload to video {video_id}: {response.status_code} {response.json}")


def batch(s: Stack, sources: list[Path], workers: int, start: Callable[[Path], None] | None = None, title: str = "") -> Batch:
    """Upload every source at once to a new video; time until all are packaged.

    `start(log)` starts the workers (default: `workers` local ones).
    """
    log = s.tmp / f"workers-{title or workers}.log"
    (start or (lambda path: s.start_workers(workers, path)))(log)
    try:
        client = s.app.test_client()
        video_id = new_video(client, title or f"batch {workers}")
        bodies = [segment_upload(i, src.read_bytes()) for i, src in enumerate(sources)]
        poller = Poller(s, video_id, set(range(len(sources))), BATCH_DEADLINE)
        t0 = time.monotonic()
        poller.start()
        for body in bodies:
            upload(client, video_id, body)
        uploaded = time.monotonic()
        seen = poller.finish()
    finally:
        s.stop_workers()
    wall, first = max(seen.values()) - t0, min(seen.values()) - t0
    return Batch(workers, wall, uploaded - t0, first, ok_lines(log, video_id), poller.lock_wait)


def print_batch(b: Batch, seconds: float, raw_wall: float) -> None:
    oks = list(b.ok_in.values())
    print(f"\n(b) pipeline, {b.workers} worker process(es): first upload -> every segment packaged")
    print(
        f"  wall {b.wall:6.2f} s   realtime factor {seconds / b.wall:5.2f}x   pipeline/raw {raw_wall / b.wall:5.2f}"
        f"   (uploads took {b.upload_wall:.2f} s, first segment packaged at {b.first_ready:.2f} s)"
    )
    if oks:
        print(f"  worker log 'ok in' per segment: {' '.join(f'{b.ok_in[k]:.2f}' for k in sorted(b.ok_in))} s")
        print(f"  worker 'ok in' per segment: mean {statistics.mean(oks):.2f} s   min {min(oks):.2f}   max {max(oks):.2f}")
    print_lock_wait(b.lock_wait)


# --- (d) a remote worker -----------------------------------------------------------------------

TRANSFER_LINE = re.compile(r"transfer (down|up) attempt (\d+) (?:\S+ )?(\d+) bytes ([\d.]+) s")
REGISTER_TIMEOUT = 30.0
REMOTE_ROUNDS = 2


@dataclass
class RemoteRun:
    batch: Batch
    down: list[tuple[int, float]]  # (bytes, seconds) per source download
    up: list[tuple[int, float]]  # per output upload


def remote_batch(s: Stack, sources: list[Path]) -> RemoteRun:
    """Run the 1-worker batch with the transcode in a remote worker talking to the app over loopback HTTP."""
    with s.services.sessions() as session:
        token = registry.mint_token(session, "bench-remote", now=s.services.clock.now())
    remote_media = s.tmp / "remote-media"
    remote_media.mkdir(exist_ok=True)

    def start(log: Path) -> None:
        s.start_worker(log, command=[sys.executable, "-m", "server.segment_processor", "--only", "package"])
        env = {
            "PATH": os.environ["PATH"],
            "LOG_LEVEL": "INFO",
            "GEARMAN_SERVERS": ",".join(s.config.GEARMAN_SERVERS),
            "API_URL": url,
            "WORKER_TOKEN": token,
            "MEDIA_ROOT": str(remote_media),
            "WORKER_CONCURRENCY": "1",
        }
        with open(log, "ab") as stderr:
            argv = [sys.executable, "-m", "server.segment_processor"]
            s.workers.append(subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=stderr))
        wait_for(lambda: _registered(s, PACKAGE_VIDEO) and _registered(s, TRANSCODE_SEGMENT), REGISTER_TIMEOUT, f"workers; {log}")

    with http_server(s.app) as url:
        result = batch(s, sources, 1, start=start, title="remote")
    log = s.tmp / "workers-remote.log"
    text = log.read_text(errors="replace")
    log.unlink()  # the next round's lines only
    moves = [(m[1], int(m[3]), float(m[4])) for m in TRANSFER_LINE.finditer(text)]
    return RemoteRun(result, [(b, t) for d, b, t in moves if d == "down"], [(b, t) for d, b, t in moves if d == "up"])


def _registered(s: Stack, function: str) -> bool:
    if any(p.poll() is not None for p in s.workers):
        raise RuntimeError("a worker exited before it registered with gearmand")
    return queue_status(s.config.GEARMAN_SERVERS).total(function).get("workers", 0) >= 1


def print_remote(r: RemoteRun, local: Batch, seconds: float) -> None:
    n = len(r.down) or 1
    print("\n(d) remote worker (no database, own MEDIA_ROOT) over loopback HTTP, 1 transcoding process + 1 packager")
    print(
        f"  wall {r.batch.wall:6.2f} s   realtime factor {seconds / r.batch.wall:5.2f}x"
        f"   remote/local throughput {local.wall / r.batch.wall:5.2f} (target >= 0.9; local = (b) with 1 worker)"
    )
    if r.batch.ok_in and local.ok_in:
        remote_ok, local_ok = statistics.mean(r.batch.ok_in.values()), statistics.mean(local.ok_in.values())
        print(f"  worker 'ok in' per segment: remote mean {remote_ok:.2f} s, local mean {local_ok:.2f} s")
    down_bytes, down_time = sum(b for b, _ in r.down), sum(t for _, t in r.down)
    up_bytes, up_time = sum(b for b, _ in r.up), sum(t for _, t in r.up)
    print(
        f"  per segment: download {down_bytes / n / 1e6:.2f} MB in {ms(down_time / n)},"
        f" upload {len(r.up) / n:.0f} outputs {up_bytes / n / 1e6:.2f} MB in {ms(up_time / n)}"
        f" (with SHA-256 both ends); transfer = {(down_time + up_time) / r.batch.wall:.1%} of the wall"
    )


# --- where the time goes ----------------------------------------------------------------------


def _timed(pieces: dict[str, list[float]], name: str, action: Callable[[], object]) -> None:
    t0 = time.perf_counter()
    action()
    pieces.setdefault(name, []).append(time.perf_counter() - t0)


def time_pieces(sources: list[Path], ladder: tuple[Rung, ...], out: Path) -> dict[str, float]:
    """Run each piece of one segment's job alone, in the worker's order; return mean seconds per segment."""
    out.mkdir()
    pieces: dict[str, list[float]] = {}
    for index, src in enumerate(sources):
        work = out / str(index)
        work.mkdir()
        _timed(pieces, "upload: probe + decoded head (1 ffprobe)", lambda src=src: ffmpeg.probe(src))
        info = ffmpeg.probe(src)
        plan = plan_ladder(ladder)
        temps = {r.name: work / f".{r.name}.tmp" for r in plan}
        finals = {r.name: work / f"{r.name}.mp4" for r in plan}
        tree = LocalObjects(work)  # the local tree's put: a link and an fsync (server/store/objects.py)
        stills = ffmpeg.Pictures(work / "t.jpg", work / "s.jpg", at=1.0, width=320, tile_height=106)
        argv = ffmpeg.transcode_argv(src, plan, temps, source=info, pictures=stills)
        _timed(pieces, "worker: encode + pictures (1 ffmpeg)", lambda argv=argv: ffmpeg.run(argv, timeout=120))
        top_temp = temps[plan[0].name]
        _timed(pieces, "worker: durations from the moov (Python)", lambda t=top_temp: track_durations(t.read_bytes()))
        _timed(pieces, "worker: store x3 (local tree)", lambda t=temps, o=tree: [o.put(f"{n}.mp4", t[n]) for n in t])
        mp4s = list(finals.values())
        _timed(pieces, "worker: package 3 TS + 4 fMP4 (1 ffmpeg)", lambda m=mp4s, w=work: package(m, w))
    startup = []
    for _ in range(5):
        t0 = time.perf_counter()
        ffmpeg.run([ffmpeg.FFMPEG, "-hide_banner", "-version"], timeout=30)
        startup.append(time.perf_counter() - t0)
    means = {name: statistics.mean(values) for name, values in pieces.items()}
    means["(ffmpeg/ffprobe process start-up, `ffmpeg -version` p50)"] = percentile(startup, 50)
    return means


def package(mp4s: list[Path], work: Path) -> None:
    start = 270_000  # 3 s: a segment that is not the first, so the offsets are non-zero
    fragments = [work / f"{m.stem}.m4s" for m in mp4s]
    streams = [work / f"{m.stem}.ts" for m in mp4s]
    audio_start, frames = 143_360, 140  # what publish.audio_span gives the second of two 3 s segments
    argv = ffmpeg.package_argv(mp4s, fragments, streams, work / "audio.m4s", start, audio_start, frames)
    ffmpeg.run(argv, timeout=60)
    for fragment in [*fragments, work / "audio.m4s"]:
        ffmpeg.split_init(fragment.read_bytes())


def print_pieces(pieces: dict[str, float], batches: list[Batch]) -> None:
    startup = pieces.pop("(ffmpeg/ffprobe process start-up, `ffmpeg -version` p50)")
    worker = {k: v for k, v in pieces.items() if k.startswith("worker:")}
    total = sum(worker.values())
    print(f"\nwhere one segment's time goes: each piece alone, sequential, mean of {PIECE_SEGMENTS} segments")
    for name, value in pieces.items():
        share = f"{value / total:6.1%} of worker" if name in worker else " " * 16
        print(f"  {name:44s} {ms(value)}  {share}")
    print(f"  {'sum of the worker pieces':44s} {ms(total)}")
    encode = worker["worker: encode + pictures (1 ffmpeg)"]
    print(f"  encode / worker pieces = {encode / total:.2f}: the ceiling of pipeline/raw with one worker and nothing overlapping")
    launches = 2  # the worker's (encode with pictures, package); the upload adds 2 more
    print(
        f"  ffmpeg/ffprobe process start-up alone (`ffmpeg -version`): {ms(startup)}; x {launches} launches in the worker"
        f" = {ms(launches * startup)} ({launches * startup / total:.0%} of the worker pieces); the upload's 1 = {ms(startup)}"
    )
    for b in batches:
        if b.ok_in:
            mean = statistics.mean(b.ok_in.values())
            print(
                f"  {b.workers} worker(s): 'ok in' mean {ms(mean)}; minus the worker pieces = {ms(mean - total)} "
                "(database, Python, lock waits, CPU shared with uploads/other worker)"
            )


# --- the same, inside a real worker ------------------------------------------------------------


def profiled_worker() -> int:
    """Run server.segment_processor with every ffmpeg/ffprobe launch and SQL statement timed to stderr."""
    from sqlalchemy import Engine

    from server import segment_processor

    execute = ffmpeg._execute

    def timed(argv: list[str], timeout: float) -> tuple[str, str]:
        t0 = time.perf_counter()
        try:
            return execute(argv, timeout)
        finally:
            print(f"bench-ffmpeg {_kind(argv)} {time.perf_counter() - t0:.4f}", file=sys.stderr, flush=True)

    ffmpeg._execute = timed  # run() and probe() look it up at call time
    started: dict[int, float] = {}

    @event.listens_for(Engine, "before_cursor_execute")
    def before(conn, cursor, statement, parameters, context, executemany) -> None:  # type: ignore[no-untyped-def]
        started[id(cursor)] = time.perf_counter()

    @event.listens_for(Engine, "after_cursor_execute")
    def after(conn, cursor, statement, parameters, context, executemany) -> None:  # type: ignore[no-untyped-def]
        verb = statement.split(None, 1)[0].upper()
        print(
            f"bench-db {verb} {time.perf_counter() - started.pop(id(cursor), time.perf_counter()):.4f}",
            file=sys.stderr,
            flush=True,
        )

    return segment_processor.main()


def _kind(argv: list[str]) -> str:
    if argv[0] == ffmpeg.FFPROBE:
        return "ffprobe-decode-check" if "-read_intervals" in argv else "ffprobe-streams"
    if "-filter_complex" in argv:
        return "encode"
    if "mpegts" in argv:
        return "package-3ts-4fmp4"
    return "other"


@dataclass
class Profile:
    segments: int
    ok_in: list[float]
    ffmpeg: Counter[str]
    calls: Counter[str]
    db: Counter[str]
    db_calls: Counter[str]


def profiled_batch(s: Stack, sources: list[Path]) -> Profile:
    """Run a 1-worker batch with profiled_worker; sum its timed pieces from the log."""
    log = s.tmp / "workers-profiled.log"
    command = [sys.executable, "-c", "import sys; from bench.transcode import profiled_worker; sys.exit(profiled_worker())"]
    s.start_workers(1, log, command=command)
    try:
        client = s.app.test_client()
        video_id = new_video(client, "profiled")
        poller = Poller(s, video_id, set(range(len(sources))), BATCH_DEADLINE)
        poller.start()
        for i, src in enumerate(sources):
            upload(client, video_id, segment_upload(i, src.read_bytes()))
        poller.finish()
    finally:
        s.stop_workers()
    profile = Profile(len(sources), list(ok_lines(log, video_id).values()), Counter(), Counter(), Counter(), Counter())
    for match in PROFILE_LINE.finditer(log.read_text(errors="replace")):
        times, calls = (profile.ffmpeg, profile.calls) if match[1] == "ffmpeg" else (profile.db, profile.db_calls)
        times[match[2]] += float(match[3])
        calls[match[2]] += 1
    return profile


def print_profile(p: Profile) -> None:
    n = p.segments
    ok = statistics.mean(p.ok_in)
    print(f"\nthe same inside a real worker (1 process, ffmpeg launches and SQL timed in it), per segment, {n} segments")
    for kind, seconds in p.ffmpeg.most_common():
        print(f"  {kind:28s} {p.calls[kind] / n:5.1f} runs  {ms(seconds / n)}  {seconds / n / ok:6.1%}")
    db = sum(p.db.values())
    print(f"  {'SQL (worker + its reaper)':28s} {sum(p.db_calls.values()) / n:5.1f} stmts {ms(db / n)}  {db / n / ok:6.1%}")
    rest = ok - (sum(p.ffmpeg.values()) + db) / n
    print(f"  {'rest (Python, fsync, waits)':28s} {'':11s} {ms(rest)}  {rest / ok:6.1%}")
    print(f"  {'worker log ok in, mean':28s} {'':11s} {ms(ok)}")
    encode = p.ffmpeg["encode"] / n
    print(
        f"  encode / ok in = {encode / ok:.2f}; the other {sum(p.calls.values()) / n - p.calls['encode'] / n:.0f} launches = {ms(sum(p.ffmpeg.values()) / n - encode)}"
    )


# --- (c) live ---------------------------------------------------------------------------------


@dataclass
class Live:
    count: int
    request: list[float]
    latency: list[float]
    lock_wait: Counter[str]


def live(s: Stack, sources: list[Path], count: int, workers: int = 2) -> Live:
    """Upload one segment every LIVE_INTERVAL s; per segment, response received -> packaged_at seen."""
    log = s.tmp / "workers-live.log"
    s.start_workers(workers, log)
    try:
        client = s.app.test_client()
        video_id = new_video(client, "live")
        bodies = [segment_upload(i, sources[i % len(sources)].read_bytes()) for i in range(count)]
        poller = Poller(s, video_id, set(range(count)), count * LIVE_INTERVAL + 60)
        received: list[float] = []
        request: list[float] = []
        poller.start()
        t0 = time.monotonic()
        for i, body in enumerate(bodies):
            time.sleep(max(0.0, t0 + i * LIVE_INTERVAL - time.monotonic()))
            sent = time.monotonic()
            upload(client, video_id, body)
            received.append(time.monotonic())
            request.append(received[-1] - sent)
        seen = poller.finish()
    finally:
        s.stop_workers()
    return Live(count, request, [seen[i] - received[i] for i in range(count)], poller.lock_wait)


def print_live(result: Live) -> None:
    lat, req = result.latency, result.request
    print(f"\n(c) live: 2 workers, {result.count} segments uploaded every {LIVE_INTERVAL:.1f} s")
    print(
        f"  upload -> ready (response received -> packaged_at seen, 50 ms polling), per segment: {' '.join(f'{x:.2f}' for x in lat)} s"
    )
    print(f"  upload -> ready p50 {ms(percentile(lat, 50))}   p95 {ms(percentile(lat, 95))}   max {ms(max(lat))}")
    print(f"  upload request  p50 {ms(percentile(req, 50))}   p95 {ms(percentile(req, 95))}   max {ms(max(req))}")
    print_lock_wait(result.lock_wait)


if __name__ == "__main__":
    sys.exit(main())
