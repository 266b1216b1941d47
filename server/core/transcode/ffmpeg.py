"""Every ffmpeg/ffprobe argv in the system, and the only two process launches (run, probe).

One encode per segment
    ``transcode_argv`` decodes the upload once (applying its display matrix: ffmpeg autorotates),
    ``split``s the picture, and per rendition runs ``fps`` (the video's fixed rate), then a scale that
    fits the picture inside the rendition's box and a ``pad`` to exactly the box, ``setsar=1``,
    ``format=yuv420p`` into its own libx264 (Main, forced level, NO B-frames, fixed GOP, no scene-cut
    keyframes) and AAC-LC 48 kHz stereo. Every segment of a rendition therefore has the same size and
    rate whatever the phone sent (1x1, portrait, rotated, 60 fps), so one ``init.mp4`` fits them all.
    Each output is a complete MP4, moov first, timestamps starting at 0 (video 90 kHz), which Android
    MediaPlayer plays alone.

Re-timing is a remux
    Segments arrive and finish out of order, so they are encoded on their own clock (t = 0) and
    only the cheap packaging step (``-c copy``) puts them on the stream timeline once the caller
    knows the segment's video start S (90 kHz ticks = sum of the video durations before it) and its
    audio start A and AAC frame count N (48 kHz; ``publish.audio_span``):

    * ``-copyts`` keeps the input timestamps as they are (no start-time normalisation), and
      ``-itsoffset`` before an input adds its start to every packet of that input. Each MP4 is
      opened twice: once at S (its video), once at A (its audio), because an offset moves every
      stream of an input (``-itsoffset``) or of an output (``-output_ts_offset``).
    * fMP4: ``-movflags +cmaf+frag_discont`` makes the muxer write the first packet's dts as the
      first tfdt instead of 0; ``-use_editlist 0`` and ``-avoid_negative_ts disabled`` stop it from
      shifting the track back to 0 or hiding the offset in an edit list (which would also make the
      init segment differ per segment). No B-frames means dts == pts, so video tfdt == S exactly.
    * Audio: ffmpeg's AAC encoder puts 1024 priming samples before t = 0 (hidden by an edit list in
      the rendition MP4). The audio input is offset by A + 1024 so that the priming frame sits at
      tfdt == A; the audio track therefore runs 21.3 ms behind the picture, a constant well inside
      lip-sync tolerance, and there is no per-segment edit list. Each segment's audio is encoded a
      frame longer than its video, and ``-frames:a N`` keeps exactly the N whole frames the timeline
      gives it, so consecutive fragments neither overlap nor leave a gap (44.1 kHz phones included:
      the encode resamples to 48 kHz first).
    * Init segments: ``-fflags +bitexact`` (no encoder version), ``-map_metadata -1`` (no creation
      time) and ``-b:v 0``/``-b:a 0`` (otherwise the measured bit rate of THIS segment is written to
      btrt/esds) make ftyp+moov byte-identical for every segment of a rendition.
    * MPEG-TS: the same two inputs and ``-frames:a N``; the mpegts muxer adds its usual 2 x 0.7 s
      mux delay, so the first video PTS is S + ``TS_PTS_OFFSET`` (126000) and the first audio PTS
      (the priming frame) A x 90/48 + TS_PTS_OFFSET. That offset is the same for every segment, so
      consecutive segments are continuous without discontinuity tags. ``-avoid_negative_ts
      disabled`` again: the default would shift segment 0 (only).

Preset: ``veryfast``: 2.8x realtime for the 3-rung encode of a 3 s 1080x720 segment on 2 busy cores
(superfast 3.4x, faster 2.1x; numbers in docs/transcoding.md). It keeps a worker well ahead of a
live phone while spending the spare time on quality.
"""

from __future__ import annotations

import ctypes
import json
import math
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import IO, Any, cast

from server.core.errors import FFmpegError, UnprocessableMedia
from server.core.timeline import AAC_FRAME, AUDIO_TIMESCALE, VIDEO_TIMESCALE
from server.core.transcode.cmaf import split_init as split_init  # callers split what they remux
from server.core.transcode.ladder import GOP_SECONDS, RenditionPlan, SourceInfo

FFMPEG = "ffmpeg"
FFPROBE = "ffprobe"
PRESET = "veryfast"
PART_SECONDS = GOP_SECONDS  # a CMAF fragment's moofs: one per keyframe (video), one a second (audio)
AUDIO_RATE = AUDIO_TIMESCALE  # every audio track is resampled to its timescale (server/core/playlists/model.py)
AAC_PRIMING = 1024
TS_PTS_OFFSET = 126_000
PROBE_TIMEOUT = 30.0
# Packets (of every stream) an upload's probe reads for its keyframe census, decoding only the keyframes:
# about 3 s of 30 fps video with AAC audio, a whole phone segment. It bounds the probe's work on a hostile
# file (intra-only, thousands of frames) as the 0.2 s decode head it replaced did: a few hundred frames at most.
PROBE_PACKETS = 300

_FFMPEG = [FFMPEG, "-nostdin", "-hide_banner", "-nostats", "-loglevel", "error", "-y"]
_FFPROBE = [FFPROBE, "-v", "error", "-hide_banner", "-of", "json"]
_CLEAN = ["-map_metadata", "-1", "-map_chapters", "-1", "-fflags", "+bitexact"]
_CMAF = [*_CLEAN, "-movflags", "+cmaf+frag_discont+skip_trailer"]
_CMAF += ["-use_editlist", "0", "-avoid_negative_ts", "disabled", "-f", "mp4"]


def run(argv: list[str], timeout: float) -> str:
    """Run argv without a shell; return stderr, or raise FFmpegError on failure or timeout."""
    return _execute(argv, timeout)[1]


PROGRESS = ["-progress", "pipe:1", "-stats_period", "0.5"]  # key=value blocks on stdout, twice a second


def with_progress(argv: list[str]) -> list[str]:
    """Return an ffmpeg argv that also reports its progress on stdout (read by run_with_progress)."""
    return [argv[0], *PROGRESS, *argv[1:]]


def progress_fraction(line: bytes, total_seconds: float) -> float | None:
    """Parse one line of ffmpeg's -progress output: the fraction of `total_seconds` done, or None."""
    key, _, value = line.strip().partition(b"=")
    if key != b"out_time_us" or not value.isdigit() or total_seconds <= 0:
        return None
    return min(1.0, int(value) / 1e6 / total_seconds)


def run_with_progress(argv: list[str], timeout: float, total_seconds: float, on_progress: Callable[[float], None]) -> str:
    """Run an argv from with_progress, calling on_progress(fraction) as ffmpeg reports; return stderr.

    Raises FFmpegError as run() does. If on_progress raises (the worker lost its lease), ffmpeg is
    killed and reaped, and the exception propagates.
    """
    proc = subprocess.Popen(  # noqa: S603 - list argv, no shell, paths built by the caller
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        shell=False,
        preexec_fn=_die_with_parent,  # noqa: PLW1509 - only an async-signal-safe prctl call
    )
    # Both pipes exist: stdout and stderr are PIPE above.
    out, err = cast(IO[bytes], proc.stdout), cast(IO[bytes], proc.stderr)
    stderr: list[bytes] = []
    reader = threading.Thread(target=lambda: stderr.append(err.read()), daemon=True)
    reader.start()
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    try:
        for line in out:  # ends when ffmpeg exits or is killed
            fraction = progress_fraction(line, total_seconds)
            if fraction is not None:
                on_progress(fraction)
        proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        timed_out = not timer.is_alive() and proc.returncode is not None and proc.returncode < 0
        timer.cancel()
        reader.join(timeout=5)
        out.close()
        err.close()
    text = _text(b"".join(stderr))
    if timed_out:
        raise FFmpegError(argv, None, text, timed_out=True)
    _check_exit(argv, proc.returncode, text)
    return text


_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Ask the kernel to SIGKILL this child when the thread that started it dies.

    A worker killed with SIGKILL would otherwise leave an orphan ffmpeg running, burning CPU and
    writing temp files after the next attempt has cleaned up.
    """
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _execute(argv: list[str], timeout: float) -> tuple[str, str]:
    """Run argv, returning (stdout, stderr); subprocess.run kills and reaps on timeout."""
    try:
        done = subprocess.run(  # noqa: S603 - list argv, no shell, paths built by the caller
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            shell=False,
            check=False,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - only an async-signal-safe prctl call
        )
    except subprocess.TimeoutExpired as exc:
        raise FFmpegError(argv, None, _text(exc.stderr), timed_out=True) from None
    stderr = _text(done.stderr)
    _check_exit(argv, done.returncode, stderr)
    return _text(done.stdout), stderr


# ffmpeg 5.1 exits 0 when the trailer cannot be written (e.g. the disk filled during +faststart),
# leaving an MP4 without its moov: its own message is the only sign.
_UNFINISHED_OUTPUT = re.compile(r"^Error (?:writing trailer of|closing file) ", re.MULTILINE)
# A frame past Bounds.pixels is refused by the decoder, which logs this and goes on without it (exit 0):
# the media is at fault, the same way every time.
_OVER_PIXEL_CAP = re.compile(r"Picture size (\d+x\d+) exceeds specified max pixel count")


def _check_exit(argv: list[str], returncode: int | None, stderr: str) -> None:
    """Raise what a finished run's exit code and stderr say went wrong, if anything."""
    over = _OVER_PIXEL_CAP.search(stderr)
    if over:
        raise UnprocessableMedia(f"a frame of {over.group(1)} has more pixels than MAX_SOURCE_PIXELS allows")
    if returncode != 0 or _UNFINISHED_OUTPUT.search(stderr):
        raise FFmpegError(argv, returncode, stderr)


def _text(data: bytes | str | None) -> str:
    """Decode process output leniently (ffmpeg echoes file metadata in any encoding)."""
    if isinstance(data, bytes):
        return data.decode("utf-8", errors="replace")
    return data or ""


# --- probing ----------------------------------------------------------------------------------


def probe_argv(path: Path, *, decode_head: bool = False) -> list[str]:
    """Build the ffprobe argv that lists streams and format as JSON.

    With `decode_head`, the same run is also the upload's decodability test and keyframe census, without
    a second process launch: it lists every packet's time and flags (read from the container, never
    decoded) and decodes only the keyframes (`-skip_frame nokey`), listing the frames they gave.
    """
    entries = "frame=stream_index,width,height:packet=stream_index,pts_time,flags"
    head = ["-skip_frame", "nokey", "-show_entries", entries, "-read_intervals", f"%+#{PROBE_PACKETS}"]
    return [*_FFPROBE, "-show_streams", "-show_format", *(head if decode_head else []), str(path)]


def decode_check_argv(path: Path) -> list[str]:
    """Build the ffprobe argv that decodes only the first video frame (cheap decodability test)."""
    # -read_intervals counts packets of the selected stream only, so this reads one video packet.
    entries = "frame=media_type,width,height"
    probe = ["-select_streams", "v:0", "-read_intervals", "%+#1", "-show_entries", entries]
    return [*_FFPROBE, *probe, str(path)]


def probe(path: Path, timeout: float = PROBE_TIMEOUT, *, check_decode: bool = True) -> SourceInfo:
    """Probe an upload; raise UnprocessableMedia unless it has a (decodable, if asked) video stream.

    One ffprobe run usually answers both questions and measures the keyframe interval. Only when the
    keyframes among its first PROBE_PACKETS packets give no decoded frame of the video stream (it starts
    later, or its first keyframes are damaged) does a second run decode its first packet wherever it is.
    """
    report = _probe_json(probe_argv(path, decode_head=check_decode), timeout)
    video = _first(report, "video")
    if video is None:
        raise UnprocessableMedia("no video stream")
    if check_decode and not _decoded(report, video.get("index")) and not _decoded(_probe_json(decode_check_argv(path), timeout)):
        raise UnprocessableMedia("video stream cannot be decoded")
    duration = _float(video.get("duration")) or _float(report.get("format", {}).get("duration"))
    if duration <= 0:
        raise UnprocessableMedia("zero duration")
    width, height = _display_size(video)
    fps = _rate(video.get("avg_frame_rate")) or _rate(video.get("r_frame_rate"))
    has_audio = _first(report, "audio") is not None
    keyframes = keyframe_interval(report, video.get("index"))
    return SourceInfo(width, height, duration, fps, has_audio, str(video.get("codec_name", "")), keyframes)


def keyframe_interval(report: Mapping[str, Any], stream_index: object) -> float | None:
    """The longest gap (seconds) between two keyframe packets of the stream; None with fewer than two."""
    times = sorted(
        _float(p.get("pts_time"))
        for p in _listed(report, "packet")
        if p.get("stream_index") == stream_index and "K" in str(p.get("flags", "")) and p.get("pts_time") is not None
    )
    if len(times) < 2:
        return None
    return round(max(b - a for a, b in zip(times, times[1:], strict=False)), 3)


def _decoded(report: Mapping[str, Any], stream_index: object = None) -> bool:
    """Whether the report lists a decoded picture (of `stream_index`, when given)."""
    frames = _listed(report, "frame")
    return any(f.get("width") and (stream_index is None or f.get("stream_index") == stream_index) for f in frames)


def _listed(report: Mapping[str, Any], kind: str) -> list[dict[str, Any]]:
    """The packets or frames of a report: ffprobe lists them apart, or together (both asked) with a "type"."""
    together = report.get("packets_and_frames")
    if together is None:
        return list(report.get(f"{kind}s", []))
    return [entry for entry in together if entry.get("type") == kind]


def _probe_json(argv: list[str], timeout: float) -> dict[str, Any]:
    """Run ffprobe; a non-zero exit (not a timeout) means the file is not media we can read."""
    try:
        stdout, _ = _execute(argv, timeout)
    except FFmpegError as exc:
        if exc.timed_out:
            raise
        # ffprobe's stderr names the absolute path, temp names and heap addresses: logged, not answered.
        raise UnprocessableMedia("not a media file ffprobe can read", detail=exc.stderr_tail) from exc
    try:
        report = json.loads(stdout or "{}")
    except json.JSONDecodeError as exc:
        raise UnprocessableMedia("not a media file: unreadable probe output") from exc
    return report if isinstance(report, dict) else {}


def _first(report: Mapping[str, Any], kind: str) -> dict[str, Any] | None:
    """Return the first stream of this codec_type, or None."""
    streams = [s for s in report.get("streams", []) if s.get("codec_type") == kind]
    return streams[0] if streams else None


def _display_size(video: Mapping[str, Any]) -> tuple[int, int]:
    """Return the displayed size: non-square pixels stretched, 90/270 degree rotation swapped."""
    width, height = int(video.get("width") or 0), int(video.get("height") or 0)
    sar = _rate(video.get("sample_aspect_ratio"), sep=":")
    if sar > 0 and sar != 1:
        width = round(width * sar)
    if _rotation(video) % 180 == 90:
        width, height = height, width
    if width <= 0 or height <= 0:
        raise UnprocessableMedia("video stream cannot be decoded")
    return width, height


def _rotation(video: Mapping[str, Any]) -> int:
    """Return the rotation in degrees from the display matrix or the legacy 'rotate' tag."""
    for side in video.get("side_data_list", []):
        if "rotation" in side:
            return round(_float(side["rotation"])) % 360
    return round(_float(video.get("tags", {}).get("rotate"))) % 360


def _rate(text: Any, sep: str = "/") -> float:
    """Parse 'num/den' (or 'num:den') as a float; 0 when absent or undefined."""
    return float(_fraction(text, sep))


def _fraction(text: Any, sep: str = "/") -> Fraction:
    """Parse 'num/den' (or 'num:den') exactly; 0 when absent or undefined."""
    num, _, den = str(text or "0").partition(sep)
    try:
        return Fraction(int(num), int(den or 1))
    except (ValueError, ZeroDivisionError):
        return Fraction(0)


def _float(text: Any) -> float:
    """Parse a float ffprobe printed; 0 when absent or 'N/A'."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        return 0.0
    return value if math.isfinite(value) else 0.0


# --- the one encode ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Bounds:
    """What one encode may decode, whatever the upload's probe said (a crafted file can lie to a probe).

    ``seconds`` (MAX_SEGMENT_SECONDS): input is read that far and no further (``-t``): MPEG-TS pieces
    concatenated with their timestamps restarting probe as one piece and decode as all of them.
    ``pixels`` (MAX_SOURCE_PIXELS): the decoder refuses a bigger frame before allocating it
    (``-max_pixels``; run() then raises UnprocessableMedia): a TS whose head is small and whose tail is
    huge probes small. The output's size follows from both (rate-capped rungs, a fixed picture box).
    """

    seconds: float
    pixels: int

    def input_options(self) -> list[str]:
        # libavcodec checks the width rounded up to 64 (its SIMD stride) times the height, and a coded
        # picture may be larger than the displayed one the probe measured: an eighth more is the margin.
        return ["-t", f"{self.seconds:g}", "-max_pixels", str(self.pixels + self.pixels // 8)]


def transcode_argv(
    src: Path,
    renditions: Sequence[RenditionPlan],
    outputs: Mapping[str, Path],
    *,
    source: SourceInfo | None = None,
    pictures: Pictures | None = None,
    bounds: Bounds | None = None,
) -> list[str]:
    """Build the ONE ffmpeg run that decodes src once and writes one MP4 per rendition.

    Pass ``source`` (what ``probe`` returned): the audio is then cut/padded to the video's length,
    and an upload without audio gets that much silence so every output has the same two tracks.
    Without it the upload MUST have an audio stream. Pass ``pictures`` to also write the segment's
    thumbnail and storyboard strip from the same decode (two more branches of the split). Workers
    pass ``bounds`` (see Bounds).
    """
    video = _video_graph(renditions, pictures)
    graph = ";".join([video, _audio_graph(len(renditions), source)])
    limits = bounds.input_options() if bounds is not None else []
    argv = [*_FFMPEG, *limits, "-i", str(src), "-filter_complex", graph]
    for index, rendition in enumerate(renditions):
        argv += _rendition_output(index, rendition, outputs[rendition.name])
    if pictures is not None:
        argv += ["-map", "[thumb]", *_picture(pictures.thumbnail, 3), "-map", "[strip]", *_picture(pictures.storyboard, 4)]
    return argv


@dataclass(frozen=True)
class Pictures:
    """The stills one encode also writes: a thumbnail at `at` s and a storyboard strip (see STORYBOARD_*)."""

    thumbnail: Path
    storyboard: Path
    at: float
    width: int
    tile_height: int  # every storyboard tile is STORYBOARD_TILE_WIDTH x tile_height


def _video_graph(renditions: Sequence[RenditionPlan], pictures: Pictures | None = None) -> str:
    """Return the split + per-rendition fit-and-pad chains; setpts makes every upload start at 0.

    ffmpeg applies the upload's display matrix (rotate tag) before the graph (autorotate is on by
    default), so a phone held upright arrives as a portrait picture and is fitted as one.
    """
    branches = len(renditions) + (2 if pictures else 0)
    labels = "".join(f"[s{i}]" for i in range(branches))
    chains = [f"[0:v:0]setpts=PTS-STARTPTS,split={branches}{labels}"]
    for i, r in enumerate(renditions):
        chains.append(f"[s{i}]fps={r.fps},{_fit(r.width, r.height)},format=yuv420p[v{i}]")
    if pictures is not None:
        n = len(renditions)
        chains.append(f"[s{n}]trim=start={pictures.at:.3f},scale={pictures.width}:-2,setsar=1[thumb]")
        # select keeps the first frame, then one at least STORYBOARD_EVERY s after the last kept one;
        # tiles are fitted into one fixed box so the storyboard's #xywh= holds for every segment;
        # tile pads a short strip with black and flushes it at EOF.
        pick = f"select='isnan(prev_selected_t)+gte(t-prev_selected_t,{STORYBOARD_EVERY:g})'"
        tile = _fit(STORYBOARD_TILE_WIDTH, pictures.tile_height)
        chains.append(f"[s{n + 1}]{pick},{tile},tile={STORYBOARD_COLUMNS}x1[strip]")
    return ";".join(chains)


def _fit(width: int, height: int) -> str:
    """Return the filters that fit any picture inside width x height (up or down) and pad the rest black."""
    # force_divisible_by=2: 4:2:0 needs even sides (a 1x1 or 3x5 upload would otherwise fail the encode).
    scale = f"scale={width}:{height}:force_original_aspect_ratio=decrease:force_divisible_by=2"
    return f"{scale},pad={width}:{height}:(ow-iw)/2:(oh-ih)/2,setsar=1"


def _picture(out: Path, quality: int) -> list[str]:
    return ["-frames:v", "1", "-q:v", str(quality), *_jpeg(out)]


def _audio_graph(count: int, source: SourceInfo | None) -> str:
    """Return the audio chain: the source (or silence) as 48 kHz stereo, split per rendition."""
    labels = "".join(f"[a{i}]" for i in range(count))
    tail = f"aformat=sample_fmts=fltp:channel_layouts=stereo,asplit={count}{labels}"
    if source is None:
        return f"[0:a:0]asetpts=PTS-STARTPTS,aresample={AUDIO_RATE},{tail}"
    padded = f"{source.duration + AAC_FRAME / AUDIO_RATE:.6f}"
    if not source.has_audio:
        return f"anullsrc=r={AUDIO_RATE}:cl=stereo:d={padded},{tail}"
    # Pad/cut the audio to the video's length plus one AAC frame: phones' audio is longer or shorter
    # than their video, and the packager keeps only the frames the timeline has room for (see
    # package_argv), which the spare frame guarantees it has.
    fit = f"apad=whole_dur={padded},atrim=duration={padded}"
    return f"[0:a:0]asetpts=PTS-STARTPTS,aresample={AUDIO_RATE},{fit},{tail}"


def _rendition_output(index: int, r: RenditionPlan, out: Path) -> list[str]:
    """Return the encoder and muxer options of one rendition output."""
    # -bf 0: dts == pts, so no composition offsets and tfdt/TS PTS are presentation times.
    # -sc_threshold 0 and -keyint_min == -g: keyframes only on the fixed GOP grid (first frame is IDR).
    video = ["-c:v", "libx264", "-preset", PRESET, "-profile:v", "main", "-level:v", _level(r.level)]
    video += ["-bf", "0", "-g", str(r.gop), "-keyint_min", str(r.gop), "-sc_threshold", "0"]
    video += ["-b:v", str(r.video_bitrate), "-maxrate", str(r.video_bitrate)]
    video += ["-bufsize", str(2 * r.video_bitrate)]
    audio = ["-c:a", "aac", "-b:a", str(r.audio_bitrate), "-ar", str(AUDIO_RATE), "-ac", "2"]
    mux = [*_CLEAN, "-movflags", "+faststart", "-video_track_timescale", str(VIDEO_TIMESCALE)]
    return ["-map", f"[v{index}]", "-map", f"[a{index}]", *video, *audio, *mux, "-f", "mp4", str(out)]


def _level(level_idc: int) -> str:
    """Return x264's spelling of a level_idc (31 -> '3.1')."""
    return f"{level_idc // 10}.{level_idc % 10}"


# --- packaging: remux only --------------------------------------------------------------------


def package_argv(
    mp4s: Sequence[Path], fragments: Sequence[Path], ts: Sequence[Path], audio: Path, start: int, audio_start: int, frames: int
) -> list[str]:
    """Build ONE remux of every rendition into its CMAF fragment and TS, plus the audio fragment.

    The same outputs as one remux per output (tests/harness/ffmpeg_oracles.py: tests compare the
    bytes), for one process start instead of seven: packaging is on the live path, and launching
    ffmpeg costs ~80 ms. Each
    MP4 is opened twice, once on the video timeline and once on the audio timeline (an input offset
    moves every stream of an input; an output offset every stream of an output).
    """
    argv = [*_FFMPEG, "-copyts"]
    for mp4 in mp4s:
        argv += [*_at(start, VIDEO_TIMESCALE), "-i", str(mp4)]
    for mp4 in mp4s:
        argv += [*_audio_at(audio_start), "-i", str(mp4)]
    count = len(mp4s)
    for index, (fragment, stream) in enumerate(zip(fragments, ts, strict=True)):
        argv += [*_video_fragment(index, fragment), *_ts(index, count + index, stream, frames)]
    return argv + _audio_fragment(count, audio, frames)


def _at(start: int, rate: int) -> list[str]:
    """Return the input option that moves every packet of the next input by start/rate seconds (-copyts keeps the rest)."""
    return ["-itsoffset", _microseconds(start, rate)]


def _audio_at(start: int) -> list[str]:
    # +AAC_PRIMING: the priming frame has dts -1024, and a tfdt cannot be negative.
    return _at(start + AAC_PRIMING, AUDIO_RATE)


def _video_fragment(index: int, out: Path) -> list[str]:
    return ["-map", f"{index}:v:0", "-c", "copy", "-b:v", "0", *_CMAF, str(out)]


def _audio_fragment(index: int, out: Path, frames: int) -> list[str]:
    # -frames:a counts packets in a stream copy: exactly the AAC frames the timeline gave this segment.
    # The muxer fragments video on its keyframes (one a second) but audio-only never: -frag_duration starts
    # a moof once one holds PART_SECONDS (47 AAC frames at 48 kHz), the audio playlist's ~1 s parts.
    fragment = ["-frag_duration", str(PART_SECONDS * 1_000_000)]
    return ["-map", f"{index}:a:0", "-c", "copy", "-b:a", "0", "-frames:a", str(frames), *fragment, *_CMAF, str(out)]


def _ts(video: int, audio: int, out: Path, frames: int) -> list[str]:
    streams = ["-map", f"{video}:v:0", "-map", f"{audio}:a:0", "-c", "copy", "-frames:a", str(frames)]
    # The AAC priming frame of segment 0 is at -1920; shifting it would move only segment 0.
    mux = [*_CLEAN, "-avoid_negative_ts", "disabled", "-f", "mpegts"]
    return [*streams, *mux, str(out)]


def _microseconds(ticks: int, rate: int) -> str:
    """Spell ticks/rate as integer microseconds; ffmpeg rescales back to the exact tick."""
    if ticks < 0:
        raise ValueError(f"start must not be negative, got {ticks}")
    return f"{(ticks * 2_000_000 + rate) // (2 * rate)}us"


# --- pictures ---------------------------------------------------------------------------------


def _jpeg(out: Path) -> list[str]:
    """Return the muxer options writing exactly one JPEG to out (any name, no %d pattern)."""
    return ["-c:v", "mjpeg", "-f", "image2", "-update", "1", str(out)]


# One storyboard strip per segment: a tile every second, from the lowest rendition.
STORYBOARD_EVERY = 1.0
STORYBOARD_TILE_WIDTH = 160
STORYBOARD_COLUMNS = 5


def tile_height(width: int, height: int, tile_width: int) -> int:
    """Return the tile height ffmpeg's scale=tile_width:-2 gives for a width x height picture."""
    return 2 * ((tile_width * height + width) // (2 * width))


# --- capabilities (what a worker reports when it registers) -----------------------------------

_VERSION = re.compile(r"^ffmpeg version (\S+)", re.MULTILINE)
# `ffmpeg -encoders` lists one encoder a line after a "------" rule: " V....D libx264   description".
_ENCODER = re.compile(r"^ ([VAS])[.A-Z]{5} (\S+)", re.MULTILINE)


def version_argv() -> list[str]:
    """Build the argv that prints ffmpeg's version banner."""
    return [FFMPEG, "-nostdin", "-hide_banner", "-version"]


def encoders_argv() -> list[str]:
    """Build the argv that lists the encoders this ffmpeg was built with."""
    return [FFMPEG, "-nostdin", "-hide_banner", "-encoders"]


def parse_version(text: str) -> str:
    """Return the version word of `ffmpeg -version` output ("5.1.9-0+deb12u1"), or "unknown"."""
    found = _VERSION.search(text)
    return found.group(1) if found else "unknown"


def parse_encoders(text: str) -> list[str]:
    """Return the video and audio encoder names of `ffmpeg -encoders` output, sorted (subtitles left out)."""
    _legend, _rule, table = text.partition(" ------\n")
    return sorted(name for kind, name in _ENCODER.findall(table) if kind in "VA")


def capabilities(timeout: float = PROBE_TIMEOUT) -> dict[str, Any]:
    """Return what this machine's ffmpeg can do: {"ffmpeg": version, "encoders": [...]} (a worker registers it)."""
    version, _ = _execute(version_argv(), timeout)
    encoders, _ = _execute(encoders_argv(), timeout)
    return {"ffmpeg": parse_version(version), "encoders": parse_encoders(encoders)}


# --- cutting a recording as the phone does (the operator's `python -m server.cli stream`) ----------

CUT_SECONDS = 3.0
CUT_LIST = "segments.csv"  # the segment muxer's list: one "name,start,end" line per finished segment
URL_SCHEMES = ("http", "https")
# A URL source may only reach the network over these (an HLS playlist cannot make ffmpeg open a local file).
_URL_PROTOCOLS = "http,https,tcp,tls,crypto"
_URL_READ_TIMEOUT_US = "20000000"  # 20 s without a byte, like the app's own timeouts: ffmpeg gives up


def can_copy_cut(info: SourceInfo, seconds: float = CUT_SECONDS) -> bool:
    """Whether `-c copy` can cut near every `seconds`: H.264 (what the phone sends) with keyframes at most that far apart.

    `info.keyframe_interval` is measured over the probe's head (PROBE_PACKETS), which is what the camera's
    fixed GOP makes representative; a longer or unknown gap means re-encoding with forced keyframes.
    """
    return info.video_codec == "h264" and info.keyframe_interval is not None and info.keyframe_interval <= seconds


def cut_argv(src: Path | str, out_dir: Path, *, copy: bool, seconds: float = CUT_SECONDS) -> list[str]:
    """Build the ffmpeg run that cuts `src` into keyframe-aligned MP4 segments out_dir/NNNNNN.mp4, as the phone records.

    `-reset_timestamps 1` starts every segment at 0 and `+faststart` puts its moov first: each is a
    standalone phone upload. Without `copy`, x264 gets a keyframe forced every `seconds` so the segment
    muxer (which only cuts on keyframes) cuts there; audio becomes AAC like the phone's. A URL `src` is
    read by ffmpeg itself over http(s) only (the caller checked the scheme), with a read deadline.
    """
    source = ["-i", str(src)]
    if isinstance(src, str):
        source = ["-protocol_whitelist", _URL_PROTOCOLS, "-rw_timeout", _URL_READ_TIMEOUT_US, *source]
    if copy:
        codecs = ["-c", "copy"]
    else:
        force = f"expr:gte(t,n_forced*{seconds:g})"
        codecs = ["-c:v", "libx264", "-preset", PRESET, "-pix_fmt", "yuv420p", "-force_key_frames", force]
        codecs += ["-c:a", "aac", "-b:a", "128k"]
    segment = ["-f", "segment", "-segment_time", f"{seconds:g}", "-reset_timestamps", "1", "-segment_format", "mp4"]
    segment += ["-segment_format_options", "movflags=+faststart", "-segment_list", str(out_dir / CUT_LIST)]
    segment += ["-segment_list_type", "csv"]
    return [
        *_FFMPEG,
        *source,
        "-map",
        "0:v:0",
        "-map",
        "0:a:0?",
        *codecs,
        "-map_metadata",
        "-1",
        *segment,
        str(out_dir / "%06d.mp4"),
    ]


def parse_cut_list(text: str) -> list[tuple[str, float]]:
    """Return (file name, duration in seconds) of each segment the segment muxer listed, in order."""
    cuts = []
    for line in text.splitlines():
        name, start, end = line.rsplit(",", 2)
        cuts.append((name, max(0.0, float(end) - float(start))))
    return cuts
