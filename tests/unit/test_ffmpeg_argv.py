"""Exact argv lists and the pure ISO-BMFF helpers (no process is started here)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from server.core.transcode import cmaf, ffmpeg
from server.core.transcode.ladder import RenditionPlan, SourceInfo, plan_ladder
from tests.harness import ffmpeg_oracles as oracles
from tests.harness.media import box_types, decode_times

BASE = ["ffmpeg", "-nostdin", "-hide_banner", "-nostats", "-loglevel", "error", "-y"]
CLEAN = ["-map_metadata", "-1", "-map_chapters", "-1", "-fflags", "+bitexact"]
CMAF = [*CLEAN, "-movflags", "+cmaf+frag_discont+skip_trailer", "-use_editlist", "0"]
CMAF += ["-avoid_negative_ts", "disabled", "-f", "mp4"]
HIGH = RenditionPlan("HIGH", 720, 480, 3_000_000, 128_000, 30, 30)
LOW = RenditionPlan("LOW", 240, 160, 200_000, 64_000, 30, 30)
FIT = "force_original_aspect_ratio=decrease:force_divisible_by=2"  # any picture fitted in the box, then padded


def rendition_output(index: int, r: RenditionPlan, rate: str, buf: str, audio: str, out: str) -> list[str]:
    return [
        *["-map", f"[v{index}]", "-map", f"[a{index}]"],
        *["-c:v", "libx264", "-preset", "veryfast", "-profile:v", "main", "-level:v", "3.1"],
        *["-bf", "0", "-g", "30", "-keyint_min", "30", "-sc_threshold", "0"],
        *["-b:v", rate, "-maxrate", rate, "-bufsize", buf],
        *["-c:a", "aac", "-b:a", audio, "-ar", "48000", "-ac", "2"],
        *CLEAN,
        *["-movflags", "+faststart", "-video_track_timescale", "90000", "-f", "mp4", out],
    ]


def test_transcode_argv_one_decode_split_per_rendition() -> None:
    outputs = {"HIGH": Path("/m/1/HIGH/.000003.mp4.tmp-a"), "LOW": Path("/m/1/LOW/.000003.mp4.tmp-b")}
    graph = (
        "[0:v:0]setpts=PTS-STARTPTS,split=2[s0][s1];"
        f"[s0]fps=30,scale=720:480:{FIT},pad=720:480:(ow-iw)/2:(oh-ih)/2,setsar=1,format=yuv420p[v0];"
        f"[s1]fps=30,scale=240:160:{FIT},pad=240:160:(ow-iw)/2:(oh-ih)/2,setsar=1,format=yuv420p[v1];"
        "[0:a:0]asetpts=PTS-STARTPTS,aresample=48000,aformat=sample_fmts=fltp:channel_layouts=stereo,asplit=2[a0][a1]"
    )
    assert ffmpeg.transcode_argv(Path("/m/1/original/000003.mp4"), [HIGH, LOW], outputs) == [
        *BASE,
        *["-i", "/m/1/original/000003.mp4", "-filter_complex", graph],
        *rendition_output(0, HIGH, "3000000", "6000000", "128000", "/m/1/HIGH/.000003.mp4.tmp-a"),
        *rendition_output(1, LOW, "200000", "400000", "64000", "/m/1/LOW/.000003.mp4.tmp-b"),
    ]


def test_transcode_argv_without_source_audio_encodes_silence() -> None:
    silent = SourceInfo(720, 480, 2.9, 30.0, False, "h264")
    argv = ffmpeg.transcode_argv(Path("in.mp4"), [HIGH], {"HIGH": Path("o.mp4")}, source=silent)
    graph = argv[argv.index("-filter_complex") + 1]
    assert graph.endswith(";anullsrc=r=48000:cl=stereo:d=2.921333,aformat=sample_fmts=fltp:channel_layouts=stereo,asplit=1[a0]")
    assert "[0:a:0]" not in graph


def test_transcode_argv_with_source_audio_uses_it() -> None:
    loud = SourceInfo(720, 480, 2.9, 30.0, True, "h264")
    argv = ffmpeg.transcode_argv(Path("in.mp4"), [HIGH], {"HIGH": Path("o.mp4")}, source=loud)
    graph = argv[argv.index("-filter_complex") + 1]
    fit = "apad=whole_dur=2.921333,atrim=duration=2.921333"  # the video's length + one spare AAC frame
    assert graph.endswith(
        f";[0:a:0]asetpts=PTS-STARTPTS,aresample=48000,{fit},aformat=sample_fmts=fltp:channel_layouts=stereo,asplit=1[a0]"
    )


def test_package_video_argv_offsets_by_start_in_90khz() -> None:
    argv = oracles.package_video_argv(Path("HIGH/000002.mp4"), Path("HIGH/.000002.frag.tmp"), 540_000)
    assert argv == [
        *BASE,
        *["-copyts", "-itsoffset", "6000000us", "-i", "HIGH/000002.mp4", "-map", "0:v:0", "-c", "copy", "-b:v", "0"],
        *[*CMAF, "HIGH/.000002.frag.tmp"],
    ]


def test_package_audio_argv_offsets_by_start_plus_priming_in_48khz_and_keeps_whole_frames() -> None:
    argv = oracles.package_audio_argv(Path("HIGH/000002.mp4"), Path("audio/x.tmp"), 288_000, 141)
    assert argv == [
        *BASE,
        *["-copyts", "-itsoffset", "6021333us", "-i", "HIGH/000002.mp4"],  # (288000 + 1024) / 48 kHz
        *["-map", "0:a:0", "-c", "copy", "-b:a", "0", "-frames:a", "141", "-frag_duration", "1000000", *CMAF, "audio/x.tmp"],
    ]


def test_package_ts_argv_places_video_and_audio_on_their_own_timelines() -> None:
    assert oracles.package_ts_argv(Path("a.mp4"), Path("a.ts"), 3000, 1024, 3) == [
        *BASE,
        *["-copyts", "-itsoffset", "33333us", "-i", "a.mp4", "-itsoffset", "42667us", "-i", "a.mp4"],
        *["-map", "0:v:0", "-map", "1:a:0", "-c", "copy", "-frames:a", "3"],
        *[*CLEAN, "-avoid_negative_ts", "disabled", "-f", "mpegts", "a.ts"],
    ]


def test_package_argv_opens_each_mp4_on_the_video_and_the_audio_timeline() -> None:
    mp4s, frags, ts = [Path("H.mp4"), Path("L.mp4")], [Path("H.m4s"), Path("L.m4s")], [Path("H.ts"), Path("L.ts")]
    argv = ffmpeg.package_argv(mp4s, frags, ts, Path("a.m4s"), 270_000, 143_360, 140)
    video, audio = ["-itsoffset", "3000000us"], ["-itsoffset", "3008000us"]  # 143360 + 1024 = 144384 / 48 kHz
    assert argv == [
        *[*BASE, "-copyts", *video, "-i", "H.mp4", *video, "-i", "L.mp4", *audio, "-i", "H.mp4", *audio, "-i", "L.mp4"],
        *["-map", "0:v:0", "-c", "copy", "-b:v", "0", *CMAF, "H.m4s"],
        *["-map", "0:v:0", "-map", "2:a:0", "-c", "copy", "-frames:a", "140", *CLEAN, "-avoid_negative_ts", "disabled"],
        *["-f", "mpegts", "H.ts"],
        *["-map", "1:v:0", "-c", "copy", "-b:v", "0", *CMAF, "L.m4s"],
        *["-map", "1:v:0", "-map", "3:a:0", "-c", "copy", "-frames:a", "140", *CLEAN, "-avoid_negative_ts", "disabled"],
        *["-f", "mpegts", "L.ts"],
        *["-map", "2:a:0", "-c", "copy", "-b:a", "0", "-frames:a", "140", "-frag_duration", "1000000", *CMAF, "a.m4s"],
    ]


def test_package_refuses_a_negative_start() -> None:
    with pytest.raises(ValueError, match="negative"):
        oracles.package_video_argv(Path("a.mp4"), Path("b.mp4"), -1)


def test_microseconds_round_trip_to_the_exact_tick() -> None:
    for ticks in (0, 1, 2999, 3000, 261_000, 10**9 + 7):
        micros = int(ffmpeg._microseconds(ticks, 90_000).removesuffix("us"))
        assert round(micros * 90_000 / 1_000_000) == ticks


def test_probe_argvs() -> None:
    assert ffmpeg.probe_argv(Path("u.mp4")) == [
        *["ffprobe", "-v", "error", "-hide_banner", "-of", "json", "-show_streams", "-show_format", "u.mp4"]
    ]
    assert ffmpeg.probe_argv(Path("u.mp4"), decode_head=True) == [
        *["ffprobe", "-v", "error", "-hide_banner", "-of", "json", "-show_streams", "-show_format"],
        *["-skip_frame", "nokey", "-show_entries", "frame=stream_index,width,height:packet=stream_index,pts_time,flags"],
        *["-read_intervals", "%+#300", "u.mp4"],
    ]
    assert ffmpeg.decode_check_argv(Path("u.mp4")) == [
        *["ffprobe", "-v", "error", "-hide_banner", "-of", "json", "-select_streams", "v:0"],
        *["-read_intervals", "%+#1", "-show_entries", "frame=media_type,width,height", "u.mp4"],
    ]


def test_the_encode_can_also_write_the_thumbnail_and_storyboard() -> None:
    plan = plan_ladder()
    stills = ffmpeg.Pictures(Path("t.jpg"), Path("b.jpg"), at=1.0, width=320, tile_height=106)
    argv = ffmpeg.transcode_argv(Path("s.mp4"), plan, {r.name: Path(f"{r.name}.mp4") for r in plan}, pictures=stills)
    graph = argv[argv.index("-filter_complex") + 1]
    assert graph.startswith("[0:v:0]setpts=PTS-STARTPTS,split=5[s0][s1][s2][s3][s4];")
    assert "[s3]trim=start=1.000,scale=320:-2,setsar=1[thumb]" in graph
    pick = "select='isnan(prev_selected_t)+gte(t-prev_selected_t,1)'"
    assert f"[s4]{pick},scale=160:106:{FIT},pad=160:106:(ow-iw)/2:(oh-ih)/2,setsar=1,tile=5x1[strip]" in graph
    assert argv[-26:] == [
        *["-map", "[thumb]", "-frames:v", "1", "-q:v", "3", "-c:v", "mjpeg", "-f", "image2", "-update", "1", "t.jpg"],
        *["-map", "[strip]", "-frames:v", "1", "-q:v", "4", "-c:v", "mjpeg", "-f", "image2", "-update", "1", "b.jpg"],
    ]


def test_storyboard_tile_geometry() -> None:
    tiles = [oracles.storyboard_tile(i, width=1080, height=720, tile_width=160, columns=4) for i in range(5)]
    assert tiles == [(0, 0, 160, 106), (160, 0, 160, 106), (320, 0, 160, 106), (480, 0, 160, 106), (0, 106, 160, 106)]
    assert ffmpeg.tile_height(1280, 720, 160) == 90
    assert ffmpeg.tile_height(720, 406, 160) == 90


def box(kind: bytes, payload: bytes = b"") -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def tfdt(value: int, version: int = 1) -> bytes:
    body = struct.pack(">Q", value) if version == 1 else struct.pack(">I", value)
    return box(b"tfdt", bytes([version, 0, 0, 0]) + body)


def test_split_init_adds_styp_and_keeps_every_fragment() -> None:
    ftyp, moov = box(b"ftyp", b"iso6\0\0\0\0"), box(b"moov", box(b"mvhd", b"x" * 4))
    frag1 = box(b"moof", box(b"traf", tfdt(261_000))) + box(b"mdat", b"abc")
    frag2 = box(b"moof", box(b"traf", tfdt(441_000, version=0))) + box(b"mdat", b"d")
    init, media = cmaf.split_init(ftyp + moov + frag1 + frag2)
    assert init == ftyp + moov
    assert media == cmaf.STYP + frag1 + frag2
    assert box_types(media) == ["styp", "moof", "mdat", "moof", "mdat"]
    assert decode_times(media) == [261_000, 441_000]


def test_split_init_keeps_an_existing_styp_and_drops_free() -> None:
    ftyp, moov = box(b"ftyp"), box(b"moov")
    media = box(b"styp", b"msdh") + box(b"moof") + box(b"mdat")
    assert cmaf.split_init(ftyp + box(b"free") + moov + media) == (ftyp + moov, media)


@pytest.mark.parametrize(
    "data",
    [b"", box(b"ftyp") + box(b"moov"), box(b"ftyp") + box(b"moof"), box(b"ftyp") + b"\0\0\0\x40moov"],
)
def test_split_init_rejects_what_is_not_fragmented_mp4(data: bytes) -> None:
    with pytest.raises(ValueError):
        cmaf.split_init(data)


def test_iter_boxes_reads_64_bit_sizes() -> None:
    large = struct.pack(">I4sQ", 1, b"mdat", 20) + b"abcd"
    assert list(cmaf.iter_boxes(box(b"ftyp") + large)) == [("ftyp", 0, 8), ("mdat", 8, 20)]


def test_transcode_argv_with_bounds_reads_no_further_than_the_limits() -> None:
    bounds = ffmpeg.Bounds(seconds=20.0, pixels=3840 * 2160)
    argv = ffmpeg.transcode_argv(Path("in.ts"), [HIGH], {"HIGH": Path("o.mp4")}, bounds=bounds)
    unbounded = ffmpeg.transcode_argv(Path("in.ts"), [HIGH], {"HIGH": Path("o.mp4")})
    # Input options, before -i: -t stops reading, -max_pixels makes the decoder refuse a larger frame (+1/8 margin).
    assert argv == [*BASE, "-t", "20", "-max_pixels", "9331200", *unbounded[len(BASE) :]]
