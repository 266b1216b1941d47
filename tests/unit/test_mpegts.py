"""Continuity counters renumbered across segments, on real ffmpeg output."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from server.core.transcode.mpegts import PACKET, continue_counters, next_counters


def _ts(path: Path, seconds: float) -> bytes:
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            f"testsrc2=size=160x120:rate=15:duration={seconds}",
            "-f",
            "lavfi",
            "-i",
            f"sine=duration={seconds}",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-c:a",
            "aac",
            "-f",
            "mpegts",
            str(path),
        ],
        check=True,
    )
    return path.read_bytes()


def _counters(data: bytes) -> list[tuple[int, int]]:
    return [
        (((data[o + 1] & 0x1F) << 8) | data[o + 2], data[o + 3] & 0x0F) for o in range(0, len(data), PACKET) if data[o + 3] & 0x10
    ]


def test_a_renumbered_segment_continues_the_previous_one(tmp_path):
    first, second = _ts(tmp_path / "a.ts", 1.0), _ts(tmp_path / "b.ts", 1.3)
    carried = continue_counters(second, next_counters(first))
    joined = _counters(first + carried)
    last: dict[int, int] = {}
    for pid, counter in joined:
        if pid in last:
            assert counter == (last[pid] + 1) % 16, pid
        last[pid] = counter
    assert len(carried) == len(second)
    (tmp_path / "joined.ts").write_bytes(first + carried)
    out = subprocess.run(
        ["ffmpeg", "-v", "error", "-xerror", "-i", str(tmp_path / "joined.ts"), "-f", "null", "-"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr


def test_counters_start_where_asked_and_other_bytes_are_untouched(tmp_path):
    data = _ts(tmp_path / "a.ts", 0.5)
    moved = continue_counters(data, {pid: 7 for pid in next_counters(data)})
    assert all(a == b for i, (a, b) in enumerate(zip(data, moved, strict=True)) if i % PACKET != 3)
    firsts: dict[int, int] = {}
    for pid, counter in _counters(moved):
        firsts.setdefault(pid, counter)
    assert set(firsts.values()) == {7}


def test_garbage_is_refused():
    with pytest.raises(ValueError):
        continue_counters(b"\x00" * 188, {})


def test_a_clock_that_runs_back_is_found_and_one_that_goes_on_is_not(tmp_path: Path) -> None:
    from server.core.transcode.mpegts import timestamps_go_back

    piece = _ts(tmp_path / "a.ts", 1.0)
    (tmp_path / "twice.ts").write_bytes(piece * 2)
    found = timestamps_go_back(tmp_path / "twice.ts")
    assert found is not None and "stream PID 256 go back" in found
    assert timestamps_go_back(tmp_path / "a.ts") is None
    (tmp_path / "not.ts").write_bytes(b"\0" * 4096)
    assert timestamps_go_back(tmp_path / "not.ts") is None
