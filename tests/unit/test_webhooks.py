"""Webhooks' pure rules: the signature, the retry schedule, the mapping from the event log, the checks of input."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime, timedelta

import pytest

from server.errors import InvalidInput
from server.ingest_health import is_stalled
from server.models import Event
from server.webhooks import (
    EVENTS,
    Policy,
    check_events,
    check_url,
    hook_event,
    next_attempt,
    payload,
    retry_delay,
    sign,
)
from tests.harness.receivers import verify

T0 = datetime(2026, 1, 1, 12, 0, 0)
BODY = b'{"event":"video.live","video_id":7}'


def test_the_signature_is_hmac_sha256_of_the_timestamp_a_dot_and_the_body():
    header = sign("s3cret", BODY, 1767268800)
    expected = hmac.new(b"s3cret", b"1767268800." + BODY, hashlib.sha256).hexdigest()
    assert header == f"t=1767268800,v1={expected}"


def test_verify_accepts_the_signature_and_refuses_any_change():
    header = sign("s3cret", BODY, 1000)
    assert verify("s3cret", BODY, header, now=1000)
    assert verify("s3cret", BODY, header, now=1300)  # within the 5 minutes' tolerance
    assert not verify("s3cret", BODY, header, now=1301)  # a replay after the tolerance
    assert not verify("other", BODY, header, now=1000)
    assert not verify("s3cret", BODY + b" ", header, now=1000)
    assert not verify("s3cret", BODY, header.replace("t=1000", "t=1001"), now=1000)
    for broken in ("", "t=x,v1=00", "v1=" + header.split("v1=")[1], "t=1000"):
        assert not verify("s3cret", BODY, broken, now=1000)


def test_the_delay_doubles_from_10_s_up_to_an_hour():
    policy = Policy()
    assert [retry_delay(n, policy) for n in range(1, 13)] == [10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600, 3600, 3600]
    assert retry_delay(10**6, policy) == 3600  # no overflow however many tries
    with pytest.raises(ValueError):
        retry_delay(0, policy)


def test_next_attempt_stays_inside_the_window_and_gives_up_at_its_end():
    policy = Policy(backoff=10, backoff_max=3600, give_up=86400)
    end = T0 + timedelta(days=1)
    assert next_attempt(T0, T0 + timedelta(seconds=5), 1, policy) == T0 + timedelta(seconds=15)
    assert next_attempt(T0, end - timedelta(seconds=100), 30, policy) == end  # the last try at the end, not after it
    assert next_attempt(T0, end, 31, policy) is None
    assert next_attempt(T0, end + timedelta(seconds=1), 31, policy) is None


def test_a_receiver_down_for_good_is_tried_for_a_day_then_given_up():
    # An independent replay of the schedule: the tries' times are the sums of the delays, capped at the day.
    policy = Policy()
    times, now, tries = [], T0, 0
    while now is not None and tries < 1000:
        times.append(now)
        tries += 1
        now = next_attempt(T0, now, tries, policy)
    delays = [10 * 2**i for i in range(9)]  # 10 .. 2560
    expected = [T0]
    for d in delays:
        expected.append(expected[-1] + timedelta(seconds=d))
    while expected[-1] + timedelta(seconds=3600) < T0 + timedelta(days=1):
        expected.append(expected[-1] + timedelta(seconds=3600))
    expected.append(T0 + timedelta(days=1))
    assert times == expected
    assert len(times) == 33


@pytest.mark.parametrize(
    ("kind", "video_id", "expected"),
    [
        ("segment.packaged", 7, ("video.live", "video.live:7")),
        ("video.finished", 7, ("video.vod", "video.vod:7")),
        ("segment.failed", 7, ("segment.failed", "event:42")),
        ("video.stalled", 7, ("stream.stalled", "event:42")),
        ("worker.lost", None, ("worker.lost", "event:42")),
        ("video.uploading", 7, None),
        ("segment.encoded", 7, None),
        ("attempt.failed", 7, None),
        ("worker.stopped", None, None),
        ("segment.packaged", None, None),
    ],
)
def test_the_mapping_from_the_event_log(kind, video_id, expected):
    assert hook_event(kind, 42, video_id) == expected


def test_every_mapped_event_is_one_an_admin_can_ask_for():
    made = {hook_event(k, 1, 1) for k in ("segment.packaged", "video.finished", "segment.failed", "video.stalled", "worker.lost")}
    assert {m[0] for m in made if m} == set(EVENTS)


def test_the_payload_names_the_event_and_carries_the_log_events_data():
    event = Event(id=42, at=T0, kind="segment.failed", video_id=7, segment_id=3, worker_id=None, data='{"error":"x"}')
    assert json.loads(payload("segment.failed", event)) == {
        "event": "segment.failed",
        "event_id": 42,
        "at": "2026-01-01T12:00:00.000000Z",
        "video_id": 7,
        "segment_id": 3,
        "worker_id": None,
        "data": {"error": "x"},
    }


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8080/hook", "https://example.com/a?b=c", "https://[::1]:9/x", "http://hooks.example"]
)
def test_http_and_https_urls_are_accepted(url):
    assert check_url(url) == url


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/x",
        "file:///etc/passwd",
        "gopher://example.com",
        "javascript:alert(1)",
        "example.com/hook",
        "http://",
        "http://user:pw@example.com/",
        "http://example.com:99999/",
        "http://example.com/a b",
        "http://example.com/\n",
        "http://exämple.com/",
        "http://example.com/#frag",
        "http://example.com/" + "a" * 2000,
        "",
        None,
        42,
    ],
)
def test_other_urls_are_refused_naming_the_field(url):
    with pytest.raises(InvalidInput) as refused:
        check_url(url)
    assert refused.value.field == "url"  # type: ignore[attr-defined]


def test_events_are_a_list_or_a_comma_list_of_known_names():
    assert check_events("video.live, video.vod") == ("video.live", "video.vod")
    assert check_events(["worker.lost", "worker.lost"]) == ("worker.lost",)
    for bad in ("", [], "video.live,video.gone", ["x"], 7, [1], None, {"video.live": 1}):
        with pytest.raises(InvalidInput):
            check_events(bad)


def test_a_stall_is_three_segment_durations_without_an_upload_while_not_ended():
    newest = T0
    assert not is_stalled(newest, now=T0 + timedelta(seconds=9), segment_seconds=3.0, last_segment_id=None)
    assert is_stalled(newest, now=T0 + timedelta(seconds=9.001), segment_seconds=3.0, last_segment_id=None)
    assert not is_stalled(newest, now=T0 + timedelta(seconds=60), segment_seconds=3.0, last_segment_id=4)  # ended
    assert not is_stalled(None, now=T0, segment_seconds=3.0, last_segment_id=None)  # nothing uploaded yet
