"""Webhooks' pure rules: the signature, the retry schedule, the mapping from the event log, the checks of input,
which receiver addresses are refused, the result classes a try records, and how hooks share the send threads."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime, timedelta

import pytest

from server.core.errors import InvalidInput
from server.core.ingest_health import is_stalled
from server.infra.models import Event
from server.ops.webhooks import (
    EVENTS,
    RESULTS,
    Policy,
    address_kind,
    check_events,
    check_url,
    hook_event,
    may_start,
    next_attempt,
    payload,
    refusal,
    retry_delay,
    send_order,
    sign,
    status_class,
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
        ("video.deleted", 7, ("video.deleted", "video.deleted:7")),
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
    made = {hook_event(k, 1, 1) for k in ("segment.packaged", "video.finished", "segment.failed", "video.stalled", "worker.lost", "video.deleted")}
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


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped: the IPv4 address inside is what is reached
        ("64:ff9b::7f00:1", "loopback"),  # NAT64's well-known prefix, likewise
        ("2002:7f00:1::", "loopback"),  # 6to4, likewise
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("100.64.0.1", "private"),  # carrier-grade NAT (shared address space)
        ("fc00::1", "private"),
        ("fd12:3456::1", "private"),
        ("192.0.2.1", "private"),  # documentation: not routed on the internet
        ("169.254.169.254", "link-local"),  # the cloud metadata service
        ("fe80::1", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("224.0.0.1", "multicast"),
        ("239.1.2.3", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("::127.0.0.1", "reserved"),  # IPv4-compatible IPv6, long deprecated
        ("8.8.8.8", None),
        ("93.184.216.34", None),
        ("2606:4700::1111", None),
        ("64:ff9b::808:808", None),  # NAT64 of a public address
    ],
)
def test_which_receiver_addresses_are_refused(address, kind):
    assert address_kind(address) == kind
    assert refusal(address, allow_private=False) == kind
    allowed_with_setting = kind in (None, "loopback", "private", "link-local")
    assert refusal(address, allow_private=True) == (None if allowed_with_setting else kind)


@pytest.mark.parametrize(
    ("status", "result"),
    [
        (200, "2xx"),
        (204, "2xx"),
        (299, "2xx"),
        (101, "1xx"),
        (302, "3xx"),
        (404, "4xx"),
        (503, "5xx"),
        (600, "not_http"),
        (999, "not_http"),
    ],
)
def test_an_http_answer_is_recorded_as_its_class(status, result):
    assert status_class(status) == result
    assert result in RESULTS


def test_hooks_whose_last_try_timed_out_go_behind_the_others():
    due = [(1, T0), (2, T0 + timedelta(seconds=1)), (3, T0 - timedelta(seconds=60)), (4, T0), (5, T0 + timedelta(seconds=2))]
    assert send_order(due, slow=set()) == [3, 1, 4, 2, 5]  # oldest due first, then by hook
    assert send_order(due, slow={3, 1}) == [4, 2, 5, 3, 1]  # the slow ones last, however old their retries
    assert send_order([], slow={1}) == []


@pytest.mark.parametrize(
    ("hook_id", "slow", "busy", "busy_slow", "threads", "allowed"),
    [
        (1, False, set(), 0, 4, True),
        (1, False, {1}, 0, 4, False),  # one try in flight per hook
        (5, False, {1, 2, 3, 4}, 0, 4, False),  # every thread taken
        (5, False, {1, 2, 3}, 2, 4, True),  # a healthy hook takes any free thread
        (5, True, {1}, 1, 4, True),  # slow hooks hold at most half the threads
        (5, True, {1, 2}, 2, 4, False),
        (5, True, {1, 2}, 1, 4, True),
        (2, True, set(), 0, 1, True),  # one thread: the slow get it when it is free (behind the healthy ones)
        (2, True, {1}, 1, 1, False),
        (4, True, {1, 2}, 2, 5, False),  # half of 5 is 2
    ],
)
def test_a_try_takes_a_thread_only_within_its_share(hook_id, slow, busy, busy_slow, threads, allowed):
    assert may_start(hook_id, slow=slow, busy=busy, busy_slow=busy_slow, threads=threads) is allowed
