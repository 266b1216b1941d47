"""One ffmpeg run does the work of many: all packaging in one remux, the pictures inside the encode."""

from __future__ import annotations

from pathlib import Path

from server.core.transcode import ffmpeg
from server.core.transcode.ladder import plan_ladder
from tests.harness import ffmpeg_oracles as oracles
from tests.harness.media import decode_times, make_segment


def _renditions(tmp_path: Path) -> list[Path]:
    src = make_segment(tmp_path / "src.mp4", seconds=2.0)
    info = ffmpeg.probe(src)
    plan = plan_ladder()
    outs = {r.name: tmp_path / f"{r.name}.mp4" for r in plan}
    ffmpeg.run(ffmpeg.transcode_argv(src, plan, outs, source=info), timeout=60)
    return list(outs.values())


def test_one_packaging_run_equals_seven_single_runs(tmp_path):
    mp4s = _renditions(tmp_path)
    start, audio_start, frames = 270_000, 143_360, 90
    fragments = [tmp_path / f"f{i}.m4s" for i in range(3)]
    streams = [tmp_path / f"s{i}.ts" for i in range(3)]
    audio = tmp_path / "a.m4s"
    ffmpeg.run(ffmpeg.package_argv(mp4s, fragments, streams, audio, start, audio_start, frames), timeout=60)
    for i, mp4 in enumerate(mp4s):
        ffmpeg.run(oracles.package_video_argv(mp4, tmp_path / "single.m4s", start), timeout=60)
        ffmpeg.run(oracles.package_ts_argv(mp4, tmp_path / "single.ts", start, audio_start, frames), timeout=60)
        assert fragments[i].read_bytes() == (tmp_path / "single.m4s").read_bytes()
        assert streams[i].read_bytes() == (tmp_path / "single.ts").read_bytes()
    ffmpeg.run(oracles.package_audio_argv(mp4s[0], tmp_path / "single-a.m4s", audio_start, frames), timeout=60)
    assert audio.read_bytes() == (tmp_path / "single-a.m4s").read_bytes()
    assert decode_times(fragments[0].read_bytes())[0] == start
    assert decode_times(audio.read_bytes())[0] == audio_start


def test_the_encode_also_writes_the_pictures_without_changing_the_renditions(tmp_path):
    import json
    import subprocess

    src = make_segment(tmp_path / "src.mp4", seconds=3.0, size="1280x720")
    info = ffmpeg.probe(src)
    plan = plan_ladder()
    plain = {r.name: tmp_path / f"plain-{r.name}.mp4" for r in plan}
    both = {r.name: tmp_path / f"both-{r.name}.mp4" for r in plan}
    stills = ffmpeg.Pictures(tmp_path / "t.jpg", tmp_path / "s.jpg", at=1.0, width=320, tile_height=106)
    ffmpeg.run(ffmpeg.transcode_argv(src, plan, plain, source=info), timeout=60)
    ffmpeg.run(ffmpeg.transcode_argv(src, plan, both, source=info, pictures=stills), timeout=60)
    # x264's threaded rate control is not bit-exact run to run, so compare what players see.
    for name in plain:
        a, b = oracles.probe_output(plain[name]), oracles.probe_output(both[name])
        assert (a.width, a.height, a.duration_ticks, a.audio_duration_ticks) == (
            b.width,
            b.height,
            b.duration_ticks,
            b.audio_duration_ticks,
        )

    def size(path):  # type: ignore[no-untyped-def]
        out = subprocess.run(
            ["ffprobe", "-v", "error", "-of", "json", "-show_streams", str(path)], capture_output=True, text=True, check=True
        )
        stream = json.loads(out.stdout)["streams"][0]
        return stream["codec_name"], stream["width"], stream["height"]

    assert size(stills.thumbnail) == ("mjpeg", 320, 180)
    assert size(stills.storyboard) == ("mjpeg", ffmpeg.STORYBOARD_COLUMNS * ffmpeg.STORYBOARD_TILE_WIDTH, 106)  # the fixed tile


def test_durations_read_from_the_moov_equal_ffprobes(tmp_path):
    from server.core.transcode.cmaf import track_durations

    for seconds, size, audio in ((3.0, "1080x720", True), (2.9, "1280x720", True), (3.1, "720x480", False)):
        src = make_segment(tmp_path / "src.mp4", seconds=seconds, size=size, audio=audio)
        info = ffmpeg.probe(src)
        plan = plan_ladder()
        outs = {r.name: tmp_path / f"{r.name}.mp4" for r in plan}
        ffmpeg.run(ffmpeg.transcode_argv(src, plan, outs, source=info), timeout=60)
        for out in outs.values():
            probed, tracks = oracles.probe_output(out), track_durations(out.read_bytes())
            assert tracks["vide"] == (probed.duration_ticks, 90_000)
            # (the audio's length is not read back: the packager keeps the whole frames the timeline plans)
