"""The operator CLI's text: tables, human sizes and ages, purge's dry run, and its usage errors (exit 2)."""

from __future__ import annotations

import io
from datetime import datetime
from pathlib import Path

import pytest

from server import cli
from server.ops import migrate
from server.ops.purge import PurgePlan

NOW = datetime(2030, 1, 1, 12, 0, 0)


def test_a_table_aligns_its_columns_and_shows_none_as_a_dash() -> None:
    rows = [{"a": 1, "b": "long value"}, {"a": 12345, "b": None}]
    text = cli.table(rows, [("A", lambda r: r["a"]), ("B", lambda r: r["b"])])
    assert text.splitlines() == ["A      B", "1      long value", "12345  -"]


@pytest.mark.parametrize(
    ("size", "text"),
    [(None, None), (0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"), (5 * 1024**2, "5.0 MiB"), (3 * 1024**4, "3.0 TiB")],
)
def test_human_size(size: int | None, text: str | None) -> None:
    assert cli.human_size(size) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, None), (-1, "0.0s"), (4.24, "4.2s"), (185, "3m05s"), (7800, "2h10m"), (3 * 86400 + 4 * 3600, "3d4h")],
)
def test_human_seconds(seconds: float | None, text: str | None) -> None:
    assert cli.human_seconds(seconds) == text


def test_age_reads_the_dashboards_iso_times_and_short_keeps_one_line() -> None:
    assert cli.age("2030-01-01T11:55:00.000000Z", NOW) == "5m00s"
    assert cli.age(None, NOW) is None
    assert cli.short("a\nb   c") == "a b c"
    assert cli.short("x" * 50, 10) == "x" * 9 + "…"


def video_row(**values: object) -> dict[str, object]:
    row = {"id": 7, "type": "LIVE", "status": "UPLOADING", "segment_count": -1, "segments_failed": 0, "duration": 6.0}
    return {**row, "created_at": "2030-01-01T11:59:00.000000Z", "title": "hello", **values}


def test_the_videos_table() -> None:
    text = cli.videos_table([video_row(), video_row(id=8, type="VOD", status="OK", segment_count=3, title=None)], NOW)
    assert text.splitlines() == [
        "ID  TYPE  STATUS     SEGMENTS  FAILED  DURATION  CREATED    TITLE",
        "7   LIVE  UPLOADING  live      0       6.0s      1m00s ago  hello",
        "8   VOD   OK         3         0       6.0s      1m00s ago  -",
    ]


def test_the_workers_table_says_when_none_is_registered_and_shows_the_banner() -> None:
    text = cli.workers_table({"workers": [], "queue": {"total": {"f": {"queued": 2}}}, "banner": "no worker is alive"})
    assert text.splitlines() == [
        "no worker registered (dev_run.py runs its jobs on local threads)",
        "queue f: queued 2",
        "! no worker is alive",
    ]


def test_purge_says_what_it_would_remove_and_how_to_remove_it() -> None:
    found = PurgePlan({"temp files": [Path(f"/m/.t{i}") for i in range(cli.PURGE_SHOWN + 2)]}, {"events past retention": 3})
    lines = cli.purge_text(found, done=False).splitlines()
    assert lines[0] == f"would remove {cli.PURGE_SHOWN + 2} temp files"
    assert lines[cli.PURGE_SHOWN + 1] == "  ... and 2 more"
    assert lines[-2:] == [
        "would remove 3 events past retention",
        "dry run: nothing was removed; run again with --yes to remove it",
    ]
    done = cli.purge_text(PurgePlan({"temp files": []}, {"events past retention": 0}), done=True)
    assert done.splitlines() == ["removed 0 temp files", "removed 0 events past retention"]
    assert cli.purge_json(found, done=False)["files"]["temp files"][0] == "/m/.t0"


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["segments"],
        ["segments", "x"],
        ["segments", "0"],
        ["retry", "-3"],
        ["videos", "--limit", "0"],
        ["videos", "--limit", "201"],
        ["stream", "f.mp4", "--retries", "21"],
        ["videos", "--filter", "nope"],
        ["stream"],
        ["stream", "f.mp4", "--duplicate", "1.5"],
        ["stream", "f.mp4", "--timeout", "0"],
        ["nope"],
    ],
)
def test_usage_errors_exit_2_with_argparse_s_message(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_stream_defaults_to_dev_run_s_address() -> None:
    args = cli.parser().parse_args(["stream", "f.mp4"])
    assert (args.server, args.fast, args.shuffle, args.duplicate, args.seed) == ("http://127.0.0.1:5000", False, False, 0.0, None)


def test_a_progress_line() -> None:
    from server.ops.phone import Sent

    bar = cli.ProgressBar(out=None, clock=iter([0.0, 2.5]).__next__)  # type: ignore[arg-type]
    assert bar.line(Sent(stored=1, total=4, uploads=2, bytes=2048, segment_id=0)) == (
        "[########......................] 1/4 segments  2 uploads  2.0 KiB  2.5s"
    )


class _Log(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_migrate_progress_in_a_log_is_a_line_after_the_first_file_then_every_few_seconds_and_at_the_end() -> None:
    times = iter([0.0, 0.5, 1.0, 2.0, 4.0, 5.5, 6.0, 8.0, 9.0])
    out = _Log(tty=False)
    bar = cli.CopyProgress(out, clock=times.__next__)
    mib = 1024**2
    for files, clock_bytes in [(1, 1), (2, 2), (3, 3), (4, 4), (5, 6), (6, 8)]:
        bar(migrate.Progress(files, 6, clock_bytes * mib, 8 * mib))
    bar.done()
    assert out.getvalue().splitlines() == [
        "1/6 files  1.0 MiB/8.0 MiB  2.0 MiB/s  ETA -",  # half a second in: no ETA yet
        "5/6 files  6.0 MiB/8.0 MiB  1.1 MiB/s  ETA 1.8s",  # 5.5 s after the first line
        "6/6 files  8.0 MiB/8.0 MiB  1.3 MiB/s  ETA 0.0s",  # the last file, whenever it comes
    ]


def test_migrate_progress_on_a_terminal_is_redrawn_in_place() -> None:
    out = _Log(tty=True)
    bar = cli.CopyProgress(out, clock=iter([0.0, 2.0, 2.05, 4.0]).__next__)
    for files in (1, 2, 3):
        bar(migrate.Progress(files, 3, files * 1024, 3 * 1024))
    bar.done()
    assert out.getvalue() == "\r1/3 files  1.0 KiB/3.0 KiB  512 B/s  ETA 4.0s\r3/3 files  3.0 KiB/3.0 KiB  768 B/s  ETA 0.0s\n"
