"""The local media tree's paths (MEDIA_STORE=local, the objects' own files): what tests look at on disk.

The server names media by keys (server/store/media.py); on the local tree each key is the file
MEDIA_ROOT/<key>, so a test reads, damages or plants files by these paths.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any


class Tree:
    """Paths of one deployment's local tree, from the same ids and names the server's keys use."""

    def __init__(self, services: Any) -> None:
        self.media = services.media
        self.root: Path = self.media.root

    def _path(self, key: str) -> Path:
        return self.root / key

    def video_dir(self, video_id: int) -> Path:
        return self._path(self.media.video_prefix(video_id))

    def original(self, video_id: int, segment_id: int, extension: str) -> Path:
        return self._path(self.media.original(video_id, segment_id, extension))

    def file(self, video_id: int, folder: str, segment_id: int, extension: str) -> Path:
        return self._path(self.media.file(video_id, folder, segment_id, extension))

    def rendition_dir(self, video_id: int, name: str) -> Path:
        return self.video_dir(video_id) / name

    def attempt_dir(self, video_id: int, attempt_id: int) -> Path:
        return self._path(self.media.attempt_prefix(video_id, attempt_id))

    def attempt_dirs(self, video_ids: Iterable[int] | None = None) -> list[tuple[int, int]]:
        return self.media.attempts(video_ids)

    def temp_files(self, video_ids: Iterable[int] | None = None) -> list[Path]:
        """Scratch and temp files left anywhere (`video_ids` is accepted for the older call sites and ignored)."""
        return self.media.temp_files()


def tree(services: Any) -> Tree:
    return Tree(services)
