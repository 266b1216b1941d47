"""Render every playlist from Jinja2 templates; the numbers are formatted here, the layout lives there.

DASH numbering across a hole. The files are named by segment id and SegmentTemplate@media uses $Number$,
but SegmentTimeline numbers its S entries implicitly and consecutively from @startNumber: after a
skipped segment every later number would be off by one. S@n (5th edition) would fix it, but dash.js
numbers timeline segments by position + startNumber and ignores S@n; SegmentList + SegmentTimeline would
work too, but dash.js pairs SegmentURL i with S element i (so no @r) and it repeats every URL per
Representation. So the MPD has one Period per contiguous run of segment ids: each Period repeats the same
two AdaptationSets with startNumber = its first segment id, presentationTimeOffset = that segment's tfdt
and Period@start = the same instant, which keeps $Number$ = segment id. Period@id is the run's first
segment id, so ids stay stable as the live MPD grows (periods are only ever appended); without a hole
there is exactly one Period, id "0", start PT0S. The hole itself is the tail of the previous Period: dash.js's
GapController seeks to the Period's end when playback stalls before it. A time gap without a missing id
just gets an explicit S@t.

HLS EXT-X-TARGETDURATION is decided once per video. The CMAF media playlists list a segment with recorded
parts as ~1 s byte ranges (one per keyframe) and then say 1 (`hls_target`: players hold back 3 s, not 9 s;
docs/transcoding.md "One-second parts"). Otherwise (the legacy TS playlists, segments packaged before parts)
it is decided from the nominal segment duration D alone:
round(D), 3 for 3 s segments (`live_timing`), never from the segments listed. RFC 8216 says it MUST NOT
change (6.2.1) and that each EXTINF, rounded to the nearest integer, MUST be at most it (4.3.3.1).
Players stay three target durations behind the playlist's end, so a target sized for the longest
segment the server accepts (MAX_SEGMENT_SECONDS, 20 s) would cost every stream a minute of latency, and
one sized from the segments seen so far rose mid-stream when a longer one came. Phones cut on a keyframe
every ~3 s, which round(D) carries (segments up to D + 0.499 s). A longer one (a phone whose keyframes
are further apart, a CLI cut) is still listed whole with its true EXTINF: the target stays put and the
picture is kept, at the cost of that one entry exceeding the target. Making it valid means splitting it
into entries of at most the target: its keyframes lie on the encoder's fixed GOP grid, so it could be
listed as EXT-X-BYTERANGE parts (offsets per rendition, audio split on AAC frames, the TS playlist on
packets); not done yet.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from fractions import Fraction
from typing import Literal

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from server.core.playlists.model import (
    Published,
    RenditionView,
    StoryboardTiles,
    VideoView,
)
from server.core.timeline import AUDIO_TIMESCALE, VIDEO_TIMESCALE

AUDIO: Literal["audio"] = "audio"
DVR_SLACK_S = 60  # timeShiftBufferDepth margin beyond everything recorded so far
ANDROID_MIN_REPRESENTATIONS = 3

_env = Environment(
    loader=PackageLoader("server.core.playlists", "templates"),
    autoescape=select_autoescape(enabled_extensions=("mpd.j2",), default_for_string=False),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)


# Characters XML 1.0 forbids anywhere, even escaped: C0 controls but tab/LF/CR, surrogates, U+FFFE/U+FFFF.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_text(value: str) -> str:
    """Drop the characters XML cannot carry (a title is stored as given; the MPD must stay well-formed)."""
    return _NOT_XML.sub("", value)


_env.filters["xml_text"] = xml_text


def xs_duration(seconds: Fraction | float | int) -> str:
    """Format seconds as an xs:duration in seconds only (PT12.345S), which ExoPlayer 1.x's regex accepts."""
    ms = _round(Fraction(seconds) * 1000)
    whole, frac = divmod(ms, 1000)
    return f"PT{whole}.{frac:03d}".rstrip("0").rstrip(".") + "S"


def iso_utc(epoch: float) -> str:
    """Format epoch seconds as an ISO 8601 UTC date-time with milliseconds and a Z."""
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def decimal_seconds(ticks: int, timescale: int) -> str:
    """Format ticks as seconds with exactly 3 decimals, rounded half up (for EXTINF)."""
    whole, frac = divmod(_round(Fraction(ticks * 1000, timescale)), 1000)
    return f"{whole}.{frac:03d}"


def vtt_time(ms: int) -> str:
    """Format milliseconds as a WebVTT timestamp HH:MM:SS.mmm."""
    seconds, millis = divmod(ms, 1000)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}.{millis:03d}"


def _round(value: Fraction) -> int:
    """Round half up to an integer."""
    return math.floor(value + Fraction(1, 2))


def decimal(value: Fraction) -> str:
    """Format a ratio as a short decimal (1.04, 1) for xs:double attributes."""
    return f"{float(value):g}"


_env.filters.update(xs_duration=xs_duration, iso_utc=iso_utc, decimal=decimal)


@dataclass(frozen=True)
class LiveTiming:
    """What a live manifest tells players about how close to the camera they may play (see live_timing)."""

    target_duration: int  # EXT-X-TARGETDURATION, s: the same for the video's whole life
    latency_target_ms: int  # DASH ServiceDescription Latency@target (wall clock: capture -> shown)
    latency_min_ms: int
    latency_max_ms: int
    rate_min: Fraction  # ServiceDescription PlaybackRate@min/@max
    rate_max: Fraction
    presentation_delay: Fraction  # MPD@suggestedPresentationDelay, s
    update_period: Fraction  # MPD@minimumUpdatePeriod, s


def live_timing(nominal_ms: int) -> LiveTiming:
    """Decide every live-latency value of the manifests from the nominal segment duration D.

    A phone uploads a segment whole, so its first frame is already D old when it arrives, and it is listed
    about 1.3 s later (encode + remux; p95 1.6 s with two streams on two cores, bench.live_latency).

    HLS (RFC 8216 section 4.3.3.1; 8216bis 4.4.3.1): "The EXTINF duration of each Media Segment in the
    Playlist file, when rounded to the nearest integer, MUST be less than or equal to the target
    duration", so D = 3 s allows TARGETDURATION 3 for segments up to 3.499 s, and section 6.2.1 says it
    MUST NOT change: it is decided from D alone, once per video (see `_render_media`). Players stay 3
    target durations behind the playlist's end, 9 s, what HOLD-BACK's absence means (8216bis 4.4.3.8);
    the CMAF playlists list ~1 s parts with target 1 instead (`hls_target`), 3 s.
    No EXT-X-SERVER-CONTROL: hls-parser reads the tag as Low-Latency HLS and then requires CAN-BLOCK-RELOAD,
    and the server serves neither blocking reloads, parts nor delta updates (CAN-SKIP-UNTIL).

    DASH (ISO 23009-1 5th ed. ServiceDescription, DASH-IF IOP low-latency): Latency@target = 2 D, one D
    for the segment to be recorded and uploaded and one for the encode, the remux and the player's next
    MPD refresh (minimumUpdatePeriod D/3); @min = 1.5 D (below it the segment cannot be there yet),
    @max = 3 D (dash.js seeks back to the target beyond max + 0.5 s when catch-up is on).
    PlaybackRate@max 1.04 (DASH-IF's example: hard to hear); @min 1: Shaka measures its target from its
    seek range end, which already lies suggestedPresentationDelay + one segment behind the wall clock,
    so any rate below 1 would make it drift further behind. suggestedPresentationDelay (wall clock, for
    players without ServiceDescription) = the same target.
    """
    seconds = Fraction(nominal_ms, 1000)
    target_duration = max(1, _round(seconds))
    return LiveTiming(
        target_duration=target_duration,
        latency_target_ms=2 * nominal_ms,
        latency_min_ms=nominal_ms * 3 // 2,
        latency_max_ms=3 * nominal_ms,
        rate_min=Fraction(1),
        rate_max=Fraction(104, 100),
        presentation_delay=2 * seconds,
        update_period=max(Fraction(1), seconds / 3),
    )


@dataclass(frozen=True)
class _S:
    """One SegmentTimeline S element; t is None when it follows the previous one without a gap."""

    t: int | None
    d: int
    r: int = 0


@dataclass(frozen=True)
class _Period:
    """One DASH Period: a contiguous run of segment ids."""

    id: str
    start: str
    start_number: int
    video_pto: int
    audio_pto: int
    video: list[_S]
    audio: list[_S]


def render_dash(
    video: VideoView, segments: list[Published], now: float, *, base_url: str | None = None, utc_timing_url: str | None = None
) -> str:
    """Render the standard DASH MPD (dynamic while live, static once VOD); live players sync clocks on `utc_timing_url`."""
    _refuse_empty(segments)
    end = max(p.end_ticks for p in segments)
    return _env.get_template("dash.mpd.j2").render(
        video=video,
        dynamic=not video.is_vod,
        now=now,
        base_url=base_url,
        periods=_periods(segments),
        nominal_s=Fraction(video.nominal_duration_ms, 1000),
        live=live_timing(video.nominal_duration_ms),
        dvr_s=math.ceil(max(now - video.created_at, end / VIDEO_TIMESCALE)) + DVR_SLACK_S,
        duration_s=Fraction(end, VIDEO_TIMESCALE),
        audio_codecs=video.renditions[0].audio_codecs,
        utc_timing_url=utc_timing_url,
    )


def _refuse_empty(segments: list[Published]) -> None:
    """Refuse to render a manifest that lists nothing.

    A SegmentTemplate with neither SegmentTimeline nor @duration means one segment, and EXT-X-MAP names
    an init.mp4 written with the first segment: either promises a file that does not exist yet, and
    players fail for good. The caller answers something players retry instead (server/playback.py).
    """
    if not segments:
        raise ValueError("nothing is published yet: a manifest now would promise files that do not exist")


def _periods(segments: list[Published]) -> list[_Period]:
    """Split the list into Periods, one per contiguous run of ids."""
    return [_period(run) for run in _runs(segments)]


def _runs(segments: list[Published]) -> list[list[Published]]:
    """Split the list wherever the next id is not the previous id + 1."""
    runs: list[list[Published]] = []
    for p in segments:
        if runs and p.segment_id == runs[-1][-1].segment_id + 1:
            runs[-1].append(p)
        else:
            runs.append([p])
    return runs


def _period(run: list[Published]) -> _Period:
    """Build the Period of one contiguous run."""
    first = run[0]
    return _Period(
        id=str(first.segment_id),
        start=xs_duration(Fraction(first.start_ticks, VIDEO_TIMESCALE)),
        start_number=first.segment_id,
        video_pto=first.start_ticks,
        audio_pto=first.audio_start_ticks,
        video=_timeline((p.start_ticks, p.duration_ticks) for p in run),
        audio=_timeline((p.audio_start_ticks, p.audio_duration_ticks) for p in run),
    )


def _timeline(entries: Iterable[tuple[int, int]]) -> list[_S]:
    """Compress (start, duration) pairs into S elements: explicit t after any time gap, r for repeats."""
    out: list[_S] = []
    expected: int | None = None
    for start, duration in entries:
        if out and start == expected and out[-1].d == duration:
            out[-1] = _S(out[-1].t, duration, out[-1].r + 1)
        else:
            out.append(_S(None if start == expected else start, duration))
        expected = start + duration
    return out


HLS_LIVE = "playlist.m3u8"  # a rung's (or audio's) EVENT playlist: the live list, appended to, ENDLIST at the end
HLS_VOD = "vod.m3u8"  # a finished video's VOD playlist: every ready segment, late ones too


def render_hls_master(video: VideoView) -> str:
    """Render the standard HLS master playlist (fMP4 video renditions + one audio group).

    While live it names the EVENT playlists; once the video is finished, the VOD ones, so a viewer who
    starts then gets every segment the DASH VOD lists (an EVENT playlist can never take a late one).
    """
    media = HLS_VOD if video.is_vod else HLS_LIVE
    return _env.get_template("hls_master.m3u8.j2").render(video=video, streams=_streams(video), media=media)


def _streams(video: VideoView) -> list[dict[str, object]]:
    """Return the EXT-X-STREAM-INF values of each rendition."""
    return [
        {
            "rendition": r,
            "average": r.average_bandwidth or r.bandwidth,
            "codecs": f"{r.codecs},{r.audio_codecs}",
            "frame_rate": f"{r.frame_rate:.3f}",
        }
        for r in video.renditions
    ]


@dataclass(frozen=True)
class _Entry:
    """One media playlist entry."""

    uri: str
    extinf: str
    discontinuity: bool
    byterange: str | None = None  # EXT-X-BYTERANGE "<size>@<offset>": one part of the file


# EXT-X-TARGETDURATION of a CMAF media playlist whose first segment is listed as parts: a part lasts at most a
# GOP (ladder.GOP_SECONDS, 1 s) or 47 AAC frames (1.003 s), which round to 1.
PART_TARGET = 1


def render_hls_media(
    video: VideoView, track: RenditionView | Literal["audio"], segments: list[Published], *, vod: bool = False
) -> str:
    """Render the fMP4 media playlist of a rendition (or AUDIO): EVENT, with ENDLIST appended once is_vod; `vod`: the
    finished video's VOD playlist (HLS_VOD).

    In the live (EVENT) playlist a segment with recorded parts is listed as one byte-range entry per part
    (~1 s; see `hls_target`). The VOD playlist lists whole segments: a finished video has no latency to
    win, a third of the requests is enough, and Chromium's built-in HLS player refuses the parts
    (MEDIA_ERR_4 after the first one; tests/e2e/test_playback_browsers.py plays it on the VOD).
    """
    _refuse_empty(segments)
    name = AUDIO if track == AUDIO else track.name
    entries = [entry for p in segments for entry in _cmaf_entries(p, name, whole=vod)]
    target = live_timing(video.nominal_duration_ms).target_duration if vod else hls_target(video, segments)
    return _render_media("hls_media.m3u8.j2", video, segments, entries, playlist_type="VOD" if vod else "EVENT", target=target)


def hls_target(video: VideoView, segments: list[Published]) -> int:
    """Return a CMAF media playlist's EXT-X-TARGETDURATION: PART_TARGET when its first segment is listed as parts.

    RFC 8216 6.2.1: the target MUST NOT change, and the first entry of a playlist never does, so this is
    decided once per video. Players hold back three targets from the end (8216bis 4.4.3.8): 3 s with parts,
    9 s without. Only a video that was live across the upgrade lists whole segments after parts, or parts
    after whole segments; a whole one then keeps its true EXTINF over the target, as a long segment does.
    """
    if segments and segments[0].parts is not None:
        return PART_TARGET
    return live_timing(video.nominal_duration_ms).target_duration


def _cmaf_entries(p: Published, track: str, *, whole: bool = False) -> list[_Entry]:
    """Return the entries of one segment's CMAF fragment file: one per part when recorded (unless `whole`), else the file."""
    audio = track == AUDIO
    timescale = AUDIO_TIMESCALE if audio else VIDEO_TIMESCALE
    ranges = p.parts.ranges(track) if p.parts is not None and not whole else None
    if ranges is None:
        duration = p.audio_duration_ticks if audio else p.duration_ticks
        return [_Entry(f"{p.name}.m4s", decimal_seconds(duration, timescale), p.discontinuity)]
    return [
        _Entry(f"{p.name}.m4s", decimal_seconds(ticks, timescale), p.discontinuity and not i, f"{size}@{offset}")
        for i, (offset, size, ticks) in enumerate(ranges)
    ]


def render_legacy_hls_master(video: VideoView) -> str:
    """Render /live_m3u8/<vid>/root.m3u8: variants at <REPR>/stream.m3u8, relative to it."""
    return _env.get_template("legacy_master.m3u8.j2").render(video=video, streams=_streams(video))


def render_legacy_hls_media(video: VideoView, rendition: RenditionView, segments: list[Published]) -> str:
    """Render /live_m3u8/<vid>/<REPR>/stream.m3u8: muxed TS by absolute path, EVENT, ENDLIST appended once is_vod."""
    prefix = f"/video_files/{video.video_id}/{rendition.name}/"
    entries = [
        _Entry(f"{prefix}{p.name}.ts", decimal_seconds(p.duration_ticks, VIDEO_TIMESCALE), p.discontinuity) for p in segments
    ]
    return _render_media("legacy_media.m3u8.j2", video, segments, entries)


def _render_media(
    template: str,
    video: VideoView,
    segments: list[Published],
    entries: list[_Entry],
    playlist_type: str = "EVENT",
    target: int | None = None,
) -> str:
    """Render a media playlist with the header values every HLS media playlist shares."""
    first = segments[0] if segments else None
    return _env.get_template(template).render(
        video=video,
        playlist_type=playlist_type,
        entries=entries,
        target=live_timing(video.nominal_duration_ms).target_duration if target is None else target,
        media_sequence=first.sequence if first else 0,
        # Only a list that does not start at the first published entry needs it (never the case today).
        discontinuity_sequence=first.discontinuity_sequence - first.discontinuity if first and first.sequence else None,
    )


def render_android_mpd(video: VideoView, segments: list[Published], *, base_url: str | None = None) -> str:
    """Render the MPD the Android app polls: a static SegmentList of self-contained MP4s.

    type="static" with mediaPresentationDuration: ExoPlayer r1.5's parser drops a dynamic MPD's Period
    without @start as "early access" and then fails with "No periods found", and it rejects a static
    one with no duration; static needs no wall-clock availability math and is what the app always got
    (the original MPD had no @type). The app polls on its own, so no minimumUpdatePeriod is needed.
    """
    if len(video.renditions) < ANDROID_MIN_REPRESENTATIONS:
        raise ValueError(f"the Android app needs at least {ANDROID_MIN_REPRESENTATIONS} renditions")
    return _env.get_template("android.mpd.j2").render(
        video=video,
        segments=segments,
        base_url=base_url or f"/video_files/{video.video_id}/",
        duration_s=Fraction(sum(p.duration_ticks for p in segments), VIDEO_TIMESCALE),
        min_buffer_s=Fraction(video.nominal_duration_ms, 1000),
        start_number=segments[0].segment_id if segments else 0,
        nominal_ticks=video.nominal_ticks,
    )


@dataclass(frozen=True)
class _Cue:
    """One storyboard WebVTT cue."""

    start: str
    end: str
    uri: str


def render_storyboard_vtt(video: VideoView, segments: list[Published], tiles: StoryboardTiles) -> str:
    """Render the storyboard WebVTT: one cue per tile of each segment's sprite strip."""
    cues = [cue for p in segments for cue in _cues(p, tiles)]
    return _env.get_template("storyboard.vtt.j2").render(video=video, cues=cues)


def _cues(p: Published, tiles: StoryboardTiles) -> list[_Cue]:
    """Return the cues of one segment's strip: tile i covers [i, i + 1) x every_seconds.

    A strip holds round(duration / every) tiles (at least one), so a segment a few ms over 3 s gets no
    sliver of a cue; the last cue runs to the segment's end.
    """
    every = Fraction(tiles.every_seconds)
    start = Fraction(p.start_ticks, VIDEO_TIMESCALE)
    end = Fraction(p.end_ticks, VIDEO_TIMESCALE)
    count = max(1, _round((end - start) / every))
    cues = []
    for i in range(count):
        x, y = (i % tiles.columns) * tiles.tile_width, (i // tiles.columns) * tiles.tile_height
        cue_start = start + i * every
        cue_end = end if i == count - 1 else start + (i + 1) * every
        uri = f"storyboard/{p.name}.jpg#xywh={x},{y},{tiles.tile_width},{tiles.tile_height}"
        cues.append(_Cue(vtt_time(_round(cue_start * 1000)), vtt_time(_round(cue_end * 1000)), uri))
    return cues
