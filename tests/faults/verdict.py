"""The fault suites' verdict on a recording: VOD by the files' own word, and the segments every VOD playlist lists.

Both read through the front (nginx) at `base`, as players do, and check every file a playlist names is whole.
"""

from __future__ import annotations

from collections.abc import Callable

import requests

from tests.faults.answers import check_media, m3u8_urls, mpd_urls

RUNGS = ("HIGH", "MEDIUM", "LOW")


def is_vod(base: str, video_id: int) -> bool:
    """Return whether the video is VOD and every playlist the verdict reads says so.

    The switch is committed before the files are rewritten (publishing.py), so a VOD video's files may show the
    live listing for a moment: the verdict waits for the files' own word, not the database's.
    """
    files = f"{base}/video_files/{video_id}"
    try:
        answers = {
            "video": requests.get(f"{base}/video/{video_id}", timeout=20),
            "android": requests.get(f"{base}/live_mpd/{video_id}.mpd", timeout=20),
            "dash": requests.get(f"{files}/manifest.mpd", timeout=20),
            "master": requests.get(f"{files}/master.m3u8", timeout=20),
            **{rung: requests.get(f"{files}/{rung}/playlist.m3u8", timeout=20) for rung in RUNGS},
            **{f"legacy {rung}": requests.get(f"{base}/live_m3u8/{video_id}/{rung}/stream.m3u8", timeout=20) for rung in RUNGS},
        }
    except requests.RequestException:
        return False
    if any(answer.status_code != 200 for answer in answers.values()):
        return False
    return (
        answers["video"].json()["type"] == "VOD"
        and answers["android"].headers.get("streamEnded") == "true"
        and 'type="static"' in answers["dash"].text
        and "vod.m3u8" in answers["master"].text
        and all(answers[name].text.endswith("#EXT-X-ENDLIST\n") for rung in RUNGS for name in (rung, f"legacy {rung}"))
    )


def published(base: str, video_id: int | None) -> set[int]:
    """Segment ids every VOD playlist of the video lists, after checking each file they name is whole.

    The VOD playlists are the finished DASH MPD, the Android MPD and the HLS media playlists the finished
    master names (its VOD ones). The EVENT playlists (`playlist.m3u8`, the legacy TS `stream.m3u8`) keep the
    live list, append-only (RFC 8216 6.2.1): each must be whole, name only stored segments and end.
    """
    master = f"{base}/video_files/{video_id}/master.m3u8"
    manifests = {
        f"{base}/video_files/{video_id}/manifest.mpd": mpd_urls,
        f"{base}/live_mpd/{video_id}.mpd": mpd_urls,
        **{url: m3u8_urls for url in _fetched(master, m3u8_urls)},
    }
    found = [_listed(url, parse) for url, parse in manifests.items()]
    vod = set.intersection(*found)
    events = [f"{base}/video_files/{video_id}/{rung}/playlist.m3u8" for rung in RUNGS]
    events += [f"{base}/live_m3u8/{video_id}/{rung}/stream.m3u8" for rung in RUNGS]
    for url in events:
        assert _listed(url, m3u8_urls) <= vod, f"{url} names a segment the VOD does not"
        assert requests.get(url, timeout=20).text.endswith("#EXT-X-ENDLIST\n"), f"{url} never ended"
    return vod


def _fetched(url: str, parse: Callable[[str, str], list[str]]) -> list[str]:
    response = requests.get(url, timeout=20)
    assert response.status_code == 200, f"{url}: {response.status_code}"
    return parse(url, response.text)


def _listed(url: str, parse: Callable[[str, str], list[str]]) -> set[int]:
    """The segment ids a playlist names, once every file it names was fetched and found whole."""
    names = _fetched(url, parse)
    for name in names:
        media = requests.get(name, timeout=20)
        assert media.status_code == 200, f"{name} named by {url}: {media.status_code}"
        check_media(name, media.content)
    return {int(n.rsplit("/", 1)[1].split(".")[0]) for n in names if not n.endswith("init.mp4")}
