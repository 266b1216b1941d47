"""The retry policy: what happens after each kind of failure, at each attempt."""

import pytest

from server.core.retry import Failure, Policy, after_failure

POLICY = Policy(max_attempts=4, backoff=2.0)


@pytest.mark.parametrize("failure", [Failure.CRASH, Failure.LOST])
def test_transient_failures_back_off_doubling_then_give_up(failure):
    decisions = [after_failure(POLICY, spent, failure) for spent in (1, 2, 3, 4)]
    assert [d.retry_in for d in decisions] == [2.0, 4.0, 8.0, None]
    assert [d.give_up for d in decisions] == [False, False, False, True]
    assert all(d.spends_attempt for d in decisions)


def test_undecodable_media_gives_up_at_once():
    decision = after_failure(POLICY, 1, Failure.MEDIA)
    assert decision.give_up and decision.retry_in is None


def test_a_full_disk_spends_nothing_and_waits_the_longest_backoff_forever():
    for spent in (1, 4, 40):
        decision = after_failure(POLICY, spent, Failure.DISK_FULL)
        assert not decision.give_up and not decision.spends_attempt and decision.retry_in == 16.0


def test_one_attempt_allowed_means_no_retry():
    assert after_failure(Policy(max_attempts=1, backoff=5.0), 1, Failure.CRASH).give_up


def test_a_store_that_does_not_answer_spends_nothing_and_retries_soon_forever():
    for spent in (1, 4, 40):
        decision = after_failure(POLICY, spent, Failure.STORE)
        assert not decision.give_up and not decision.spends_attempt and decision.retry_in == 2.0


def test_the_encoder_names_a_store_outage_the_stores_fault_never_the_medias():
    from server.core.errors import StorageUnavailable
    from server.worker.encoding import classify

    assert classify(StorageUnavailable("the object store did not answer to read")) is Failure.STORE
