"""`ape run operator`: deploy and record, open, pause and show markets, register and retire
mechanisms and set their frontends; each refusal is one line, exit 1, nothing sent."""

from __future__ import annotations

import pytest

from provingmarket import deployments
from tests.factories import UNBONDING_DELAY

FRONTEND = "0x90F79bf6EB2c4f870365E785982E1f101E93b906"


@pytest.mark.ape_run
def test_deploy__records_the_registry__then_refuses_to_replace_it(run, deployments_folder, chain, accounts):
    result = run("operator", "deploy", "--unbonding-delay", "120", "--json", account="TEST::0")

    assert result.code == 0, result.err
    printed = result.json()
    record = deployments.load("ethereum:custom", deployments_folder)
    assert (record.registry, record.chain_id, record.unbonding_delay) == (
        printed["registry"],
        chain.chain_id,
        120,
    )
    assert chain.provider.get_code(record.registry)
    web3 = chain.provider.web3
    deployed_in = [
        web3.eth.get_transaction_receipt(t)["contractAddress"]
        for t in web3.eth.get_block(record.block)["transactions"]
    ]
    assert record.registry in deployed_in  # the block is where log searches start

    nonce = accounts[0].nonce
    again = run("operator", "deploy", account="TEST::0")
    assert again.code == 1
    assert f"a registry is already recorded for ethereum:custom at {record.registry}" in again.error
    assert "--replace" in again.error
    assert accounts[0].nonce == nonce


@pytest.mark.ape_run
def test_commands__no_deployment_or_stale_one__say_how_to_deploy(run, deployments_folder, chain):
    missing = run("operator", "market", "show", "1")
    assert missing.code == 1
    assert "no deployment recorded for ethereum:custom" in missing.error
    assert "ape run operator deploy --network" in missing.error

    stale = deployments.Deployment("ethereum:custom", chain.chain_id, "0x" + "12" * 20, 0, UNBONDING_DELAY)
    deployments.save(stale, deployments_folder)
    gone = run("operator", "market", "show", "1")
    assert gone.code == 1
    assert "no registry at 0x1212121212121212121212121212121212121212" in gone.error


def test_market_create_show_pause_resume(run, recorded, deployments_folder, registry, accounts):
    created = run("operator", "market", "create", "squarings-1000", "--min-reward", "0.02", account="TEST::0")
    assert created.code == 0, created.err
    market_id = registry.market_count()
    assert f"market {market_id} opened for circuit squarings-1000" in created.out
    record = deployments.load(recorded.network, deployments_folder)
    assert record.markets[market_id].circuit == "squarings-1000"
    assert registry.market(market_id).verifier == record.markets[market_id].verifier
    assert registry.market(market_id).min_reward == 2 * 10**16

    registry.stake(sender=accounts[7], value=10**18)
    registry.join_market(market_id, 3, 10**16, 30, 0, [], sender=accounts[7])
    shown = run("operator", "market", "show", str(market_id), "--json")
    assert shown.code == 0, shown.err
    data = shown.json()
    assert (data["circuit"], data["paused"], data["binding"]) == ("squarings-1000", False, "address input")
    assert data["provers"] == [
        {"prover": accounts[7].address, "capacity": 3, "used": 0, "ask": 10**16, "proving_time": 30}
    ]

    not_creator = run("operator", "market", "pause", str(market_id), account="TEST::1")
    assert not_creator.code == 1
    assert f"only market {market_id}'s creator {accounts[0].address} may pause it" in not_creator.error

    paused = run("operator", "market", "pause", str(market_id), account="TEST::0")
    assert paused.code == 0 and registry.market(market_id).paused
    assert "(PAUSED)" in run("operator", "market", "show", str(market_id)).out
    resumed = run("operator", "market", "pause", str(market_id), "--resume", account="TEST::0")
    assert resumed.code == 0 and not registry.market(market_id).paused


def test_market__bad_input__one_line_exit_1_nothing_sent(run, recorded, registry, accounts):
    nonce, markets = accounts[0].nonce, registry.market_count()
    cases = [
        (["market", "create", "cube"], "cube: no such circuit folder or manifest (sample circuits: square"),
        (["market", "create", "square", "--min-collateral", "-1"], "--min-collateral '-1' is negative"),
        (["market", "create", "square", "--min-reward", "0.0000000000000000001"], "more than 18 decimals"),
        (
            ["market", "create", "square", "--min-reward", "lots"],
            "--min-reward 'lots' is not a number of ETH",
        ),
        (["market", "create", "square", "--caller-bps", "2000"], "caller share 2000 bps is above the cap"),
        (["market", "create", "square", "--verifier", "0x1234"], "--verifier '0x1234' is not an address"),
    ]
    for args, message in cases:
        result = run("operator", *args, account="TEST::0")
        assert result.code == 1, (args, result.out, result.err)
        assert message in result.error, (args, result.error)
        assert "Traceback" not in result.err
    assert (accounts[0].nonce, registry.market_count()) == (nonce, markets)
    unknown = run("operator", "market", "show", "99")
    assert unknown.code == 1
    assert f"no market 99 (this registry has {markets} market" in unknown.error


def test_mechanism_register_frontend_retire(run, recorded, registry, accounts):
    instance = ("auction", "--param", "window=30")
    registered = run(
        "operator", "mechanism", "register", *instance, "--frontend", FRONTEND, "--json", account="TEST::0"
    )
    assert registered.code == 0, registered.err
    mechanism_id = registered.json()["mechanism_id"]
    assert registry.is_frontend(mechanism_id, FRONTEND)
    assert registered.json()["name"] == "auction/window=30"  # an instance: its parameters in its name
    shown = run("operator", "mechanism", "show", str(mechanism_id), "--json")
    assert shown.code == 0 and shown.json()["params"] == {"window": 30}

    keeper = accounts[5].address
    added = run("operator", "mechanism", "frontend", str(mechanism_id), keeper, account="TEST::0")
    assert added.code == 0, added.err
    assert registry.is_frontend(mechanism_id, keeper)
    removed = run(
        "operator", "mechanism", "frontend", str(mechanism_id), FRONTEND, "--remove", account="TEST::0"
    )
    assert removed.code == 0 and not registry.is_frontend(mechanism_id, FRONTEND)

    not_theirs = run("operator", "mechanism", "retire", str(mechanism_id), account="TEST::1")
    assert not_theirs.code == 1
    assert (
        f"only mechanism {mechanism_id}'s registrant {accounts[0].address} may change it" in not_theirs.error
    )

    retired = run("operator", "mechanism", "retire", str(mechanism_id), account="TEST::0")
    assert retired.code == 0 and registry.mechanism(mechanism_id)[1]
    again = run("operator", "mechanism", "retire", str(mechanism_id), account="TEST::0")
    assert again.code == 1 and f"mechanism {mechanism_id} is already retired" in again.error


def test_mechanism_register__an_election_instance__its_delay_published_in_its_name_and_shown(
    run, recorded, registry
):
    registered = run(
        "operator", "mechanism", "register", "election", "--param", "delay=4", "--json", account="TEST::0"
    )
    assert registered.code == 0, registered.err
    assert registered.json()["name"] == "election/delay=4"
    mechanism_id = registered.json()["mechanism_id"]
    shown = run("operator", "mechanism", "show", str(mechanism_id))
    assert shown.code == 0 and "delay=4 (published in its name)" in shown.out


def test_mechanism__bad_input__one_line_exit_1_nothing_sent(run, recorded, registry, accounts):
    nonce = accounts[0].nonce
    last = registry.mechanism_count()
    cases = [
        (["mechanism", "retire", "1"], "mechanism 1 (open race) is built in"),
        (["mechanism", "retire", str(last + 5)], f"no mechanism {last + 5} (the last id is {last})"),
        (["mechanism", "register", "x" * 65], "mechanism name must be 1 to 64 characters, got 65"),
        (["mechanism", "register", "book", "--frontend", "nope"], "--frontend 'nope' is not an address"),
        (
            ["mechanism", "register", "auction", "--param", "window=0"],
            "mechanism name: auction window=0: give 1",
        ),
        (["mechanism", "register", "auction/window=3", "--param", "window=4"], "has its parameters already"),
        (
            ["mechanism", "register", "election", "--param", "delay=0"],
            "mechanism name: election delay=0: give 1 to 256",
        ),
        (
            ["mechanism", "register", "double_auction", "--param", "window=5"],
            "double_auction takes no parameter window (it takes round)",
        ),
        (["mechanism", "register", "auction/window=x"], "write each parameter as key=value"),
        (
            ["mechanism", "frontend", str(last), FRONTEND.lower().replace("0x90f", "0x90F")],
            "has a bad checksum",
        ),
    ]
    for args, message in cases:
        result = run("operator", *args, account="TEST::0")
        assert result.code == 1, (args, result.out, result.err)
        assert message in result.error, (args, result.error)
    assert accounts[0].nonce == nonce
    missing_account = run("operator", "mechanism", "register", "book")
    assert missing_account.code == 1 and "pass --account" in missing_account.error
