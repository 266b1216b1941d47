"""The ~1 s parts of each segment's CMAF fragment: cut from its moofs, recorded, listed by HLS as byte ranges.

Exact tests of the pure rules (cmaf.fragments, Parts, packaging.parts_of, render_hls_media with parts) and
the 2-hour size of the playlists they make. The real encode and remux are checked in
tests/integration/test_transcode_outputs.py, the players in tests/e2e/test_playback_browsers.py
(every HLS play is of parts: test_the_hls_plays_were_of_one_second_parts).
"""

from __future__ import annotations

import struct
import time

import m3u8
import pytest

from server.core.playlists import AUDIO, Published, SegmentView, VideoView, live_segments, render_dash, render_hls_media
from server.core.playlists.model import Parts
from server.core.playlists.render import PART_TARGET, hls_target, render_legacy_hls_media
from server.core.transcode import cmaf
from server.core.transcode.cmaf import Fragment
from server.domain.packaging import parts_of
from tests.unit.test_playlists_render import RUNGS, T0, assert_no_low_latency_tags

SECOND = 90_000
AUDIO_PART = 47 * 1024  # what -frag_duration 1 s gives at 48 kHz


def box(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(body), kind) + body


def moof(tfdt: int, version: int = 1) -> bytes:
    decode_time = struct.pack(">Q", tfdt) if version == 1 else struct.pack(">I", tfdt)
    traf = box(b"traf", box(b"tfhd", bytes(8)) + box(b"tfdt", bytes([version, 0, 0, 0]) + decode_time))
    return box(b"moof", box(b"mfhd", bytes(8)) + traf)


def test_fragments_cut_at_each_moof_and_cover_the_file() -> None:
    first = cmaf.STYP + moof(270_000) + box(b"mdat", b"x" * 100)
    second = moof(360_000, version=0) + box(b"mdat", b"y" * 50)
    third = moof(450_000) + box(b"mdat", b"z" * 7)
    found = cmaf.fragments(first + second + third)
    assert found == [
        Fragment(0, len(first), 270_000),
        Fragment(len(first), len(second), 360_000),
        Fragment(len(first) + len(second), len(third), 450_000),
    ]


def test_fragments_refuse_a_segment_without_moof() -> None:
    with pytest.raises(ValueError, match="without a moof"):
        cmaf.fragments(cmaf.STYP + box(b"mdat", b"x"))
    with pytest.raises(ValueError, match="without a tfdt"):
        cmaf.fragments(box(b"moof", box(b"traf", box(b"tfhd", bytes(8)))))


def parts(video: tuple[int, ...] = (SECOND, SECOND, 87_000), audio: tuple[int, ...] = (AUDIO_PART, AUDIO_PART, 45_056)) -> Parts:
    sizes = [(r.name, tuple(1000 * (i + 1) + n for n in range(len(video)))) for i, r in enumerate(RUNGS)]
    return Parts(video, audio, (*sizes, ("audio", tuple(300 + n for n in range(len(audio))))))


def test_parts_give_contiguous_ranges_and_survive_the_row() -> None:
    p = parts()
    assert p.ranges("HIGH") == [(0, 1000, SECOND), (1000, 1001, SECOND), (2001, 1002, 87_000)]
    assert p.ranges("audio") == [(0, 300, AUDIO_PART), (300, 301, AUDIO_PART), (601, 302, 45_056)]
    assert p.ranges("FHD") is None
    assert Parts.from_json(p.to_json()) == p


@pytest.mark.parametrize(
    ("video", "audio", "sizes", "message"),
    [
        ((), (AUDIO_PART,), (), "positive durations"),
        ((SECOND, 0), (AUDIO_PART,), (), "positive durations"),
        ((SECOND,), (AUDIO_PART,), (("HIGH", (1, 2)),), "2 sizes for 1 durations"),
        ((SECOND,), (AUDIO_PART,), (("audio", (0,)),), "audio"),
    ],
)
def test_parts_refuse_what_does_not_add_up(video: tuple[int, ...], audio: tuple[int, ...], sizes: tuple, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ValueError, match=message):
        Parts(video, audio, sizes)


def published(k: int = 4, parts_: Parts | None = None, start: int = 1_000_000) -> Published:
    return Published(k, k, start, 267_000, 533_333, 140 * 1024, parts=parts_)


def test_parts_of_reads_durations_from_the_tfdts_and_the_segment_end() -> None:
    entry = published()
    video = [Fragment(0, 10, 1_000_000), Fragment(10, 20, 1_090_000), Fragment(30, 5, 1_180_000)]
    pieces = {r.name: video for r in RUNGS} | {"audio": [Fragment(0, 7, 533_333), Fragment(7, 8, 533_333 + AUDIO_PART)]}
    found = parts_of(pieces, entry)
    assert found is not None
    assert found.video_ticks == (SECOND, SECOND, 87_000)  # 1_267_000 is the end
    assert found.audio_ticks == (AUDIO_PART, 140 * 1024 - AUDIO_PART)
    assert found.ranges("LOW") == [(0, 10, SECOND), (10, 20, SECOND), (30, 5, 87_000)]


def test_parts_of_lists_the_segment_whole_when_renditions_disagree() -> None:
    one = [Fragment(0, 10, 1_000_000), Fragment(10, 20, 1_090_000)]
    other = [Fragment(0, 10, 1_000_000), Fragment(10, 20, 1_180_000)]
    audio = [Fragment(0, 7, 533_333)]
    assert parts_of({"HIGH": one, "MEDIUM": other, "LOW": one, "audio": audio}, published()) is None
    beyond = [Fragment(0, 10, 1_000_000), Fragment(10, 20, 1_300_000)]  # a tfdt past the segment's end
    assert parts_of({"HIGH": beyond, "audio": audio}, published()) is None


def video_with_parts(count: int, *, first_whole: bool = False, vod: bool = False) -> VideoView:
    """Video 7 with `count` packaged 2.9 s segments, each with 3 parts (the first maybe without)."""
    segments = []
    for k in range(count):
        recorded = None if first_whole and k == 0 else parts()
        ready = T0 + 3 * k + 4
        segments.append(
            SegmentView(k, "READY", ready_at=ready, start_ticks=k * 267_000, duration_ticks=267_000, packaged=True, parts=recorded)
        )
    return VideoView(7, "parts", T0, RUNGS, tuple(segments), is_vod=vod, ended_at=T0 + 3 * count if vod else None,
                     last_segment_id=count - 1 if vod else None)  # fmt: skip


def test_hls_lists_each_part_as_a_byte_range_with_target_one() -> None:
    video = video_with_parts(3)
    listed = live_segments(video, T0 + 20, 10.0)
    text = render_hls_media(video, RUNGS[0], listed)
    playlist = m3u8.loads(text)
    assert playlist.target_duration == PART_TARGET == 1
    assert [s.uri for s in playlist.segments] == [f"{k:06d}.m4s" for k in range(3) for _ in range(3)]
    assert [s.byterange for s in playlist.segments] == ["1000@0", "1001@1000", "1002@2001"] * 3
    assert [s.duration for s in playlist.segments] == [1.0, 1.0, 0.967] * 3
    assert all(round(s.duration) <= playlist.target_duration for s in playlist.segments)
    assert playlist.version == 6 and playlist.segment_map[0].uri == "init.mp4"  # EXT-X-BYTERANGE needs 4
    assert_no_low_latency_tags(text)
    assert "#EXT-X-SERVER-CONTROL" not in text  # the hold-back is 3 x target: 3 s


def test_hls_audio_parts_and_the_discontinuity_on_the_first_part_only() -> None:
    video = video_with_parts(4)
    video = VideoView(7, "parts", T0, RUNGS, tuple(s for s in video.segments if s.segment_id != 1))
    listed = [p for p in live_segments(video, T0 + 60, 10.0)]
    assert [p.segment_id for p in listed] == [0, 2, 3]
    playlist = m3u8.loads(render_hls_media(video, AUDIO, listed))
    assert [s.byterange for s in playlist.segments] == ["300@0", "301@300", "302@601"] * 3
    assert [s.duration for s in playlist.segments] == [1.003, 1.003, 0.939] * 3
    assert [i for i, s in enumerate(playlist.segments) if s.discontinuity] == [3]
    assert playlist.target_duration == 1


def test_target_is_decided_by_the_first_segment_and_others_stay_valid() -> None:
    whole_first = video_with_parts(3, first_whole=True)
    listed = live_segments(whole_first, T0 + 20, 10.0)
    assert hls_target(whole_first, listed) == 3  # a video live across the upgrade keeps its target
    playlist = m3u8.loads(render_hls_media(whole_first, RUNGS[1], listed))
    assert [s.byterange for s in playlist.segments] == [None, "2000@0", "2001@2000", "2002@4001"] * 1 + ["2000@0", "2001@2000", "2002@4001"]
    assert playlist.target_duration == 3


def test_dash_legacy_and_the_vod_playlist_keep_whole_segments() -> None:
    video = video_with_parts(3, vod=True)
    listed = live_segments(video, T0 + 60, 10.0)
    assert '<S t="0" d="267000" r="2"/>' in render_dash(video, listed, T0 + 60)  # the whole files, as before
    legacy = m3u8.loads(render_legacy_hls_media(video, RUNGS[0], listed))
    assert legacy.target_duration == 3 and [s.byterange for s in legacy.segments] == [None] * 3
    event = m3u8.loads(render_hls_media(video, RUNGS[0], listed))
    assert event.is_endlist and event.playlist_type == "event" and len(event.segments) == 9 and event.target_duration == 1
    # The VOD playlist: whole files (no latency to win; Chromium's own HLS refuses the parts), target 3.
    vod = m3u8.loads(render_hls_media(video, AUDIO, listed, vod=True))
    assert vod.is_endlist and vod.playlist_type == "vod" and vod.target_duration == 3
    assert [(s.uri, s.byterange) for s in vod.segments] == [(f"{k:06d}.m4s", None) for k in range(3)]


def test_a_two_hour_stream_renders_small_and_fast() -> None:
    """2,400 uploads of 3 s (2 hours), each 3 parts: the sizes docs/benchmarks.md reports, and a bound on them."""
    count = 2400
    segments = tuple(
        SegmentView(k, "READY", ready_at=T0 + 3 * k + 4, start_ticks=k * 270_000, duration_ticks=270_000, packaged=True,
                    parts=parts((SECOND,) * 3, (AUDIO_PART, AUDIO_PART, 140 * 1024 - 2 * AUDIO_PART)))  # fmt: skip
        for k in range(count)
    )
    video = VideoView(7, "two hours", T0, RUNGS, segments)
    listed = live_segments(video, T0 + 3 * count + 10, 10.0)
    started = time.perf_counter()
    text = render_hls_media(video, RUNGS[0], listed)
    took = time.perf_counter() - started
    whole = render_legacy_hls_media(video, RUNGS[0], listed)
    print(f"\n2 h HLS media playlist: {len(text)} bytes in parts, {len(whole)} bytes whole (TS), render {took * 1000:.0f} ms")
    assert len(m3u8.loads(text).segments) == 3 * count
    assert len(text) < 3.5 * len(whole)
    assert took < 5.0  # a publish renders 4 of these; under load a few hundred ms each
