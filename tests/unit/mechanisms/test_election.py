"""The election mechanism (frontends/election/mechanism.py) with no chain: the draw is reproducible,
a function of the task, the randomness and the eligible set only, and uniform (chi-square
tests over many fixed seeds); eligibility follows every registry rule; a round's outcome
and the next round's block follow the stated rules; and the verdict catches every way a
frontend could stray from the draw.

Uniformity: each chi-square test compares the counts of N draws with fixed seeds with the
uniform expectation, at significance level ALPHA = 0.001: a uniform draw fails a test with
a fresh set of seeds once in a thousand. The seeds are fixed (keccak of the draw's index),
so each test's result is the same on every run; a biased drawer fails it (checked below).
"""

from __future__ import annotations

import itertools
import json
import math
from collections import Counter
from dataclasses import replace

import pytest
from eth_utils import keccak, to_checksum_address

from frontends.book import MarketState, MembershipState, OpenTask, ProverState, Snapshot, eligible_provers
from frontends.election.mechanism import (
    BLOCKHASH,
    DRAWN,
    FULL,
    NONE,
    OVER,
    PREVRANDAO,
    Draw,
    draw,
    make_round,
    next_round_block,
    seed,
    ticket,
    verify_rounds,
)
from frontends.election.mechanism import randomness as block_randomness
from provingmarket.chain.client import Event
from provingmarket.formats import TaskTerms
from tests.factories import offchain_member, offchain_terms

ALPHA = 0.001
Z_ALPHA = 3.090232306  # the standard normal's 1 - ALPHA quantile
TASK = keccak(b"election test task")
TEN = [to_checksum_address("0x" + f"{i:040x}") for i in range(1, 11)]
MECHANISM = 5
NOW = 10_000
FRONTEND = to_checksum_address("0x" + "f1" * 20)
OTHER_FRONTEND = to_checksum_address("0x" + "f2" * 20)


def randomness(i: int) -> bytes:
    return keccak(b"randomness" + i.to_bytes(8, "big"))


def critical_value(df: int, z: float = Z_ALPHA) -> float:
    """The chi-square distribution's 1 - ALPHA quantile by the Wilson-Hilferty
    approximation (scipy is not installed): within 1% of the exact value for df >= 9 at
    this level, a little above it (so the test is a little lenient, never stricter)."""
    a = 2 / (9 * df)
    return df * (1 - a + z * math.sqrt(a)) ** 3


def chi_square(counts: Counter, cells: list) -> float:
    total = sum(counts.values())
    expected = total / len(cells)
    assert set(counts) <= set(cells)
    return sum((counts.get(cell, 0) - expected) ** 2 / expected for cell in cells)


def test_critical_value__matches_the_table_for_nine_degrees_of_freedom():
    assert critical_value(9) == pytest.approx(27.877, rel=0.01)  # tables: chi2(0.999, 9) = 27.877
    assert critical_value(9) >= 27.877


# ------------------------------------------------------------------ the draw


def test_draw__the_same_task_randomness_and_eligible_set__the_same_winners_in_any_order():
    first = draw(TASK, TEN, randomness(1), 3)
    assert draw(TASK, list(reversed(TEN)), randomness(1), 3) == first
    assert draw(TASK, [a.lower() for a in TEN], randomness(1), 3) == first
    assert len(set(first)) == 3 and set(first) <= set(TEN)


def test_draw__is_the_lowest_tickets_keccak_of_the_seed_and_each_address():
    s = seed(TASK, randomness(7))
    assert s == keccak(TASK + randomness(7))
    by_ticket = sorted(TEN, key=lambda p: ticket(s, p))
    assert ticket(s, TEN[0]) == int.from_bytes(keccak(s + bytes.fromhex(TEN[0][2:])), "big")
    assert draw(TASK, TEN, randomness(7), 4) == tuple(by_ticket[:4])


def test_draw__the_randomness_and_the_task_each_change_the_winners():
    drawn = {draw(TASK, TEN, randomness(i), 2) for i in range(20)}
    other_tasks = {draw(keccak(bytes([i])), TEN, randomness(1), 2) for i in range(20)}
    assert len(drawn) > 10 and len(other_tasks) > 10


def test_draw__more_slots_than_provers__draws_them_all__none_asked__none_drawn():
    assert sorted(draw(TASK, TEN[:3], randomness(1), 5)) == sorted(TEN[:3])
    assert draw(TASK, TEN, randomness(1), 0) == ()
    assert draw(TASK, [], randomness(1), 2) == ()


def test_draw__a_prover_twice_or_a_short_randomness__is_refused():
    with pytest.raises(ValueError, match="twice"):
        draw(TASK, [TEN[0], TEN[0].lower()], randomness(1), 1)
    with pytest.raises(ValueError, match="32 bytes"):
        draw(TASK, TEN, b"\x01" * 31, 1)


def test_draw__one_of_ten__every_prover_equally_likely__chi_square():
    counts = Counter(draw(TASK, TEN, randomness(i), 1)[0] for i in range(20_000))
    assert chi_square(counts, TEN) < critical_value(len(TEN) - 1)


def test_draw__two_of_ten__every_ordered_pair_equally_likely__chi_square():
    """Both who wins and in which rank: 90 ordered pairs, 20,000 draws."""
    cells = list(itertools.permutations(TEN, 2))
    counts = Counter(draw(TASK, TEN, randomness(100_000 + i), 2) for i in range(20_000))
    assert chi_square(counts, cells) < critical_value(len(cells) - 1)


def test_draw__three_of_six__every_subset_equally_likely__chi_square():
    six = TEN[:6]
    cells = [frozenset(c) for c in itertools.combinations(six, 3)]
    counts = Counter(
        frozenset(draw(keccak(b"another"), six, randomness(200_000 + i), 3)) for i in range(10_000)
    )
    assert chi_square(counts, cells) < critical_value(len(cells) - 1)


def test_chi_square__a_biased_drawer__is_rejected():
    """The test has teeth: a drawer that clips a 4-bit number to an index (the last prover
    wins 7 times in 16) is rejected at once, and one with modulo bias (a byte of the seed
    mod 10: the first six provers win 26 times in 256, the last four 25) once there are
    enough draws to see a 4% difference. The election reduces nothing modulo anything."""

    def modulo_biased(i: int) -> str:
        return TEN[seed(TASK, randomness(i))[0] % 10]

    def four_bits(i: int) -> str:
        return TEN[min(seed(TASK, randomness(i))[0] % 16, 9)]

    assert chi_square(Counter(four_bits(i) for i in range(20_000)), TEN) > critical_value(9)
    # expected chi-square: 9 degrees of freedom + 200,000 x 10 x sum of squared biases = about 82
    assert chi_square(Counter(modulo_biased(i) for i in range(200_000)), TEN) > critical_value(9)


# ------------------------------------------------------------------ eligibility


def terms(**overrides) -> TaskTerms:
    return offchain_terms(
        **{
            "posted_at": NOW - 10,
            "capabilities": 0b0101,
            "redundancy": 2,
            "mechanism_id": MECHANISM,
            **overrides,
        }
    )


def member(prover: str, **overrides) -> MembershipState:
    return offchain_member(
        prover,
        **{
            "ask": 100,
            "capacity": 2,
            "used": 1,
            "proving_time": 300,
            "capabilities": 0b0111,
            "mechanisms": frozenset({MECHANISM}),
            **overrides,
        },
    )


def eligible(memberships, barred=(), paused=False, now=NOW, stake=10, **term_overrides) -> list[str]:
    provers = {m.prover for m in memberships}
    snap = Snapshot(
        now=now,
        mechanisms={MECHANISM},
        markets=[MarketState(1, paused)],
        provers=[ProverState(p, stake) for p in provers],
        memberships=memberships,
    )
    return eligible_provers(snap, OpenTask(TASK, terms(**term_overrides), 2, frozenset(barred)))


@pytest.mark.parametrize(
    "why, membership",
    [
        ("in another market", dict(market_id=2)),
        ("does not accept the mechanism", dict(mechanisms=frozenset({MECHANISM + 1}))),
        ("at capacity", dict(used=2)),
        ("lacks a capability", dict(capabilities=0b0011)),
        ("too slow for the proving window", dict(proving_time=301)),
        ("asks more than the maximum reward", dict(ask=101)),
    ],
)
def test_eligible__a_prover_the_registry_would_refuse__is_left_out(why, membership):
    ok, refused = TEN[0], TEN[1]
    assert eligible([member(ok), member(refused, **membership)]) == [ok], why


def test_eligible__barred_poor_paused_or_late__nobody_or_not_that_prover():
    ok, other = TEN[0], TEN[1]
    both = [member(other), member(ok)]
    assert eligible(both) == [ok, other]  # sorted by address value
    assert eligible(both, barred=[other.lower()]) == [ok]
    assert eligible(both, stake=9) == []  # free stake below the collateral
    assert eligible(both, paused=True) == []
    assert eligible(both, now=NOW - 10 + 601) == []  # past the assignment window
    assert eligible(both, now=NOW - 10 + 600) == [ok, other]


# ------------------------------------------------------------------ rounds


def block_hash(n: int) -> str:
    return "0x" + keccak(n.to_bytes(8, "big")).hex()


def a_round(open_slots=2, assigned=0, eligible_set=TEN[:5], timestamp=NOW, block=102, round_=0) -> Draw:
    return make_round(
        TASK, round_, block, block_hash(block), timestamp, NOW + 500, open_slots, assigned, eligible_set
    )


def test_round__draws_min_of_open_slots_and_eligible__from_the_blocks_hash():
    d = a_round()
    assert d.kind == DRAWN and not d.short
    assert d.winners == draw(TASK, TEN[:5], bytes.fromhex(block_hash(102)[2:]), 2)
    assert d.eligible == tuple(sorted(TEN[:5], key=lambda a: int(a, 16)))


def test_round__too_few_eligible__draws_those_there_are_and_says_it_is_short():
    d = a_round(open_slots=3, eligible_set=TEN[:2])
    assert d.kind == DRAWN and d.short and sorted(d.winners) == sorted(TEN[:2])
    nobody = a_round(open_slots=3, eligible_set=[])
    assert (nobody.kind, nobody.winners, nobody.short) == (NONE, (), True)


def test_round__full_over_or_late__draws_nobody():
    assert a_round(open_slots=0, assigned=1).kind == FULL
    assert a_round(open_slots=0, assigned=0).kind == OVER
    late = a_round(timestamp=NOW + 501)
    assert (late.kind, late.winners) == (OVER, ())


def event(name: str, block: int, log_index: int = 0, **args) -> Event:
    return Event(name, args, block, "0x" + "00" * 32, log_index)


def assigned(
    prover: str, block: int, frontend: str = FRONTEND, price: int = 100, log_index: int = 0
) -> Event:
    return event("TaskAssigned", block, log_index, prover=prover, frontend=frontend, price=price, slot=0)


def skipped(prover: str, block: int, frontend: str = FRONTEND, log_index: int = 0) -> Event:
    return event(
        "AssignmentSkipped", block, log_index, prover=prover, frontend=frontend, reason="registry: x"
    )


def test_next_round__posted_plus_delay__then_the_frontends_report_plus_delay():
    assert next_round_block(None, 100, [], FRONTEND, 2) == 102
    drawn = a_round(block=102)
    assert next_round_block(drawn, 100, [], FRONTEND, 2) is None  # waits for the report
    # Another frontend's reports, and reports before the round, do not count.
    others = [assigned(TEN[0], 103, OTHER_FRONTEND), skipped(TEN[1], 101)]
    assert next_round_block(drawn, 100, others, FRONTEND, 2) is None
    assert (
        next_round_block(drawn, 100, [*others, skipped(TEN[1], 105), assigned(TEN[2], 106)], FRONTEND, 2)
        == 107
    )


def test_next_round__nobody_eligible_retries__full_waits_for_a_reopened_slot__over_ends():
    assert next_round_block(a_round(block=110, eligible_set=[]), 100, [], FRONTEND, 3) == 113
    full = a_round(open_slots=0, assigned=2, block=110)
    kept = event("Slashed", 115, reopened=False)
    assert next_round_block(full, 100, [kept], FRONTEND, 2) is None
    reopened = [event("Slashed", 108, reopened=True), kept, event("TaskDeclined", 120, reopened=True)]
    assert next_round_block(full, 100, reopened, FRONTEND, 2) == 122
    assert next_round_block(a_round(open_slots=0), 100, reopened, FRONTEND, 2) is None
    with pytest.raises(ValueError, match="delay 0"):
        next_round_block(None, 100, [], FRONTEND, 0)


# ------------------------------------------------------------------ the verdict


def two_rounds() -> tuple[list[Draw], list[Event]]:
    """Round 0 at 102 drew two of five; one was skipped (block 104), round 1 at 106 drew
    one more (assigned in 107)."""
    first = a_round(block=102)
    second = a_round(
        open_slots=1, block=106, round_=1, eligible_set=[p for p in TEN[:5] if p != first.winners[0]]
    )
    events = [
        assigned(first.winners[0], 104, log_index=1),
        skipped(first.winners[1], 104, log_index=2),
        assigned(second.winners[0], 107),
    ]
    return [first, second], events


def test_verdict__every_round_sent_whole_at_max_reward__matches():
    rounds, events = two_rounds()
    verdict = verify_rounds(rounds, [*events, assigned(TEN[9], 105, OTHER_FRONTEND)], FRONTEND, 100, 2)
    assert verdict.matches and verdict.checked == 3, verdict.problems


def test_verdict__winners_drawn_from_another_eligible_set__do_not_match():
    rounds, _ = two_rounds()
    tampered = draw(TASK, TEN[5:], bytes.fromhex(rounds[0].block_hash[2:]), 2)
    verdict = verify_rounds(rounds[:1], [assigned(p, 104) for p in tampered], FRONTEND, 100, 2)
    assert not verdict.matches
    assert "sent but not drawn" in verdict.problems[0] and "drawn but not sent" in verdict.problems[0]


@pytest.mark.parametrize("stray", ["subset", "twice", "price", "outside", "nothing"])
def test_verdict__a_frontend_straying_from_the_draw__does_not_match(stray):
    rounds, events = two_rounds()
    first = rounds[0]
    if stray == "subset":  # one winner withheld, to have its slot drawn again
        events = [events[0], assigned(rounds[1].winners[0], 107)]
        expected = "drawn but not sent"
    elif stray == "twice":
        events = [*events, assigned(first.winners[0], 104, log_index=3)]
        expected = "sent twice"
    elif stray == "price":
        events = [replace(events[0], args={**events[0].args, "price": 99}), *events[1:]]
        expected = "not the task's max_reward"
    elif stray == "outside":  # a second transaction after the round's report
        events = [*events, assigned(TEN[9], 105)]
        expected = "answers no round"
    else:
        events = []
        expected = ""
    verdict = verify_rounds(rounds, events, FRONTEND, 100, 2)
    assert not verdict.matches
    assert any(expected in p for p in verdict.problems) or (stray == "nothing" and verdict.checked == 0)


def test_verdict__a_round_not_sent_yet__is_pending_not_a_mismatch():
    rounds, events = two_rounds()
    verdict = verify_rounds(rounds, events[:2], FRONTEND, 100, 2)
    assert verdict.matches and "not sent yet (pending)" in verdict.lines[-1]


def test_verdict__a_run_of_rounds_that_found_nobody__is_one_line():
    rounds, events = two_rounds()
    nobody = [a_round(open_slots=1, eligible_set=[], block=110 + 2 * i, round_=2 + i) for i in range(5)]
    verdict = verify_rounds([*rounds, *nobody], events, FRONTEND, 100, 2)
    assert verdict.matches
    assert verdict.lines[-1].startswith("rounds 2 to 6 at blocks 110 to 118: none")


# ------------------------------------------------------------------ the randomness source

MIX = "0x" + keccak(b"a RANDAO mix").hex()


def header(**fields) -> dict:
    """A block as eth_getBlockByNumber gives it (raw JSON: hex strings)."""
    return {"hash": block_hash(102), "number": hex(102), **fields}


def test_randomness__a_post_merge_header__is_its_prevrandao():
    assert block_randomness(header(mixHash=MIX, difficulty="0x0")) == (PREVRANDAO, MIX)
    # web3's form (bytes, an int difficulty), and the field's post-Merge name
    assert block_randomness({"hash": bytes.fromhex(block_hash(102)[2:]), "mixHash": bytes.fromhex(MIX[2:]),
                             "difficulty": 0}) == (PREVRANDAO, MIX)  # fmt: skip
    assert block_randomness(header(prevRandao=MIX)) == (PREVRANDAO, MIX)


@pytest.mark.parametrize(
    "fields",
    [{}, {"mixHash": "0x" + "00" * 32, "difficulty": "0x0"}, {"mixHash": MIX, "difficulty": "0x2"}],
    ids=["no mixHash", "zero mixHash", "proof of work"],
)
def test_randomness__a_block_without_prevrandao__falls_back_to_the_block_hash(fields):
    assert block_randomness(header(**fields)) == (BLOCKHASH, block_hash(102))


def prevrandao_round(block: int = 102, **overrides) -> Draw:
    return make_round(
        TASK, overrides.get("round_", 0), block, block_hash(block), NOW, NOW + 500,
        overrides.get("open_slots", 2), 0, overrides.get("eligible_set", TEN[:5]), PREVRANDAO, MIX,
    )  # fmt: skip


def test_round__from_prevrandao__draws_from_it_and_records_the_source():
    d = prevrandao_round()
    assert (d.source, d.value, d.seed_input) == (PREVRANDAO, MIX, MIX)
    assert d.winners == draw(TASK, TEN[:5], bytes.fromhex(MIX[2:]), 2)
    assert d.fields()["randomness"] == PREVRANDAO and d.fields()["randomness_value"] == MIX
    fallback = a_round()
    assert (fallback.source, fallback.seed_input) == (BLOCKHASH, block_hash(102))
    with pytest.raises(ValueError, match="randomness source 'coin'"):
        make_round(TASK, 0, 102, block_hash(102), NOW, NOW + 500, 1, 0, TEN[:2], "coin", MIX)


@pytest.mark.parametrize("source", [PREVRANDAO, BLOCKHASH])
def test_verdict__rounds_from_either_source__match_and_say_which(source):
    d = prevrandao_round() if source == PREVRANDAO else a_round()
    verdict = verify_rounds(
        [d], [assigned(p, 104, log_index=i) for i, p in enumerate(d.winners)], FRONTEND, 100, 2
    )
    assert verdict.matches, verdict.problems
    said = f"randomness: prevrandao {MIX}" if source == PREVRANDAO else "randomness: the block hash"
    assert said in verdict.lines[0]


def test_verdict__winners_drawn_from_the_block_hash_where_prevrandao_was_due__do_not_match():
    """A frontend that draws from the hash (which a block producer can grind) is caught."""
    d = prevrandao_round(eligible_set=TEN)
    hashed = draw(TASK, TEN, bytes.fromhex(block_hash(102)[2:]), 2)
    assert set(hashed) != set(d.winners)
    verdict = verify_rounds(
        [d], [assigned(p, 104, log_index=i) for i, p in enumerate(hashed)], FRONTEND, 100, 2
    )
    assert not verdict.matches and "sent but not drawn" in verdict.problems[0]


def test_round_store__a_file_written_before_prevrandao__reads_its_rounds_as_drawn_from_the_block_hash():
    from frontends.election.process import RoundStore
    from provingmarket.chain.database import connect

    db = connect(":memory:")
    old = a_round()
    db.executescript(
        "CREATE TABLE election_rounds (task_id TEXT NOT NULL, round INTEGER NOT NULL, "
        "block INTEGER NOT NULL, block_hash TEXT NOT NULL, timestamp INTEGER NOT NULL, kind TEXT NOT NULL, "
        "open_slots INTEGER NOT NULL, eligible TEXT NOT NULL, winners TEXT NOT NULL, note TEXT NOT NULL, "
        "PRIMARY KEY (task_id, round));"
    )
    db.execute(
        "INSERT INTO election_rounds VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        ("0x" + TASK.hex(), 0, 102, old.block_hash, NOW, DRAWN, 2, json.dumps(list(old.eligible)),
         json.dumps(list(old.winners)), ""),
    )  # fmt: skip
    store = RoundStore(db)
    assert store.rounds(TASK) == [old] and store.rounds(TASK)[0].source == BLOCKHASH
    store.add(prevrandao_round(block=106, round_=1))
    assert [d.source for d in store.rounds(TASK)] == [BLOCKHASH, PREVRANDAO]
    assert store.rounds(TASK)[1].value == MIX


def test_round_store__each_round_with_its_instance__its_mechanism_id_and_delay():
    from frontends.election.walk import RoundStore
    from provingmarket.chain.database import connect

    store = RoundStore(connect(":memory:"))
    other = keccak(b"another task")
    store.add(replace(a_round(), mechanism_id=5, delay=4))
    store.add(replace(a_round(block=103), task_id=other, mechanism_id=6, delay=2))
    [five] = store.of_mechanism(5)
    assert (five.task_id, five.block, five.mechanism_id, five.delay) == (TASK, 102, 5, 4)
    assert [(d.task_id, d.delay) for d in store.of_mechanism(6)] == [(other, 2)]
    assert five.fields()["mechanism"] == 5 and five.fields()["delay"] == 4
    assert five == a_round()  # a record beside the draw: the same draw whatever the instance


def test_walk__each_instances_tasks_with_its_delay__a_step_at_most_the_least_delay():
    from frontends.election.walk import Walk

    walk = Walk(None, None, 2, FRONTEND)  # type: ignore[arg-type]  (no chain: its delays only)
    assert (walk.mechanisms, walk.step(), walk.delay_of(9)) == ((), 2, 2)
    walk.serve({7: 6, 5: 3})
    assert (walk.mechanisms, walk.step(), walk.delay_of(7), walk.delay_of(9)) == ((5, 7), 3, 6, 2)
    walk.serve({7: 6})  # a task posted in block P after the cursor C draws at P + 6 > C + 6
    assert walk.step() == 6
    with pytest.raises(ValueError, match="mechanism 8's delay 0: the randomness block must come 1 or more"):
        walk.serve({8: 0})
    assert Walk(None, None, 2, None, [3, 4], delays={4: 5}).delays == {3: 2, 4: 5}  # type: ignore[arg-type]
