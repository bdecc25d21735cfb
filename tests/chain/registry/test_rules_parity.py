"""provingmarket/rules.py against the registry itself: for generated states on anvil (a
prover joined or not, with its stake, capacity in use, ask, proving time, capabilities and
accepted mechanisms; a task of a frontend's mechanism or a DUTCH one, paused market, past
its window, the prover already on it or declined; a frontend or a stranger; a price; a
signed Bid good or broken in one way), `rules.assign_refusal` holds exactly when
`Registry.assign` (or `lock`) succeeds, and names the reason the registry reverts with.

Time-dependent prices stay off their boundaries (DUTCH tasks have no ramp, no decay, Bids
expire an hour away or an hour ago): a revert's timestamp is the node's pending block's,
which the test does not pin; tests/unit/test_costs.py and the registry's own tests cover
the price curves to the wei."""

from __future__ import annotations

from dataclasses import dataclass, replace

import ape
import pytest
from hypothesis import HealthCheck, Phase, event, example, given, settings
from hypothesis import strategies as st

from provingmarket import rules
from provingmarket.formats import DUTCH, sign_bid
from tests.factories import ETHER, PROVER_INPUT, assigned, escrow, item, make_terms, posted_terms

ASK = ETHER // 100
STAKE = ETHER


@dataclass(frozen=True)
class Case:
    joined: bool
    accepts: bool
    stake: int
    capacity: int
    busy: bool  # one live assignment on another task
    ask: int
    proving_time: int
    capabilities: int
    dutch: bool
    task_capabilities: int
    collateral: int
    redundancy: int
    history: str  # "", "engaged" or "declined": the prover's earlier part in this task
    paused: bool
    expired: bool
    unknown: bool
    by_stranger: bool
    price: int
    bid: str  # "", "good", "expired", "revoked", "minimum", "other", "short", "v", "high_s"


# Each field's values: the first holds for a default task, the others may break a rule.
FIELDS = dict(
    joined=[True, False],
    accepts=[True, False],
    stake=[STAKE, 0, ETHER // 4],
    capacity=[2, 1],
    busy=[False, True],
    ask=[ASK, ASK // 2, 2 * ASK],
    proving_time=[300, 60, 301],
    capabilities=[0b11, 0b01, 0],
    dutch=[False, True],
    task_capabilities=[0b01, 0, 0b10],
    collateral=[ETHER // 10, ETHER // 2, 2 * ETHER],
    redundancy=[1, 2],
    history=["", "engaged", "declined"],
    paused=[False, True],
    expired=[False, True],
    unknown=[False, True],
    by_stranger=[False, True],
    price=[ASK, ASK // 2, 2 * ASK, ETHER // 10, ETHER // 10 + 1],
    bid=["", "good", "expired", "revoked", "minimum", "other", "short", "v"],
)


@st.composite
def cases(draw) -> Case:
    """A state where every rule holds but a few: none, one, two, or any number broken,
    so that every rule is reached (and each boundary of the ones with numbers)."""
    broken = draw(st.sets(st.sampled_from(sorted(FIELDS)), max_size=draw(st.sampled_from([1, 1, 2, 3, 19]))))
    return Case(**{name: draw(st.sampled_from(v)) if name in broken else v[0] for name, v in FIELDS.items()})


def one_rule_broken() -> list[Case]:
    """Every value of every field alone, the others at their defaults: each rule reached."""
    default = {name: values[0] for name, values in FIELDS.items()}
    return [Case(**default)] + [
        Case(**{**default, name: value}) for name, values in FIELDS.items() for value in values[1:]
    ]


def with_examples(cases_: list[Case]):
    def decorate(test):
        for case in cases_:
            test = example(case=case)(test)
        return test

    return decorate


@pytest.fixture(scope="module")
def candidate_account(accounts):
    """A prover no other fixture stakes or joins with."""
    return accounts[7]


@settings(
    max_examples=30,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],  # a failure prints its case; shrinking on a chain is slow
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=cases())
@with_examples(one_rule_broken())
def test_rules__generated_states__refuse_exactly_what_the_registry_refuses_with_its_reason(
    case,
    chain,
    registry,
    market,
    mechanism,
    keeper,
    stranger,
    owner,
    requester,
    staked_provers,
    candidate_account,
):
    snapshot = chain.snapshot()
    try:
        world = World(chain, registry, market, mechanism, keeper, owner, requester, staked_provers)
        expected, actual = world.play(case, candidate_account, stranger)
        event(f"registry: {actual or 'assigned'}")  # --hypothesis-show-statistics lists what was reached
        assert actual == expected, case
    finally:
        chain.restore(snapshot)


class World:
    """Builds a case's state on the registry, then asks both the rules and the registry."""

    def __init__(self, chain, registry, market, mechanism, keeper, owner, requester, others):
        self.chain, self.registry, self.market, self.mechanism = chain, registry, market, mechanism
        self.keeper, self.owner, self.requester, self.others = keeper, owner, requester, others
        self.salt = 10_000

    def post(self, mechanism_id: int, **overrides):
        self.salt += 1
        terms = make_terms(self.market, mechanism_id, salt=self.salt, **overrides)
        if mechanism_id == DUTCH:
            terms = replace(terms, start_price=terms.max_reward)
        tx = self.registry.post_task(
            terms.as_tuple(), PROVER_INPUT, "", sender=self.requester, value=escrow(terms)
        )
        return posted_terms(self.registry, tx)

    def try_assign(self, terms, prover, price: int):
        """Assign as the frontend if the registry takes it: the assignment, else None."""
        try:
            tx = self.registry.assign(item(terms, prover, price), sender=self.keeper)
        except ape.exceptions.ContractLogicError:
            return None
        [(_, assignment)] = assigned(self.registry, tx)
        return assignment

    def setup_prover(self, case: Case, prover) -> None:
        if case.stake:
            self.registry.stake(sender=prover, value=case.stake)
        if case.joined:
            accepted = [self.mechanism] if case.accepts else []
            self.registry.join_market(
                self.market,
                case.capacity,
                case.ask,
                case.proving_time,
                case.capabilities,
                accepted,
                sender=prover,
            )
        if case.busy:
            other = self.post(self.mechanism, collateral=ETHER // 10)
            self.try_assign(other, prover, ETHER // 10)

    def setup_task(self, case: Case, prover):
        overrides = dict(
            collateral=case.collateral, capabilities=case.task_capabilities, redundancy=case.redundancy
        )
        terms = self.post(DUTCH if case.dutch else self.mechanism, **overrides)
        assignment = self.try_assign(terms, prover, ETHER // 10) if case.history and not case.dutch else None
        if assignment and case.history == "declined":
            self.registry.decline(terms.as_tuple(), assignment.as_tuple(), sender=prover)
        if case.unknown:
            terms = replace(terms, salt=terms.salt + 1_000_000)
        if case.paused:
            self.registry.set_market_paused(self.market, True, sender=self.owner)
        if case.expired:
            self.chain.mine(1, deltatime=terms.assign_window + 60)
        return terms

    def play(self, case: Case, prover, stranger) -> tuple[str, str]:
        self.setup_prover(case, prover)
        terms = self.setup_task(case, prover)
        bid = self.bid(case, terms, prover)
        frontend = None if case.dutch else (stranger if case.by_stranger else self.keeper)
        expected = rules.assign_refusal(
            terms,
            self.slots(terms, case.unknown),
            self.candidate(terms, prover),
            self.chain.pending_timestamp,
            price=case.price,
            frontend_serves=None if frontend is None else frontend == self.keeper,
            bid=bid,
            bid_check=rules.BidCheck(
                self.chain.chain_id, self.registry.address, self.registry.standing(prover).nonce
            ),
        )
        try:
            if frontend is None:
                self.registry.lock(terms.as_tuple(), sender=prover)
            else:
                signature = bid.signature if bid else b""
                fields = (bid.min_price, bid.expiry, bid.nonce) if bid else (0, 0, 0)
                self.registry.assign(item(terms, prover, case.price, signature, *fields), sender=frontend)
            actual = ""
        except ape.exceptions.ContractLogicError as error:
            actual = str(error.revert_message).removeprefix("registry: ")
        return expected, actual

    def slots(self, terms, unknown: bool) -> rules.Slots:
        head = self.registry.market(self.market)
        market = rules.VERIFIER_CHANGED if head.frozen else ""
        market = rules.MARKET_PAUSED if head.paused else market
        status = self.registry.task_status(self.registry.task_id(terms.as_tuple()))
        return rules.Slots(known=not unknown, open=status.open, market=market)

    def candidate(self, terms, prover) -> rules.Candidate:
        member = self.registry.membership(prover, self.market)
        engagement = self.registry.engagement(self.registry.task_id(terms.as_tuple()), prover)
        return rules.Candidate(
            address=prover.address,
            joined=member.joined,
            accepts=self.registry.accepts(prover, self.market, terms.mechanism_id),
            ask=member.ask,
            capacity=member.capacity,
            used=member.used,
            proving_time=member.proving_time,
            capabilities=member.capabilities,
            free_stake=self.registry.standing(prover).free,
            engagement={0: "", 1: rules.ENGAGED, 2: rules.DECLINED, 3: rules.SLASHED}[engagement],
        )

    def bid(self, case: Case, terms, prover) -> rules.Bid | None:
        if not case.bid or case.dutch:
            return None
        now = self.chain.pending_timestamp
        nonce = self.registry.standing(prover).nonce
        min_price = case.price + 1 if case.bid == "minimum" else ASK // 4
        expiry = now - 3_600 if case.bid == "expired" else now + 3_600
        nonce = nonce + 1 if case.bid == "revoked" else nonce
        signer = self.others[0] if case.bid == "other" else prover
        task = self.registry.task_id(terms.as_tuple())
        signature = sign_bid(
            signer.private_key, self.chain.chain_id, self.registry.address, task, min_price, expiry, nonce
        )
        if case.bid == "short":
            signature = signature[:64]
        elif case.bid == "v":
            signature = signature[:64] + bytes([29])
        return rules.Bid(min_price, expiry, nonce, signature)
