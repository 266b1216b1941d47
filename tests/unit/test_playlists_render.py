"""Golden and parse-back tests of every playlist server/core/playlists renders.

Goldens live in tests/unit/golden/ and are compared exactly. After an intended change, regenerate them
with `UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/unit/test_playlists_render.py`, then review the
diff before committing.
"""

from __future__ import annotations

import math
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlparse

import m3u8
import pytest
from mpegdash.parser import MPEGDASHParser

from server.core.playlists import (
    AUDIO,
    Published,
    RenditionView,
    SegmentView,
    StoryboardTiles,
    VideoView,
    android_segments,
    live_segments,
    render_android_mpd,
    render_dash,
    render_hls_master,
    render_hls_media,
    render_legacy_hls_master,
    render_legacy_hls_media,
    render_storyboard_vtt,
    vod_segments,
)
from server.core.playlists.render import decimal_seconds, iso_utc, live_timing, xs_duration

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"
T0 = 1_795_000_000.0  # 2026-11-18T11:06:40Z
GAP = 10.0
DURATIONS = (270_270, 272_160, 268_200, 270_000, 271_350)  # camera cuts: about 3 s, never exactly
RUNGS = (
    RenditionView("HIGH", 720, 480, 3_128_000, 3_000_000, "avc1.4d401e"),
    RenditionView("MEDIUM", 480, 320, 896_000, 768_000, "avc1.4d401e"),
    RenditionView("LOW", 240, 160, 328_000, 200_000, "avc1.42c00d"),
)
TILES = StoryboardTiles(every_seconds=1.0, tile_width=160, tile_height=90, columns=3)
NS = "{urn:mpeg:dash:schema:mpd:2011}"


def segment(k: int, ready_at: float) -> SegmentView:
    """Return READY segment k placed on the timeline after segments 0..k-1."""
    start = sum(DURATIONS[:k])
    return SegmentView(k, "READY", ready_at=T0 + ready_at, start_ticks=start, duration_ticks=DURATIONS[k], packaged=True)


def make_video(ready: dict[int, float], *, ended_at: float | None = None, vod: bool = False) -> VideoView:
    """Return video 7 with the given segments ready at T0 + seconds."""
    segments = tuple(segment(k, at) for k, at in sorted(ready.items()))
    last = len(DURATIONS) - 1 if ended_at is not None else None
    end = None if ended_at is None else T0 + ended_at
    return VideoView(7, "Camp <fire> & friends", T0, RUNGS, segments, end, last, is_vod=vod)


@dataclass(frozen=True)
class Scenario:
    """A video and the instant it is rendered at."""

    video: VideoView
    now: float

    @property
    def live(self) -> list[Published]:
        """Return what the server would publish now."""
        if self.video.is_vod:
            return vod_segments(self.video)
        return live_segments(self.video, self.now, GAP)

    @property
    def appended(self) -> list[Published]:
        """Return what an HLS playlist lists now: the live list, also after the end (RFC 8216 6.2.1)."""
        return live_segments(self.video, self.now, GAP)


SCENARIOS = {
    "live_contiguous": Scenario(make_video({0: 5, 1: 8, 2: 11}), T0 + 12),
    "live_gap_skipped": Scenario(make_video({0: 5, 1: 8, 3: 14, 4: 17}), T0 + 25),
    "live_gap_waiting": Scenario(make_video({0: 5, 2: 11}), T0 + 15),
    "vod_late": Scenario(make_video({0: 5, 1: 8, 2: 40, 3: 14, 4: 17}, ended_at=18, vod=True), T0 + 41),
}


def assert_golden(name: str, text: str) -> None:
    """Compare text with tests/unit/golden/<name> exactly (rewrite it when UPDATE_GOLDEN=1)."""
    path = GOLDEN / name
    if UPDATE:
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8"), f"{name} differs; see the module docstring"


# Formatting helpers.


def test_xs_duration_is_seconds_only() -> None:
    assert [xs_duration(x) for x in (0, 2, 3.5, 12.3456, 3723)] == ["PT0S", "PT2S", "PT3.5S", "PT12.346S", "PT3723S"]


def test_iso_utc_has_milliseconds_and_z() -> None:
    assert iso_utc(T0 + 0.25) == "2026-11-18T11:06:40.250Z"


def test_decimal_seconds_rounds_half_up_to_milliseconds() -> None:
    assert [decimal_seconds(t, 90_000) for t in (270_270, 45, 44, 272_160)] == ["3.003", "0.001", "0.000", "3.024"]


# Standard DASH.

DASH_ORDER = {
    "MPD": [
        "ProgramInformation",
        "BaseURL",
        "Location",
        "PatchLocation",
        "ServiceDescription",
        "InitializationSet",
        "InitializationGroup",
        "InitializationPresentation",
        "ContentProtection",
        "Period",
        "Metrics",
        "EssentialProperty",
        "SupplementalProperty",
        "UTCTiming",
    ],
    "Period": ["BaseURL", "SegmentBase", "SegmentList", "SegmentTemplate", "AssetIdentifier", "EventStream", "AdaptationSet"],
    "AdaptationSet": [
        *("FramePacking", "AudioChannelConfiguration", "ContentProtection", "EssentialProperty", "SupplementalProperty"),
        *("InbandEventStream", "Accessibility", "Role", "Rating", "Viewpoint", "ContentComponent", "BaseURL"),
        *("SegmentBase", "SegmentList", "SegmentTemplate", "Representation"),
    ],
    "Representation": [
        *("FramePacking", "AudioChannelConfiguration", "ContentProtection", "EssentialProperty", "SupplementalProperty"),
        *("InbandEventStream", "BaseURL", "SubRepresentation", "SegmentBase", "SegmentList", "SegmentTemplate"),
    ],
    "SegmentTemplate": ["Initialization", "RepresentationIndex", "SegmentTimeline", "BitstreamSwitching"],
    "SegmentList": ["Initialization", "RepresentationIndex", "SegmentTimeline", "BitstreamSwitching", "SegmentURL"],
    "SegmentTimeline": ["S"],
    "ProgramInformation": ["Title", "Source", "Copyright"],
    "ServiceDescription": ["Scope", "Latency", "PlaybackRate", "OperatingQuality", "OperatingBandwidth"],
}


def assert_schema_order(text: str) -> None:
    """Check every element's children come in the order the DASH schema's sequences require."""
    for element in ET.fromstring(text).iter():
        order = DASH_ORDER.get(element.tag.removeprefix(NS))
        if order is None:
            continue
        positions = [order.index(child.tag.removeprefix(NS)) for child in element]
        assert positions == sorted(positions), f"children of {element.tag} out of schema order"


@dataclass(frozen=True)
class DashPeriod:
    """What a parsed Period must hold."""

    id: str
    start_number: int
    count: int


def parse_dash(text: str) -> list[DashPeriod]:
    """Parse with mpegdash and return, per Period, its id, startNumber and video segment count."""
    mpd = MPEGDASHParser.parse(text)
    out = []
    for period in mpd.periods:
        video_set, audio_set = period.adaptation_sets
        assert [r.id for r in video_set.representations] == ["HIGH", "MEDIUM", "LOW"]
        assert [r.id for r in audio_set.representations] == ["audio"]
        counts = []
        for aset in (video_set, audio_set):
            template = aset.segment_templates[0]
            timeline = template.segment_timelines[0].Ss if template.segment_timelines else []
            counts.append(sum(1 + (s.r or 0) for s in timeline))
            assert template.presentation_time_offset == (timeline[0].t if timeline else 0)
        assert counts[0] == counts[1], "audio and video timelines differ"
        out.append(DashPeriod(period.id, video_set.segment_templates[0].start_number, counts[0]))
    return out


DASH_EXPECTED = {
    "live_contiguous": ("dynamic", [DashPeriod("0", 0, 3)]),
    "live_gap_skipped": ("dynamic", [DashPeriod("0", 0, 2), DashPeriod("3", 3, 2)]),
    "live_gap_waiting": ("dynamic", [DashPeriod("0", 0, 1)]),
    "vod_late": ("static", [DashPeriod("0", 0, 5)]),  # 2 came after its skip: the VOD lists it
}


@pytest.mark.parametrize("name", sorted(DASH_EXPECTED))
def test_dash_mpd(name: str) -> None:
    scenario = SCENARIOS[name]
    text = render_dash(scenario.video, scenario.live, scenario.now)
    assert_golden(f"{name}.mpd", text)
    assert_schema_order(text)
    mpd_type, periods = DASH_EXPECTED[name]
    mpd = MPEGDASHParser.parse(text)
    assert mpd.type == mpd_type and mpd.profiles == "urn:mpeg:dash:profile:isoff-live:2011"
    assert (mpd.availability_start_time is not None) == (mpd_type == "dynamic")
    assert (mpd.media_presentation_duration is not None) == (mpd_type == "static")
    assert parse_dash(text) == periods


def test_dash_period_start_matches_its_first_segment() -> None:
    scenario = SCENARIOS["live_gap_skipped"]
    root = ET.fromstring(render_dash(scenario.video, scenario.live, scenario.now))
    period = root.findall(f"{NS}Period")[1]
    assert period.get("start") == xs_duration(sum(DURATIONS[:3]) / 90_000)
    first_s = period.find(f"{NS}AdaptationSet/{NS}SegmentTemplate/{NS}SegmentTimeline/{NS}S")
    assert first_s is not None and first_s.get("t") == str(sum(DURATIONS[:3]))


def test_dash_escapes_the_title_and_takes_a_base_url() -> None:
    scenario = SCENARIOS["live_contiguous"]
    text = render_dash(scenario.video, scenario.live, scenario.now, base_url="/video_files/7/?a=1&b=2")
    assert "<Title>Camp &lt;fire&gt; &amp; friends</Title>" in text
    assert "<BaseURL>/video_files/7/?a=1&amp;b=2</BaseURL>" in text
    assert MPEGDASHParser.parse(text).base_urls[0].base_url_value == "/video_files/7/?a=1&b=2"


def test_nothing_published_is_never_rendered_as_a_manifest() -> None:
    # An MPD then had a SegmentTemplate with neither timeline nor duration (one segment, per the spec)
    # and the HLS playlist an EXT-X-MAP naming an init.mp4 not written yet: players failed for good.
    v = make_video({})
    with pytest.raises(ValueError, match="nothing is published"):
        render_dash(v, [], T0 + 1)
    for track in (RUNGS[0], AUDIO):
        with pytest.raises(ValueError, match="nothing is published"):
            render_hls_media(v, track, [])


# Standard HLS.


def test_hls_master() -> None:
    text = render_hls_master(SCENARIOS["live_contiguous"].video)
    assert_golden("master.m3u8", text)
    playlist = m3u8.loads(text)
    assert playlist.is_variant and playlist.is_independent_segments
    assert [p.uri for p in playlist.playlists] == ["HIGH/playlist.m3u8", "MEDIUM/playlist.m3u8", "LOW/playlist.m3u8"]
    high = playlist.playlists[0].stream_info
    assert (high.bandwidth, high.average_bandwidth, high.resolution) == (3_128_000, 3_128_000, (720, 480))
    assert (high.codecs, high.frame_rate, high.audio) == ("avc1.4d401e,mp4a.40.2", 30.0, "aud")
    (audio,) = playlist.media
    assert (audio.type, audio.group_id, audio.name, audio.default, audio.autoselect, audio.uri) == (
        *("AUDIO", "aud", "audio", "YES", "YES", "audio/playlist.m3u8"),
    )


@dataclass(frozen=True)
class HlsExpected:
    """What a parsed media playlist must hold."""

    ids: list[int]
    discontinuities: list[int]  # ids preceded by EXT-X-DISCONTINUITY
    ended: bool


HLS_EXPECTED = {
    "live_contiguous": HlsExpected([0, 1, 2], [], False),
    "live_gap_skipped": HlsExpected([0, 1, 3, 4], [3], False),
    "live_gap_waiting": HlsExpected([0], [], False),
    # Segment 2 came after the live list had skipped it: an EVENT playlist is only ever appended to.
    "vod_late": HlsExpected([0, 1, 3, 4], [3], True),
}


def assert_media_playlist(text: str, expected: HlsExpected, uri: Callable[[int], str], durations: list[float]) -> None:
    """Parse a media playlist back and check it against the expectation."""
    playlist = m3u8.loads(text)
    assert [s.uri for s in playlist.segments] == [uri(k) for k in expected.ids]
    assert [s.duration for s in playlist.segments] == durations
    assert [k for k, s in zip(expected.ids, playlist.segments, strict=True) if s.discontinuity] == expected.discontinuities
    # RFC 8216 4.3.3.1: each EXTINF rounded to the nearest integer; fixed at 3 for 3 s segments (6.2.1).
    assert playlist.target_duration == 3
    assert all(round(d) <= playlist.target_duration for d in durations)
    assert_no_low_latency_tags(text)
    assert playlist.media_sequence == 0
    assert playlist.is_endlist == expected.ended
    assert playlist.playlist_type == "event"  # from the first answer to the last


def assert_no_low_latency_tags(text: str) -> None:
    """Apply hls-parser's rule: EXT-X-SERVER-CONTROL makes a playlist Low-Latency HLS, where CAN-BLOCK-RELOAD=YES is mandatory.

    hls-parser (a widely used playlist parser) rejected every live media playlist for HOLD-BACK=9 alone,
    which only said what its absence means (3 x TARGETDURATION, RFC 8216bis 4.4.3.8).
    """
    for line in text.splitlines():
        if line.startswith("#EXT-X-SERVER-CONTROL:"):
            assert "CAN-BLOCK-RELOAD=YES" in line, f"{line}: CAN-BLOCK-RELOAD is mandatory"


@pytest.mark.parametrize("name", sorted(HLS_EXPECTED))
def test_hls_video_media_playlist(name: str) -> None:
    scenario, expected = SCENARIOS[name], HLS_EXPECTED[name]
    text = render_hls_media(scenario.video, RUNGS[0], scenario.appended)
    assert_golden(f"{name}_HIGH.m3u8", text)
    assert_media_playlist(text, expected, "{:06d}.m4s".format, [round(DURATIONS[k] / 90_000, 3) for k in expected.ids])
    playlist = m3u8.loads(text)
    assert playlist.version == 6 and playlist.segment_map[0].uri == "init.mp4"


@pytest.mark.parametrize("name", sorted(HLS_EXPECTED))
def test_hls_audio_media_playlist(name: str) -> None:
    scenario, expected = SCENARIOS[name], HLS_EXPECTED[name]
    text = render_hls_media(scenario.video, AUDIO, scenario.appended)
    assert_golden(f"{name}_audio.m3u8", text)
    durations = [round(p.audio_duration_ticks / 48_000, 3) for p in scenario.appended]
    assert_media_playlist(text, expected, "{:06d}.m4s".format, durations)
    # whole AAC frames laid end to end: within one frame (1024 / 48 kHz) of the picture, never past it
    lag = sum(DURATIONS[k] for k in expected.ids) / 90_000 - sum(p.audio_duration_ticks for p in scenario.appended) / 48_000
    assert 0 <= lag < 1024 / 48_000 * (1 + sum(p.discontinuity for p in scenario.appended))


def test_hls_media_sequence_counts_entries_not_ids() -> None:
    scenario = SCENARIOS["live_gap_skipped"]
    tail = scenario.live[2:]  # ids 3, 4 are entries 2, 3
    playlist = m3u8.loads(render_hls_media(scenario.video, RUNGS[0], tail))
    assert playlist.media_sequence == 2 and playlist.discontinuity_sequence == 0
    assert [s.uri for s in playlist.segments] == ["000003.m4s", "000004.m4s"]


# What a live stream tells players about their distance from the camera (render.live_timing).


@pytest.mark.parametrize("nominal_ms", [1000, 2000, 3000, 4000, 6000, 10_000])
def test_live_timing_keeps_the_spec_rules(nominal_ms: int) -> None:
    live = live_timing(nominal_ms)
    assert live.target_duration == math.floor(nominal_ms / 1000 + 0.5)
    assert nominal_ms < live.latency_min_ms < live.latency_target_ms < live.latency_max_ms
    assert live.presentation_delay * 1000 == live.latency_target_ms
    assert 0 < live.update_period < live.presentation_delay
    assert live.rate_min <= 1 < live.rate_max


def test_live_timing_of_three_second_segments() -> None:
    live = live_timing(3000)
    assert live.target_duration == 3
    assert (live.latency_min_ms, live.latency_target_ms, live.latency_max_ms) == (4500, 6000, 9000)
    assert (live.presentation_delay, live.update_period) == (6, 1)


def test_the_target_duration_never_changes_when_a_long_segment_comes() -> None:
    # RFC 8216 6.2.1: EXT-X-TARGETDURATION MUST NOT change; it was raised to 4 by one 3.7 s segment.
    first = SegmentView(0, "READY", ready_at=T0 + 5, start_ticks=0, duration_ticks=270_000, packaged=True)
    long_one = SegmentView(1, "READY", ready_at=T0 + 8, start_ticks=270_000, duration_ticks=333_000, packaged=True)  # 3.7 s
    video = VideoView(7, "long", T0, RUNGS, (first, long_one))
    for track in (RUNGS[0], AUDIO):
        before = m3u8.loads(render_hls_media(video, track, live_segments(video, T0 + 6, GAP)))
        after = m3u8.loads(render_hls_media(video, track, live_segments(video, T0 + 9, GAP)))
        assert len(after.segments) == 2
        assert before.target_duration == after.target_duration == 3  # 3 x 3 s behind the end, as before
    legacy = m3u8.loads(render_legacy_hls_media(video, RUNGS[1], live_segments(video, T0 + 9, GAP)))
    assert legacy.target_duration == 3


def test_live_mpd_tells_the_latency_and_static_says_nothing_live() -> None:
    live = ET.fromstring(render_dash(SCENARIOS["live_contiguous"].video, SCENARIOS["live_contiguous"].live, T0 + 12))
    (description,) = live.findall(f"{NS}ServiceDescription")
    latency, rate = description.find(f"{NS}Latency"), description.find(f"{NS}PlaybackRate")
    assert latency is not None and rate is not None
    assert (latency.get("target"), latency.get("min"), latency.get("max")) == ("6000", "4500", "9000")
    assert (rate.get("min"), rate.get("max")) == ("1", "1.04")
    assert (live.get("suggestedPresentationDelay"), live.get("minimumUpdatePeriod")) == ("PT6S", "PT1S")
    vod = SCENARIOS["vod_late"]
    static = ET.fromstring(render_dash(vod.video, vod.live, vod.now))
    assert static.get("type") == "static" and static.find(f"{NS}ServiceDescription") is None
    assert not {"suggestedPresentationDelay", "minimumUpdatePeriod", "timeShiftBufferDepth"} & set(static.attrib)


# The Android MPD.

XS_DURATION = re.compile(r"^(-)?P(([0-9]*)Y)?(([0-9]*)M)?(([0-9]*)D)?(T(([0-9]*)H)?(([0-9]*)M)?(([0-9.]*)S)?)?$")


def exoplayer_urls(text: str, base: str) -> dict[str, list[str]]:
    """Apply ExoPlayer r1.5.2's MediaPresentationDescriptionParser rules; return each Representation's URLs.

    Mirrors what makes that parser throw: durations outside its xs:duration regex, integer attributes
    that are not integers, a dynamic MPD whose first Period has no @start ("No periods found"), a static
    one with no duration ("Unable to determine duration of static manifest").
    """
    root = ET.fromstring(text)
    assert root.tag == f"{NS}MPD"
    for attr in ("mediaPresentationDuration", "minBufferTime", "minimumUpdatePeriod", "timeShiftBufferDepth"):
        assert root.get(attr) is None or XS_DURATION.match(root.get(attr, ""))
    periods = root.findall(f"{NS}Period")
    assert periods
    if root.get("type") == "dynamic":
        assert periods[0].get("start") is not None
    else:
        assert root.get("mediaPresentationDuration") is not None or periods[-1].get("duration") is not None
    base = urljoin(base, root.findtext(f"{NS}BaseURL", ""))
    urls = {}
    for rep in root.iter(f"{NS}Representation"):
        for attr in ("bandwidth", "width", "height"):
            int(rep.get(attr, "-1"))
        assert re.fullmatch(r"\d+(/\d+)?", rep.get("frameRate", "0"))
        rep_base = urljoin(base, rep.findtext(f"{NS}BaseURL", ""))
        seg_list = rep.find(f"{NS}SegmentList")
        assert seg_list is not None
        int(seg_list.get("timescale", "1")), int(seg_list.get("duration", "-1")), int(seg_list.get("startNumber", "1"))
        urls[rep.get("id", "")] = [urljoin(rep_base, u.get("media", "")) for u in seg_list.iter(f"{NS}SegmentURL")]
    return urls


def android_paths(text: str) -> dict[str, list[str]]:
    """Return each Representation's segment paths as the app requests them."""
    urls = exoplayer_urls(text, "http://phone.example:8080/video_files/7")
    return {rep: [urlparse(u).path for u in values] for rep, values in urls.items()}


ANDROID = {
    "android_all": (SCENARIOS["live_gap_skipped"], None, [0, 1, 3, 4]),
    "android_after_1": (SCENARIOS["live_gap_skipped"], 1, [3, 4]),
    "android_none": (SCENARIOS["vod_late"], 4, []),
    "android_vod": (SCENARIOS["vod_late"], None, [0, 1, 2, 3, 4]),  # 2 came after its skip: the VOD lists it
}


@pytest.mark.parametrize("name", sorted(ANDROID))
def test_android_mpd(name: str) -> None:
    scenario, after, expected_ids = ANDROID[name]
    segments = android_segments(scenario.video, after, scenario.now, GAP)
    text = render_android_mpd(scenario.video, segments)
    assert_golden(f"{name}.mpd", text)
    assert_schema_order(text)
    paths = android_paths(text)
    assert sorted(paths) == ["HIGH", "LOW", "MEDIUM"]
    for rep, values in paths.items():
        assert values == [f"/video_files/7/{rep}/{k:06d}.mp4" for k in expected_ids]
    mpd = MPEGDASHParser.parse(text)
    assert mpd.type == "static" and mpd.base_urls[0].base_url_value == "/video_files/7/"
    reps = mpd.periods[0].adaptation_sets[0].representations
    assert all(r.mime_type == "video/mp4" and r.codecs.endswith(",mp4a.40.2") for r in reps)
    assert all(r.segment_lists[0].timescale == 90_000 and r.segment_lists[0].duration == 270_000 for r in reps)


def test_android_mpd_needs_three_renditions() -> None:
    v = VideoView(7, "t", T0, RUNGS[:2])
    with pytest.raises(ValueError):
        render_android_mpd(v, [])


# Legacy HLS.


def test_legacy_master() -> None:
    text = render_legacy_hls_master(SCENARIOS["live_contiguous"].video)
    assert_golden("legacy_master.m3u8", text)
    playlist = m3u8.loads(text)
    assert [p.uri for p in playlist.playlists] == ["HIGH/stream.m3u8", "MEDIUM/stream.m3u8", "LOW/stream.m3u8"]
    resolved = urljoin("http://h/live_m3u8/7/root.m3u8", playlist.playlists[1].uri)
    assert resolved == "http://h/live_m3u8/7/MEDIUM/stream.m3u8"


@pytest.mark.parametrize("name", ["live_gap_skipped", "vod_late"])
def test_legacy_media_playlist(name: str) -> None:
    scenario, expected = SCENARIOS[name], HLS_EXPECTED[name]
    text = render_legacy_hls_media(scenario.video, RUNGS[1], scenario.appended)
    assert_golden(f"legacy_{name}_MEDIUM.m3u8", text)
    durations = [round(DURATIONS[k] / 90_000, 3) for k in expected.ids]
    assert_media_playlist(text, expected, "/video_files/7/MEDIUM/{:06d}.ts".format, durations)
    assert m3u8.loads(text).version == 3 and "#EXT-X-MAP" not in text


# Storyboard.


def test_storyboard_vtt() -> None:
    scenario = SCENARIOS["vod_late"]
    text = render_storyboard_vtt(scenario.video, scenario.live, TILES)
    assert_golden("storyboard_vod.vtt", text)
    blocks = text.split("\n\n")
    assert blocks[0] == "WEBVTT"
    assert len(blocks) - 1 == 3 * len(scenario.live)
    assert blocks[4] == "00:00:03.003 --> 00:00:04.003\nstoryboard/000001.jpg#xywh=0,0,160,90"
    assert blocks[3] == "00:00:02.000 --> 00:00:03.003\nstoryboard/000000.jpg#xywh=320,0,160,90"
