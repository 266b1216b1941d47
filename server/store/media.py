"""The media of one deployment: objects named by keys built here (from integer ids and checked names only),
and the local scratch space where bytes wait to become objects or are read by ffmpeg.

    videos/<vid>/originals/<NNNNNN>.<ext>    uploaded bytes (never served)
    videos/<vid>/<REPR>/<NNNNNN>.mp4|.m4s|.ts, init.mp4
    videos/<vid>/audio/<NNNNNN>.m4s, init.mp4
    videos/<vid>/thumbnails/<NNNNNN>.jpg, storyboard/<NNNNNN>.jpg
    videos/<vid>/manifest.mpd, master.m3u8, ...  the playlists (server/domain/publishing.py)
    videos/<vid>/attempts/<attempt>/<name>   an attempt's outputs, staged until it completes (never served)

The objects live in the local tree under MEDIA_ROOT (the embedded default) or in an S3 bucket
(MEDIA_STORE=s3): either way each is visible whole or not at all (server/store/objects.py). Scratch is
always this machine's disk, MEDIA_ROOT/scratch/: uploads being received, and an encode's or a remux's
files. On the local tree a scratch file becomes an object by a link (no second copy), and readers use an
object's own file (`readable`); on S3 it is uploaded, and readers download it to scratch first.
"""

from __future__ import annotations

import logging
import secrets
import shutil
import threading
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from server.core.errors import StorageUnavailable
from server.store.local import checked_name
from server.store.objects import ObjectMissing, ObjectStore, PutResult, Source, UnsafeKey, checked_key

log = logging.getLogger(__name__)
SCRATCH = "scratch"
PARALLEL = 8  # S3 requests one process makes at once for one piece of work (a publish, a remux's outputs)
_POOL: list[ThreadPoolExecutor] = []
_POOL_LOCK = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    """The process's pool for parallel S3 requests, made on first use (boto3's clients are thread-safe)."""
    with _POOL_LOCK:
        if not _POOL:
            _POOL.append(ThreadPoolExecutor(PARALLEL, thread_name_prefix="store"))
        return _POOL[0]  # MEDIA_ROOT/scratch: never a key (keys start with videos/)


class MediaStore:
    """Keys of one deployment's media, its objects, and this machine's scratch space."""

    def __init__(self, objects: ObjectStore, root: Path) -> None:
        self.objects = objects
        self.root = Path(root)  # MEDIA_ROOT: the local tree's root, and where scratch lives
        self.scratch_root = self.root / SCRATCH

    # -- keys ---------------------------------------------------------------------------------------

    @staticmethod
    def video_prefix(video_id: int) -> str:
        return f"videos/{int(video_id)}/"

    def original(self, video_id: int, segment_id: int, extension: str) -> str:
        return f"{self.video_prefix(video_id)}originals/{int(segment_id):06d}.{checked_name(extension)}"

    def file(self, video_id: int, folder: str, segment_id: int, extension: str) -> str:
        return f"{self.video_prefix(video_id)}{checked_name(folder)}/{int(segment_id):06d}.{checked_name(extension)}"

    def init(self, video_id: int, folder: str) -> str:
        """The track's initialization segment (identical for every segment of the track)."""
        return f"{self.video_prefix(video_id)}{checked_name(folder)}/init.mp4"

    def attempt_prefix(self, video_id: int, attempt_id: int) -> str:
        return f"{self.video_prefix(video_id)}attempts/{int(attempt_id)}/"

    def attempt_output(self, video_id: int, attempt_id: int, name: str) -> str:
        """Where one output of an attempt is staged until complete_attempt commits it."""
        return checked_key(self.attempt_prefix(video_id, attempt_id) + name)

    def playlist(self, video_id: int, name: str) -> str:
        """A published playlist's key (`master.m3u8`, `HIGH/playlist.m3u8`, `live_m3u8/root.m3u8`...)."""
        return checked_key(self.video_prefix(video_id) + name)

    def served(self, video_id: int, relative: str) -> str | None:
        """The key of `relative` (a name of the layout the caller checked) in the video's folder; None if unsafe."""
        try:
            return checked_key(self.video_prefix(video_id) + relative)
        except UnsafeKey:
            return None

    # -- objects ------------------------------------------------------------------------------------

    def put(self, key: str, source: Source, *, durable: bool = True) -> None:
        """Store `source` under `key`, replacing what was there (whole or not at all; see ObjectStore.put)."""
        self.objects.put(key, source, durable=durable)

    def put_many(self, items: Mapping[str, Source], *, durable: bool = True) -> None:
        """Store several objects; on S3 up to PARALLEL puts at once (each is a round trip), on the local tree in turn.

        Raises the first failure once every put has ended; the ones that succeeded stay (each is whole).
        """
        if self.objects.backend != "s3" or len(items) < 2:
            for key, source in items.items():
                self.objects.put(key, source, durable=durable)
            return
        futures = [_pool().submit(self.objects.put, key, source, durable=durable) for key, source in items.items()]
        errors = [exc for future in futures if (exc := future.exception()) is not None]
        if errors:
            raise errors[0]

    def readable_many(self, keys: list[str], folder: Path) -> list[Path]:
        """`readable` of several keys, downloaded (on S3) up to PARALLEL at once; in the order of `keys`."""
        if self.objects.backend != "s3" or len(keys) < 2:
            return [self.readable(key, folder) for key in keys]
        return list(_pool().map(lambda key: self.readable(key, folder), keys))

    def put_new(self, key: str, source: Source) -> PutResult:
        """Store `source` under `key` unless it holds an object; say whether that one had the same bytes."""
        return self.objects.put(key, source, if_absent=True)

    def read(self, key: str) -> bytes | None:
        """The object's bytes, or None when there is none."""
        try:
            return self.objects.get(key)
        except ObjectMissing:
            return None

    def exists(self, key: str) -> bool:
        return self.objects.local_path(key) is not None or self.objects.head(key) is not None

    def readable(self, key: str, folder: Path) -> Path:
        """A local file holding the object: its own file on the local tree, else a download into `folder`.

        ObjectMissing if there is none. A download is the caller's to delete (it is in its scratch folder).
        """
        path = self.objects.local_path(key)
        if path is not None:
            return path
        target = folder / key.replace("/", "-")  # unique in the folder: a rung's and another's have one name
        if not target.is_file():  # else downloaded whole (renamed in) by an earlier call into this folder
            self.objects.download(key, target)
        return target

    def delete(self, key: str) -> None:
        self.objects.delete(key)

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object whose key starts with `prefix`; return how many."""
        keys = self.objects.list(prefix)
        for key in keys:
            self.objects.delete(key)
        return len(keys)

    def remove_video(self, video_id: int) -> None:
        """Delete every object a video owns, as far as the store answers: its row is gone already, and the
        operator's purge removes what a store outage left (orphan videos' media)."""
        self._tidy(self.video_prefix(video_id), "purge removes them")

    def remove_attempt(self, video_id: int, attempt_id: int) -> None:
        """Delete an attempt's staged outputs and, if its worker ran on this machine, its scratch folder, as far
        as the store answers: the reaper removes the staged outputs of attempts that are over."""
        for purpose in ("work", "sources"):
            shutil.rmtree(self.scratch_root / purpose / str(int(attempt_id)), ignore_errors=True)
        self._tidy(self.attempt_prefix(video_id, attempt_id), "the reaper removes them")

    def discard(self, key: str) -> None:
        """Delete an object nothing needs any more (an encoded segment's original), as far as the store answers."""
        try:
            self.objects.delete(key)
        except StorageUnavailable as exc:
            log.warning("%s not deleted (%s); left in the store", key, exc)

    def _tidy(self, prefix: str, later: str) -> None:
        try:
            self.delete_prefix(prefix)
        except StorageUnavailable as exc:  # what it tidies is never read again; a failure is nobody's error
            log.warning("objects under %s not deleted (%s); %s", prefix, exc, later)

    def video_ids(self, limit: int) -> list[int]:
        """The ids of the videos that have objects, smallest first, at most `limit`."""
        ids = sorted(int(name) for name in self.objects.folders("videos/") if name.isdigit())
        return ids[:limit]

    def attempts(self, video_ids: Iterable[int] | None = None) -> list[tuple[int, int]]:
        """Staged attempts as (video_id, attempt_id), of every video or of these: the reaper removes finished ones."""
        found = []
        for video_id in self.video_ids(10**9) if video_ids is None else video_ids:
            for name in self.objects.folders(f"{self.video_prefix(video_id)}attempts/"):
                if name.isdigit():
                    found.append((int(video_id), int(name)))
        return found

    # -- scratch ------------------------------------------------------------------------------------

    def scratch(self, purpose: str) -> Path:
        """This machine's scratch folder for `purpose` (uploads, attempts, packaging), made if missing."""
        folder = self.scratch_root / checked_name(purpose)
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    @contextmanager
    def workspace(self, purpose: str) -> Iterator[Path]:
        """A fresh scratch folder for one piece of work, removed with everything in it afterwards."""
        folder = self.scratch(purpose) / secrets.token_hex(8)
        folder.mkdir()
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def temp_files(self, video_ids: Iterable[int] | None = None) -> list[Path]:
        """Files in scratch, and temp files in the local tree: the whole tree's, or only these videos' folders.

        Tests and the operator check this stays empty; the reaper sweeps what is old (server/ops/purge.py).
        """
        scratch = self.scratch_root
        found = [p for p in scratch.rglob("*") if p.is_file()] if scratch.is_dir() else []
        if video_ids is None:
            folders = [self.root / "videos"]
        else:
            folders = [self.root / self.video_prefix(video_id) for video_id in video_ids]
        for folder in folders:
            if folder.is_dir():
                found += [p for p in folder.rglob(".*") if p.is_file()]
        return found
