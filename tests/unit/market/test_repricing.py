"""Re-pricing without a chain: the steps and their ceiling, when a task is due, the
record on disk, and the decision that resumes a re-price cut short (the chain wins over
the record, so no step is done twice)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from provingmarket.chain.client import ClientError
from provingmarket.formats import DUTCH, OPEN_RACE, Link, TaskTerms, encode_chain
from provingmarket.market import repricing
from provingmarket.market.preferences import Preferences
from provingmarket.market.repricing import (
    CANCELLED,
    CANCELLING,
    ENDED,
    POSTING,
    REPOSTED,
    TAKEN,
    WATCHING,
    Entry,
    Policy,
    Seen,
    Step,
)

ETHER = 10**18
MILLI = ETHER // 1000
TERMS = TaskTerms(
    market_id=1,
    requester="0x" + "11" * 20,
    posted_at=1_000,
    inputs_commitment=b"\x01" * 32,
    prover_input_hash=b"\x02" * 32,
    max_reward=10 * MILLI,
    frontend_fee=MILLI,
    assign_window=100,
    proving_window=300,
    collateral=ETHER // 10,
    capabilities=0,
    redundancy=2,
    mechanism_id=3,
    start_price=0,
    ramp=0,
    decay=False,
    decay_floor=0,
    salt=7,
)
POLICY = Policy(after=5_000, step=Step(bps=2_500), ceiling=40 * MILLI)


def seen(
    now: int = 1_050, open: int = 2, assigned: int = 0, proven: int = 0, closed: int = 0, **more
) -> Seen:
    values = dict(cancelled_slots=None, reposted_as=None) | more
    return Seen(now, TERMS, open, assigned, proven, closed, **values)


def entry(stage: str = WATCHING, reward: int | None = None) -> Entry:
    return Entry("0x" + "ab" * 32, TERMS.requester, POLICY, stage=stage, reward=reward)


# ------------------------------------------------------------------ the arithmetic


@pytest.mark.parametrize(
    ("text", "step"),
    [
        ("25%", Step(bps=2_500)),
        ("0.5%", Step(bps=50)),
        ("150 %", Step(bps=15_000)),
        ("0.001", Step(wei=MILLI)),
    ],
)
def test_parse_step__a_share_or_ether__as_basis_points_or_wei(text, step):
    assert repricing.parse_step(text) == step


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0%", "out of range"),
        ("0.001%", "steps of 0.01%"),
        ("abc%", "not a percentage"),
        ("0", "is 0: each re-price must raise"),
        ("-1", "negative"),
    ],
)
def test_parse_step__zero_or_malformed__says_what_to_write(text, message):
    with pytest.raises(ClientError, match=message):
        repricing.parse_step(text)


@pytest.mark.parametrize("text", ["0", "1", "1.5", "-0.1", "half", "0.00001"])
def test_parse_after__outside_the_window_or_malformed__refused(text):
    with pytest.raises(ClientError, match="--reprice-after"):
        repricing.parse_after(text)


def test_parse_after__a_share__in_basis_points():
    assert repricing.parse_after("0.5") == 5_000
    assert repricing.parse_after("0.0001") == 1


def test_next_reward__steps_up_by_the_share_then_stops_at_the_ceiling():
    rewards, reward = [], 10 * MILLI
    while (reward := repricing.next_reward(reward, MILLI, 2, POLICY)) is not None:
        rewards.append(reward)
    # 40 milli-ether in all for 2 slots of reward + 1 milli fee: at most 19 milli each.
    assert rewards == [12_500_000_000_000_000, 15_625_000_000_000_000, 19 * MILLI]


def test_next_reward__fewer_slots__more_per_slot_under_the_same_ceiling():
    one = repricing.next_reward(10 * MILLI, MILLI, 1, replace(POLICY, step=Step(wei=100 * MILLI)))
    assert one == 39 * MILLI


def test_next_reward__at_or_above_the_ceiling__none():
    assert repricing.next_reward(19 * MILLI, MILLI, 2, POLICY) is None
    assert repricing.next_reward(30 * MILLI, MILLI, 2, POLICY) is None


@given(
    reward=st.integers(1, 10**20),
    fee=st.integers(0, 10**18),
    slots=st.integers(1, 8),
    ceiling=st.integers(1, 10**21),
    step=st.one_of(st.builds(Step, bps=st.integers(1, 10**6)), st.builds(Step, wei=st.integers(1, 10**19))),
)
def test_next_reward__any_terms__raises_and_never_passes_the_ceiling(reward, fee, slots, ceiling, step):
    new = repricing.next_reward(reward, fee, slots, Policy(5_000, step, ceiling))
    if new is not None:
        assert new > reward
        assert slots * (new + fee) <= ceiling
        assert new <= step.raised(reward)


def test_due_at__a_share_of_the_assignment_window_after_posting_rounded_up():
    assert repricing.due_at(TERMS, POLICY) == 1_050
    assert repricing.due_at(replace(TERMS, assign_window=99), replace(POLICY, after=3_333)) == 1_033


def test_check_repriceable__open_race_or_escrow_above_the_ceiling__refused():
    with pytest.raises(ClientError, match="open race"):
        repricing.check_repriceable(replace(TERMS, mechanism_id=OPEN_RACE), POLICY)
    with pytest.raises(ClientError, match="below what the task already escrows"):
        repricing.check_repriceable(TERMS, replace(POLICY, ceiling=TERMS.escrow() - 1))
    repricing.check_repriceable(replace(TERMS, mechanism_id=DUTCH, frontend_fee=0), POLICY)


def test_policy_for__router_limits__a_policy_up_to_max_price_within_max_time():
    terms = {"mechanism_id": 3, "redundancy": 1, "max_reward": 10 * MILLI, "frontend_fee": 0}
    policy = repricing.policy_for(Preferences(1, 1, 1, 1, max_time=900, max_price=30 * MILLI), terms, now=500)
    assert policy == Policy(repricing.DEFAULT_AFTER, Step(bps=2_500), 30 * MILLI, deadline=1_400)
    assert repricing.policy_for(Preferences(1, 1, 1, 1), terms, now=500) is None  # no price limit
    assert repricing.policy_for(Preferences(1, 1, 1, 1, max_price=10 * MILLI), terms, now=500) is None
    race = terms | {"mechanism_id": OPEN_RACE}
    assert repricing.policy_for(Preferences(1, 1, 1, 1, max_price=ETHER), race, now=500) is None


# ------------------------------------------------------------------ the decision


def test_decide__before_the_share__waits_until_due():
    assert repricing.decide(entry(), seen(now=1_049)) == repricing.Action("wait", until=1_050)


def test_decide__due_and_untaken__cancels_to_post_one_step_up():
    assert repricing.decide(entry(), seen(now=1_050)) == repricing.Action(
        "cancel", reward=12_500_000_000_000_000
    )


@pytest.mark.parametrize(
    ("chain", "stage"),
    [
        (dict(open=1, assigned=1), TAKEN),
        (dict(open=1, proven=1), TAKEN),
        (dict(open=0, closed=2), ENDED),
        (dict(now=1_101), ENDED),
    ],
)
def test_decide__a_slot_taken_closed_or_window_over__stops_without_cancelling(chain, stage):
    assert repricing.decide(entry(), seen(**chain)).stage == stage


def test_decide__at_the_ceiling__stops_and_lets_the_task_run():
    action = repricing.decide(entry(), replace(seen(), terms=replace(TERMS, max_reward=19 * MILLI)))
    assert (action.kind, action.stage) == ("stop", ENDED)
    assert "ceiling" in action.note


def test_decide__a_proof_could_not_come_by_the_deadline__stops():
    late = Entry("0x" + "ab" * 32, TERMS.requester, replace(POLICY, deadline=1_300))
    assert repricing.decide(late, seen()).stage == ENDED


@pytest.mark.parametrize("stage", [WATCHING, CANCELLING, CANCELLED, POSTING])
def test_decide__crash_after_the_cancel__posts_the_slots_it_closed_at_the_recorded_price(stage):
    action = repricing.decide(
        entry(stage, reward=15 * MILLI), seen(open=0, assigned=1, closed=1, cancelled_slots=1)
    )
    assert action == repricing.Action("post", slots=1, reward=15 * MILLI)


def test_decide__cancelled_by_hand__posts_one_step_up_for_the_slots_closed():
    action = repricing.decide(entry(), seen(open=0, closed=2, cancelled_slots=2))
    assert action == repricing.Action("post", slots=2, reward=12_500_000_000_000_000)


def test_decide__every_slot_taken_before_the_cancel__nothing_to_post():
    assert repricing.decide(entry(CANCELLING), seen(open=0, assigned=2, cancelled_slots=0)).stage == TAKEN


@pytest.mark.parametrize("stage", [WATCHING, CANCELLING, CANCELLED, POSTING])
def test_decide__crash_after_the_post__found_by_its_salt_never_posted_twice(stage):
    action = repricing.decide(
        entry(stage, reward=15 * MILLI), seen(open=0, closed=2, cancelled_slots=2, reposted_as="0xcd")
    )
    assert action == repricing.Action("stop", REPOSTED, reposted_as="0xcd")


def test_decide__record_says_cancelled_but_the_chain_has_no_cancel__refused():
    with pytest.raises(ClientError, match="the chain has no cancel"):
        repricing.decide(entry(POSTING, reward=15 * MILLI), seen())


def test_decide__crash_before_the_cancel_was_sent__cancels_again():
    assert repricing.decide(entry(CANCELLING, reward=15 * MILLI), seen()).kind == "cancel"


# ------------------------------------------------------------------ the record


def test_record__saved_and_loaded__keeps_policies_stages_and_links(tmp_path):
    path = tmp_path / "repricing-1.json"
    record = repricing.load(path, 1, "0x" + "22" * 20)
    first = repricing.opt_in(record, "0x01", TERMS.requester, POLICY)
    first.stage, first.reward = CANCELLED, 15 * MILLI
    repricing._reposted(record, first, "0x02")
    record.save()
    again = repricing.load(path, 1, "0x" + "22" * 20)
    assert again.entries == record.entries
    assert again.chain_of("0x02") == again.chain_of("0x01") == ["0x01", "0x02"]
    assert [e.task_id for e in again.watched(TERMS.requester)] == ["0x02"]
    assert not path.with_name(path.name + ".part").exists()


def test_record__another_chain_or_unreadable__refused_with_what_to_do(tmp_path):
    path = tmp_path / "repricing-1.json"
    repricing.Record(path, 1, "0x" + "22" * 20).save()
    with pytest.raises(ClientError, match="give --reprice-state FILE"):
        repricing.load(path, 5, "0x" + "22" * 20)
    path.write_text("{not json")
    with pytest.raises(ClientError, match="move it away"):
        repricing.load(path, 1, "0x" + "22" * 20)
    assert repricing.Policy.from_data(json.loads(json.dumps(POLICY.data()))) == POLICY


def test_reposts__the_salt_read_as_the_old_task_id():
    old = "0x" + "ab" * 32
    assert repricing.reposts(replace(TERMS, salt=int(old, 16))) == old


def test_check_repriceable__a_chain_with_a_race_link__refused_in_one_line():
    """Cancelling is refused while a chain's race link runs: such a chain is never watched."""
    chained = replace(
        TERMS, mechanism_id=encode_chain([Link(3, TERMS.assign_window // 2), Link(OPEN_RACE, 60)])
    )
    with pytest.raises(ClientError, match="open race link"):
        repricing.check_repriceable(chained, POLICY)
    without_race = replace(TERMS, mechanism_id=encode_chain([Link(3, 30), Link(4, TERMS.assign_window - 30)]))
    repricing.check_repriceable(without_race, POLICY)
