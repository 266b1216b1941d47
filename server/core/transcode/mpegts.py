"""MPEG-TS continuity counters carried across separately remuxed segments.

Every segment is remuxed on its own, so ffmpeg starts each PID's 4-bit continuity counter at 0;
played back to back, that reads as lost packets ("corrupt input packet") to strict demuxers. The
packager renumbers each segment to continue from the one before it on the timeline.
"""

from __future__ import annotations

PACKET = 188
SYNC = 0x47


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
