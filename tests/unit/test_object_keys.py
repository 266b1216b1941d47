"""Object keys and prefixes are checked in one place (server/store/objects.py checked_key / checked_prefix)."""

import pytest

from server.store.objects import UnsafeKey, checked_key, checked_prefix

GOOD_KEYS = ["x", "videos/12/HIGH/000003.m4s", "videos/1/audio/init.mp4", "a-b_c=d/e.f.g", "v/1/storyboard.vtt", "k" * 512]
BAD_KEYS = [
    "", "/videos/1", "videos/1/", "videos//1", "..", "../x", "x/..", "x/../y", ".", "./x", "x/./y", ".hidden",
    "x/.tmp-1", "a b", "a\tb", "a\\b", "a\nb", "a\x00b", "vidéos", "a?b", "a#b", "a%2Fb", "a*", "k" * 513, None, b"x",
]  # fmt: skip


@pytest.mark.parametrize("key", GOOD_KEYS)
def test_safe_keys_pass(key):
    assert checked_key(key) == key


@pytest.mark.parametrize("key", BAD_KEYS)
def test_unsafe_keys_are_refused(key):
    with pytest.raises(UnsafeKey):
        checked_key(key)


@pytest.mark.parametrize("prefix", ["", "videos/", "videos/1/", "videos/1/HI", "v"])
def test_safe_prefixes_pass(prefix):
    assert checked_prefix(prefix) == prefix


@pytest.mark.parametrize("prefix", ["/", "/videos", "videos//", "../", "videos/../", ".x", "videos/.t", "a b", None])
def test_unsafe_prefixes_are_refused(prefix):
    with pytest.raises(UnsafeKey):
        checked_prefix(prefix)
