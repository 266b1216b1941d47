"""What a worker does with one TRANSCODE_SEGMENT job, wherever it runs: claim, encode, hand back.

The same code runs on the origin (LocalOrigin) and on a machine that shares nothing with it but the
network (RemoteOrigin): only the Origin differs. ffmpeg argv come from server/core/transcode; the segment's
state is server/domain/lifecycle.py's; here we only do the work and report it.
"""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
import shutil
import threading
import time
from pathlib import Path

from server.config import Config
from server.core.errors import Conflict, FFmpegError, ServiceError, StorageUnavailable, disk_full
from server.core.jobs import SegmentJob
from server.core.retry import Failure
from server.core.transcode import ffmpeg, outputs
from server.core.transcode.ladder import SourceInfo
from server.core.wire import AttemptGone, Claim, Skip
from server.infra import metrics
from server.worker.origin import Origin

log = logging.getLogger(__name__)

THUMBNAIL_WIDTH = 320
HEARTBEAT_MAX_INTERVAL = 2.0  # seconds


def handle_transcode(origin: Origin, config: Config, data: bytes) -> None:
    """Run one TRANSCODE_SEGMENT job and log one line about it."""
    job = SegmentJob.decode(data)
    started = time.monotonic()
    outcome = "error"
    try:
        claim = origin.claim(job)
        if isinstance(claim, Skip):
            outcome = f"skipped ({claim.reason})"
            return
        outcome = encode(origin, claim, config)
    finally:
        log.info("video %s segment %s: %s in %.2fs", job.video_id, job.segment_id, outcome, time.monotonic() - started)


def encode(origin: Origin, claim: Claim, config: Config) -> str:
    """Encode one claimed segment into every rung, its thumbnail and storyboard strip; return the outcome."""
    workdir = origin.workdir(claim)
    # Renewed from the claim to the completion, often enough to show progress and three times per lease.
    lease = _Lease(origin, claim, every=min(config.LEASE_SECONDS / 3, HEARTBEAT_MAX_INTERVAL))
    lease.start()
    try:
        source = origin.fetch_source(claim, workdir)
        info = (
            SourceInfo.from_json(claim.source_info) if claim.source_info else ffmpeg.probe(source, timeout=config.PROBE_TIMEOUT)
        )
        plan = claim.renditions
        files = {name: workdir / name for name in claim.outputs}
        tile = ffmpeg.tile_height(plan[-1].width, plan[-1].height, ffmpeg.STORYBOARD_TILE_WIDTH)  # as the storyboard VTT says
        pictures = ffmpeg.Pictures(
            files["thumbnail.jpg"],
            files["storyboard.jpg"],
            at=min(1.0, info.duration / 2),
            width=THUMBNAIL_WIDTH,
            tile_height=tile,
        )
        bounds = ffmpeg.Bounds(seconds=config.MAX_SEGMENT_SECONDS, pixels=config.MAX_SOURCE_PIXELS)
        mp4s = {r.name: files[f"{r.name}.mp4"] for r in plan}
        argv = ffmpeg.transcode_argv(source, plan, mp4s, source=info, pictures=pictures, bounds=bounds)
        encode_started = time.monotonic()
        ffmpeg.run_with_progress(ffmpeg.with_progress(argv), config.FFMPEG_TIMEOUT, info.duration, lease.on_progress)
        # What the origin will check on completion, checked here first: bad media fails here, for good.
        outputs.Plan(plan, info.duration).check_files(files)
        sizes = {r.name: files[f"{r.name}.mp4"].stat().st_size for r in plan}
        metrics.encoded(time.monotonic() - encode_started, info.duration, sizes)
        for name, path in files.items():
            lease.check()
            origin.put_output(claim, name, path)
        lease.check()
        origin.complete(claim)
        return "ok"
    except AttemptGone as exc:
        return f"abandoned ({exc})"
    except (ServiceError, OSError) as exc:
        failure = classify(exc)
        try:
            origin.fail(claim, f"{type(exc).__name__}: {exc}", failure)
        except AttemptGone as gone:  # taken back meanwhile (its video deleted, a cancel): why ffmpeg failed is moot
            return f"abandoned ({gone})"
        return f"failed ({failure.value}): {str(exc)[:300]}"
    finally:
        lease.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def classify(exc: BaseException) -> Failure:
    """Name a failure for the retry policy: full disk, store down, a crash that may not recur, or media that never decodes."""
    if disk_full(exc):
        return Failure.DISK_FULL
    if isinstance(exc, StorageUnavailable):
        return Failure.STORE
    if isinstance(exc, (FFmpegError, OSError, Conflict)):  # Conflict: outputs not all handed back (a transfer)
        return Failure.CRASH
    return Failure.MEDIA


class _Lease(threading.Thread):
    """Renew an attempt's lease every `every` seconds while the worker holds it, with ffmpeg's latest progress.

    A renewal that fails for a passing reason (the database or the network) is retried at the next tick:
    the lease outlasts two missed renewals. AttemptGone (the attempt was taken back) is kept, and the
    worker stops at its next check: ffmpeg is killed from its progress callback.
    """

    def __init__(self, origin: Origin, claim: Claim, every: float) -> None:
        super().__init__(name=f"lease-{claim.attempt_id}", daemon=True)
        self.origin, self.claim, self.every = origin, claim, every
        self.progress = 0.0
        self.gone: AttemptGone | None = None
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(self.every):
            try:
                self.origin.heartbeat(self.claim, self.progress)
            except AttemptGone as exc:
                self.gone = exc
                return
            except Exception as exc:  # noqa: BLE001 - any passing failure: the next tick retries
                log.warning("attempt %s: lease renewal failed, retrying: %s", self.claim.attempt_id, exc)

    def check(self) -> None:
        if self.gone is not None:
            raise self.gone

    def on_progress(self, fraction: float) -> None:
        self.progress = fraction
        self.check()

    def stop(self) -> None:
        self._done.set()
        self.join()


def workdir_for(root: Path, claim: Claim) -> Path:
    """A private, empty directory for one attempt under `root` (a remote worker's scratch tree)."""
    path = root / str(int(claim.attempt_id))
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


class Scratch:
    """A remote worker's own scratch tree, MEDIA_ROOT/work/<pid>-<random>/; dead workers' trees are swept at start.

    Each tree has a lock file beside it (`<name>.lock`), flock'ed for as long as its process lives: the
    kernel releases it when the process dies, `kill -9` included. A starting worker makes its own tree,
    then removes every other entry of work/ whose lock it can take (its worker is gone) or that has none
    (an older layout). Several workers may share a MEDIA_ROOT: making and sweeping happen under one more
    lock (work/.sweep), so no worker sweeps a tree another is still making. Nothing outside work/ is touched.
    Keep the object for the life of the process: its lock is released when it is collected.
    """

    def __init__(self, media_root: Path) -> None:
        base = Path(media_root) / "work"
        base.mkdir(parents=True, exist_ok=True)
        name = f"{os.getpid()}-{secrets.token_hex(4)}"
        with open(base / ".sweep", "a") as gate:
            fcntl.flock(gate, fcntl.LOCK_EX)
            self._lock = open(base / f"{name}.lock", "a")  # noqa: SIM115 - held until the process exits
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            swept = [entry.name for entry in base.iterdir() if _sweep(base, entry, keep=(".sweep", name, f"{name}.lock"))]
            self.path = base / name
            self.path.mkdir()
        if swept:
            log.info("swept %d scratch entries of dead workers from %s", len(swept), base)

    def close(self) -> None:
        """Remove this tree and release its lock (a worker exiting normally)."""
        shutil.rmtree(self.path, ignore_errors=True)
        Path(self._lock.name).unlink(missing_ok=True)
        self._lock.close()


def _sweep(base: Path, entry: Path, keep: tuple[str, ...]) -> bool:
    """Remove `entry` of the scratch root unless it is kept or belongs to a live worker; whether it was removed."""
    if entry.name in keep or _held(base / f"{entry.name.removesuffix('.lock')}.lock"):
        return False
    if entry.is_dir() and not entry.is_symlink():
        shutil.rmtree(entry, ignore_errors=True)
    else:
        entry.unlink(missing_ok=True)
    return True


def _held(lock: Path) -> bool:
    """Whether a live process holds this lock file (False when there is none)."""
    try:
        fd = os.open(lock, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing releases the lock if it was taken here
    return False
