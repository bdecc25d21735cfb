"""The attacks an adversarial review of the registry found, one test each (numbered as
the review numbered them), named after the attack and run on anvil with real Groth16
proofs: each shows the attack refused. docs/security.md maps every finding and every
rule to its test."""

import json
import re
import subprocess
from dataclasses import replace

import ape
import pytest
from eth_account import Account
from web3.exceptions import ContractLogicError

from provingmarket import BINDING_COMMIT_REVEAL, BINDING_NONE, DUTCH, OPEN_RACE, inputs_commitment, sign_bid
from provingmarket.devnet import SQUARE, default_backend
from provingmarket.formats import (
    MAX_ASSIGN_WINDOW,
    MAX_CAPABILITIES,
    MAX_COLLATERAL,
    MAX_PROVING_WINDOW,
    MAX_REWARD,
    ZERO_ADDRESS,
    Assignment,
    TaskTerms,
    proof_commit_digest,
)
from tests.factories import (
    ETHER,
    GRACE_PERIOD,
    PROVER_INPUT,
    STATEMENT,
    TESTS,
    advance,
    assign,
    assigned,
    escrow,
    item,
    make_terms,
    posted_terms,
    proof_for,
    prove,
)

RACE = Assignment(slot=0, price=0, deadline=0, frontend=ZERO_ADDRESS)
ACCEPT_ALL = """
# pragma version 0.4.3
@view
@external
def verify(public_inputs: DynArray[uint256, 16], proof: Bytes[1024]) -> bool:
    return True
"""


def deploy_test_contract(owner, name: str, *args):
    source = (TESTS / "contracts" / f"{name}.vy").read_text()
    return owner.deploy(ape.compilers.compile_source("vyper", source, contractName=name), *args)


def post(registry, requester, terms: TaskTerms, prover_input=PROVER_INPUT, **kwargs) -> TaskTerms:
    tx = registry.post_task(
        terms.as_tuple(), prover_input, "", sender=requester, value=escrow(terms), **kwargs
    )
    return posted_terms(registry, tx)


# ------------------------------------------------------------------ 1. verifiers that flip


@pytest.mark.parametrize("kind", ["FlippingVerifier", "RelayVerifier"])
def test_flipping_verifier__a_market_on_it_is_marked_custom(registry, owner, create_market, market, kind):
    """1. A verifier whose answer depends on its own storage or on another contract can
    accept the sample, then reject honest proofs or accept garbage without its code hash
    changing. The registry cannot tell, so it marks such a market custom: agents and
    `prover join` refuse it unless their operator reviewed its exact code hash."""
    flipping = deploy_test_contract(owner, "FlippingVerifier")
    verifier = flipping if kind == "FlippingVerifier" else deploy_test_contract(owner, kind, flipping)

    custom = create_market(verifier_address=verifier)

    assert registry.market(custom).custom
    assert not registry.market(custom).frozen
    assert registry.verifier_blueprint(verifier) == 0
    assert not registry.market(market).custom  # the fixture's market: a registry-made verifier


def test_trusted_verifier__made_by_the_registry_from_its_blueprint__has_no_storage_or_calls_out(
    registry, project, chain, verifier
):
    """1. What makes a market trusted: the registry deployed its verifier from the
    blueprint fixed at its deployment, which is exactly Groth16Verifier.vy's deployment
    code (anyone can compare), and that contract has no storage and calls nothing but
    the pairing and curve precompiles, statically: its answers are a function of its key
    (immutables), the inputs and the proof, and its code can never change (no
    SELFDESTRUCT, no delegation)."""
    blueprint = registry.blueprint(registry.verifier_blueprint(verifier))
    deployment = bytes(project.Groth16Verifier.contract_type.deployment_bytecode.to_bytes())
    source = (TESTS.parent / "contracts" / "verifiers" / "Groth16Verifier.vy").read_text()
    layout = json.loads(
        subprocess.check_output(
            ["vyper", "-f", "layout", "-p", "contracts", "contracts/verifiers/Groth16Verifier.vy"],
            cwd=TESTS.parent,
        )
    )

    assert registry.verifier_blueprint(verifier) == 1
    assert bytes(chain.provider.get_code(blueprint)) == b"\xfe\x71\x00" + deployment
    assert "storage_layout" not in layout and "transient_storage_layout" not in layout
    for forbidden in ("extcall", "staticcall ", "delegate", "selfdestruct", "create_", "send("):
        assert forbidden not in source, forbidden
    calls = re.findall(r"raw_call\(\s*(0x[0-9a-fA-F]{40}),", source)
    assert calls and set(calls) == {"0x0000000000000000000000000000000000000008"}
    assert source.count("is_static_call=True") == len(calls)


def test_flipping_verifier__an_eip7702_delegated_account__is_refused(registry, owner, accounts, chain):
    """1. An EOA that delegated its code (EIP-7702) to a verifier can re-delegate later
    and answer differently. The delegation here is a real type-4 transaction."""
    accept_all = owner.deploy(ape.compilers.compile_source("vyper", ACCEPT_ALL, contractName="AcceptAll"))
    delegator, sponsor = accounts[8], accounts[9]
    web3 = chain.provider.web3
    authorization = Account.from_key(delegator.private_key).sign_authorization(
        {
            "chainId": chain.chain_id,
            "address": accept_all.address,
            "nonce": web3.eth.get_transaction_count(delegator.address),
        }
    )
    tx = {
        "type": 4,
        "chainId": chain.chain_id,
        "nonce": web3.eth.get_transaction_count(sponsor.address),
        "to": delegator.address,
        "value": 0,
        "data": b"",
        "gas": 100_000,
        "maxFeePerGas": 10 * web3.eth.gas_price + 10**9,
        "maxPriorityFeePerGas": 10**9,
        "authorizationList": [authorization],
    }
    raw = Account.from_key(sponsor.private_key).sign_transaction(tx).raw_transaction
    web3.eth.wait_for_transaction_receipt(web3.eth.send_raw_transaction(raw))
    code = bytes(chain.provider.get_code(delegator.address))
    assert code == b"\xef\x01\x00" + bytes.fromhex(accept_all.address[2:])

    sample = list(STATEMENT)
    with ape.reverts("registry: verifier is a delegated account"):
        registry.create_market(
            delegator.address, sample, proof_for(sample), 0, 0, GRACE_PERIOD, 0, 0, 1, 0, sender=owner
        )


# ------------------------------------------------------------------ 2. code that changes


def test_verifier_code_changed__the_market_freezes_and_the_live_assignment_is_voided_at_once(
    registry,
    owner,
    create_market,
    deploy_custom_verifier,
    mechanism,
    staked_provers,
    prover,
    keeper,
    requester,
    stranger,
    chain,
):
    """2. `prove` used to judge proofs with whatever code sat at the verifier's address
    while only `slash` compared the code hash. Now every step compares it: a changed
    custom verifier freezes its market (no tasks, assignments or proofs) and its live
    assignments are voided at once, with nobody slashed and the escrow refunded."""
    verifier = deploy_custom_verifier()
    market_id = create_market(verifier_address=verifier)
    registry.join_market(market_id, 2, ETHER // 100, 60, 0b11, [mechanism], sender=prover)
    live = post(registry, requester, make_terms(market_id, mechanism, salt=1))
    waiting = post(registry, requester, make_terms(market_id, mechanism, salt=2))
    assignment = assign(registry, keeper, live, prover)
    other = owner.deploy(ape.compilers.compile_source("vyper", ACCEPT_ALL, contractName="AcceptAll"))
    chain.provider.make_request(
        "anvil_setCode", [verifier.address, chain.provider.get_code(other.address).hex()]
    )

    assert registry.market(market_id).frozen
    with ape.reverts("registry: verifier changed"):
        prove(registry, live, assignment, prover)  # a valid proof, judged by code nobody agreed to
    with ape.reverts("registry: verifier changed"):
        registry.assign(item(waiting, prover, waiting.max_reward), sender=keeper)
    with ape.reverts("registry: verifier changed"):
        post(registry, requester, make_terms(market_id, mechanism, salt=3))
    requester_before = registry.balances(requester)
    tx = registry.slash(
        live.as_tuple(), prover, assignment.as_tuple(), sender=stranger
    )  # before the deadline

    assert [e.prover for e in tx.events.filter(registry.AssignmentVoided)] == [prover.address]
    assert not tx.events.filter(registry.Slashed)
    assert registry.standing(prover).locked == 0
    assert registry.standing(prover).stake == 5 * ETHER
    assert registry.balances(requester) - requester_before == live.max_reward + live.frontend_fee
    assert registry.balances(stranger) == 0


# ------------------------------------------------------------------ 3, 4. hostile terms


@pytest.mark.parametrize(
    "overrides, reason",
    [
        ({"decay": True, "proving_window": 2**210}, "registry: proving window too long"),
        (
            {"mechanism_id": DUTCH, "decay": True, "proving_window": 2**210},
            "registry: proving window too long",
        ),
        ({"assign_window": 2**256 - 1}, "registry: assignment window too long"),
        ({"proving_window": 2**256 - 1}, "registry: proving window too long"),
        ({"mechanism_id": DUTCH, "ramp": 2**256 - 1}, "registry: ramp too long"),
    ],
)
def test_stake_lock_and_poisoned_task__windows_near_2_256__are_refused_at_post(
    registry, requester, market, mechanism, staked_provers, overrides, reason
):
    """3, 4. A decaying task with a proving window of 2**210 overflowed at proof time, so
    the prover could neither prove nor leave: its collateral was locked for good. A
    window near 2**256 overflowed inside `_assign`, reverting whole batches. Every
    window is now bounded where it enters."""
    overrides = dict(overrides)
    terms = make_terms(market, overrides.pop("mechanism_id", mechanism), **overrides)
    with ape.reverts(reason):
        post(registry, requester, terms)


def test_terms_at_their_bounds__every_later_step_settles_and_no_collateral_stays_locked(
    registry, market, mechanism, accounts, keeper, stranger, chain
):
    """3. The other half of bounded terms: for terms at every bound (windows, amounts,
    capabilities) each later step's arithmetic fits, so a proof at the very end of a
    month-long decaying window pays, a slash after it settles, and the prover leaves."""
    rich_requester, prover, late, locker = accounts[7], accounts[8], accounts[9], stranger
    for who in (rich_requester, prover, late, locker):
        chain.set_balance(who.address, 4 * MAX_COLLATERAL)
    for who in (prover, late, locker):
        registry.stake(sender=who, value=MAX_COLLATERAL - registry.standing(who).stake)
        registry.join_market(market, 2, 0, 60, MAX_CAPABILITIES, [mechanism], sender=who)
    bounds = dict(
        max_reward=MAX_REWARD,
        frontend_fee=MAX_REWARD,
        collateral=MAX_COLLATERAL,
        capabilities=MAX_CAPABILITIES,
        assign_window=MAX_ASSIGN_WINDOW,
        proving_window=MAX_PROVING_WINDOW,
        decay=True,
        decay_floor=MAX_REWARD // 3,
    )
    proven = post(registry, rich_requester, make_terms(market, mechanism, salt=1, **bounds))
    missed = post(registry, rich_requester, make_terms(market, mechanism, salt=2, **bounds))
    dutch = post(
        registry,
        rich_requester,
        make_terms(
            market,
            DUTCH,
            salt=3,
            **{**bounds, "frontend_fee": 0, "start_price": 0, "ramp": MAX_ASSIGN_WINDOW},
        ),
    )

    on_proven = assign(registry, keeper, proven, prover, MAX_REWARD)
    on_missed = assign(registry, keeper, missed, late, MAX_REWARD)
    advance(chain, MAX_ASSIGN_WINDOW // 2)
    [(_, on_dutch)] = assigned(registry, registry.lock(dutch.as_tuple(), sender=locker))
    chain.pending_timestamp = on_proven.deadline
    tx = prove(registry, proven, on_proven, prover)
    advance(chain, MAX_PROVING_WINDOW + 1)
    registry.slash(missed.as_tuple(), late, on_missed.as_tuple(), sender=keeper)
    registry.slash(dutch.as_tuple(), locker, on_dutch.as_tuple(), sender=keeper)

    assert tx.events.filter(registry.TaskProven)[0].paid == MAX_REWARD // 3  # the floor, at the deadline
    assert 0 < on_dutch.price < MAX_REWARD
    for who in (prover, late, locker):
        assert registry.standing(who).locked == 0
        registry.leave_market(market, sender=who)


def test_poisoned_task__garbage_terms_in_a_batch__are_skipped_and_the_rest_apply(
    registry, create_task, prover, provers, keeper
):
    """4. A batch item whose terms were never posted (windows near 2**256 included) is
    skipped as an unknown task before any arithmetic; reclaiming it is refused."""
    good = create_task()
    garbage = replace(good, assign_window=2**256 - 1, proving_window=2**256 - 1, posted_at=2**256 - 1)

    tx = registry.assign_batch(
        [item(garbage, prover, good.max_reward), item(good, provers[1], good.max_reward)], sender=keeper
    )

    assert [e.reason for e in tx.events.filter(registry.AssignmentSkipped)] == ["registry: unknown task"]
    assert [who for who, _ in assigned(registry, tx)] == [provers[1].address]
    with ape.reverts("registry: unknown task"):
        registry.reclaim(garbage.as_tuple(), sender=keeper)


# ------------------------------------------------------------------ 5, 6. grace and decline


def test_unprovable_task__zero_grace_refused_and_the_prover_declines_in_time_unslashed(
    registry, create_market, create_task, prover, keeper, requester, owner, chain
):
    """5. Nothing on chain ties the posted inputs to `inputs_commitment`, so a requester
    can post a task nobody can prove. With a grace period of 0 the assigned prover could
    neither prove nor decline and was slashed. A market's grace now has a floor above 0
    and a task's proving window must exceed it, so the prover declines for free."""
    with ape.reverts("registry: grace period too short"):
        create_market(grace_period=0)
    # y = 50 is no square: no x proves it, whatever the posted input says.
    unprovable = create_task(inputs_commitment=inputs_commitment([0, 50], 0))
    assignment = assign(registry, keeper, unprovable, prover)

    advance(chain, GRACE_PERIOD - 5)
    tx = registry.decline(unprovable.as_tuple(), assignment.as_tuple(), sender=prover)

    assert tx.events.filter(registry.TaskDeclined)[0].prover == prover.address
    assert registry.standing(prover).locked == 0
    assert registry.standing(prover).stake == 5 * ETHER
    with ape.reverts("registry: not assigned"):
        registry.slash(unprovable.as_tuple(), prover, assignment.as_tuple(), sender=requester)


def test_slash_avoidance__decline_after_grace_or_a_window_within_grace__refused(
    registry, create_task, requester, market, mechanism, prover, keeper, chain
):
    """6. `decline` checked only the grace period: where the grace outlasted the proving
    window, a prover that missed its deadline declined for free. A window within the
    grace is now refused at post, and a decline after min(grace end, deadline) fails."""
    with ape.reverts("registry: proving window not above grace"):
        post(registry, requester, make_terms(market, mechanism, proving_window=GRACE_PERIOD))
    terms = create_task(proving_window=GRACE_PERIOD + 1)
    assignment = assign(registry, keeper, terms, prover)

    advance(chain, GRACE_PERIOD + 1)
    with ape.reverts("registry: grace period over"):
        registry.decline(terms.as_tuple(), assignment.as_tuple(), sender=prover)
    advance(chain, 1)
    with ape.reverts("registry: grace period over"):  # past the deadline too
        registry.decline(terms.as_tuple(), assignment.as_tuple(), sender=prover)


# ------------------------------------------------------------------ 7. copied proofs


@pytest.fixture
def reveal_race(registry, create_market, staked_provers, requester):
    """An open race in a commit-reveal market (no address input) the provers joined."""
    market_id = create_market(binding=BINDING_COMMIT_REVEAL)
    for p in staked_provers:
        registry.join_market(market_id, 2, ETHER // 100, 60, 0b11, [], sender=p)
    return post(registry, requester, make_terms(market_id, OPEN_RACE))


def test_mempool_copy_of_a_pending_reveal__the_copier_finds_no_slot_and_the_first_committer_is_paid(
    registry, reveal_race, provers, chain
):
    """7. A reveal left pending for a block was copied: the copier committed, revealed
    first and was paid, and the honest reveal failed. A commit now takes the race's slot,
    so a copier who commits after seeing the reveal (here in the same block, ahead of it
    by a higher tip) finds no free slot."""
    honest, copier = provers[0], provers[1]
    task = registry.task_id(reveal_race.as_tuple())
    proof = proof_for(STATEMENT)  # names no prover
    commit = registry.commit_proof(
        reveal_race.as_tuple(), proof_commit_digest(task, honest.address, proof), sender=honest
    )
    [(_, claim)] = assigned(registry, commit)
    tip = chain.provider.web3.eth.max_priority_fee
    chain.provider.auto_mine = False
    try:
        reveal = registry.prove(
            reveal_race.as_tuple(),
            claim.as_tuple(),
            STATEMENT,
            proof,
            sender=honest,
            gas=600_000,
            max_priority_fee=tip,
            required_confirmations=0,
        )
        copy = registry.commit_proof(
            reveal_race.as_tuple(),
            proof_commit_digest(task, copier.address, proof),
            sender=copier,
            gas=600_000,
            max_priority_fee=10 * tip + 10**9,
            required_confirmations=0,
        )
        chain.mine(1)
    finally:
        chain.provider.auto_mine = True
    reveal, copy = (chain.provider.get_receipt(tx.txn_hash) for tx in (reveal, copy))

    index = {
        r.txn_hash: chain.provider.web3.eth.get_transaction_receipt(r.txn_hash)["transactionIndex"]
        for r in (reveal, copy)
    }
    assert reveal.block_number == copy.block_number
    assert index[copy.txn_hash] < index[reveal.txn_hash]
    assert copy.failed and copy.trace.revert_message == "registry: no free slot"
    assert not reveal.failed
    assert registry.balances(honest) == reveal_race.max_reward
    assert registry.balances(copier) == 0


def test_proof_replayed_from_an_earlier_task__refused_in_a_market_that_cannot_bind(
    registry, create_market, staked_provers, provers, keeper, requester, mechanism
):
    """7. In a market whose proofs name nobody, a proof copied from an earlier task's
    TaskProven event was paid again when the inputs repeated."""
    market_id = create_market(binding=BINDING_NONE)
    for p in staked_provers:
        registry.join_market(market_id, 2, ETHER // 100, 60, 0b11, [mechanism], sender=p)
    worker, copier = provers[0], provers[1]
    first = post(registry, requester, make_terms(market_id, mechanism, salt=1))
    second = post(registry, requester, make_terms(market_id, mechanism, salt=2))
    on_first, on_second = assign(registry, keeper, first, worker), assign(registry, keeper, second, copier)
    tx = prove(registry, first, on_first, worker, proof=proof_for(STATEMENT))
    published = bytes(tx.events.filter(registry.TaskProven)[0].proof)

    with ape.reverts("registry: proof already paid"):
        prove(registry, second, on_second, copier, proof=published)
    own = default_backend().prove(SQUARE, SQUARE.sample, ZERO_ADDRESS).proof  # its own: new randomness
    prove(registry, second, on_second, copier, proof=own)
    assert registry.balances(copier) == second.max_reward


# ------------------------------------------------------------------ 8. self-slashing


@pytest.mark.parametrize("caller", ["requester", "prover"])
def test_self_slash__by_the_requester_or_the_slashed_prover__burns_the_caller_bounty(
    registry, create_task, prover, keeper, requester, chain, caller
):
    """8. The requester's share of a slash is capped at max_reward, but a requester that
    slashed itself also took the caller's bounty (40x max_reward was seen); a slashed
    prover slashing itself got the bounty back. Either way the bounty is now burnt."""
    terms = create_task(collateral=4 * ETHER, max_reward=ETHER // 100)
    assignment = assign(registry, keeper, terms, prover)
    advance(chain, terms.proving_window + 1)
    who = requester if caller == "requester" else prover
    before = registry.balances(who)

    tx = registry.slash(terms.as_tuple(), prover, assignment.as_tuple(), sender=who)

    [slashed] = tx.events.filter(registry.Slashed)
    assert slashed.to_caller == 0
    assert slashed.to_requester == terms.max_reward  # the cap: 50% of 4 ETH is far above it
    assert slashed.burnt == terms.collateral - terms.max_reward
    assert slashed.reopened  # the slot goes back on offer; its escrow stays in the task
    assert registry.balances(who) - before == (terms.max_reward if caller == "requester" else 0)
    assert registry.standing(prover).stake == 5 * ETHER - terms.collateral


# ------------------------------------------------------------------ 9. cancel


@pytest.mark.parametrize("ending", ["decline", "slash"])
def test_cancel_then_the_held_slot_reopens__it_closes_and_refunds_instead(
    registry, create_task, provers, keeper, requester, stranger, chain, ending
):
    """9. `cancel` closed only open slots: a slot held at cancel time, declined or slashed
    later, reopened and was assigned and paid again. The task now remembers the cancel."""
    terms = create_task()
    holder, other = provers[0], provers[1]
    assignment = assign(registry, keeper, terms, holder)
    requester_before = registry.balances(requester)

    cancel = registry.cancel(terms.as_tuple(), sender=requester)
    if ending == "decline":
        tx = registry.decline(terms.as_tuple(), assignment.as_tuple(), sender=holder)
        assert not tx.events.filter(registry.TaskDeclined)[0].reopened
    else:
        advance(chain, terms.proving_window + 1)
        tx = registry.slash(terms.as_tuple(), holder, assignment.as_tuple(), sender=stranger)
        assert not tx.events.filter(registry.Slashed)[0].reopened

    assert cancel.events.filter(registry.SlotsClosed)[0].cancelled
    [closed] = tx.events.filter(registry.SlotsClosed)
    assert (closed.slots, closed.refund, closed.cancelled) == (1, terms.max_reward + terms.frontend_fee, True)
    assert registry.cancelled(registry.task_id(terms.as_tuple()))
    with ape.reverts("registry: no free slot"):
        registry.assign(item(terms, other, terms.max_reward), sender=keeper)
    refunded = registry.balances(requester) - requester_before
    slash_share = 0 if ending == "decline" else min(terms.collateral // 2, terms.max_reward)
    assert refunded == terms.max_reward + terms.frontend_fee + slash_share


# ------------------------------------------------------------------ 10. Dutch lock, decline


def test_dutch_lock_then_decline__refused(registry, create_task, prover, chain):
    """10. Throwaway identities locked a Dutch slot and declined it in turn, holding it
    for the whole assignment window at no cost. A prover that took a slot itself saw the
    inputs first (they are in TaskPosted), so it cannot decline it."""
    terms = create_task(mechanism_id=DUTCH, start_price=ETHER // 100, ramp=60)
    [(_, assignment)] = assigned(registry, registry.lock(terms.as_tuple(), sender=prover))

    with ape.reverts("registry: locked slots cannot be declined"):
        registry.decline(terms.as_tuple(), assignment.as_tuple(), sender=prover)
    assert registry.standing(prover).locked == terms.collateral


# ------------------------------------------------------------------ 11. batches


def test_rival_fills_a_race_slot__prove_batch_skips_it_and_pays_the_assigned_proof(
    registry, create_task, provers, keeper
):
    """11. `prove_batch` was all or nothing: a rival who filled a race slot first
    reverted a batch that also carried assigned proofs."""
    prover, rival = provers[0], provers[1]
    race = create_task(mechanism_id=OPEN_RACE)
    assigned_task = create_task()
    assignment = assign(registry, keeper, assigned_task, prover)
    prove(registry, race, RACE, rival)
    own = proof_for(STATEMENT, prover.address)
    items = [
        (race.as_tuple(), RACE.as_tuple(), STATEMENT, own),
        (assigned_task.as_tuple(), assignment.as_tuple(), STATEMENT, own),
    ]

    tx = registry.prove_batch(items, sender=prover)

    [skipped] = tx.events.filter(registry.ProofSkipped)
    assert skipped.reason == "registry: no free slot"
    assert [e.prover for e in tx.events.filter(registry.TaskProven)] == [prover.address]
    assert registry.balances(prover) == assigned_task.max_reward


# ------------------------------------------------------------------ 12. chain id change


def test_chain_id_changes_after_a_fork__live_tasks_settle_and_old_chain_bids_are_refused(
    registry, create_task, provers, keeper, stranger, chain
):
    """12. Task ids hashed the current chain id: after a fork that changed it, live tasks
    were stranded with their escrow and locked collateral. They now hash the chain id at
    deployment, so they are proven, slashed and reclaimed as before; signed Bids use the
    current chain id, so one signed for the old chain is refused."""
    prover, late = provers[0], provers[1]
    proven, missed, unsigned = create_task(), create_task(), create_task()
    on_proven, on_missed = assign(registry, keeper, proven, prover), assign(registry, keeper, missed, late)
    old_id = chain.chain_id
    task = registry.task_id(unsigned.as_tuple())
    ids = [bytes(registry.task_id(t.as_tuple())) for t in (proven, missed, unsigned)]
    expiry = chain.pending_timestamp + 3_600

    def bid(chain_id: int) -> tuple:
        signature = sign_bid(prover.private_key, chain_id, registry.address, task, 0, expiry, 0)
        return item(unsigned, prover, unsigned.max_reward // 2, signature, 0, expiry, 0)

    web3 = chain.provider.web3

    def send(sender, method, *args) -> dict:
        """Sign for the chain id the node has now (ape, and anvil's own signer, keep the
        one they started with) and send the raw transaction."""
        tx = {
            "chainId": web3.eth.chain_id,
            "nonce": web3.eth.get_transaction_count(sender.address),
            "to": registry.address,
            "data": method.encode_input(*args),
            "gas": 1_000_000,
            "maxFeePerGas": 2 * web3.eth.gas_price + 10**9,
            "maxPriorityFeePerGas": 10**9,
        }
        raw = Account.from_key(sender.private_key).sign_transaction(tx).raw_transaction
        return web3.eth.wait_for_transaction_receipt(web3.eth.send_raw_transaction(raw))

    chain.provider.make_request("anvil_setChainId", [old_id + 1])
    try:
        assert web3.eth.chain_id == old_id + 1
        assert [bytes(registry.task_id(t.as_tuple())) for t in (proven, missed, unsigned)] == ids
        proof = proof_for(STATEMENT, prover.address)
        proved = send(prover, registry.prove, proven.as_tuple(), on_proven.as_tuple(), STATEMENT, proof)
        chain.mine(1, deltatime=missed.proving_window + 1)
        slashed = send(stranger, registry.slash, missed.as_tuple(), late.address, on_missed.as_tuple())
        refused = {
            "from": keeper.address,
            "to": registry.address,
            "data": registry.assign.encode_input(bid(old_id)),
        }
        with pytest.raises(ContractLogicError, match="registry: signer is not the prover"):
            web3.eth.call(refused)
        old_bid = send(keeper, registry.assign, bid(old_id))
        new_bid = send(keeper, registry.assign, bid(old_id + 1))
    finally:
        chain.provider.make_request("anvil_setChainId", [old_id])

    assert (proved["status"], slashed["status"], old_bid["status"], new_bid["status"]) == (1, 1, 0, 1)
    assert registry.balances(prover) == proven.max_reward
    assert registry.standing(late).locked == 0
    assert registry.task_status(registry.task_id(unsigned.as_tuple())).assigned == 1
