"""The fault suite's parsers catch what they are there to catch: torn files and cut playlists (no services)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from tests.faults.answers import Torn, check_media, m3u8_urls, mpd_urls

GOLDEN = Path(__file__).resolve().parents[1] / "unit" / "golden"


def box(kind: bytes, payload: bytes = b"") -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


WHOLE_MP4 = box(b"ftyp", b"isom") + box(b"moov", box(b"mvhd", bytes(20))) + box(b"mdat", bytes(100))
WHOLE_M4S = box(b"styp", b"msdh") + box(b"moof", box(b"mfhd", bytes(8))) + box(b"mdat", bytes(50))


def test_whole_files_pass_and_torn_ones_fail() -> None:
    check_media("http://x/video_files/1/LOW/000000.mp4", WHOLE_MP4)
    check_media("http://x/video_files/1/LOW/000000.m4s", WHOLE_M4S)
    check_media("http://x/video_files/1/LOW/000000.ts", b"\x47" + bytes(187))
    for url, data in (
        ("http://x/video_files/1/LOW/000000.mp4", WHOLE_MP4[:-10]),  # cut mid-mdat
        ("http://x/video_files/1/LOW/000000.mp4", WHOLE_MP4[: len(WHOLE_MP4) - 108]),  # no mdat at all
        ("http://x/video_files/1/LOW/000000.m4s", WHOLE_M4S[:-1]),
        ("http://x/video_files/1/LOW/init.mp4", b""),
        ("http://x/video_files/1/LOW/000000.ts", b"\x47" + bytes(100)),
        ("http://x/video_files/1/LOW/000000.ts", bytes(188)),  # no sync byte
    ):
        with pytest.raises(Torn):
            check_media(url, data)


def test_a_media_playlist_names_its_map_and_segments_and_a_cut_one_fails() -> None:
    text = (GOLDEN / "live_contiguous_HIGH.m3u8").read_text()
    urls = m3u8_urls("http://x/video_files/7/HIGH/playlist.m3u8", text)
    assert urls == [f"http://x/video_files/7/HIGH/{n}" for n in ("init.mp4", "000000.m4s", "000001.m4s", "000002.m4s")]
    with pytest.raises(Torn):
        m3u8_urls("http://x/p.m3u8", text[:-5])  # cut mid-line
    with pytest.raises(Torn):
        m3u8_urls("http://x/p.m3u8", "<html>busy</html>\n")


def test_mpds_name_every_file_and_a_cut_one_fails() -> None:
    dash = mpd_urls("http://x/video_files/7/manifest.mpd", (GOLDEN / "live_contiguous.mpd").read_text())
    assert "http://x/video_files/7/HIGH/init.mp4" in dash and "http://x/video_files/7/audio/000002.m4s" in dash
    assert len(dash) == 4 * 4  # 3 rungs and audio: an init and 3 segments each
    android = mpd_urls("http://x/live_mpd/7.mpd", (GOLDEN / "android_after_1.mpd").read_text())
    assert android == [f"http://x/video_files/7/{r}/00000{n}.mp4" for r in ("HIGH", "MEDIUM", "LOW") for n in (3, 4)]
    with pytest.raises(Torn):
        mpd_urls("http://x/m.mpd", (GOLDEN / "live_contiguous.mpd").read_text()[:200])
