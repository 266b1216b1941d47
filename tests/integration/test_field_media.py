"""What phones really send, through the whole pipeline: odd sizes, rotation, 60 fps, no audio, 44.1 kHz, uneven cuts.

A video's ladder is fixed when it is created: every segment comes out at the rung's box, and the
streams decode without a resolution change. Every track's fragments follow each other on the
timeline with no overlap and no gap longer than one AAC frame, in DASH and both HLS forms.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from xml.etree import ElementTree

import m3u8
import pytest

from tests.harness.media import byte_range, file_entries, fragment_spans, make_segment
from tests.harness.tree import tree

NS = {"d": "urn:mpeg:dash:schema:mpd:2011"}
BOXES = {"HIGH": (720, 480), "MEDIUM": (480, 320), "LOW": (240, 160)}
AAC_FRAME = 1024  # samples at 48 kHz
AAC_FRAME_TS = 1920  # the same frame in 90 kHz PES ticks


def _probe(target: str | Path, *args: str) -> dict:
    argv = ["ffprobe", "-v", "error", "-of", "json", *args, str(target)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def _decode(url: str, *maps: str) -> None:
    """Decode with -xerror and check ffmpeg has nothing to say, not even a warning (non-monotonic DTS is one)."""
    argv = ["ffmpeg", "-nostdin", "-v", "warning", "-xerror", "-i", url]
    for m in maps:
        argv += ["-map", m]
    done = subprocess.run([*argv, "-f", "null", "-"], capture_output=True, text=True, timeout=300, check=False)
    assert (done.returncode, done.stderr) == (0, ""), done.stderr[-2000:]


def _frame_sizes(url: str, stream: str) -> set[tuple[int, int]]:
    frames = _probe(url, "-select_streams", stream, "-show_entries", "frame=width,height")["frames"]
    assert frames
    return {(f["width"], f["height"]) for f in frames}


def _left_edge_is_black(mp4: Path, width: int, height: int) -> bool:
    """Whether the first 40 columns of a frame in the middle are the pad's black (the picture was fitted, not stretched)."""
    argv = ["ffmpeg", "-v", "error", "-ss", "1", "-i", str(mp4), "-frames:v", "1"]
    argv += ["-vf", f"crop=40:{height}:0:0,format=gray", "-f", "rawvideo", "-"]
    pixels = subprocess.run(argv, capture_output=True, check=True).stdout
    assert len(pixels) == 40 * height
    return max(pixels) <= 24


def _master(client, vid: int) -> list[tuple[str, str, str]]:  # type: ignore[no-untyped-def]
    text = client.get(f"/video_files/{vid}/master.m3u8").data.decode()
    playlists = m3u8.loads(text).playlists
    return [(p.uri, p.stream_info.codecs, p.stream_info.resolution) for p in playlists]


def test_the_ladder_never_changes_whatever_the_phone_sends(stack, tmp_path):
    recording = [
        {"size": "1080x720", "seconds": 3.0},
        {"size": "1x1", "seconds": 2.9},
        {"size": "720x1280", "seconds": 3.1},  # portrait
        {"size": "720x480", "seconds": 3.0, "rotate": 90},  # a phone held upright: displayed 480x720
        {"size": "1080x720", "seconds": 2.5, "rate": 60},
        {"size": "1080x720", "seconds": 3.0, "audio": False},
        {"size": "1080x720", "seconds": 3.2},
    ]
    files = [make_segment(tmp_path / f"in{k}.mp4", **spec) for k, spec in enumerate(recording)]  # type: ignore[arg-type]
    stack.start_worker(tmp_path / "worker.log")
    base = stack.serve()
    vid = stack.new_video()
    first_answer = _master(stack.client, vid)
    assert [(uri, res) for uri, _, res in first_answer] == [(f"{n}/playlist.m3u8", (w, h)) for n, (w, h) in BOXES.items()]
    assert {codecs for _, codecs, _ in first_answer} == {"avc1.4d401f,mp4a.40.2"}  # Main 3.1, what x264 is told
    for k, path in enumerate(files):
        stack.upload(vid, k, path.read_bytes())
    stack.end(vid, len(files) - 1)
    video = stack.wait_vod(vid, timeout=240)

    assert [(r.name, r.width, r.height, r.frame_rate, r.codecs) for r in video.renditions] == [
        (n, w, h, 30, "avc1.4d401f,mp4a.40.2") for n, (w, h) in BOXES.items()
    ]
    last_answer = _master(stack.client, vid)
    # The same ladder from the first answer to the last; once finished, the master names the VOD playlists.
    assert [(uri.replace("/vod.m3u8", "/playlist.m3u8"), codecs, res) for uri, codecs, res in last_answer] == first_answer
    assert all(uri.endswith("/vod.m3u8") for uri, _, _ in last_answer)
    media = tree(stack.services)
    for k in range(len(files)):
        assert stack.segment(vid, k).status.encoded
        for name, (w, h) in BOXES.items():
            stream = _probe(media.file(vid, name, k, "mp4"), "-select_streams", "v:0", "-show_streams")["streams"][0]
            assert (stream["width"], stream["height"], stream["sample_aspect_ratio"], stream["r_frame_rate"]) == (
                w,
                h,
                "1:1",
                "30/1",
            )
    high = {k: media.file(vid, "HIGH", k, "mp4") for k in (0, 2, 3)}
    assert not _left_edge_is_black(high[0], 480, 480)  # a landscape picture fills the box
    assert _left_edge_is_black(high[2], 480, 480) and _left_edge_is_black(high[3], 480, 480)  # upright: fitted, rotated

    for path, count in (
        ("video_files/{vid}/manifest.mpd", 3),
        ("video_files/{vid}/master.m3u8", 3),
        ("live_m3u8/{vid}/root.m3u8", 3),
    ):
        url = f"{base}/{path.format(vid=vid)}"
        _decode(url, "0:v", "0:a:0")
        for index in range(count):
            assert len(_frame_sizes(url, f"v:{index}")) == 1  # no resolution change inside the stream


def _uneven_recording(tmp_path: Path, sample_rate: int) -> list[Path]:
    lengths = (2.5, 3.4, 2.7, 3.5, 2.6)  # phone cuts fall on keyframes, not on a grid
    return [make_segment(tmp_path / f"u{k}.mp4", seconds=s, sample_rate=sample_rate) for k, s in enumerate(lengths)]


def _assert_continuous(spans: list[tuple[int, int]], frame: int, what: str) -> None:
    for k in range(1, len(spans)):
        end = spans[k - 1][0] + spans[k - 1][1]
        gap = spans[k][0] - end
        assert 0 <= gap <= frame, f"{what}: segment {k} starts {gap} ticks after segment {k - 1} ends ({spans})"


def _get(client, url: str, part: tuple[int, int] | None = None) -> bytes:  # type: ignore[no-untyped-def]
    """GET a media file whole, or the (offset, size) part of it a playlist's EXT-X-BYTERANGE names."""
    headers = {} if part is None else {"Range": f"bytes={part[0]}-{part[0] + part[1] - 1}"}
    with client.get(url, headers=headers) as response:  # media answers stream a file: close it
        assert response.status_code == (200 if part is None else 206), url
        data = response.get_data()
        assert part is None or len(data) == part[1]
        return data


def _span(data: bytes) -> tuple[int, int]:
    """Return (first tfdt, duration to the end of the last fragment) of one media segment (video has one fragment per GOP)."""
    spans = fragment_spans(data)
    return spans[0][0], spans[-1][0] + spans[-1][1] - spans[0][0]


def _mpd_audio_timeline(mpd: bytes) -> list[tuple[int, int]]:
    root = ElementTree.fromstring(mpd)
    adaptation = next(
        a
        for a in root.iter(f"{{{NS['d']}}}AdaptationSet")
        if a.get("contentType") == "audio" or "audio" in (a.get("mimeType") or "")
    )
    out: list[tuple[int, int]] = []
    for s in adaptation.iter(f"{{{NS['d']}}}S"):
        t = int(s.get("t")) if s.get("t") is not None else out[-1][0] + out[-1][1]
        for _ in range(int(s.get("r", "0")) + 1):
            out.append((t, int(s.get("d"))))
            t += int(s.get("d"))
    return out


@pytest.mark.parametrize("sample_rate", [44100, 48000])
def test_audio_fragments_neither_overlap_nor_leave_gaps(stack, tmp_path, sample_rate):
    files = _uneven_recording(tmp_path, sample_rate)
    stack.start_worker(tmp_path / "worker.log")
    base = stack.serve()
    vid = stack.new_video()
    for k, path in enumerate(files):
        stack.upload(vid, k, path.read_bytes())
    stack.end(vid, len(files) - 1)
    stack.wait_vod(vid, timeout=180)
    client, media = stack.client, tree(stack.services)

    # DASH: the audio fragments on disk, and what the MPD says of them.
    dash = [_span(media.file(vid, "audio", k, "m4s").read_bytes()) for k in range(len(files))]
    _assert_continuous(dash, AAC_FRAME, "DASH audio")
    assert _mpd_audio_timeline(client.get(f"/video_files/{vid}/manifest.mpd").data) == dash
    for name in BOXES:
        video = [_span(media.file(vid, name, k, "m4s").read_bytes()) for k in range(len(files))]
        _assert_continuous(video, 0, f"{name} video")

    # HLS over CMAF: the ~1 s parts its audio playlist lists, each fetched over HTTP as its byte range.
    playlist = m3u8.loads(client.get(f"/video_files/{vid}/audio/playlist.m3u8").data.decode())
    hls = [_span(_get(client, f"/video_files/{vid}/audio/{s.uri}", byte_range(s))) for s in playlist.segments]
    assert len(file_entries(playlist)) == len(files) and len(hls) > 2 * len(files)
    _assert_continuous(hls, AAC_FRAME, "HLS CMAF audio")
    for segment, (_, duration) in zip(playlist.segments, hls, strict=True):
        assert abs(segment.duration - duration / 48_000) < 0.001

    # Legacy HLS over MPEG-TS: each rendition's audio PES timestamps.
    for name in BOXES:
        legacy = m3u8.loads(client.get(f"/live_m3u8/{vid}/{name}/stream.m3u8").data.decode())
        spans = []
        for segment in legacy.segments:
            ts = tmp_path / "s.ts"
            ts.write_bytes(_get(client, segment.uri))
            packets = _probe(ts, "-select_streams", "a:0", "-show_entries", "packet=pts,duration")["packets"]
            spans.append((packets[0]["pts"], packets[-1]["pts"] + packets[-1]["duration"] - packets[0]["pts"]))
        _assert_continuous(spans, AAC_FRAME_TS, f"{name} TS audio")

    # Whole streams decode with no timestamp complaint.
    for path in ("video_files/{vid}/manifest.mpd", "video_files/{vid}/master.m3u8", "live_m3u8/{vid}/root.m3u8"):
        _decode(f"{base}/{path.format(vid=vid)}", "0:a:0")
