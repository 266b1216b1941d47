"""What an encode must hand back, checked against its plan before anything is committed (one owner).

The worker checks its own outputs before it hands them back (an encode that read past what the probe
said fails there as bad media), and the origin checks them again on completion whoever encoded them
(a worker token is not a licence to publish anything): each rendition is an MP4 whose moov says H.264
at exactly its rung's size with an AAC track, lasting what the upload lasts; each picture is a JPEG.
The MP4 is read from its boxes (cmaf.tracks), no process is started.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from server.core.errors import UnprocessableMedia
from server.core.transcode.cmaf import Track, tracks
from server.core.transcode.ladder import RenditionPlan

PICTURES = ("thumbnail.jpg", "storyboard.jpg")
JPEG_MAGIC = b"\xff\xd8\xff"
VIDEO_CODEC, AUDIO_CODEC = "avc1", "mp4a"
# Between the upload's probed video duration and a rendition's: the fps filter adds or drops a frame
# at either end, and phones' timestamps wobble; a stream that goes on past its probe is far beyond.
DURATION_SLACK = 0.5  # seconds, plus a tenth of the duration


@dataclass(frozen=True)
class Plan:
    """What one attempt must hand back: a rendition per rung of `renditions`, lasting `seconds`, and the pictures."""

    renditions: tuple[RenditionPlan, ...]
    seconds: float

    def check(self, name: str, data: bytes) -> Track | None:
        """Refuse (UnprocessableMedia naming `name`) an output that is not what this plan asks; a rendition's video Track."""
        if name in PICTURES:
            if data[: len(JPEG_MAGIC)] != JPEG_MAGIC:
                raise UnprocessableMedia(f"{name}: not a JPEG picture")
            return None
        rung = next((r for r in self.renditions if f"{r.name}.mp4" == name), None)
        if rung is None:
            raise UnprocessableMedia(f"{name}: not an output of this attempt")
        return _check_rendition(name, data, rung, self.seconds)

    def check_files(self, outputs: Mapping[str, Path]) -> dict[str, Track]:
        """Check every output file; return each rendition's video Track by output name.

        Files are mapped, not read: only the boxes are touched, whatever size a worker sent.
        """
        found = {}
        for name, path in outputs.items():
            with open(path, "rb") as fh:
                if os.fstat(fh.fileno()).st_size == 0:
                    track = self.check(name, b"")
                else:
                    with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
                        track = self.check(name, data)  # type: ignore[arg-type]  # an mmap slices as bytes do
            if track is not None:
                found[name] = track
        return found


def _check_rendition(name: str, data: bytes, rung: RenditionPlan, seconds: float) -> Track:
    try:
        found = tracks(data)
    except (ValueError, IndexError, UnicodeDecodeError) as exc:  # the box parser's words for bytes that are no MP4
        raise UnprocessableMedia(f"{name}: not a readable MP4") from exc
    video, audio = found.get("vide"), found.get("soun")
    if video is None or video.codec != VIDEO_CODEC:
        raise UnprocessableMedia(f"{name}: no H.264 video track")
    if (video.width, video.height) != (rung.width, rung.height):
        raise UnprocessableMedia(f"{name}: {video.width}x{video.height}, not the rung's {rung.width}x{rung.height}")
    if audio is None or audio.codec != AUDIO_CODEC:
        raise UnprocessableMedia(f"{name}: no AAC audio track")
    if abs(video.seconds - seconds) > DURATION_SLACK + seconds / 10:
        raise UnprocessableMedia(
            f"{name}: lasts {video.seconds:.2f} s, the upload {seconds:.2f} s (its timestamps jump, or it was cut short)"
        )
    return video
