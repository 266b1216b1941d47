"""Which folders a reaper pass searches for dead writers' files (server/ops/reaper.py TempSweep), time passed in."""

from datetime import datetime, timedelta

from server.config import Config
from server.ops.reaper import TempSweep

T0 = datetime(2026, 1, 1)


def test_the_whole_tree_first_and_every_interval_between_only_what_was_written_since_the_previous_pass():
    config = Config(TEMP_SWEEP_INTERVAL=3600.0, PROCESSING_DEADLINE=120.0, LEASE_SECONDS=30.0)
    sweep = TempSweep(config)
    back = timedelta(seconds=2 * max(2 * 120.0, 2 * 30.0))  # purge.look_back: twice the longer quiet period
    passes = [0, 5, 10, 3599, 3600, 3605, 7205]  # seconds after T0
    decided = [sweep.since(T0 + timedelta(seconds=s)) for s in passes]
    assert decided == [
        None,  # first pass: the whole tree
        T0 - back,
        T0 + timedelta(seconds=5) - back,
        T0 + timedelta(seconds=10) - back,
        None,  # an hour after the last whole search
        T0 + timedelta(seconds=3600) - back,
        None,
    ]


def test_zero_searches_the_whole_tree_every_pass():
    sweep = TempSweep(Config(TEMP_SWEEP_INTERVAL=0.0))
    assert [sweep.since(T0 + timedelta(seconds=s)) for s in (0, 5, 10)] == [None, None, None]
