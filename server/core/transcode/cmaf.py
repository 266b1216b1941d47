"""Pure ISO-BMFF helpers: split a fragmented MP4 into init + media segment, read track durations.

Only top-level boxes are walked to split. (Tests read boxes back with tests/harness/media.py.)
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

# 'styp' makes each media segment self-describing (ISO 23009-1 'msdh', CMAF 'cmfs').
STYP = struct.pack(">I4s4sI4s4s", 24, b"styp", b"msdh", 0, b"msdh", b"cmfs")
_INIT_BOXES = (b"ftyp", b"moov")


def iter_boxes(data: bytes, start: int = 0, end: int | None = None) -> Iterator[tuple[str, int, int]]:
    """Yield (type, offset, size) of each box between start and end."""
    end = len(data) if end is None else end
    offset = start
    while offset < end:
        if end - offset < 8:
            raise ValueError(f"truncated box header at offset {offset}")
        size, kind = struct.unpack_from(">I4s", data, offset)
        if size == 1:
            (size,) = struct.unpack_from(">Q", data, offset + 8)
        elif size == 0:
            size = end - offset
        if size < 8 or offset + size > end:
            raise ValueError(f"box {kind!r} at offset {offset} has bad size {size}")
        yield kind.decode("latin-1"), offset, size
        offset += size


def split_init(data: bytes) -> tuple[bytes, bytes]:
    """Split a fragmented MP4 into (ftyp+moov init segment, styp + moof/mdat media segment)."""
    init: list[bytes] = []
    media_start = None
    for kind, offset, size in iter_boxes(data):
        if kind in ("moof", "sidx", "styp", "emsg", "prft"):
            media_start = offset
            break
        if kind.encode("latin-1") in _INIT_BOXES:
            init.append(data[offset : offset + size])
    if media_start is None or len(init) != 2:
        raise ValueError("not a fragmented MP4: need ftyp, moov and at least one moof")
    media = data[media_start:]
    prefix = b"" if media[4:8] == b"styp" else STYP
    return b"".join(init), prefix + media


@dataclass(frozen=True)
class Fragment:
    """One moof + mdat of a media segment as a byte range of it; `tfdt` is its first sample's decode time."""

    offset: int
    size: int
    tfdt: int


def fragments(media: bytes) -> list[Fragment]:
    """Cut a media segment (split_init's second half) into byte ranges, one per moof with its mdat.

    The first range starts at byte 0, so it carries the styp; the ranges are contiguous and cover the
    whole segment, so each is what a player fetches for one HLS EXT-X-BYTERANGE entry (ValueError: no moof).
    """
    out: list[Fragment] = []
    start, tfdt = 0, None
    for kind, offset, size in iter_boxes(media):
        if kind != "moof":
            continue
        if tfdt is not None:
            out.append(Fragment(start, offset - start, tfdt))
            start = offset
        tfdt = _decode_time(media, offset + 8, offset + size)
    if tfdt is None:
        raise ValueError("a media segment without a moof")
    out.append(Fragment(start, len(media) - start, tfdt))
    return out


def _decode_time(data: bytes, start: int, end: int) -> int:
    """Return the tfdt of the first traf of a moof's body."""
    for kind, at, size in iter_boxes(data, start, end):
        if kind == "traf":
            return _decode_time(data, at + 8, at + size)
        if kind == "tfdt":
            version = data[at + 8]
            return int(struct.unpack_from(">Q" if version == 1 else ">I", data, at + 12)[0])
    raise ValueError("a moof without a tfdt")


@dataclass(frozen=True)
class Track:
    """One trak of an MP4's moov: its sample entry's codec (and picture size), its presented duration."""

    codec: str  # the sample entry's four characters: 'avc1', 'mp4a'
    width: int  # 0 for a track without pictures
    height: int
    duration: int
    timescale: int

    @property
    def seconds(self) -> float:
        return self.duration / self.timescale if self.timescale else 0.0


def tracks(data: bytes) -> dict[str, Track]:
    """Return {handler type ('vide', 'soun'): Track} of each trak of the moov (ValueError: not an MP4)."""
    durations = track_durations(data)
    entries: dict[str, tuple[str, int, int]] = {}
    for kind, handler, at, size in _sample_descriptions(data, 0, len(data)):
        if kind == "stsd" and size >= 16 + 36:
            codec = data[at + 16 + 4 : at + 16 + 8].decode("latin-1")
            width, height = struct.unpack_from(">HH", data, at + 16 + 32) if handler == "vide" else (0, 0)
            entries[handler] = (codec, width, height)
    if set(entries) != set(durations):
        raise ValueError("a track without its sample description")
    return {h: Track(*entries[h], *durations[h]) for h in durations}


def _sample_descriptions(data: bytes, start: int, end: int, handler: str = "") -> Iterator[tuple[str, str, int, int]]:
    """Yield ('stsd', handler, offset, size) of each track's sample description, descending moov > trak > mdia."""
    for kind, at, size in iter_boxes(data, start, end):
        if kind == "trak":
            handler = ""
        if kind == "mdia":
            handler, _timing = _media_header(data, at + 8, at + size)
        if kind == "stsd":
            yield kind, handler, at, size
        elif kind in ("moov", "trak", "mdia", "minf", "stbl"):
            yield from _sample_descriptions(data, at + 8, at + size, handler)


def track_durations(data: bytes) -> dict[str, tuple[int, int]]:
    """Return {handler type ('vide', 'soun'): (presented duration, timescale)} from each trak.

    The duration is mdhd's less the edit list's media_time: the AAC encoder's priming samples
    are in the track but not presented (what ffprobe reports as the stream's duration).
    """
    out: dict[str, tuple[int, int]] = {}
    for moov, moov_at, moov_size in iter_boxes(data):
        if moov != "moov":
            continue
        for trak, trak_at, trak_size in iter_boxes(data, moov_at + 8, moov_at + moov_size):
            if trak != "trak":
                continue
            skipped = 0
            for child, child_at, child_size in iter_boxes(data, trak_at + 8, trak_at + trak_size):
                if child == "edts":
                    skipped = _edit_media_time(data, child_at + 8, child_at + child_size)
                elif child == "mdia":
                    handler, (duration, timescale) = _media_header(data, child_at + 8, child_at + child_size)
            out[handler] = (duration - skipped, timescale)
    return out


def _edit_media_time(data: bytes, start: int, end: int) -> int:
    """Return the first edit's media_time (the samples skipped before presentation), 0 if none."""
    for kind, at, _size in iter_boxes(data, start, end):
        if kind == "elst" and struct.unpack_from(">I", data, at + 12)[0] > 0:
            if data[at + 8] == 1:
                return max(0, int(struct.unpack_from(">q", data, at + 16 + 8)[0]))
            return max(0, int(struct.unpack_from(">i", data, at + 16 + 4)[0]))
    return 0


def _media_header(data: bytes, start: int, end: int) -> tuple[str, tuple[int, int]]:
    handler, timing = "", (0, 0)
    for kind, at, _size in iter_boxes(data, start, end):
        body = at + 8
        if kind == "hdlr":
            handler = data[body + 8 : body + 12].decode("latin-1")
        elif kind == "mdhd":
            if data[body] == 1:  # version 1: 64-bit times and duration
                timescale, duration = struct.unpack_from(">IQ", data, body + 20)
            else:
                timescale, duration = struct.unpack_from(">II", data, body + 12)
            timing = (duration, timescale)
    return handler, timing
