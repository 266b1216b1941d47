"""What the fault suite's reader accepts as a whole answer: each parser returns the URLs it names or raises.

A torn or partial file (a playlist cut mid-line, an MP4 whose boxes do not add up to its length, a
transport stream that is not whole 188-byte packets) fails here, whatever its status said.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from urllib.parse import urljoin

from server.core.transcode.cmaf import iter_boxes

DASH = "{urn:mpeg:dash:schema:mpd:2011}"
TS_PACKET = 188
_NUMBER = re.compile(r"\$Number%0(\d)d\$")


class Torn(AssertionError):
    """An answer that does not parse as what its route serves."""


def mpd_urls(url: str, text: str) -> list[str]:
    """Parse a DASH MPD (standard SegmentTemplate+Timeline, or the Android SegmentList); return every media URL."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise Torn(f"{url}: not XML: {exc}") from None
    if root.tag != f"{DASH}MPD":
        raise Torn(f"{url}: root is {root.tag}, not a DASH MPD")
    base = _base(url, root)
    urls: list[str] = []
    for period in root.iter(f"{DASH}Period"):
        period_base = _base(base, period)
        for adaptation in period.iter(f"{DASH}AdaptationSet"):
            urls += _adaptation_urls(_base(period_base, adaptation), adaptation)
    return urls


def _base(url: str, element: ET.Element) -> str:
    found = element.find(f"{DASH}BaseURL")
    return urljoin(url, found.text or "") if found is not None else url


def _adaptation_urls(base: str, adaptation: ET.Element) -> list[str]:
    template = adaptation.find(f"{DASH}SegmentTemplate")
    urls: list[str] = []
    for representation in adaptation.iter(f"{DASH}Representation"):
        rep_base = _base(base, representation)
        listed = representation.find(f"{DASH}SegmentList")
        if listed is not None:
            urls += [urljoin(rep_base, s.get("media", "")) for s in listed.iter(f"{DASH}SegmentURL")]
        if template is not None:
            urls += _template_urls(rep_base, template, representation.get("id", ""))
    return urls


def _template_urls(base: str, template: ET.Element, rep_id: str) -> list[str]:
    timeline = template.find(f"{DASH}SegmentTimeline")
    entries = [] if timeline is None else list(timeline.iter(f"{DASH}S"))
    count = sum(1 + int(s.get("r", "0")) for s in entries)
    start = int(template.get("startNumber", "1"))
    init = template.get("initialization", "").replace("$RepresentationID$", rep_id)
    media = template.get("media", "").replace("$RepresentationID$", rep_id)
    match = _NUMBER.search(media)
    if match is None:
        raise Torn(f"SegmentTemplate media {media!r} has no $Number%0Nd$")
    names = [media.replace(match[0], f"{n:0{int(match[1])}d}") for n in range(start, start + count)]
    return [urljoin(base, init), *(urljoin(base, name) for name in names)] if count else []


def m3u8_urls(url: str, text: str) -> list[str]:
    """Parse an HLS playlist (master or media); return every URI it names, resolved against `url`."""
    lines = text.splitlines()
    if not lines or lines[0] != "#EXTM3U":
        raise Torn(f"{url}: does not start with #EXTM3U: {text[:40]!r}")
    if not text.endswith("\n"):
        raise Torn(f"{url}: last line cut short: {lines[-1]!r}")
    urls = []
    for line in lines[1:]:
        if line.startswith("#EXT-X-MAP:"):
            found = re.search(r'URI="([^"]+)"', line)
            if found is None:
                raise Torn(f"{url}: EXT-X-MAP without a URI: {line!r}")
            urls.append(urljoin(url, found[1]))
        elif line and not line.startswith("#"):
            urls.append(urljoin(url, line))
    return urls


def check_media(url: str, data: bytes) -> None:
    """Raise Torn unless `data` is a whole file of the kind its name says (.mp4/.m4s boxes, .ts packets)."""
    if url.endswith(".ts"):
        if not data or len(data) % TS_PACKET or any(data[i] != 0x47 for i in range(0, len(data), TS_PACKET)):
            raise Torn(f"{url}: {len(data)} bytes are not whole transport stream packets")
        return
    try:
        kinds = [kind for kind, _at, _size in iter_boxes(data)]
    except ValueError as exc:
        raise Torn(f"{url}: {exc} ({len(data)} bytes)") from None
    wanted = {"moof", "mdat"} if url.endswith(".m4s") else {"ftyp", "moov"}
    if url.endswith(".mp4") and not url.endswith("init.mp4"):
        wanted.add("mdat")
    if not wanted <= set(kinds):
        raise Torn(f"{url}: boxes {kinds} lack {sorted(wanted - set(kinds))}")
