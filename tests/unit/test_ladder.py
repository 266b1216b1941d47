"""Pure planning: ladder parsing, size fitting, fps, GOP and codecs strings."""

from __future__ import annotations

import pytest

from server.transcode.ladder import (
    DEFAULT_LADDER,
    Rendition,
    Rung,
    SourceInfo,
    even_round,
    fit_size,
    h264_level,
    parse_ladder,
    plan_fps,
    plan_renditions,
)


def source(width: int = 1080, height: int = 720, fps: float = 30.0) -> SourceInfo:
    return SourceInfo(width, height, 3.0, fps, True, "h264")


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


@pytest.mark.parametrize(
    ("size", "box", "expected"),
    [
        ((1080, 720), (720, 480), (720, 480)),  # same 3:2 aspect
        ((720, 480), (720, 480), (720, 480)),
        ((720, 480), (480, 320), (480, 320)),
        ((1280, 720), (720, 480), (720, 406)),  # 405 -> nearest even, halves up
        ((1920, 1080), (480, 320), (480, 270)),
        ((1280, 720), (240, 160), (240, 136)),  # 135 -> 136
        ((720, 1280), (720, 480), (270, 480)),  # portrait: height-limited
        ((1080, 1920), (240, 160), (90, 160)),
        ((640, 480), (720, 480), (640, 480)),  # fits: never upscaled
        ((321, 241), (720, 480), (320, 240)),  # fits: odd sides trimmed to even
        ((10000, 10), (240, 160), (240, 2)),  # degenerate: at least 2
    ],
)
def test_fit_size(size: tuple[int, int], box: tuple[int, int], expected: tuple[int, int]) -> None:
    assert fit_size(*size, *box) == expected
    width, height = expected
    assert width <= box[0] and height <= box[1]
    assert width % 2 == 0 and height % 2 == 0


def test_fit_size_rejects_empty_source() -> None:
    with pytest.raises(ValueError, match="not positive"):
        fit_size(0, 720, 720, 480)


def test_even_round() -> None:
    assert [even_round(n, 2) for n in (806, 808, 810, 811)] == [404, 404, 406, 406]


@pytest.mark.parametrize(
    ("fps", "expected"),
    [(30.0, 30), (29.97, 30), (59.94, 30), (24.0, 24), (14.5, 15), (0.2, 1), (0.0, 30), (float("nan"), 30)],
)
def test_plan_fps(fps: float, expected: int) -> None:
    assert plan_fps(fps) == expected


def test_plan_renditions_default_ladder_1080x720() -> None:
    assert plan_renditions(source()) == (
        Rendition("HIGH", 720, 480, 3_000_000, 128_000, 30, 60),
        Rendition("MEDIUM", 480, 320, 768_000, 96_000, 30, 60),
        Rendition("LOW", 240, 160, 200_000, 64_000, 30, 60),
    )


def test_plan_renditions_16_9_at_24_fps() -> None:
    plan = plan_renditions(source(1280, 720, 23.976))
    assert [(r.width, r.height, r.fps, r.gop) for r in plan] == [(720, 406, 24, 48), (480, 270, 24, 48), (240, 136, 24, 48)]


def test_plan_renditions_keeps_ladder_order_and_custom_rungs() -> None:
    ladder = parse_ladder("A:1280x720:4M,B:640x360:1M:96k,C:320x180:300k:48k")
    plan = plan_renditions(source(1920, 1080, 60), ladder)
    assert [(r.name, r.width, r.height, r.audio_bitrate, r.fps) for r in plan] == [
        ("A", 1280, 720, 128_000, 30),
        ("B", 640, 360, 96_000, 30),
        ("C", 320, 180, 48_000, 30),
    ]


def test_codecs_strings_match_main_profile_and_forced_level() -> None:
    high, _, low = plan_renditions(source())
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
