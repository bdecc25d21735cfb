"""QoS measured from the registry's events (provingmarket/market/qos.py), with no chain: hand-made
event sequences (a market created, a mechanism registered, provers staked, joined and
accepting, tasks posted and then assigned, proven, slashed, closed) give, per task, the time
to assignment and to each proof, paid/fees/spent and the price ratio, proofs against the
redundancy, slashes, the provers who could take part (members accepting the mechanism unless
built in, with enough stake, capabilities and proving time, not left, not unstaked below the
collateral) and who did, refunds and cancellations, `settled` and the `arm` label; events of
unknown tasks are ignored. `Tally`, fed events a few at a time,
gives what `measure` gives. `summarize` per mechanism, market and requester (medians, nearest
rank p95, delivery) and `table`, one row per group with "-" where there is no value."""

from __future__ import annotations

import pytest

from provingmarket.chain.client import Event
from provingmarket.formats import DUTCH, OPEN_RACE
from provingmarket.market.qos import Tally, TaskQoS, measure, summarize, table

AUCTION = 3
ORDERBOOK = 4
MARKET = 1
OTHER_MARKET = 2
MIN_REWARD = 100
COLLATERAL = 10
CAPS = 0b11
REQUESTER = "0x" + "99" * 20
OTHER_REQUESTER = "0x" + "88" * 20
GENESIS = 1_000_000  # block 0's timestamp
BLOCK = 12  # seconds a block


def block_time(number: int) -> int:
    return GENESIS + BLOCK * number


def prover(n: int) -> str:
    """A prover's address, in mixed case (measure compares them lower-cased)."""
    return "0x" + f"{n:02x}" * 19 + "Ab"


def task_id(n: int) -> bytes:
    return bytes([n]) * 32


class History:
    """Registry events, oldest first, each in its own block unless told."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.block = 0

    def add(self, event_name: str, block: int | None = None, **args) -> Event:
        self.block = self.block + 1 if block is None else block
        event = Event(event_name, args, self.block, "0x" + "00" * 32, len(self.events))
        self.events.append(event)
        return event

    def market(self, market_id: int = MARKET, min_reward: int = MIN_REWARD) -> None:
        self.add(
            "MarketCreated",
            market_id=market_id,
            creator=REQUESTER,
            verifier="0x" + "11" * 20,
            codehash=b"\x00" * 32,
            binding=1,
            address_input=0,
            min_collateral=COLLATERAL,
            min_reward=min_reward,
            grace_period=60,
            requester_bps=5_000,
            caller_bps=1_000,
        )

    def mechanism(self, mechanism_id: int, name: str) -> None:
        self.add("MechanismRegistered", mechanism_id=mechanism_id, registrant=REQUESTER, name=name)

    def member(
        self,
        who: str,
        stake: int = 1_000,
        accepts: tuple[int, ...] = (AUCTION,),
        market_id: int = MARKET,
        proving_time: int = 60,
        capabilities: int = CAPS,
        capacity: int = 2,
    ) -> None:
        """Staked, joined (and the mechanisms accepted) as join_market logs it."""
        if stake:
            self.add("Staked", prover=who, amount=stake, stake=stake)
        self.add(
            "ProverJoined",
            prover=who,
            market_id=market_id,
            capacity=capacity,
            ask=0,
            proving_time=proving_time,
            capabilities=capabilities,
        )
        for mechanism_id in accepts:
            self.accept(who, mechanism_id, True, market_id)

    def accept(self, who: str, mechanism_id: int, accepted: bool, market_id: int = MARKET) -> None:
        self.add(
            "MechanismAccepted", prover=who, market_id=market_id, mechanism_id=mechanism_id, accepted=accepted
        )

    def post(
        self,
        n: int,
        mechanism_id: int = AUCTION,
        requester: str = REQUESTER,
        block: int | None = None,
        posted_at: int | None = None,
        **overrides,
    ) -> int:
        """Post task n; returns its posting block."""
        terms = dict(
            market_id=MARKET,
            requester=requester,
            posted_at=0,
            inputs_commitment=b"\x01" * 32,
            prover_input_hash=b"\x02" * 32,
            max_reward=100,
            frontend_fee=5,
            assign_window=600,
            proving_window=300,
            collateral=COLLATERAL,
            capabilities=CAPS,
            redundancy=1,
            mechanism_id=mechanism_id,
            start_price=0,
            ramp=0,
            decay=False,
            decay_floor=0,
            salt=n,
        )
        terms.update(overrides)
        number = self.block + 1 if block is None else block
        # The registry fills posted_at with the block's timestamp.
        terms["posted_at"] = block_time(number) if posted_at is None else posted_at
        self.add(
            "TaskPosted",
            block=number,
            task_id=task_id(n),
            requester=requester,
            market_id=terms["market_id"],
            terms=terms,
            prover_input=b"",
            input_uri="ipfs://x",
        )
        return number

    def assign(self, n: int, who: str, block: int, slot: int = 0, price: int = 100) -> None:
        self.add(
            "TaskAssigned",
            block=block,
            task_id=task_id(n),
            prover=who,
            frontend="0x" + "00" * 20,
            slot=slot,
            price=price,
            deadline=block_time(block) + 300,
        )

    def prove(self, n: int, who: str, block: int, paid: int, fee: int = 0, slot: int = 0) -> None:
        self.add(
            "TaskProven",
            block=block,
            task_id=task_id(n),
            prover=who,
            frontend="0x" + "00" * 20,
            slot=slot,
            paid=paid,
            fee=fee,
            refund=0,
            public_inputs=[1],
            proof=b"\x00",
        )

    def slash(self, n: int, who: str, block: int, collateral: int = COLLATERAL) -> None:
        self.add(
            "Slashed",
            block=block,
            task_id=task_id(n),
            prover=who,
            caller=REQUESTER,
            slot=0,
            collateral=collateral,
            to_requester=collateral // 2,
            to_caller=collateral // 10,
            burnt=collateral - collateral // 2 - collateral // 10,
            reopened=False,
        )

    def close(self, n: int, slots: int, block: int, cancelled: bool = False) -> None:
        self.add(
            "SlotsClosed",
            block=block,
            task_id=task_id(n),
            requester=REQUESTER,
            slots=slots,
            refund=slots * 105,
            cancelled=cancelled,
        )

    def measure(self) -> dict[bytes, TaskQoS]:
        return {q.task_id: q for q in measure(self.events, block_time)}


def tid(n: int) -> str:
    return "0x" + task_id(n).hex()


# ------------------------------------------------------------------ measure: one task


@pytest.fixture
def world() -> History:
    """Market 1 (least reward 100) with the auction registered as 3 and the orderbook as 4."""
    h = History()
    h.market()
    h.market(OTHER_MARKET, min_reward=50)
    h.mechanism(AUCTION, "auction")
    h.mechanism(ORDERBOOK, "orderbook")
    return h


def test_a_redundant_task_proven_twice(world):
    a, b = prover(1), prover(2)
    world.member(a)
    world.member(b)
    posted = world.post(1, redundancy=2, max_reward=100, frontend_fee=5)
    world.assign(1, a, block=posted + 2, price=80)
    world.assign(1, b, block=posted + 3, slot=1, price=70)
    world.prove(1, a, block=posted + 5, paid=80, fee=5)
    world.prove(1, b, block=posted + 10, paid=60, fee=5, slot=1)

    [q] = world.measure().values()
    assert q.task_id == tid(1)
    assert (q.market_id, q.mechanism_id, q.mechanism, q.requester) == (MARKET, AUCTION, "auction", REQUESTER)
    assert q.posted_at == block_time(posted)
    assert q.min_reward == MIN_REWARD
    assert q.assigned_after == 2 * BLOCK  # the first assignment
    assert q.proof_times == (5 * BLOCK, 10 * BLOCK)
    assert q.first_proof == 5 * BLOCK
    assert q.provers == (a, b)
    assert (q.paid, q.fees, q.spent) == (140, 10, 150)
    assert q.price_ratio == pytest.approx(140 / 200)
    assert (q.proofs, q.redundancy) == (2, 2)
    assert (q.slashes, q.refunded, q.cancelled) == (0, 0, False)
    assert (q.could, q.took_part) == (2, 2)
    assert q.settled
    assert q.arm == "auction ×2"


def test_posted_at_from_the_block_when_the_terms_have_none(world):
    world.member(prover(1))
    posted = world.post(1, posted_at=0)
    world.prove(1, prover(1), block=posted + 1, paid=100)
    [q] = world.measure().values()
    assert q.posted_at == block_time(posted)
    assert q.proof_times == (BLOCK,)


def test_open_race_is_never_assigned_and_needs_no_acceptance(world):
    a, b = prover(1), prover(2)
    world.member(a, accepts=())  # accepts nothing: the open race needs no acceptance
    world.member(b, accepts=(ORDERBOOK,))
    posted = world.post(1, mechanism_id=OPEN_RACE, frontend_fee=0, max_reward=200)
    world.prove(1, b, block=posted + 3, paid=150)

    [q] = world.measure().values()
    assert q.mechanism == "open race"
    assert q.assigned_after is None  # nobody assigns an open race
    assert q.proof_times == (3 * BLOCK,)
    assert q.price_ratio == pytest.approx(150 / 200)
    assert (q.could, q.took_part) == (2, 1)
    assert q.settled
    assert q.arm == "open race ×1"


def test_dutch_needs_no_acceptance_and_decay_shows_in_the_arm(world):
    world.member(prover(1), accepts=())
    world.post(1, mechanism_id=DUTCH, frontend_fee=0, decay=True, decay_floor=100, redundancy=3)
    [q] = world.measure().values()
    assert q.mechanism == "dutch"
    assert q.could == 1
    assert q.arm == "dutch ×3 decaying"


def test_an_unregistered_mechanism_is_named_by_its_number(world):
    world.post(1, mechanism_id=9)
    [q] = world.measure().values()
    assert q.mechanism == "mechanism 9"
    assert q.arm == "mechanism 9 ×1"


def test_who_could_take_part(world):
    """Members of the task's market accepting its mechanism, with stake at least its
    collateral, capabilities covering its and a proving time within its proving window."""
    good = [prover(1), prover(2)]
    for who in good:
        world.member(who)
    world.member(prover(3), capabilities=0b01)  # lacks a capability the task needs
    world.member(prover(4), stake=COLLATERAL - 1)  # stake below the collateral
    world.member(prover(5), proving_time=301)  # slower than the proving window
    world.member(prover(6), accepts=(ORDERBOOK,))  # another mechanism
    world.member(prover(7), accepts=())  # accepts nothing
    world.member(prover(8), market_id=OTHER_MARKET)  # another market
    world.member(prover(9))
    world.accept(prover(9), AUCTION, False)  # accepted, then refused
    world.member(prover(10))
    world.add("ProverLeft", prover=prover(10), market_id=MARKET)  # left
    world.member(prover(11))
    world.add("Unstaked", prover=prover(11), amount=991, unbonding=991, ready_at=0)  # 9 left
    world.member(prover(12), stake=0)  # never staked
    world.member(prover(13), proving_time=300, capabilities=0b111)  # exactly the window, more caps
    good.append(prover(13))
    world.post(1)
    [q] = world.measure().values()
    assert q.could == len(good) == 3
    assert q.took_part == 0


def test_could_follows_the_history_up_to_the_posting(world):
    """Each task counts who could take part when it was posted: a later join, a leave,
    an unstake or a slash changes the next task's count only."""
    a, b, c = prover(1), prover(2), prover(3)
    world.member(a)
    world.member(b, stake=COLLATERAL + 5)
    first = world.post(1)
    world.member(c)  # joins after task 1
    world.assign(1, b, block=first + 2)
    world.slash(1, b, block=first + 40)  # b's stake falls to 5, below the collateral
    world.post(2)
    world.add("Unstaked", prover=a.lower(), amount=995, unbonding=995, ready_at=0)  # a keeps 5
    world.post(3)
    world.add("ProverLeft", prover=c, market_id=MARKET)
    world.post(4)
    # c joins again: the acceptances it made before leaving do not hold any more.
    world.member(c, stake=0, accepts=())
    world.post(5)
    world.post(6, mechanism_id=OPEN_RACE, frontend_fee=0)  # c needs no acceptance for it
    world.accept(c, AUCTION, True)
    world.post(7)
    could = {q.task_id: q.could for q in world.measure().values()}
    assert could == {tid(1): 2, tid(2): 2, tid(3): 1, tid(4): 0, tid(5): 0, tid(6): 1, tid(7): 1}


def test_an_update_keeps_acceptances_and_changes_the_rest(world):
    a = prover(1)
    world.member(a, proving_time=60)
    world.add(
        "ProverUpdated", prover=a, market_id=MARKET, capacity=2, ask=0, proving_time=400, capabilities=CAPS
    )
    world.post(1)  # now slower than the window
    world.add(
        "ProverUpdated", prover=a, market_id=MARKET, capacity=2, ask=0, proving_time=60, capabilities=CAPS
    )
    world.post(2)  # still accepting the auction
    world.add(
        "ProverUpdated", prover=a, market_id=MARKET, capacity=0, ask=0, proving_time=60, capabilities=CAPS
    )
    world.post(3)  # paused: no capacity
    could = {q.task_id: q.could for q in world.measure().values()}
    assert could == {tid(1): 0, tid(2): 1, tid(3): 0}


def test_slashes_and_refunded_slots(world):
    a, b, c = prover(1), prover(2), prover(3)
    for who in (a, b, c):
        world.member(who)
    posted = world.post(1, redundancy=3, max_reward=100, frontend_fee=5)
    world.assign(1, a, block=posted + 1)
    world.assign(1, b, block=posted + 1, slot=1)
    world.prove(1, a, block=posted + 4, paid=100, fee=5)
    world.slash(1, b, block=posted + 60)
    world.close(1, slots=2, block=posted + 61)  # b's slot and the never-assigned one

    [q] = world.measure().values()
    assert q.slashes == 1
    assert q.provers == (a,)
    assert (q.proofs, q.redundancy, q.refunded) == (1, 3, 2)
    assert not q.cancelled
    assert q.settled
    assert q.took_part == 2  # a and b were assigned; c did nothing
    assert q.price_ratio == pytest.approx(1.0)
    assert q.spent == 105


def test_cancelled_and_unsettled_tasks(world):
    world.member(prover(1))
    world.post(1, redundancy=2)
    world.close(1, slots=2, block=world.block + 1, cancelled=True)
    world.post(2, redundancy=2)  # nothing ever happens
    world.post(3, redundancy=2)
    world.prove(3, prover(1), block=world.block + 1, paid=100)  # one of two proofs, no close yet

    tasks = world.measure()
    cancelled, idle, half = tasks[tid(1)], tasks[tid(2)], tasks[tid(3)]
    assert cancelled.cancelled and cancelled.refunded == 2 and cancelled.settled
    assert cancelled.proofs == 0 and cancelled.first_proof is None and cancelled.price_ratio is None
    assert (cancelled.paid, cancelled.spent) == (0, 0)
    assert not idle.settled and not idle.cancelled
    assert idle.assigned_after is None and idle.first_proof is None and idle.took_part == 0
    assert not half.settled and half.proofs == 1


def test_a_voided_assignment_settles_its_slot(world):
    """The registry refunds a slot whose verifier changed (AssignmentVoided, no
    SlotsClosed): the slot is over, so the task settles."""
    world.member(prover(1))
    posted = world.post(1)
    world.assign(1, prover(1), block=posted + 1)
    world.add("AssignmentVoided", task_id=task_id(1), prover=prover(1), slot=0)
    [q] = world.measure().values()
    assert q.refunded == 1 and q.proofs == 0 and q.slashes == 0
    assert q.settled


def test_events_of_unknown_tasks_are_ignored(world):
    world.member(prover(1))
    posted = world.post(1)
    # A task posted before the history given: its events count for nothing.
    world.assign(99, prover(1), block=posted + 1)
    world.prove(99, prover(1), block=posted + 2, paid=100, fee=5)
    world.close(99, slots=1, block=posted + 3)
    world.add("Withdrawn", account=prover(1), amount=5)  # no task at all
    world.add("StakeWithdrawn", prover=prover(1), amount=5)
    tasks = world.measure()
    assert list(tasks) == [tid(1)]
    q = tasks[tid(1)]
    assert q.proofs == 0 and q.took_part == 0 and q.refunded == 0


def test_tasks_come_in_posting_order_and_task_ids_as_hex(world):
    for n in (5, 2, 7):
        world.post(n)
    assert [q.task_id for q in measure(world.events, block_time)] == [tid(5), tid(2), tid(7)]


def test_no_events_no_tasks():
    assert measure([], block_time) == []


# ------------------------------------------------------------------ aggregates


@pytest.fixture
def many(world) -> list[TaskQoS]:
    """20 auction ×1 tasks proven 1..20 blocks after posting (assigned 1 block after), 2
    orderbook ×2 tasks of another requester in market 2, one of them unproven."""
    for who in (prover(1), prover(2)):
        world.member(who, accepts=(AUCTION, ORDERBOOK))
        world.member(who, stake=0, accepts=(ORDERBOOK,), market_id=OTHER_MARKET)
    for n in range(1, 21):
        posted = world.post(n, block=world.block + 100)
        world.assign(n, prover(1), block=posted + 1, price=50)
        world.prove(n, prover(1), block=posted + n, paid=50, fee=5)
    posted = world.post(
        21, mechanism_id=ORDERBOOK, requester=OTHER_REQUESTER, market_id=OTHER_MARKET, redundancy=2
    )
    world.assign(21, prover(1), block=posted + 3, price=100)
    world.assign(21, prover(2), block=posted + 4, slot=1, price=100)
    world.prove(21, prover(1), block=posted + 6, paid=100, fee=5)
    world.slash(21, prover(2), block=posted + 50)
    world.close(21, slots=1, block=posted + 51)
    world.post(22, mechanism_id=ORDERBOOK, requester=OTHER_REQUESTER, market_id=OTHER_MARKET, redundancy=2)
    world.close(22, slots=2, block=world.block + 1, cancelled=True)
    return measure(world.events, block_time)


def test_a_tally_fed_in_pieces_gives_what_measure_gives_for_the_whole(many, world):
    tally = Tally()
    seen = []
    for cut in (0, 7, 30, 31, len(world.events) - 2, len(world.events)):
        tally.feed(world.events[len(seen) : cut], block_time)
        seen = world.events[:cut]
        assert tally.tasks() == measure(seen, block_time)
    assert tally.tasks() == many


def test_summarize_per_mechanism(many):
    auction, orderbook = summarize(many)  # sorted by key
    assert auction.key == "auction ×1"
    assert (auction.tasks, auction.proven, auction.delivered) == (20, 20, 20)
    assert auction.assigned_after == BLOCK
    assert auction.first_proof == pytest.approx(10.5 * BLOCK)  # the median of 1..20 blocks
    assert auction.first_proof_p95 == 19 * BLOCK  # nearest rank: the 19th of 20
    assert auction.price_ratio == pytest.approx(0.5)
    assert auction.spent == 20 * 55
    assert (auction.proofs, auction.proofs_asked, auction.delivery) == (20, 20, 1.0)
    assert (auction.slashes, auction.refunded) == (0, 0)
    assert auction.could == 2.0 and auction.took_part == 1.0

    assert orderbook.key == "orderbook ×2"
    assert (orderbook.tasks, orderbook.proven, orderbook.delivered) == (2, 1, 0)
    assert orderbook.assigned_after == 3 * BLOCK  # the one assigned task
    assert orderbook.first_proof == orderbook.first_proof_p95 == 6 * BLOCK
    assert orderbook.price_ratio == pytest.approx(1.0)
    assert orderbook.spent == 105
    assert (orderbook.proofs, orderbook.proofs_asked) == (1, 4)
    assert orderbook.delivery == pytest.approx(0.25)
    assert orderbook.slashes == 1
    assert orderbook.refunded == 2  # tasks with a refunded slot
    assert orderbook.could == 2.0 and orderbook.took_part == pytest.approx(1.0)


def test_summarize_per_market_and_requester_and_function(many):
    markets = summarize(many, "market")
    assert [(g.key, g.tasks) for g in markets] == [("market 1", 20), ("market 2", 2)]
    requesters = summarize(many, "requester")
    assert [(g.key, g.tasks) for g in requesters] == [(OTHER_REQUESTER, 2), (REQUESTER, 20)]
    fast = summarize(many, lambda q: "fast" if (q.first_proof or 999) <= 5 * BLOCK else "slow")
    assert [(g.key, g.tasks) for g in fast] == [("fast", 5), ("slow", 17)]
    with pytest.raises(KeyError):
        summarize(many, "colour")


def test_summarize_nothing():
    assert summarize([]) == []


def test_a_group_with_no_value_and_its_table(world):
    world.post(1)  # never assigned nor proven
    [group] = summarize(measure(world.events, block_time))
    assert group.assigned_after is None and group.first_proof is None
    assert group.first_proof_p95 is None and group.price_ratio is None
    assert group.delivery == 0.0
    lines = table([group]).splitlines()
    assert len(lines) == 2
    row = lines[1].split()
    # key (two words), tasks, proven, to assign, to proof, p95, paid/max, proofs/asked, …
    assert row[:2] == ["auction", "×1"]
    assert row[2:10] == ["1", "0", "-", "-", "-", "-", "0/1", "0"]


def test_table_has_one_row_per_group(many):
    groups = summarize(many)
    text = table(groups, extra={"utility": ["0.71", "0.20"]})
    header, *rows = text.splitlines()
    assert len(rows) == len(groups) == 2
    assert header.split()[0] == "mechanism"
    for name in ("tasks", "to assign", "to proof", "p95", "paid/max", "proofs/asked", "utility"):
        assert name in header
    assert rows[0].startswith("auction ×1")
    assert "50%" in rows[0].split() and "20/20" in rows[0].split() and rows[0].split()[-1] == "0.71"
    assert "100%" in rows[1].split() and "1/4" in rows[1].split() and rows[1].split()[-1] == "0.20"
    assert "-" not in rows[0].split()
    # Every row lines up with the header.
    assert {len(line) for line in text.splitlines()} == {len(header)}
    assert table(summarize(many, "market"), title="market").splitlines()[0].startswith("market")
