"""What an attempt must hand back (server/core/transcode/outputs.py), checked on real ffmpeg output: one case per refusal."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.core.errors import UnprocessableMedia
from server.core.transcode.ladder import plan_ladder
from server.core.transcode.outputs import Plan
from tests.harness.media import make_segment

PLAN = plan_ladder()  # HIGH 720x480, MEDIUM 480x320, LOW 240x160
JPEG = b"\xff\xd8\xff\xe0" + b"\0" * 100


@pytest.fixture(scope="module")
def low(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return make_segment(tmp_path_factory.mktemp("outputs") / "low.mp4", seconds=3.0, size="240x160").read_bytes()


def test_a_rendition_at_its_rungs_size_lasting_the_upload_passes(low: bytes) -> None:
    track = Plan(PLAN, 3.0).check("LOW.mp4", low)
    assert track is not None and (track.codec, track.width, track.height) == ("avc1", 240, 160)
    assert abs(track.seconds - 3.0) < 0.05
    assert Plan(PLAN, 3.0).check("thumbnail.jpg", JPEG) is None


@pytest.mark.parametrize(
    ("name", "seconds", "data", "message"),
    [
        ("HIGH.mp4", 3.0, "low", "HIGH.mp4: 240x160, not the rung's 720x480"),
        ("LOW.mp4", 30.0, "low", "LOW.mp4: lasts 3.00 s, the upload 30.00 s"),
        ("LOW.mp4", 3.0, "page", "LOW.mp4: not a readable MP4"),
        ("thumbnail.jpg", 3.0, "page", "thumbnail.jpg: not a JPEG picture"),
        ("storyboard.jpg", 3.0, "low", "storyboard.jpg: not a JPEG picture"),
        ("OTHER.mp4", 3.0, "low", "OTHER.mp4: not an output of this attempt"),
    ],
)
def test_an_output_that_is_not_what_the_plan_asks_is_refused_by_name(low: bytes, name, seconds, data, message) -> None:  # type: ignore[no-untyped-def]
    body = low if data == "low" else b"<html><script>alert(1)</script></html>"
    with pytest.raises(UnprocessableMedia) as refused:
        Plan(PLAN, seconds).check(name, body)
    assert refused.value.message.startswith(message), refused.value.message


def test_a_rendition_without_audio_is_refused(tmp_path: Path) -> None:
    silent = make_segment(tmp_path / "silent.mp4", seconds=3.0, size="240x160", audio=False).read_bytes()
    with pytest.raises(UnprocessableMedia, match="LOW.mp4: no AAC audio track"):
        Plan(PLAN, 3.0).check("LOW.mp4", silent)
