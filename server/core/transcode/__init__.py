"""Transcoding: pure ladder planning plus the only place that builds and runs ffmpeg/ffprobe."""

from server.core.transcode.cmaf import box_types, decode_times, split_init
from server.core.transcode.ffmpeg import (
    OutputInfo,
    package_audio_argv,
    package_ts_argv,
    package_video_argv,
    probe,
    probe_argv,
    probe_output,
    run,
    storyboard_tile,
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
    "OutputInfo",
    "RenditionPlan",
    "Rung",
    "SourceInfo",
    "box_types",
    "decode_times",
    "package_audio_argv",
    "package_ts_argv",
    "package_video_argv",
    "parse_ladder",
    "plan_ladder",
    "probe",
    "probe_argv",
    "probe_output",
    "run",
    "split_init",
    "storyboard_tile",
    "transcode_argv",
]
