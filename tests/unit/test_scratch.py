"""A remote worker's scratch tree (server/worker/encoding.py Scratch): a kill -9'd worker's files are swept at the next start."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from server.worker.encoding import Scratch
from tests.harness.services import ROOT

# A worker process: makes its scratch tree, leaves a half-written file in it, says where, waits for stdin.
HOLDER = """
import sys
from pathlib import Path
from server.worker.encoding import Scratch
scratch = Scratch(Path(sys.argv[1]))  # kept: its lock lives as long as the object
tree = scratch.path
(tree / "17").mkdir()
(tree / "17" / "source.mp4").write_bytes(b"half")
print(tree, flush=True)
sys.stdin.read()
"""


def holder(media_root: Path) -> tuple[subprocess.Popen[str], Path]:
    proc = subprocess.Popen(  # noqa: S603 - our own interpreter and script
        [sys.executable, "-c", HOLDER, str(media_root)], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    line = proc.stdout.readline().strip()  # type: ignore[union-attr]  # the tree exists once this is printed
    assert line, "the holder did not start"
    return proc, Path(line)


def test_a_killed_workers_scratch_is_swept_and_a_live_ones_is_kept(tmp_path: Path) -> None:
    media = tmp_path / "media"
    (media / "work").mkdir(parents=True)
    (media / "work" / "42").mkdir()  # an attempt directory of the older layout, left by a crash
    (media / "work" / "42" / "HIGH.mp4").write_bytes(b"x")
    (media / "keep.txt").write_bytes(b"not scratch")  # outside work/: never touched
    dead, dead_tree = holder(media)
    live, live_tree = holder(media)
    try:
        os.kill(dead.pid, signal.SIGKILL)
        dead.wait()
        assert (dead_tree / "17" / "source.mp4").exists()  # what kill -9 leaves
        scratch = Scratch(media)
        mine = scratch.path
        assert not dead_tree.exists() and not dead_tree.with_name(dead_tree.name + ".lock").exists()
        assert not (media / "work" / "42").exists()
        assert (live_tree / "17" / "source.mp4").exists()  # a live worker's tree is its own
        assert mine.is_dir() and list(mine.iterdir()) == []
        assert (media / "keep.txt").read_bytes() == b"not scratch"
        scratch.close()
        assert not mine.exists()
    finally:
        live.communicate("")
        dead.stdout.close()  # type: ignore[union-attr]
        dead.stdin.close()  # type: ignore[union-attr]
