"""Transcoding: pure ladder planning plus the only place that builds and runs ffmpeg/ffprobe."""

from server.core.transcode.cmaf import split_init
from server.core.transcode.ffmpeg import (
    probe,
    probe_argv,
    run,
    transcode_argv,
)
from server.core.transcode.ladder import (
    DEFAULT_LADDER,
    RenditionPlan,
    Rung,
    SourceInfo,
    parse_ladder,
    plan_ladder,
)

__all__ = [
    "DEFAULT_LADDER",
    "RenditionPlan",
    "Rung",
    "SourceInfo",
    "parse_ladder",
    "plan_ladder",
    "probe",
    "probe_argv",
    "run",
    "split_init",
    "transcode_argv",
]
