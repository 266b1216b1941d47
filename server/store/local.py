"""Files on this machine's disk, written so a reader sees either nothing or the whole file.

Every file is written under a dot-prefixed temp name in its final directory, fsynced, then renamed;
an upload streams into an UploadFile (hashed as it goes) in MEDIA_ROOT/scratch until it becomes an object
(server/store/media.py). The local object tree (server/store/objects.py) writes its files the same way.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import secrets
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import TypeVar

from server.core.errors import InsufficientStorage, PayloadTooLarge

T = TypeVar("T")  # what _on_disk's call returns
_NAME = re.compile(r"^[A-Za-z0-9_]{1,16}$")


def checked_name(name: str) -> str:
    """Return `name` if it is a safe file or folder name of the layout (letters, digits, _; at most 16)."""
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
    """A file being received: streamed to a temp file in a scratch folder, hashed as it goes."""

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

    def finished(self) -> Path:
        """Flush, fsync and close the file; return its path (the caller makes it an object, then discards it).

        InsufficientStorage when the disk is full.
        """
        try:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
        except OSError as exc:
            self.discard()
            raise _storage_error(exc) from exc
        return self.path

    def discard(self) -> None:
        """Close and delete the temp file; safe to call twice, and on a full disk.

        Closing flushes the bytes still buffered, which a full disk refuses again (ENOSPC): they were
        to be dropped anyway, and the file must go whatever closing said.
        """
        with suppress(OSError):
            if not self._fh.closed:
                self._fh.close()
        self.path.unlink(missing_ok=True)
