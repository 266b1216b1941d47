"""What `cli media migrate` copies from the local media tree into the object store, and how (issue 17).

The keys are the tree's relative paths: `videos/<vid>/...` under MEDIA_ROOT becomes the same key (under
S3_PREFIX, which the store adds). Every file a deployment keeps is copied: originals, renditions, CMAF
and TS segments, init segments, playlists, thumbnails, the storyboard. Never copied:

- `videos/<vid>/attempts/`: an attempt's outputs staged until it completes (never served; a finished
  attempt's files are renamed into place, where the copy takes them);
- dot-named files and folders: temp files of writers (`.x.tmp-...`, `.upload-...`); no key may start
  with a dot anyway (server/store/objects.py `checked_key`);
- symlinks (nothing serves what a link in the tree points at), and anything outside `videos/` (a remote
  worker's scratch `work/`).

Resumable and idempotent: a key whose object has the file's size and SHA-256 is done; a missing key is
written with `if_absent`, then looked up again and compared. A key holding other bytes is a conflict:
left alone and reported, unless `replace` (the local tree is the truth: files rewritten since an earlier
copy, such as playlists). Files are streamed (the store's put takes a path), never read whole.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from server.core.errors import StorageUnavailable
from server.store.objects import ObjectInfo, ObjectStore, PutResult, UnsafeKey, checked_key, digest_of

STAGING = "attempts"  # videos/<vid>/attempts/: attempts' staging folders


@dataclass(frozen=True)
class Item:
    key: str
    path: Path
    size: int


@dataclass
class Plan:
    """The files to copy, and what the walk left out (counted, said in the summary)."""

    items: list[Item] = field(default_factory=list)
    staging_dirs: int = 0  # videos/<vid>/attempts/<attempt>/ folders
    temp_files: int = 0  # dot-named files and folders
    links: int = 0
    unsafe: list[str] = field(default_factory=list)  # names no key may have

    @property
    def bytes(self) -> int:
        return sum(item.size for item in self.items)


@dataclass(frozen=True)
class Conflict:
    key: str
    size: int
    sha256: str
    bucket: ObjectInfo


@dataclass
class Progress:
    files: int
    files_total: int
    bytes: int
    bytes_total: int


@dataclass
class Result:
    copied: list[str] = field(default_factory=list)
    bytes_copied: int = 0
    already: int = 0
    conflicts: list[Conflict] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    vanished: list[str] = field(default_factory=list)  # removed from the tree while the copy ran
    would_copy: list[Item] = field(default_factory=list)  # a dry run's answer


def plan(root: Path) -> Plan:
    """Walk MEDIA_ROOT/videos and list what a deployment keeps, sorted by key."""
    found = Plan()
    videos = root / "videos"
    for folder, dirs, files in os.walk(videos):
        here = Path(folder)
        base = here.relative_to(root).as_posix()
        kept = []
        for name in sorted(dirs):
            if name.startswith("."):
                found.temp_files += 1
            elif (here / name).is_symlink():
                found.links += 1
            elif name == STAGING and here.parent == videos:
                found.staging_dirs += sum(1 for _ in (here / name).iterdir())
            else:
                kept.append(name)
        dirs[:] = kept
        for name in files:
            path = here / name
            if name.startswith("."):
                found.temp_files += 1
            elif path.is_symlink():
                found.links += 1
            else:
                _add(found, f"{base}/{name}", path)
    found.items.sort(key=lambda item: item.key)
    return found


def _add(found: Plan, key: str, path: Path) -> None:
    try:
        checked_key(key)
        size = path.stat().st_size
    except UnsafeKey:
        found.unsafe.append(key)
    except FileNotFoundError:  # removed while we walked: nothing to copy
        return
    else:
        found.items.append(Item(key, path, size))


def copy(
    store: ObjectStore,
    work: Plan,
    *,
    dry_run: bool = False,
    replace: bool = False,
    on_progress: Callable[[Progress], None] = lambda _: None,
) -> Result:
    """Bring every planned file into `store` (or, with `dry_run`, only say which are missing)."""
    result = Result()
    done = Progress(0, len(work.items), 0, work.bytes)
    for item in work.items:
        try:
            _retried(functools.partial(_one, store, item, result, dry_run=dry_run, replace=replace), item.path)
        except FileNotFoundError:
            result.vanished.append(item.key)
        done.files += 1
        done.bytes += item.size
        on_progress(done)
    return result


def _retried(work: Callable[[], None], path: Path) -> None:
    """Run `work`; again when it failed while its file was replaced (a running deployment rewriting a playlist:
    the store's put hashes the file, then opens it again to send it, and the engine refuses bytes that do not
    match the Content-MD5 sent). A failure while the file stayed as it was is the store's: raised."""
    for tries_left in range(REPLACED_TRIES - 1, -1, -1):
        before = _identity(path)
        try:
            return work()
        except StorageUnavailable:
            if not tries_left or _identity(path) == before:
                raise


REPLACED_TRIES = 3


def _identity(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return st.st_ino, st.st_size, st.st_mtime_ns


def _digest(path: Path) -> ObjectInfo:
    """The file's size and SHA-256 from one read (a file replaced meanwhile gives one version's, never a mix)."""
    sha256, _md5, size = digest_of(path)
    return ObjectInfo(size, sha256)


def _one(store: ObjectStore, item: Item, result: Result, *, dry_run: bool, replace: bool) -> None:
    local = _digest(item.path)
    size, sha256 = local.size, local.sha256
    there = store.head(item.key)
    if there == local:
        result.already += 1
        return
    if dry_run:
        if there is None:
            result.would_copy.append(item)
        else:
            result.conflicts.append(Conflict(item.key, size, sha256, there))
        return
    if there is None:
        answer = store.put(item.key, item.path, if_absent=True)
        if answer is PutResult.SAME:  # another copy (a second migrate) wrote it meanwhile
            result.already += 1
            return
        if answer is PutResult.CREATED:
            result.bytes_copied += _verified(store, item)
            result.copied.append(item.key)
            return
        there = store.head(item.key)
    if not replace:
        result.conflicts.append(Conflict(item.key, size, sha256, there or ObjectInfo(0, "")))
        return
    store.put(item.key, item.path)
    result.bytes_copied += _verified(store, item)
    result.replaced.append(item.key)


def _verified(store: ObjectStore, item: Item) -> int:
    """Look the new object up and compare it with the file; return its size (StorageUnavailable if it differs).

    The file is hashed again here, after the put: a file replaced while it was copied (a playlist rewritten
    by a running deployment) is then compared with what the put read, its newest bytes.
    """
    there = store.head(item.key)
    local = _digest(item.path)
    if there != local:
        detail = f"{item.key}: the bucket holds {there} after the copy, the file is {local}"
        raise StorageUnavailable(f"the object store does not hold what was copied to {item.key}", detail=detail)
    return local.size


def estimate(progress: Progress, elapsed: float) -> tuple[float | None, float | None]:
    """Return (bytes per second, seconds left) so far, or None where nothing can be said yet (no ETA in the
    first second: one small file says nothing of the rest)."""
    if elapsed <= 0 or progress.bytes <= 0:
        return None, None
    rate, left = progress.bytes / elapsed, progress.bytes_total - progress.bytes
    return rate, (left / rate if elapsed >= 1.0 or not left else None)
