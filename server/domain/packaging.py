"""Packaging: remux each encoded segment at its place on the timeline into CMAF fragments and TS.

It runs where the media tree is (a local worker, the reaper, a PACKAGE_VIDEO job), one video at a
time under the video's row lock, and is cheap: `-c copy`, never an encode. Which segments are placeable
is the playlist layer's decision (publish.packagable); the move to PACKAGED is lifecycle's.
"""

from __future__ import annotations

import threading

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from server.core.errors import NotFound
from server.core.playlists import Published
from server.core.playlists.model import Parts
from server.core.playlists.publish import packagable
from server.core.timeline import AAC_FRAME
from server.core.transcode import cmaf, ffmpeg
from server.core.transcode.mpegts import continue_counters, next_counters
from server.domain.changes import video_change
from server.domain.state import load_view
from server.domain.transitions import S, move
from server.infra.models import Segment, SegmentRendition
from server.infra.services import Services
from server.store.media import MediaStore
from server.store.objects import Source

# The video row lock serialises packagers across processes (MySQL); these, the threads of one process.
_PACKAGING = [threading.Lock() for _ in range(64)]


def package_placeable(services: Services, session: Session, video_id: int) -> int:
    """Remux every encoded segment whose place on the timeline is now decided; return how many."""
    with _PACKAGING[video_id % len(_PACKAGING)]:
        try:
            with video_change(session, video_id, services.clock) as change:
                view = load_view(session, video_id, services.config.MAX_SEGMENT_AHEAD)  # read under the lock
                assert view is not None
                pending = {s.segment_id: s for s in _encoded(session, video_id)}
                done = 0
                for entry in packagable(view, services.clock.time(), services.config.GAP_TIMEOUT):
                    segment = pending.get(entry.segment_id)
                    if segment is not None:
                        _package(services, segment, entry, follows=not entry.discontinuity)
                        segment.packaged_at = services.clock.now()  # after the remux: when players can have it
                        move(change, segment, S.PACKAGED, start_ticks=entry.start_ticks)
                        done += 1
        except NotFound:
            return 0
    return done


def _encoded(session: Session, video_id: int) -> list[Segment]:
    query = (
        select(Segment)
        .where(Segment.video_id == video_id, Segment.status == S.ENCODED)
        .options(selectinload(Segment.renditions).selectinload(SegmentRendition.rendition))
    )
    return list(session.scalars(query))


def _package(services: Services, segment: Segment, entry: Published, *, follows: bool) -> None:
    """Write the segment's CMAF fragments and TS at its timeline position (one remux, never an encode).

    The audio keeps the whole AAC frames the timeline gave it (publish.audio_span), from its audio start.
    `follows`: the segment comes right after the one before it in the playlists (no discontinuity),
    so its TS continuity counters continue that segment's.
    """
    media, vid, k = services.media, segment.video_id, segment.segment_id
    names = [s.rendition.name for s in sorted(segment.renditions, key=lambda s: s.rendition.position)]
    with media.workspace("package") as folder:
        fragments = [folder / f"{name}.m4s" for name in names]
        streams = [folder / f"{name}.ts" for name in names]
        audio = folder / "audio.m4s"
        mp4s = media.readable_many([media.file(vid, name, k, "mp4") for name in names], folder)
        frames = entry.audio_duration_ticks // AAC_FRAME
        argv = ffmpeg.package_argv(mp4s, fragments, streams, audio, entry.start_ticks, entry.audio_start_ticks, frames)
        ffmpeg.run(argv, timeout=services.config.FFMPEG_TIMEOUT)
        written: dict[str, Source] = {}
        pieces: dict[str, list[cmaf.Fragment]] = {}
        for track, temp in [*zip(names, fragments, strict=True), ("audio", audio)]:
            objects, pieces[track] = _fragment(media, vid, track, k, temp.read_bytes())
            written.update(objects)
        for name, temp in zip(names, streams, strict=True):
            previous = media.file(vid, name, k - 1, "ts") if follows and k else None
            written[media.file(vid, name, k, "ts")] = _continued(media, temp.read_bytes(), previous)
        media.put_many(written)
    segment.start_ticks = entry.start_ticks
    segment.audio_start_ticks = entry.audio_start_ticks
    segment.audio_duration_ticks = entry.audio_duration_ticks
    found = parts_of(pieces, entry)
    segment.parts = None if found is None else found.to_json()


def _continued(media: MediaStore, data: bytes, previous: str | None) -> bytes:
    """The TS bytes with their continuity counters carried on from the previous segment's, when it follows it."""
    before = None if previous is None else media.read(previous)
    return data if before is None else continue_counters(data, next_counters(before))


def _fragment(
    media: MediaStore, video_id: int, track: str, segment_id: int, data: bytes
) -> tuple[dict[str, Source], list[cmaf.Fragment]]:
    """The objects of one track's fragment (init.mp4 once, identical for every segment of a track; NNNNNN.m4s),
    and the moof-by-moof byte ranges of NNNNNN.m4s."""
    init, media_segment = ffmpeg.split_init(data)
    objects: dict[str, Source] = {media.file(video_id, track, segment_id, "m4s"): media_segment}
    if not media.exists(media.init(video_id, track)):
        objects[media.init(video_id, track)] = init
    return objects, cmaf.fragments(media_segment)


def parts_of(pieces: dict[str, list[cmaf.Fragment]], entry: Published) -> Parts | None:
    """The segment's Parts from each track's fragments (`pieces`, "audio" and each rendition's name).

    A part lasts from its tfdt to the next one's, the last to the segment's end on its timeline. Every
    rendition is cut on one GOP grid, so their video parts last the same; if they do not (a segment encoded
    under another GOP), None: the playlists list the segment whole, as before parts.
    """
    audio = pieces.pop("audio")
    grids = {tuple(f.tfdt for f in frags) for frags in pieces.values()}
    if len(grids) != 1:
        return None
    video_ticks = _durations(grids.pop(), entry.end_ticks)
    audio_ticks = _durations(tuple(f.tfdt for f in audio), entry.audio_start_ticks + entry.audio_duration_ticks)
    sizes = [(track, tuple(f.size for f in frags)) for track, frags in [*pieces.items(), ("audio", audio)]]
    try:
        return Parts(video_ticks, audio_ticks, tuple(sizes))
    except ValueError:  # a tfdt off the timeline (not what this remux writes): list the segment whole
        return None


def _durations(starts: tuple[int, ...], end: int) -> tuple[int, ...]:
    return tuple(b - a for a, b in zip(starts, (*starts[1:], end), strict=True))
