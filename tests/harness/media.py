"""Test and bench media made by ffmpeg at run time (nothing binary is committed)."""

from __future__ import annotations

import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path

import m3u8

from server.core.transcode.cmaf import iter_boxes

_FFMPEG = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]


def make_segment(
    path: Path,
    *,
    seconds: float = 3.0,
    size: str = "1080x720",
    rate: int = 30,
    audio: bool = True,
    offset: float = 0.0,
    sample_rate: int = 44100,
    rotate: int = 0,
) -> Path:
    """Write a phone-like MP4 segment: H.264 + AAC, moov first, keyframe at start.

    `size` "1x1" is drawn at 64x64 and scaled down (x264 needs 4:4:4 for odd sizes); `rotate` sets the
    track's display matrix (as phones held upright do) by a -c copy remux with the legacy rotate tag,
    which is what ffmpeg 5.1's mp4 muxer turns into a tkhd matrix.
    """
    tiny = size == "1x1"
    argv = [*_FFMPEG, "-f", "lavfi", "-i", f"testsrc2=size={'64x64' if tiny else size}:rate={rate}:duration={seconds}"]
    if audio:
        argv += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate={sample_rate}:duration={seconds}"]
    argv += ["-ss", "0", "-output_ts_offset", str(offset), "-c:v", "libx264", "-preset", "ultrafast"]
    argv += ["-vf", "scale=1:1", "-pix_fmt", "yuv444p"] if tiny else ["-pix_fmt", "yuv420p"]
    argv += ["-g", str(rate)]
    if audio:
        argv += ["-c:a", "aac", "-b:a", "96k"]
    target = path.with_name(f".unrotated.{path.name}") if rotate else path
    subprocess.run([*argv, "-movflags", "+faststart", str(target)], check=True)
    if rotate:
        remux = ["-i", str(target), "-c", "copy", "-metadata:s:v:0", f"rotate={rotate}", "-movflags", "+faststart"]
        subprocess.run([*_FFMPEG, *remux, str(path)], check=True)
        target.unlink()
    return path


def make_cbr_segment(path: Path, *, seconds: float, video_bitrate: int, size: str = "1080x720") -> Path:
    """Write a phone-like MP4 (testsrc2 + sine, H.264 CBR with filler, AAC) whose size follows the bit rate."""
    rate = str(video_bitrate)
    argv = [*_FFMPEG, "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=30:duration={seconds}"]
    argv += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=44100:duration={seconds}"]
    argv += ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", "30"]
    # nal-hrd=cbr pads with filler NALs: testsrc2 is too easy to reach the bit rate otherwise.
    argv += ["-b:v", rate, "-minrate", rate, "-maxrate", rate, "-bufsize", rate, "-x264-params", "nal-hrd=cbr"]
    argv += ["-c:a", "aac", "-b:a", "96k", "-movflags", "+faststart", str(path)]
    subprocess.run(argv, check=True)
    return path


def make_sized_segment(path: Path, *, size_bytes: int, seconds: float) -> Path:
    """Write a segment of about size_bytes (within ~5%): one calibration encode, then one corrected encode."""
    guess = max(200_000, int(size_bytes * 8 / seconds) - 96_000)
    make_cbr_segment(path, seconds=seconds, video_bitrate=guess)
    actual = path.stat().st_size
    if abs(actual - size_bytes) > 0.05 * size_bytes:
        make_cbr_segment(path, seconds=seconds, video_bitrate=max(100_000, int(guess * size_bytes / actual)))
    return path


def fragment_spans(data: bytes) -> list[tuple[int, int]]:
    """Return (tfdt, summed sample durations) of each track fragment of a CMAF media segment."""
    return list(_spans(data, 0, len(data)))


def _spans(data: bytes, start: int, end: int) -> Iterator[tuple[int, int]]:
    for kind, at, size in iter_boxes(data, start, end):
        if kind == "moof":
            yield from _spans(data, at + 8, at + size)
        elif kind == "traf":
            yield _traf_span(data, at + 8, at + size)


def _traf_span(data: bytes, start: int, end: int) -> tuple[int, int]:
    tfdt, default, total = 0, 0, 0
    for kind, at, _size in iter_boxes(data, start, end):
        flags = int.from_bytes(data[at + 9 : at + 12], "big")
        if kind == "tfdt":
            tfdt = struct.unpack_from(">Q" if data[at + 8] == 1 else ">I", data, at + 12)[0]
        elif kind == "tfhd" and flags & 0x8:
            offset = at + 16 + (8 if flags & 0x1 else 0) + (4 if flags & 0x2 else 0)
            default = struct.unpack_from(">I", data, offset)[0]
        elif kind == "trun":
            count = struct.unpack_from(">I", data, at + 12)[0]
            offset = at + 16 + (4 if flags & 0x1 else 0) + (4 if flags & 0x4 else 0)
            if not flags & 0x100:
                total += count * default
                continue
            stride = 4 * sum(1 for bit in (0x100, 0x200, 0x400, 0x800) if flags & bit)
            total += sum(struct.unpack_from(">I", data, offset + i * stride)[0] for i in range(count))
    return tfdt, total


# Boxes that hold boxes, descended to find every tfdt.
_CONTAINERS = ("moof", "traf", "moov", "trak", "mdia", "minf", "stbl", "edts", "mvex")


def box_types(data: bytes) -> list[str]:
    """The types of the top-level boxes, in file order."""
    return [kind for kind, _, _ in iter_boxes(data)]


def decode_times(data: bytes) -> list[int]:
    """Every tfdt baseMediaDecodeTime, in file order (one per traf)."""
    return list(_tfdt(data, 0, len(data)))


def _tfdt(data: bytes, start: int, end: int) -> Iterator[int]:
    for kind, offset, size in iter_boxes(data, start, end):
        if kind == "tfdt":
            fmt = ">Q" if data[offset + 8] == 1 else ">I"
            yield struct.unpack_from(fmt, data, offset + 12)[0]
        elif kind in _CONTAINERS:
            yield from _tfdt(data, offset + 8, offset + size)


def file_entries(playlist: m3u8.M3U8) -> list[m3u8.Segment]:
    """The first entry of each file a CMAF media playlist lists: a segment's ~1 s parts are byte ranges of its file."""
    return [s for s in playlist.segments if s.byterange is None or s.byterange.endswith("@0")]


def byte_range(segment: m3u8.Segment) -> tuple[int, int]:
    """(offset, size) of a part entry's EXT-X-BYTERANGE (this server always writes the offset)."""
    size, _, offset = segment.byterange.partition("@")
    return int(offset), int(size)
