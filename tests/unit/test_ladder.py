"""Pure planning: ladder parsing, the fixed renditions (box, fps, GOP) and codecs strings."""

from __future__ import annotations

import pytest

from server.core.transcode.ladder import (
    DEFAULT_LADDER,
    RenditionPlan,
    Rung,
    h264_level,
    parse_ladder,
    plan_ladder,
    plan_rung,
)


def test_default_ladder_is_the_android_apps() -> None:
    assert (
        Rung("HIGH", 720, 480, 3_000_000, 128_000),
        Rung("MEDIUM", 480, 320, 768_000, 96_000),
        Rung("LOW", 240, 160, 200_000, 64_000),
    ) == DEFAULT_LADDER


def test_parse_ladder_reads_the_env_var_form() -> None:
    spec = "HIGH:720x480:3000k,MEDIUM:480x320:768k:96k, LOW:240x160:200000:64k"
    assert parse_ladder(spec) == (
        Rung("HIGH", 720, 480, 3_000_000, 128_000),
        Rung("MEDIUM", 480, 320, 768_000, 96_000),
        Rung("LOW", 240, 160, 200_000, 64_000),
    )


def test_parse_ladder_accepts_megabits_and_more_rungs() -> None:
    rungs = parse_ladder("FHD:1920x1080:6M,HIGH:720x480:3000k,MEDIUM:480x320:768k,LOW_1:240x160:200k")
    assert [r.name for r in rungs] == ["FHD", "HIGH", "MEDIUM", "LOW_1"]
    assert rungs[0].video_bitrate == 6_000_000


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("HIGH:720x480:3000k,MEDIUM:480x320:768k", "at least 3"),
        ("", "at least 3"),
        ("HIGH:720x480:3000k,HIGH:480x320:768k,LOW:240x160:200k", "duplicate rung name HIGH"),
        ("high:720x480:3000k,MEDIUM:480x320:768k,LOW:240x160:200k", "name 'high'"),
        ("../X:720x480:3000k,MEDIUM:480x320:768k,LOW:240x160:200k", "name '../X'"),
        ("A234567890123456X:720x480:3000k,M:480x320:768k,L:240x160:200k", "name"),
        ("HIGH:721x480:3000k,MEDIUM:480x320:768k,LOW:240x160:200k", "even sides"),
        ("HIGH:8x480:3000k,MEDIUM:480x320:768k,LOW:240x160:200k", "even sides"),
        ("HIGH:720*480:3000k,MEDIUM:480x320:768k,LOW:240x160:200k", "size '720*480'"),
        ("HIGH:720x480:fast,MEDIUM:480x320:768k,LOW:240x160:200k", "bit rate 'fast'"),
        ("HIGH:720x480:3000k:1k,MEDIUM:480x320:768k,LOW:240x160:200k", "outside"),
        ("HIGH:720x480,MEDIUM:480x320:768k,LOW:240x160:200k", "is not NAME"),
        ("HIGH:720x480:1k:2k:3k,MEDIUM:480x320:768k,LOW:240x160:200k", "is not NAME"),
    ],
)
def test_parse_ladder_rejects_with_a_clear_message(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match="ladder") as info:
        parse_ladder(spec)
    assert message in str(info.value)


def test_plan_ladder_is_the_boxes_at_30_fps_whatever_comes_later() -> None:
    assert plan_ladder() == (
        RenditionPlan("HIGH", 720, 480, 3_000_000, 128_000, 30, 30),
        RenditionPlan("MEDIUM", 480, 320, 768_000, 96_000, 30, 30),
        RenditionPlan("LOW", 240, 160, 200_000, 64_000, 30, 30),
    )


def test_plan_ladder_keeps_ladder_order_and_custom_rungs() -> None:
    ladder = parse_ladder("A:1280x720:4M,B:640x360:1M:96k,C:320x180:300k:48k")
    assert [(r.name, r.width, r.height, r.audio_bitrate, r.fps, r.gop) for r in plan_ladder(ladder)] == [
        ("A", 1280, 720, 128_000, 30, 30),
        ("B", 640, 360, 96_000, 30, 30),
        ("C", 320, 180, 48_000, 30, 30),
    ]


def test_plan_rung_at_another_frame_rate_keeps_a_1_s_gop() -> None:
    assert plan_rung(DEFAULT_LADDER[0], 25) == RenditionPlan("HIGH", 720, 480, 3_000_000, 128_000, 25, 25)
    with pytest.raises(ValueError, match="frame rate"):
        plan_rung(DEFAULT_LADDER[0], 0)


def test_codecs_strings_match_main_profile_and_forced_level() -> None:
    high, _, low = plan_ladder()
    assert high.codecs == "avc1.4d401f,mp4a.40.2"
    assert low.video_codecs == "avc1.4d401f"
    assert high.bandwidth == 3_128_000


@pytest.mark.parametrize(
    ("size", "fps", "bitrate", "level"),
    [
        ((240, 160), 30, 200_000, 31),
        ((1280, 720), 30, 4_000_000, 31),
        ((1280, 720), 30, 15_000_000, 32),
        ((1920, 1080), 30, 6_000_000, 40),
        ((1920, 1080), 30, 30_000_000, 41),
    ],
)
def test_h264_level(size: tuple[int, int], fps: int, bitrate: int, level: int) -> None:
    assert h264_level(*size, fps, bitrate) == level


def test_h264_level_refuses_beyond_5_1() -> None:
    with pytest.raises(ValueError, match="exceeds"):
        h264_level(8192, 4320, 30, 1_000_000)
