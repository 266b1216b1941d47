"""Cached playlists carry their headers and come back unchanged."""

from server.web.answers import Rendered, _decode, _encode


def test_cached_playlists_come_back_byte_for_byte():
    for rendered in (
        Rendered(b"#EXTM3U\n#EXT-X-VERSION:6\n", True),
        Rendered(b"<MPD/>\n\n", False, (("lastSegmentId", "3"), ("streamEnded", "false"))),
    ):
        assert _decode(_encode(rendered)) == rendered
