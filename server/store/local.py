"""The media tree under MEDIA_ROOT and the only code that writes files others read.

    videos/<vid>/originals/<NNNNNN>.<ext>    uploaded bytes (never served)
    videos/<vid>/<REPR>/<NNNNNN>.mp4|.m4s|.ts, init.mp4
    videos/<vid>/audio/<NNNNNN>.m4s, init.mp4
    videos/<vid>/thumbnails/<NNNNNN>.jpg, storyboard/<NNNNNN>.jpg
    videos/<vid>/attempts/<attempt>/<name>   an attempt's outputs, staged until it completes (never served)

Every file is written under a dot-prefixed temp name in its final directory, fsynced,
then renamed, so a reader sees either nothing or the whole file.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterable
from contextlib import suppress
from pathlib import Path
from typing import TypeVar

from server.core.errors import InsufficientStorage, PayloadTooLarge

T = TypeVar("T")  # what _on_disk's call returns
_NAME = re.compile(r"^[A-Za-z0-9_]{1,16}$")


class MediaStore:
    """Paths of one deployment's media, built from integer ids and validated names."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def video_dir(self, video_id: int) -> Path:
        return self.root / "videos" / str(int(video_id))

    def original(self, video_id: int, segment_id: int, extension: str) -> Path:
        return self.video_dir(video_id) / "originals" / f"{int(segment_id):06d}.{_checked(extension)}"

    def rendition_dir(self, video_id: int, name: str) -> Path:
        return self.video_dir(video_id) / _checked(name)

    def file(self, video_id: int, folder: str, segment_id: int, extension: str) -> Path:
        return self.video_dir(video_id) / _checked(folder) / f"{int(segment_id):06d}.{_checked(extension)}"

    def served_file(self, video_id: int, relative: str) -> Path | None:
        """The regular file at `relative` in the video's folder, reached through no symlink; else None.

        A link planted in the tree never serves what it points at (deploy/nginx/team03.conf refuses the
        same with disable_symlinks); MEDIA_ROOT itself may be reached through one.
        """
        target = self.video_dir(video_id).resolve() / relative
        return target if target.resolve() == target and target.is_file() else None

    def attempt_dir(self, video_id: int, attempt_id: int) -> Path:
        """Where one attempt's outputs are staged until complete_attempt renames them into place."""
        return self.video_dir(video_id) / "attempts" / str(int(attempt_id))

    def _folders(self, video_ids: Iterable[int] | None) -> list[Path]:
        """The whole tree (None), or the folders of these videos that exist."""
        if video_ids is None:
            return [self.root] if self.root.is_dir() else []
        return [folder for folder in map(self.video_dir, video_ids) if folder.is_dir()]

    def attempt_dirs(self, video_ids: Iterable[int] | None = None) -> list[tuple[int, int, Path]]:
        """Staging directories as (video_id, attempt_id, path), of every video or of these: the reaper removes
        those of finished attempts."""
        found = []
        if video_ids is None:
            paths: Iterable[Path] = self.root.glob("videos/*/attempts/*")
        else:
            paths = (path for folder in self._folders(video_ids) for path in folder.glob("attempts/*"))
        for path in paths:
            if path.parent.parent.name.isdigit() and path.name.isdigit():
                found.append((int(path.parent.parent.name), int(path.name), path))
        return found

    def remove_video(self, video_id: int) -> None:
        """Delete every file a video owns (after its row: a publisher still writing removes them again,
        server/domain/publishing.py)."""
        shutil.rmtree(self.video_dir(video_id), ignore_errors=True)

    def temp_files(self, video_ids: Iterable[int] | None = None) -> list[Path]:
        """List leftover temp files in the whole tree, or in these videos' folders (tests and the operator check
        this stays empty)."""
        return [p for folder in self._folders(video_ids) for p in folder.rglob(".*") if p.is_file()]


def _checked(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"unsafe path component {name!r}")
    return name


def temp_path_for(final: Path) -> Path:
    """Return a unique hidden temp name beside `final`, so the rename stays on one filesystem."""
    return final.parent / f".{final.name}.tmp-{secrets.token_hex(4)}"


def file_sha256(path: Path) -> str:
    """Return the SHA-256 (hex) of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def commit_file(temp: Path, final: Path) -> None:
    """Make `temp` durable and visible as `final` in one rename."""
    with open(temp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(temp, final)
    fsync_dir(final.parent)


def atomic_write(final: Path, data: bytes) -> None:
    """Write `data` to `final` so readers never see a partial file."""
    final.parent.mkdir(parents=True, exist_ok=True)
    temp = temp_path_for(final)
    try:
        with open(temp, "wb") as fh:
            fh.write(data)
        commit_file(temp, final)
    except OSError as exc:
        temp.unlink(missing_ok=True)
        raise _storage_error(exc) from exc


def replace_file(final: Path, data: bytes) -> None:
    """Replace `final` with `data` in one rename: a reader sees the old bytes or the new ones, never a mix.

    Not fsynced: a file written this way is derived from the database (a playlist), and the reaper
    rewrites any that lag after a crash. The folder above `final`'s own must exist.
    """
    final.parent.mkdir(exist_ok=True)
    temp = temp_path_for(final)
    try:
        with open(temp, "wb") as fh:
            fh.write(data)
        os.chmod(temp, 0o644)  # static servers run as another user
        os.replace(temp, final)
    except OSError as exc:
        temp.unlink(missing_ok=True)
        raise _storage_error(exc) from exc


def _on_disk(call: Callable[..., T], *args: int) -> T:
    """Return call(*args); an OSError from the disk is raised as the storage error it means."""
    try:
        return call(*args)
    except OSError as exc:
        raise _storage_error(exc) from exc


def _storage_error(exc: OSError) -> Exception:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return InsufficientStorage("the server's disk is full; nothing was stored")
    return exc


class UploadFile:
    """A file being received: streamed to a temp file beside its destination, hashed as it goes."""

    def __init__(self, directory: Path, limit: int) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f".upload-{secrets.token_hex(6)}"
        self.limit = limit
        self.size = 0
        self._hash = hashlib.sha256()
        self._fh = open(self.path, "xb")  # noqa: SIM115 - closed in close()/discard()

    # Werkzeug's form parser writes parts through this file-like interface.
    def write(self, chunk: bytes) -> int:
        self.size += len(chunk)
        if self.size > self.limit:
            raise PayloadTooLarge(f"data: segment larger than MAX_SEGMENT_BYTES ({self.limit} bytes)")
        self._hash.update(chunk)
        try:
            return self._fh.write(chunk)
        except OSError as exc:
            raise _storage_error(exc) from exc

    # Each of these may flush Python's buffer, which is where a full disk shows up (507, never a 500).
    def seek(self, *args: int) -> int:
        return _on_disk(self._fh.seek, *args)

    def tell(self) -> int:
        return _on_disk(self._fh.tell)

    def read(self, *args: int) -> bytes:
        return _on_disk(self._fh.read, *args)

    def flush(self) -> None:
        _on_disk(self._fh.flush)

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def commit(self, final: Path) -> None:
        """Fsync and rename into place; raise InsufficientStorage when the disk is full."""
        try:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.path, final)
            fsync_dir(final.parent)
        except OSError as exc:
            self.discard()
            raise _storage_error(exc) from exc

    def commit_new(self, final: Path) -> bool:
        """Fsync and link into place unless `final` exists; False (and nothing changed) when it does.

        A link, not a rename: two uploads of one name racing both reach here, one wins, the other compares.
        """
        try:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            try:
                os.link(self.path, final)
            except FileExistsError:
                return False
            self.path.unlink()
            fsync_dir(final.parent)
            return True
        except OSError as exc:
            self.discard()
            raise _storage_error(exc) from exc

    def discard(self) -> None:
        """Close and delete the temp file; safe to call twice, and on a full disk.

        Closing flushes the bytes still buffered, which a full disk refuses again (ENOSPC): they were
        to be dropped anyway, and the file must go whatever closing said.
        """
        with suppress(OSError):
            if not self._fh.closed:
                self._fh.close()
        self.path.unlink(missing_ok=True)
