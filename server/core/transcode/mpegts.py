"""MPEG-TS: continuity counters carried across separately remuxed segments; uploads whose clock runs back.

Every segment is remuxed on its own, so ffmpeg starts each PID's 4-bit continuity counter at 0;
played back to back, that reads as lost packets ("corrupt input packet") to strict demuxers. The
packager renumbers each segment to continue from the one before it on the timeline.

An uploaded TS is one piece of a recording only if each stream's decode timestamps go forward: pieces
concatenated with their clocks restarting probe as the first piece (ffprobe reads the head) but ffmpeg
decodes them all, stitched together. ``timestamps_go_back`` finds that without decoding.
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path

PACKET = 188
SYNC = 0x47
# ffmpeg's mpegts demuxer takes 188-byte packets, 192 (M2TS: a 4-byte prefix) and 204 (16 bytes of FEC after).
_LAYOUTS = ((188, 0), (192, 4), (204, 0))
_PROBE_PACKETS = 8
_WRAP = 1 << 33  # PTS/DTS are 33-bit counters of a 90 kHz clock
TS_CLOCK = 90_000


def _has_payload(header3: int) -> bool:
    return bool(header3 & 0x10)


def next_counters(data: bytes) -> dict[int, int]:
    """Return, per PID, the counter the packet after `data` must carry."""
    counters: dict[int, int] = {}
    for offset in range(0, len(data) - PACKET + 1, PACKET):
        pid = ((data[offset + 1] & 0x1F) << 8) | data[offset + 2]
        if _has_payload(data[offset + 3]):
            counters[pid] = ((data[offset + 3] & 0x0F) + 1) & 0x0F
    return counters


def continue_counters(data: bytes, start: dict[int, int]) -> bytes:
    """Return `data` with each PID's counters continuing from `start` (PIDs not in it keep theirs)."""
    if len(data) % PACKET or (data and data[0] != SYNC):
        raise ValueError("not a sequence of 188-byte MPEG-TS packets")
    out = bytearray(data)
    shift: dict[int, int] = {}
    for offset in range(0, len(out), PACKET):
        pid = ((out[offset + 1] & 0x1F) << 8) | out[offset + 2]
        if pid not in start or pid == 0x1FFF:  # null packets carry no meaningful counter
            continue
        counter = out[offset + 3] & 0x0F
        if pid not in shift:
            shift[pid] = (start[pid] - counter) & 0x0F if _has_payload(out[offset + 3]) else (start[pid] - 1 - counter) & 0x0F
        out[offset + 3] = (out[offset + 3] & 0xF0) | ((counter + shift[pid]) & 0x0F)
    return bytes(out)


def _layout(data: bytes) -> tuple[int, int] | None:
    """Return (packet size, sync byte offset) if `data` starts as an MPEG-TS stream, else None."""
    for size, offset in _LAYOUTS:
        if len(data) >= size * _PROBE_PACKETS and all(data[offset + i * size] == SYNC for i in range(_PROBE_PACKETS)):
            return size, offset
    return None


def _pes_time(data: bytes, at: int, end: int) -> int | None:
    """Return the DTS (or PTS when there is no DTS) of the PES header at `at`, or None."""
    if end - at < 19 or data[at : at + 3] != b"\x00\x00\x01" or data[at + 6] & 0xC0 != 0x80:
        return None
    flags = data[at + 7] >> 6
    if flags == 3:
        return _timestamp(data, at + 14)
    if flags == 2:
        return _timestamp(data, at + 9)
    return None


def _timestamp(data: bytes, at: int) -> int:
    b = data[at : at + 5]
    return ((b[0] >> 1) & 7) << 30 | b[1] << 22 | (b[2] >> 1) << 15 | b[3] << 7 | b[4] >> 1


def timestamps_go_back(path: Path, tolerance: float = 0.05) -> str | None:
    """Say where a stream's clock runs back by more than `tolerance` seconds in this TS file; None if it never does
    (or the file is no TS).

    Only PES headers are read (one per frame), never the payload; the file is mapped, not copied into
    memory (an upload may be MAX_SEGMENT_BYTES). A 33-bit wrap is a step forward.
    """
    with open(path, "rb") as fh:
        if os.fstat(fh.fileno()).st_size < PACKET * _PROBE_PACKETS:
            return None
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return _first_step_back(data, tolerance)  # type: ignore[arg-type]  # an mmap slices as bytes do


def _first_step_back(data: bytes, tolerance: float) -> str | None:
    layout = _layout(data)
    if layout is None:
        return None
    size, offset = layout
    slack = round(tolerance * TS_CLOCK)
    last: dict[int, int] = {}
    for start in range(offset, len(data) - PACKET + 1, size):
        header = data[start : start + 4]
        if header[0] != SYNC or not header[1] & 0x40:  # lost sync, or not the start of a PES
            continue
        pid = ((header[1] & 0x1F) << 8) | header[2]
        payload = start + 4
        if header[3] & 0x20:  # an adaptation field comes first
            payload += 1 + data[payload]
        time = _pes_time(data, payload, start + PACKET)
        if time is None:
            continue
        if pid in last and (time - last[pid]) % _WRAP > _WRAP // 2 and (last[pid] - time) % _WRAP > slack:
            back = ((last[pid] - time) % _WRAP) / TS_CLOCK
            return f"the timestamps of stream PID {pid} go back {back:.1f} s at byte {start}"
        last[pid] = time
    return None
