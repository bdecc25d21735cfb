"""`ape run prover`: stake, unstake and withdraw, join (a custom market only with its
verifier's code hash reviewed), update, accept and leave markets, a prover's status, and
lock and prove refusing a task nobody can prove; each refusal is one line with the values
seen, exit 1, nothing sent."""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor

from eth_utils import keccak

from provingmarket import DUTCH
from provingmarket.cli import when
from provingmarket.devnet import SQUARE
from provingmarket.formats import inputs_commitment
from tests.factories import ETHER, STATEMENT, UNBONDING_DELAY, advance, assigned, item, proof_for


def refused(result, message: str, args=()) -> None:
    assert result.code == 1, (args, result.out, result.err)
    assert message in result.error, (args, result.error)
    assert "Traceback" not in result.err


def fees(chain, tx: str) -> int:
    receipt = chain.provider.web3.eth.get_transaction_receipt(tx)
    return receipt["gasUsed"] * receipt["effectiveGasPrice"]


def test_stake_unstake_withdraw_stake(run, recorded, registry, accounts, chain):
    prover = accounts[8]
    staked = run("prover", "stake", "1.5", "--json", account="TEST::8")
    assert staked.code == 0, staked.err
    assert registry.standing(prover).stake == 3 * ETHER // 2
    assert (staked.json()["staked"], staked.json()["free"]) == (3 * ETHER // 2, 3 * ETHER // 2)

    unstaked = run("prover", "unstake", "0.4", account="TEST::8")
    assert unstaked.code == 0, unstaked.err
    standing = registry.standing(prover)
    assert (standing.stake, standing.unbonding) == (11 * ETHER // 10, 4 * ETHER // 10)
    ready = when(standing.unbonding_ready_at)
    assert f"unstaked 0.4 ETH: 0.4 ETH unbonding, ready at {ready} (in {UNBONDING_DELAY} s)" in unstaked.out
    assert "stake 1.1 ETH (1.1 ETH free, 0 ETH locked by live assignments)" in unstaked.out

    nonce = prover.nonce
    early = run("prover", "withdraw-stake", account="TEST::8")
    assert early.code == 1
    left = int(
        re.search(rf"^error: 0\.4 ETH unbonding, ready at {ready} \(in (\d+) s\)$", early.error).group(1)
    )
    assert 0 < left <= UNBONDING_DELAY
    assert prover.nonce == nonce and registry.standing(prover).unbonding == 4 * ETHER // 10

    advance(chain, UNBONDING_DELAY)
    held = prover.balance
    withdrawn = run("prover", "withdraw-stake", "--json", account="TEST::8")
    assert withdrawn.code == 0, withdrawn.err
    assert withdrawn.json()["withdrawn"] == 4 * ETHER // 10
    assert prover.balance == held + 4 * ETHER // 10 - fees(chain, withdrawn.json()["tx"])
    assert registry.standing(prover).unbonding == 0


def test_join_accept_update_leave(run, recorded, registry, market, mechanism, accounts):
    prover = accounts[8].address
    registry.stake(sender=accounts[8], value=ETHER)
    joined = run(
        "prover",
        "join",
        str(market),
        "--capacity",
        "2",
        "--ask",
        "0.01",
        "--proving-time",
        "60",
        "--capabilities",
        "0b101",
        "--mechanism",
        str(mechanism),
        account="TEST::8",
    )
    assert joined.code == 0, joined.err
    assert (
        f"joined market {market}: capacity 2, ask 0.01 ETH, proving time 60 s, capabilities 0b101; "
        f"mechanisms accepted: {mechanism}" in joined.out
    )
    m = registry.membership(prover, market)
    assert (m.joined, m.capacity, m.ask, m.proving_time, m.capabilities) == (True, 2, ETHER // 100, 60, 5)
    assert registry.accepts(prover, market, mechanism)

    removed = run("prover", "accept", str(market), str(mechanism), "--remove", account="TEST::8")
    assert removed.code == 0, removed.err
    assert f"mechanism {mechanism} no longer accepted in market {market}" in removed.out
    assert not registry.accepts(prover, market, mechanism)
    accepted = run("prover", "accept", str(market), str(mechanism), account="TEST::8")
    assert accepted.code == 0 and registry.accepts(prover, market, mechanism)

    updated = run("prover", "update", str(market), "--capacity", "3", "--ask", "0.02", account="TEST::8")
    assert updated.code == 0, updated.err
    m = registry.membership(prover, market)  # what was not given keeps its value
    assert (m.capacity, m.ask, m.proving_time, m.capabilities) == (3, ETHER // 50, 60, 5)
    assert f"market {market}: capacity 3, ask 0.02 ETH, proving time 60 s, capabilities 0b101" in updated.out

    left = run("prover", "leave", str(market), account="TEST::8")
    assert left.code == 0, left.err
    assert f"left market {market}" in left.out
    assert not registry.membership(prover, market).joined
    assert not registry.accepts(prover, market, mechanism)  # acceptances lapse on leave


def test_live_assignment__status__refusals__then_proof_and_withdraw(
    run, recorded, registry, market, mechanism, accounts, keeper, create_task, chain
):
    prover = accounts[9]
    registry.stake(sender=prover, value=ETHER)
    registry.join_market(market, 2, ETHER // 100, 60, 0, [mechanism], sender=prover)
    terms = create_task()  # collateral 0.5 ETH, reward 0.1 ETH, 300 s to prove
    [(_, assignment)] = assigned(
        registry, registry.assign(item(terms, prover, terms.max_reward), sender=keeper)
    )
    task = "0x" + registry.task_id(terms.as_tuple()).hex()

    shown = run("prover", "status", account="TEST::9")
    assert shown.code == 0, shown.err
    assert "stake      1 ETH (0.5 ETH free, 0.5 ETH locked by live assignments)" in shown.out
    assert "unbonding  none" in shown.out
    assert re.search(rf"^{market}\s+1/2\s+0\.01 ETH\s+60 s\s+0b0\s+{mechanism}$", shown.out, re.M)
    row = re.search(rf"^{task}\s+{market}\s+0\s+0\.1 ETH\s+0\.5 ETH\s+(.+ UTC)\s+(\d+) s$", shown.out, re.M)
    assert row, shown.out
    assert row.group(1) == when(assignment.deadline) and 0 < int(row.group(2)) <= 300

    nonce = prover.nonce
    too_much = run("prover", "unstake", "0.6", account="TEST::9")
    refused(
        too_much,
        "prover has 0.5 ETH free stake (1 ETH staked, 0.5 ETH locked by live assignments); "
        "unstake at most 0.5 ETH",
    )
    busy = run("prover", "leave", str(market), account="TEST::9")
    refused(
        busy,
        f"prover holds 1 live assignment in market {market}: task {task} due {when(assignment.deadline)}",
    )
    assert "leave once each is proven, declined or slashed" in busy.error
    assert prover.nonce == nonce
    assert registry.standing(prover).unbonding == 0 and registry.membership(prover, market).joined

    registry.prove(
        terms.as_tuple(),
        assignment.as_tuple(),
        STATEMENT,
        proof_for(STATEMENT, prover.address),
        sender=prover,
    )
    after = run("prover", "status", prover.address, "--json")  # read-only: no account needed
    assert after.code == 0, after.err
    data = after.json()
    assert (data["stake"], data["locked"], data["balance"], data["live"]) == (ETHER, 0, ETHER // 10, [])
    assert data["markets"] == [
        {
            "market_id": market,
            "paused": False,
            "capacity": 2,
            "used": 0,
            "ask": ETHER // 100,
            "proving_time": 60,
            "capabilities": 0,
            "mechanisms": [mechanism],
        }
    ]

    held = prover.balance
    withdrawn = run("prover", "withdraw", "--json", account="TEST::9")
    assert withdrawn.code == 0, withdrawn.err
    assert withdrawn.json()["withdrawn"] == ETHER // 10
    assert prover.balance == held + ETHER // 10 - fees(chain, withdrawn.json()["tx"])
    assert registry.balances(prover) == 0


def test_refusals__say_what_was_seen__exit_1_nothing_sent(
    run, recorded, registry, market, mechanism, accounts, owner
):
    fresh, member = accounts[7], accounts[8]  # fresh: nothing staked, in no market
    registry.stake(sender=member, value=ETHER)
    registry.join_market(market, 2, ETHER // 100, 60, 0, [mechanism], sender=member)
    tx = registry.register_mechanism("old", [], sender=owner)
    retired = tx.events.filter(registry.MechanismRegistered)[0].mechanism_id
    registry.retire_mechanism(retired, sender=owner)
    join = ["join", str(market), "--capacity", "1", "--ask", "0.01", "--proving-time", "60"]
    markets, last = registry.market_count(), registry.mechanism_count()
    cases = [
        ("TEST::7", ["withdraw-stake"], "nothing unbonding for " + fresh.address),
        (
            "TEST::7",
            ["withdraw"],
            f"nothing to withdraw: no earnings or refunds are credited to {fresh.address}",
        ),
        ("TEST::7", ["stake", "20000"], "less than the 20000 ETH to stake (and gas)"),
        ("TEST::7", ["join", "99", *join[2:]], f"no market 99 (this registry has {markets} market"),
        ("TEST::7", [*join, "--mechanism", "99"], f"no mechanism 99 (registered mechanisms are 3 to {last})"),
        ("TEST::7", [*join, "--mechanism", str(retired)], f"mechanism {retired} is retired"),
        (
            "TEST::7",
            ["update", str(market), "--ask", "1"],
            f"prover {fresh.address} is not in market {market}",
        ),
        ("TEST::7", ["leave", str(market)], f"is not in market {market}; nothing to leave"),
        ("TEST::8", join, f"prover {member.address} is already in market {market} (capacity 2, ask 0.01 ETH"),
        ("TEST::8", ["accept", str(market), "2"], "mechanism 2 (dutch) is built in"),
        ("TEST::8", ["accept", str(market), str(mechanism)], f"already accepts mechanism {mechanism}"),
        ("TEST::8", ["update", str(market), "--capacity", "2"], "nothing changes: market"),
        # bad values: one line, before anything is read or sent
        (
            "TEST::7",
            ["stake", "0.0000000000000000001"],
            "amount '0.0000000000000000001' has more than 18 decimals",
        ),
        ("TEST::7", ["unstake", "lots"], "amount 'lots' is not a number of ETH (write it like 0.25)"),
        ("TEST::7", [*join[:5], "-1", *join[6:]], "--ask '-1' is negative"),
        ("TEST::7", [*join[:3], "0", *join[4:]], "--capacity must be at least 1 to join"),
        ("TEST::7", [*join[:7], "soon"], "--proving-time 'soon' is not a whole number"),
        (None, ["status", "0x1234"], "address '0x1234' is not an address (0x and 40 hex digits)"),
    ]
    nonces = (fresh.nonce, member.nonce)
    # Nothing here changes the chain, so the commands run side by side.
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda case: run("prover", *case[1], account=case[0]), cases))
    for (_, args, message), result in zip(cases, results, strict=True):
        refused(result, message, args)

    registry.set_market_paused(market, True, sender=owner)
    paused = run("prover", *join, account="TEST::7")
    refused(paused, f"market {market} is paused: no new tasks or assignments until its creator resumes it")
    assert (fresh.nonce, member.nonce) == nonces
    assert registry.standing(fresh).stake == 0 and not registry.membership(fresh, market).joined
    assert registry.membership(member, market).capacity == 2


def test_join__custom_market__only_with_the_code_hash_reviewed__nothing_sent_otherwise(
    run, recorded, registry, create_market, deploy_custom_verifier, accounts, chain
):
    prover = accounts[8]
    registry.stake(sender=prover, value=ETHER)
    verifier = deploy_custom_verifier()
    custom = create_market(verifier_address=verifier)
    codehash = "0x" + bytes(registry.market(custom).codehash).hex()
    changing = deploy_custom_verifier()
    frozen = create_market(verifier_address=changing)
    chain.provider.make_request("anvil_setCode", [changing.address, "0x00"])
    frozen_hash = "0x" + bytes(registry.market(frozen).codehash).hex()
    wrong = "0x" + "ab" * 32
    join = ["join", str(custom), "--capacity", "1", "--ask", "0.01", "--proving-time", "60"]
    cases = [
        (
            join,
            f"market {custom} is custom: its verifier {verifier.address} was not deployed by the registry, "
            "so what it accepts may change; review the verifier's code, then pass "
            f"--trust-verifier {codehash} (its code hash) to take part",
        ),
        (
            [*join, "--trust-verifier", wrong],
            f"market {custom} is custom and --trust-verifier {wrong} is not its verifier's code hash: "
            f"verifier {verifier.address} has code hash {codehash}; review the verifier's code, then pass "
            f"--trust-verifier {codehash} to take part",
        ),
        ([*join, "--trust-verifier", "0x1234"], "--trust-verifier '0x1234' is not a code hash (0x and 64"),
        (
            ["join", str(frozen), *join[2:], "--trust-verifier", frozen_hash],
            f"market {frozen} is frozen: its verifier {changing.address}'s code is no longer the code hash "
            f"{frozen_hash} recorded at its creation",
        ),
    ]
    nonce = prover.nonce
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda case: run("prover", *case[0], account="TEST::8"), cases))
    for (args, message), result in zip(cases, results, strict=True):
        refused(result, message, args)
        assert len(result.error.splitlines()) == 1
    assert prover.nonce == nonce
    assert not registry.membership(prover, custom).joined and not registry.membership(prover, frozen).joined

    joined = run("prover", *join, "--trust-verifier", codehash.upper().replace("0X", "0x"), account="TEST::8")
    assert joined.code == 0, joined.err
    assert (
        f"note: market {custom} is custom: you trust its verifier {verifier.address} at code hash "
        f"{codehash}; run the agent with --trust-verifier {codehash}" in joined.out
    )
    assert registry.membership(prover, custom).joined


def test_lock_and_prove__inputs_nobody_can_prove__one_line_nothing_sent(
    run, recorded, registry, create_task, provers, keeper
):
    posted = {"x": 7, "y": 50}  # committed to as posted, but x = 7 gives y = 49
    prover_input = json.dumps(posted).encode()
    unprovable = {
        "prover_input": prover_input,
        "prover_input_hash": keccak(prover_input),
        "inputs_commitment": inputs_commitment([0, 50], SQUARE.address_input),  # no witness gives it
    }
    assigned_task = create_task(**unprovable)
    assigned(registry, registry.assign(item(assigned_task, provers[0], ETHER // 20), sender=keeper))
    dutch = create_task(mechanism_id=DUTCH, start_price=ETHER // 100, ramp=600, **unprovable)
    says = (
        "the task's posted inputs do not satisfy circuit square: a constraint is not satisfied "
        "(assert failed) (Error in template Square_0 line: 14); nobody can prove it"
    )
    nonce = provers[0].nonce
    for args in (["prove", task_hex(registry, assigned_task)], ["lock", task_hex(registry, dutch)]):
        result = run("prover", *args, account="TEST::2")
        refused(result, says, args)
        assert result.error == f"error: {says}"
    assert provers[0].nonce == nonce
    assert registry.standing(provers[0]).locked == assigned_task.collateral  # the lock was not sent


def task_hex(registry, terms) -> str:
    return "0x" + bytes(registry.task_id(terms.as_tuple())).hex()
