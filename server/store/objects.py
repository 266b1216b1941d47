"""Media as objects: one interface, a local tree and S3 behind it (server/store/media.py names the keys).

An object is named by a key such as `videos/12/HIGH/000003.m4s` and is visible whole or not at all.
Writes that may race (two uploads of one segment, a retried attempt) use `put(..., if_absent=True)`:
the first write wins, and a later one learns whether it brought the same bytes (`SAME`: an idempotent
retry, nothing to do) or other bytes (`DIFFERENT`: a conflict for the caller to decide). "Same" is
decided by SHA-256, which every backend keeps beside the bytes.

Keys are checked in one place, `checked_key`: segments of `[A-Za-z0-9_=-]` and inner dots, never
starting with a dot (so no `..`, and never a name of the local tree's hidden temp files), joined by
single slashes, no leading or trailing slash. In the local tree a key cannot also be the folder of
other keys (`a` and `a/b`); the media layout never needs both.
"""

from __future__ import annotations

import builtins
import enum
import hashlib
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

from server.core.errors import InsufficientStorage, NotFound, StorageUnavailable
from server.store.local import _storage_error, file_sha256, fsync_dir, temp_path_for

if TYPE_CHECKING:
    from server.config import Config

CHUNK = 1024 * 1024
MAX_KEY_LENGTH = 512
_SEGMENT = r"[A-Za-z0-9_=-][A-Za-z0-9_.=-]*"
_KEY = re.compile(rf"^{_SEGMENT}(?:/{_SEGMENT})*$")
_PREFIX = re.compile(rf"^(?:{_SEGMENT}/)*(?:{_SEGMENT})?$")

Source = bytes | Path
_T = TypeVar("_T")

# What the store's metrics are labelled by (server/infra/metrics.py): every value, fixed here.
OPERATIONS = ("put", "get", "download", "head", "delete", "list")
BACKENDS = ("local", "s3")
ERROR_KINDS = ("unavailable", "missing", "conflict", "other")
# Told of each store call once it returns or raises: (operation, backend, seconds, error kind or None).
StoreObserver = Callable[[str, str, float, str | None], None]


class UnsafeKey(ValueError):
    """A key or prefix outside the safe alphabet: a bug in the caller, never a client's input."""


class ObjectMissing(NotFound):
    """No object under that key."""


class PutResult(enum.Enum):
    CREATED = "created"  # these bytes are now stored under the key
    SAME = "same"  # if_absent: the key already held these very bytes (by SHA-256)
    DIFFERENT = "different"  # if_absent: the key already held other bytes; nothing was changed


@dataclass(frozen=True)
class ObjectInfo:
    size: int
    sha256: str


class ObjectStore(Protocol):
    """Where media objects live. Every method raises StorageUnavailable when the backend fails."""

    backend: str  # one of BACKENDS

    def put(self, key: str, source: Source, *, if_absent: bool = False, durable: bool = True) -> PutResult:
        """Store `source` (bytes, or a file's path) under `key`; with `if_absent`, only if the key is free.

        `durable=False`: the bytes may be lost in a crash of the machine (never torn): for what is derived from
        the database and rewritten when it lags (playlists). A backend that is durable anyway ignores it.
        """
        ...

    def get(self, key: str) -> bytes:
        """Return an object's bytes; ObjectMissing if there is none."""
        ...

    def download(self, key: str, path: Path) -> None:
        """Write an object to `path` (whole or not at all); ObjectMissing if there is none."""
        ...

    def head(self, key: str) -> ObjectInfo | None:
        """Return an object's size and SHA-256, or None when there is none."""
        ...

    def delete(self, key: str) -> None:
        """Remove an object; no error when there is none."""
        ...

    def list(self, prefix: str = "") -> list[str]:
        """Return the keys that start with `prefix`, sorted."""
        ...

    def folders(self, prefix: str) -> builtins.list[str]:
        """Return the names one level below the folder `prefix` (ending in `/`) that hold keys, sorted."""
        ...

    def local_path(self, key: str) -> Path | None:
        """Return the object's own file where the backend is a local tree (read it, never write it), else None."""
        ...

    def check(self) -> None:
        """Raise StorageUnavailable unless the backend answers within a couple of seconds (readiness)."""
        ...


def checked_key(key: str) -> str:
    """Return `key` if it is a safe object key; raise UnsafeKey otherwise (the one key check)."""
    if not isinstance(key, str) or len(key) > MAX_KEY_LENGTH or not _KEY.match(key):
        raise UnsafeKey(f"unsafe object key {key!r}")
    return key


def checked_prefix(prefix: str) -> str:
    """Return `prefix` if it is empty or a safe start of a key (`videos/1/` or `videos/1/HI`)."""
    if not isinstance(prefix, str) or len(prefix) > MAX_KEY_LENGTH or not _PREFIX.match(prefix):
        raise UnsafeKey(f"unsafe object key prefix {prefix!r}")
    return prefix


def digest_of(source: Source) -> tuple[str, str, int]:
    """Return (SHA-256 hex, MD5 hex, size) of bytes or a file, read in chunks."""
    sha, md5, size = hashlib.sha256(), hashlib.md5(usedforsecurity=False), 0
    for chunk in _chunks(source):
        sha.update(chunk)
        md5.update(chunk)
        size += len(chunk)
    return sha.hexdigest(), md5.hexdigest(), size


def _chunks(source: Source) -> Iterator[bytes]:
    if isinstance(source, bytes | bytearray | memoryview):
        yield bytes(source)
        return
    with open(source, "rb") as fh:
        while chunk := fh.read(CHUNK):
            yield chunk


class LocalObjects:
    """Objects as files under `root`: written beside their final name, fsynced, then renamed or linked in."""

    backend = "local"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        return self.root / checked_key(key)

    def put(self, key: str, source: Source, *, if_absent: bool = False, durable: bool = True) -> PutResult:
        final = self._path(key)
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            temp = temp_path_for(final)
            try:
                sha256 = _write_synced(temp, source, durable=durable)
                if not if_absent:
                    os.replace(temp, final)
                elif not _link_new(temp, final):
                    return PutResult.SAME if file_sha256(final) == sha256 else PutResult.DIFFERENT
                if durable:
                    fsync_dir(final.parent)
                return PutResult.CREATED
            finally:
                temp.unlink(missing_ok=True)
        except OSError as exc:
            raise _storage_error(exc) from exc

    def get(self, key: str) -> bytes:
        path = self.local_path(key)
        try:
            if path is None:
                raise FileNotFoundError(key)
            return path.read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            raise ObjectMissing(f"no object {key}") from None

    def download(self, key: str, path: Path) -> None:
        source = self._path(key)
        temp = temp_path_for(path)
        try:
            _write_synced(temp, source)
            os.replace(temp, path)
        except (FileNotFoundError, IsADirectoryError):
            if source.is_file():
                raise  # the destination's folder is missing, not the object
            raise ObjectMissing(f"no object {key}") from None
        except OSError as exc:
            raise _storage_error(exc) from exc
        finally:
            temp.unlink(missing_ok=True)

    def head(self, key: str) -> ObjectInfo | None:
        path = self._path(key)
        try:
            return ObjectInfo(size=path.stat().st_size, sha256=file_sha256(path))
        except (FileNotFoundError, IsADirectoryError):
            return None

    def delete(self, key: str) -> None:
        path = self._path(key)
        with suppress(IsADirectoryError):  # a folder of other keys is no object
            path.unlink(missing_ok=True)
        # Folders emptied by the delete go too (a deleted video leaves no folder); one still holding files stays.
        for folder in path.parents:
            if folder == self.root:
                break
            try:
                folder.rmdir()
            except OSError:
                break

    def list(self, prefix: str = "") -> list[str]:
        checked_prefix(prefix)
        # Walk only the folder the prefix names, not the whole tree.
        start = self.root / prefix.rpartition("/")[0]
        keys = []
        for folder, dirs, files in os.walk(start):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            base = Path(folder).relative_to(self.root).as_posix()
            for name in files:
                key = name if base == "." else f"{base}/{name}"
                if not name.startswith(".") and key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)

    def folders(self, prefix: str) -> builtins.list[str]:
        start = self.root / checked_prefix(prefix)
        try:
            return sorted(p.name for p in start.iterdir() if p.is_dir() and not p.name.startswith("."))
        except (FileNotFoundError, NotADirectoryError):
            return []

    def local_path(self, key: str) -> Path | None:
        """The key's regular file, reached through no symlink (a link planted in the tree is no object; MEDIA_ROOT
        itself may be reached through one), else None."""
        path = self.root.resolve() / checked_key(key)
        return path if path.resolve() == path and path.is_file() else None

    def check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _storage_error(exc) from exc


def _write_synced(temp: Path, source: Source, *, durable: bool = True) -> str:
    """Write `source` to the new file `temp`, fsync it, and return its SHA-256.

    A file on the same filesystem is linked, not copied (an upload or an encode's output in MEDIA_ROOT/scratch
    becomes an object without its bytes being written twice); its writer never changes it afterwards.
    """
    if isinstance(source, Path):
        with suppress(OSError):
            os.link(source, temp)
            os.chmod(temp, 0o644)  # static servers (nginx) run as another user
            if durable:
                with open(temp, "rb") as linked:
                    os.fsync(linked.fileno())
            return file_sha256(temp)
        temp.unlink(missing_ok=True)
    sha = hashlib.sha256()
    with open(temp, "xb") as out:
        for chunk in _chunks(source):
            sha.update(chunk)
            out.write(chunk)
        out.flush()
        if durable:
            os.fsync(out.fileno())
    os.chmod(temp, 0o644)
    return sha.hexdigest()


def _link_new(temp: Path, final: Path) -> bool:
    """Link `temp` in as `final` unless `final` exists (atomic: of two racing writers one wins)."""
    try:
        os.link(temp, final)
    except FileExistsError:
        return False
    return True


def object_store(config: Config) -> ObjectStore:
    """Return the store MEDIA_STORE names: the local tree under MEDIA_ROOT, or the S3 bucket."""
    if config.MEDIA_STORE == "s3":
        from server.store.s3 import S3Objects  # boto3 is loaded only where S3 is used

        return S3Objects.from_config(config)
    return LocalObjects(config.MEDIA_ROOT)


# -- observed ---------------------------------------------------------------------------------------


def error_kind(exc: BaseException) -> str:
    """The ERROR_KINDS value a store call's exception counts as."""
    if isinstance(exc, ObjectMissing):
        return "missing"
    if isinstance(exc, StorageUnavailable | InsufficientStorage):  # the store could not do it now; later may
        return "unavailable"
    return "other"  # UnsafeKey (a caller's bug), a missing download folder, anything unforeseen


class ObservedObjects:
    """Any ObjectStore, each call timed and its outcome told to `observer`: the one place both backends are measured.

    A call is one operation as its caller sees it, whatever the backend does inside (S3's put may also
    head, its head may get): seconds from call to return or raise, failures included. Errors by kind:
    ObjectMissing is `missing`, StorageUnavailable or a full disk `unavailable`, a conditional put that
    found other bytes (PutResult.DIFFERENT) `conflict`, anything else `other`. `head` finding nothing
    and `delete` of nothing are no errors. `check` (readiness) is not a store call and is not told.
    """

    def __init__(self, store: ObjectStore, observer: StoreObserver) -> None:
        self.store = store
        self.backend = store.backend
        self._observer = observer

    def put(self, key: str, source: Source, *, if_absent: bool = False, durable: bool = True) -> PutResult:
        return self._call("put", self.store.put, key, source, if_absent=if_absent, durable=durable)

    def get(self, key: str) -> bytes:
        return self._call("get", self.store.get, key)

    def download(self, key: str, path: Path) -> None:
        return self._call("download", self.store.download, key, path)

    def head(self, key: str) -> ObjectInfo | None:
        return self._call("head", self.store.head, key)

    def delete(self, key: str) -> None:
        return self._call("delete", self.store.delete, key)

    def list(self, prefix: str = "") -> list[str]:
        return self._call("list", self.store.list, prefix)

    def folders(self, prefix: str) -> builtins.list[str]:
        return self._call("list", self.store.folders, prefix)

    def local_path(self, key: str) -> Path | None:
        return self.store.local_path(key)

    def check(self) -> None:
        self.store.check()

    def _call(self, operation: str, method: Callable[..., _T], *args: object, **kwargs: object) -> _T:
        started = time.monotonic()
        kind: str | None = "other"
        try:
            result = method(*args, **kwargs)
            kind = "conflict" if result is PutResult.DIFFERENT else None
            return result
        except Exception as exc:
            kind = error_kind(exc)
            raise
        finally:
            self._observer(operation, self.backend, time.monotonic() - started, kind)
