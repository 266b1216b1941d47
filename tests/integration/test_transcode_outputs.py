"""Real ffmpeg on generated phone-like segments: encode, re-time by remux, pictures, failures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from server.core.errors import FFmpegError, UnprocessableMedia
from server.core.playlists.publish import audio_span
from server.core.transcode import cmaf, ffmpeg
from server.core.transcode.ladder import RenditionPlan, plan_ladder
from tests.harness import ffmpeg_oracles as oracles
from tests.harness.media import box_types, decode_times, fragment_spans, make_segment

FRAME = 1 / 30


def ffprobe(path: Path, *args: str) -> dict:
    argv = ["ffprobe", "-v", "error", "-of", "json", *args, str(path)]
    return json.loads(subprocess.run(argv, check=True, capture_output=True, text=True).stdout)


def encode(src: Path, out_dir: Path) -> tuple[tuple[RenditionPlan, ...], dict[str, Path]]:
    info = ffmpeg.probe(src)
    plan = plan_ladder()
    outputs = {r.name: out_dir / f".{src.stem}.{r.name}.mp4.tmp-x" for r in plan}
    ffmpeg.run(ffmpeg.transcode_argv(src, plan, outputs, source=info), timeout=120)
    return plan, outputs


@pytest.fixture(scope="module")
def timeline(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, float]]:
    """Three consecutive 1080x720 segments of different lengths, encoded to renditions."""
    folder = tmp_path_factory.mktemp("timeline")
    out = []
    offset = 0.0
    for index, seconds in enumerate((2.9, 3.1, 3.0)):
        src = make_segment(folder / f"{index:06d}.mp4", seconds=seconds, offset=offset)
        _, outputs = encode(src, folder)
        out.append((outputs["HIGH"], seconds))
        offset += seconds
    return out


@pytest.mark.parametrize(
    ("size", "seconds", "audio", "expected"),
    [
        ("1080x720", 3.0, True, [(720, 480), (480, 320), (240, 160)]),
        ("720x480", 2.9, True, [(720, 480), (480, 320), (240, 160)]),
        ("1280x720", 3.1, False, [(720, 480), (480, 320), (240, 160)]),  # 16:9 fitted in 3:2 and padded
    ],
)
def test_one_encode_makes_self_contained_mp4_per_rung(
    tmp_path: Path, size: str, seconds: float, audio: bool, expected: list[tuple[int, int]]
) -> None:
    src = make_segment(tmp_path / "src.mp4", seconds=seconds, size=size, audio=audio, offset=6.0)
    plan, outputs = encode(src, tmp_path)
    assert [(r.width, r.height) for r in plan] == expected
    for rendition in plan:
        path = outputs[rendition.name]
        info = oracles.probe_output(path)
        assert (info.video_codec, info.audio_codec) == ("h264", "aac")  # silence when the phone sent none
        assert (info.width, info.height) == (rendition.width, rendition.height)
        assert abs(info.duration - seconds) <= FRAME + 1e-6
        assert 0 <= info.audio_duration_ticks / 48_000 - seconds <= 2048 / 48_000  # the video's length + a spare frame
        assert info.duration_ticks == round(seconds * 30) * 3000
        boxes = box_types(path.read_bytes())
        assert boxes.index("moov") < boxes.index("mdat")
        first = ffprobe(path, "-select_streams", "v:0", "-read_intervals", "%+#1", "-show_packets")["packets"][0]
        assert (first["pts"], first["flags"][0]) == (0, "K")
        stream = ffprobe(path, "-select_streams", "v:0", "-show_streams")["streams"][0]
        assert (stream["profile"], stream["level"], stream["has_b_frames"]) == ("Main", 31, 0)
        assert stream["codec_tag_string"] == "avc1" and rendition.video_codecs == "avc1.4d401f"
        assert _avcc_codecs(path.read_bytes()) == rendition.video_codecs


def _avcc_codecs(data: bytes) -> str:
    """Return 'avc1.PPCCLL' read from the avcC box x264 wrote."""
    at = data.index(b"avcC") + 4
    return "avc1." + data[at + 1 : at + 4].hex()


def test_packaging_retimes_consecutive_segments(tmp_path: Path, timeline: list[tuple[Path, float]]) -> None:
    start, audio_end = 0, None
    inits: dict[str, set[bytes]] = {"v": set(), "a": set()}
    medias: dict[str, list[bytes]] = {"v": [], "a": []}
    for mp4, seconds in timeline:
        duration = oracles.probe_output(mp4).duration_ticks
        assert duration == round(seconds * 90_000)  # the next tfdt is this start + this duration
        audio_start, audio_duration = audio_span(start, duration, audio_end)
        frames = audio_duration // 1024
        argvs = {
            "v": (oracles.package_video_argv(mp4, tmp_path / "v.frag", start), start),
            "a": (oracles.package_audio_argv(mp4, tmp_path / "a.frag", audio_start, frames), audio_start),
        }
        for kind, (argv, first) in argvs.items():
            ffmpeg.run(argv, timeout=30)
            init, media = cmaf.split_init((tmp_path / f"{kind}.frag").read_bytes())
            assert decode_times(media)[0] == first
            inits[kind].add(init)
            medias[kind].append(media)
        # Exactly the frames planned, in ~1 s moofs (47 AAC frames), and the video in one moof per 1 s GOP:
        # the parts the HLS playlists list as byte ranges, whose tfdts cmaf.fragments reads.
        _assert_parts(medias["a"][-1], audio_start, audio_duration, 47 * 1024)
        _assert_parts(medias["v"][-1], start, duration, 90_000)
        ts = tmp_path / "s.ts"
        ffmpeg.run(oracles.package_ts_argv(mp4, ts, start, audio_start, frames), timeout=30)
        video = ffprobe(ts, "-select_streams", "v:0", "-show_streams")["streams"][0]
        assert video["start_pts"] == start + ffmpeg.TS_PTS_OFFSET
        audio = ffprobe(ts, "-select_streams", "a:0", "-show_packets")["packets"]
        assert (audio[0]["pts"], len(audio)) == (audio_start * 15 // 8 + ffmpeg.TS_PTS_OFFSET, frames)
        start, audio_end = start + duration, audio_start + audio_duration
    assert len(inits["v"]) == len(inits["a"]) == 1  # one init.mp4 per rendition serves every segment
    for kind in ("v", "a"):
        concat = tmp_path / f"concat-{kind}.mp4"
        concat.write_bytes(inits[kind].pop() + b"".join(medias[kind]))
        _assert_decodes_cleanly(concat)
        duration = float(ffprobe(concat, "-show_format")["format"]["duration"])
        # audio: whole AAC frames laid end to end, ending less than one frame before the video
        assert 9.0 - 1024 / 48_000 - FRAME / 2 <= duration <= 9.0 + FRAME / 2


def _assert_parts(media: bytes, start: int, duration: int, part: int) -> None:
    spans = fragment_spans(media)
    assert spans[0][0] == start and sum(d for _, d in spans) == duration
    assert [t for t, _ in spans[1:]] == [t + d for t, d in spans[:-1]]  # contiguous
    assert [d for _, d in spans[:-1]] == [part] * (len(spans) - 1) and 0 < spans[-1][1] <= part
    assert [f.tfdt for f in cmaf.fragments(media)] == [t for t, _ in spans]


def _assert_decodes_cleanly(path: Path) -> None:
    argv = ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-f", "null", "-"]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert (done.returncode, done.stderr) == (0, "")


def test_init_segment_ignores_segment_specific_metadata(tmp_path: Path, timeline: list[tuple[Path, float]]) -> None:
    outs = []
    for index, (mp4, _) in enumerate(timeline[:2]):
        out = tmp_path / f"{index}.frag"
        ffmpeg.run(oracles.package_video_argv(mp4, out, 0), timeout=30)
        outs.append(cmaf.split_init(out.read_bytes())[0])
    assert outs[0] == outs[1]
    assert b"Lavf" not in outs[0]  # +bitexact: no muxer version that would change on upgrade


def test_thumbnail_and_storyboard(tmp_path: Path, timeline: list[tuple[Path, float]]) -> None:
    src, _ = timeline[1]  # 3.1 s at 720x480
    info = ffmpeg.probe(src)
    plan = plan_ladder()
    stills = ffmpeg.Pictures(tmp_path / "t.jpg", tmp_path / "s.jpg", at=1.0, width=320, tile_height=106)
    ffmpeg.run(
        ffmpeg.transcode_argv(src, plan, {r.name: tmp_path / f"{r.name}.mp4" for r in plan}, source=info, pictures=stills),
        timeout=60,
    )
    thumb = oracles.probe_output(tmp_path / "t.jpg")
    assert (thumb.video_codec, thumb.width, thumb.height) == ("mjpeg", 320, 214)
    sprite = oracles.probe_output(tmp_path / "s.jpg")
    x, y, w, h = oracles.storyboard_tile(
        ffmpeg.STORYBOARD_COLUMNS - 1, width=720, height=480, tile_width=160, columns=ffmpeg.STORYBOARD_COLUMNS
    )
    assert (sprite.video_codec, sprite.width, sprite.height) == ("mjpeg", x + w, y + h)
    assert (tmp_path / "s.jpg").read_bytes()[:2] == b"\xff\xd8"


def test_probe_reads_a_phone_segment(tmp_path: Path) -> None:
    info = ffmpeg.probe(make_segment(tmp_path / "p.mp4", seconds=2.9, size="720x480"))
    assert (info.width, info.height, info.duration, info.fps, info.has_audio, info.video_codec) == (
        720,
        480,
        2.9,
        30.0,
        True,
        "h264",
    )


def test_probe_swaps_a_rotated_picture(tmp_path: Path) -> None:
    src = make_segment(tmp_path / "p.mp4", seconds=1.0, size="720x480")
    rotated = tmp_path / "r.mp4"
    argv = ["ffmpeg", "-v", "error", "-i", str(src), "-c", "copy", "-metadata:s:v:0", "rotate=90", str(rotated)]
    subprocess.run(argv, check=True)
    info = ffmpeg.probe(rotated)
    assert (info.width, info.height) == (480, 720)


def _audio_only(path: Path) -> bytes:
    argv = ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=d=1", "-c:a", "aac", str(path)]
    subprocess.run(argv, check=True)
    return path.read_bytes()


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (lambda p: _audio_only(p.with_suffix(".m4a")), "no video stream"),
        (lambda p: os.urandom(4096), "not a media file"),
        (lambda p: b"", "not a media file"),
        (lambda p: make_segment(p.with_name("whole.mp4"), seconds=1.0).read_bytes()[:600], "not a media file"),
    ],
    ids=["audio-only", "random-bytes", "empty", "truncated-in-moov"],
)
def test_probe_refuses_what_has_no_decodable_video(tmp_path: Path, content, reason: str) -> None:  # type: ignore[no-untyped-def]
    upload = tmp_path / "upload.mp4"
    upload.write_bytes(content(upload))
    with pytest.raises(UnprocessableMedia, match=reason):
        ffmpeg.probe(upload)


def test_probe_refuses_an_undecodable_video_stream(tmp_path: Path) -> None:
    data = bytearray(make_segment(tmp_path / "whole.mp4", seconds=1.0).read_bytes())
    start = data.index(b"mdat") + 4
    data[start : start + 60_000] = bytes(60_000)  # zero the first samples: headers parse, frames don't
    upload = tmp_path / "upload.mp4"
    upload.write_bytes(bytes(data))
    with pytest.raises(UnprocessableMedia, match="cannot be decoded"):
        ffmpeg.probe(upload)


def _count_launches(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    launched: list[list[str]] = []
    real = ffmpeg._execute

    def counting(argv, timeout):  # type: ignore[no-untyped-def]
        launched.append(argv)
        return real(argv, timeout)

    monkeypatch.setattr(ffmpeg, "_execute", counting)
    return launched


def test_an_upload_is_probed_and_decode_checked_in_one_launch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    segment = make_segment(tmp_path / "s.mp4", seconds=1.0)
    launched = _count_launches(monkeypatch)
    assert ffmpeg.probe(segment).duration == 1.0
    assert len(launched) == 1


def test_video_that_starts_late_is_decode_checked_by_a_second_launch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Audio from 0 s, video from 7.5 s: the first run's PROBE_PACKETS packets (audio, ~43 a second) hold no
    # picture, which must not read as "cannot be decoded"; the second run decodes the first video packet.
    late = tmp_path / "late.mp4"
    audio = ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100:duration=9"]
    video = ["-itsoffset", "7.5", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30:duration=1.4"]
    codecs = ["-map", "1:v", "-map", "0:a", "-c:v", "libx264", "-c:a", "aac", "-copyts", "-movflags", "+faststart"]
    subprocess.run(["ffmpeg", "-v", "error", *audio, *video, *codecs, str(late)], check=True)
    launched = _count_launches(monkeypatch)
    assert ffmpeg.probe(late).width == 640
    assert [argv[-2] for argv in launched] == [f"%+#{ffmpeg.PROBE_PACKETS}", "frame=media_type,width,height"]


def test_truncated_media_data_still_probes(tmp_path: Path) -> None:
    # moov is first, so a cut inside mdat leaves readable headers; ffmpeg encodes what is there.
    data = make_segment(tmp_path / "whole.mp4", seconds=2.0).read_bytes()
    upload = tmp_path / "upload.mp4"
    upload.write_bytes(data[: len(data) // 2])
    assert ffmpeg.probe(upload).duration == 2.0


def test_a_trailer_lost_to_a_full_disk_is_a_failure_not_a_truncated_mp4(tmp_path: Path) -> None:
    # ffmpeg 5.1 exits 0 when +faststart cannot write the moov; the output has no moov at all.
    source = make_segment(tmp_path / "s.mp4", seconds=2.0)
    argv = ["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(source), "-c", "copy", "-movflags", "+faststart"]
    whole = tmp_path / "whole.mp4"
    ffmpeg.run([*argv, str(whole)], timeout=30)
    disk = tmp_path / "disk"
    disk.mkdir()
    room = (whole.stat().st_size - 8192) // 4096 * 4096  # the media data fits, moov and the shift do not
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={room}", "tmpfs", str(disk)], check=True)
    try:
        with pytest.raises(FFmpegError) as info:
            ffmpeg.run([*argv, str(disk / "out.mp4")], timeout=30)
        assert info.value.returncode == 0 and "No space left on device" in info.value.stderr_tail
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=True)


def test_corrupt_input_raises_ffmpeg_error_with_stderr(tmp_path: Path) -> None:
    src = tmp_path / "bad.mp4"
    src.write_bytes(os.urandom(10_000))
    plan = plan_ladder()
    argv = ffmpeg.transcode_argv(src, plan, {r.name: tmp_path / f"{r.name}.mp4" for r in plan})
    with pytest.raises(FFmpegError) as info:
        ffmpeg.run(argv, timeout=30)
    assert info.value.returncode not in (0, None) and not info.value.timed_out
    assert "bad.mp4" in info.value.stderr_tail and info.value.argv == argv


def test_timeout_kills_the_process(tmp_path: Path) -> None:
    argv = ["ffmpeg", "-nostdin", "-v", "error", "-re", "-f", "lavfi", "-i", "anullsrc", "-f", "null", "-"]
    before = set(_children())  # other tests' processes are not this test's business
    with pytest.raises(FFmpegError) as info:
        ffmpeg.run(argv, timeout=0.5)
    assert info.value.timed_out and info.value.returncode is None
    assert set(_children()) - before == set()


def _children() -> list[int]:
    """Return the pids (zombies included) whose parent is this test process."""
    mine = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == os.getpid():
                mine.append(int(entry))
    return mine


def test_ffmpeg_dies_with_a_killed_worker(tmp_path: Path) -> None:
    marker = f"testsrc2=duration={30 + os.getpid() % 1000 / 1000:.3f}"
    script = (
        "import os, threading, time\n"
        "from server.core.transcode import ffmpeg\n"
        f"argv = ['ffmpeg', '-v', 'error', '-re', '-f', 'lavfi', '-i', '{marker}', '-f', 'null', '-']\n"
        "threading.Thread(target=ffmpeg.run, args=(argv, 60), daemon=True).start()\n"
        "time.sleep(1.0)\n"
        "os.kill(os.getpid(), 9)\n"
    )
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", script], cwd=root, check=False)
    # The kernel delivers the parent-death SIGKILL as the worker exits; the orphan is gone within moments.
    deadline = time.monotonic() + 5
    while survivors := subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True).stdout.split():
        assert time.monotonic() < deadline, f"an orphan ffmpeg outlived its SIGKILLed worker: {survivors}"
        time.sleep(0.05)
