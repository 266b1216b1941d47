"""What the playlist renderers (server/domain/publishing.py) answer before the first segment, and HLS after the end: no database."""

from __future__ import annotations

from dataclasses import replace

import m3u8
import pytest

from server.core.errors import NotFound, NotReadyYet
from server.core.playlists import AUDIO, RenditionView, SegmentView, VideoView
from server.domain import publishing as playback

T0 = 1_795_000_000.0
GAP = 10.0
RUNGS = (
    RenditionView("HIGH", 720, 480, 3_128_000, 3_000_000, "avc1.4d401f"),
    RenditionView("MEDIUM", 480, 320, 896_000, 768_000, "avc1.4d401f"),
    RenditionView("LOW", 240, 160, 328_000, 200_000, "avc1.4d401f"),
)
TICKS = 270_000


def _ready(k: int, at: float) -> SegmentView:
    return SegmentView(k, "READY", uploaded_at=T0 + at - 1, ready_at=T0 + at, start_ticks=k * TICKS, duration_ticks=TICKS)


def _snapshot(segments: tuple[SegmentView, ...], *, ended_at: float | None = None, vod: bool = False) -> playback.Snapshot:
    last = 2 if ended_at is not None else None
    packaged = tuple(replace(s, packaged=s.status == "READY") for s in segments)
    state = VideoView(7, "t", T0, RUNGS, packaged, None if ended_at is None else T0 + ended_at, last, is_vod=vod)
    return playback.Snapshot(state, 1)


STANDARD = {
    "manifest.mpd": playback.dash(GAP),
    "HIGH/playlist.m3u8": playback.hls_media(GAP, "HIGH"),
    "audio/playlist.m3u8": playback.hls_media(GAP, "audio"),
}


@pytest.mark.parametrize("name", sorted(STANDARD))
def test_standard_playlists_are_not_ready_before_the_first_segment(name: str) -> None:
    uploaded = SegmentView(0, "PENDING", uploaded_at=T0 + 3)  # being encoded
    with pytest.raises(NotReadyYet, match="video 7 has no segment ready yet"):
        STANDARD[name](_snapshot((uploaded,)), T0 + 4)


@pytest.mark.parametrize("name", sorted(STANDARD))
def test_a_finished_video_with_nothing_playable_is_not_found(name: str) -> None:
    failed = tuple(SegmentView(k, "FAILED", uploaded_at=T0, failed_at=T0 + 5) for k in range(3))
    with pytest.raises(NotFound, match="video 7 has no playable segment"):
        STANDARD[name](_snapshot(failed, ended_at=9, vod=True), T0 + 20)


def test_the_master_android_and_legacy_playlists_answer_at_once() -> None:
    # The master promises media playlists, which exist. The app polls every 1.5 s and reads an empty
    # list as "nothing new"; Apple's players reload an empty live playlist (no EXT-X-MAP in MPEG-TS).
    empty = _snapshot(())
    master = m3u8.loads(playback.hls_master(empty, T0 + 1).body.decode())
    assert [p.uri for p in master.playlists] == ["HIGH/playlist.m3u8", "MEDIUM/playlist.m3u8", "LOW/playlist.m3u8"]
    android = playback.android_mpd(GAP, None)(empty, T0 + 1)
    assert android.headers == (("streamEnded", "false"),) and b"<SegmentList" in android.body
    legacy = m3u8.loads(playback.legacy_media(GAP, "LOW")(empty, T0 + 1).body.decode())
    assert legacy.segments == [] and not legacy.is_endlist


def test_finished_hls_playlists_only_append_the_end_to_the_live_list() -> None:
    # Segment 1 never came while live and was skipped; it arrived after the end. DASH VOD and the
    # Android MPD list it, but an EVENT playlist may only be appended to (RFC 8216 section 6.2.1).
    live = (_ready(0, 4), _ready(2, 10))
    late = (_ready(0, 4), _ready(1, 40), _ready(2, 10))
    before = m3u8.loads(playback.hls_media(GAP, "HIGH")(_snapshot(live, ended_at=11), T0 + 30).body.decode())
    after_text = playback.hls_media(GAP, "HIGH")(_snapshot(late, ended_at=11, vod=True), T0 + 41).body.decode()
    after = m3u8.loads(after_text)
    assert [s.uri for s in before.segments] == [s.uri for s in after.segments] == ["000000.m4s", "000002.m4s"]
    assert (before.playlist_type, before.is_endlist) == ("event", False)
    assert (after.playlist_type, after.is_endlist) == ("event", True)
    before_text = playback.hls_media(GAP, "HIGH")(_snapshot(live, ended_at=11), T0 + 30).body.decode()
    assert after_text.startswith(before_text) and after_text.removeprefix(before_text) == "#EXT-X-ENDLIST\n"
    legacy = playback.legacy_media(GAP, "LOW")(_snapshot(late, ended_at=11, vod=True), T0 + 41).body.decode()
    assert "000001.ts" not in legacy and legacy.endswith("#EXT-X-ENDLIST\n")
    dash = playback.dash(GAP)(_snapshot(late, ended_at=11, vod=True), T0 + 41)
    assert b'type="static"' in dash.body and b"<S " in dash.body


def test_a_finished_video_s_hls_vod_playlists_list_late_segments_like_the_dash_vod() -> None:
    # The EVENT playlists cannot take segment 1 (above); the master of a finished video names VOD playlists
    # at their own URLs, which list what the DASH VOD lists: a phone told 1 was stored finds it in HLS too.
    late = _snapshot((_ready(0, 4), _ready(1, 40), _ready(2, 10)), ended_at=11, vod=True)
    vod = m3u8.loads(playback.hls_vod(GAP, "HIGH")(late, T0 + 41).body.decode())
    assert [s.uri for s in vod.segments] == ["000000.m4s", "000001.m4s", "000002.m4s"]
    assert (vod.playlist_type, vod.is_endlist) == ("vod", True)
    audio = m3u8.loads(playback.hls_vod(GAP, AUDIO)(late, T0 + 41).body.decode())
    assert len(audio.segments) == 3
    master = m3u8.loads(playback.hls_master(late, T0 + 41).body.decode())
    assert {p.uri for p in master.playlists} == {f"{r}/vod.m3u8" for r in ("HIGH", "MEDIUM", "LOW")}
    assert [m.uri for m in master.media] == ["audio/vod.m3u8"]
    live = _snapshot((_ready(0, 4), _ready(2, 10)), ended_at=11)
    assert {p.uri for p in m3u8.loads(playback.hls_master(live, T0 + 30).body.decode()).playlists} == {
        f"{r}/playlist.m3u8" for r in ("HIGH", "MEDIUM", "LOW")
    }
    with pytest.raises(NotFound):
        playback.hls_vod(GAP, "HIGH")(live, T0 + 30)
    assert "HIGH/vod.m3u8" in playback.playlist_files(late.state, GAP)
    assert "HIGH/vod.m3u8" not in playback.playlist_files(live.state, GAP)
