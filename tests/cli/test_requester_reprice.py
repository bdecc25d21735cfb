"""`ape run requester post --reprice-after` and `requester reprice`: a task nobody takes is
cancelled, its escrow comes back, and it is posted again higher, linked to the first by
its salt; a re-price cut short by a crash resumes from what the chain says.

The end-to-end test runs the orderbook frontend as a real process over a registry of its
own, whose one prover asks more than the first reward; the others run the command's
function in this process against the session's chain (tests/cli/conftest.py)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from explorer.data import Explorer
from provingmarket import deployments
from provingmarket.chain.client import KeySigner, RegistryClient
from provingmarket.cli import network_name
from provingmarket.devnet import default_backend
from provingmarket.formats import TaskTerms
from provingmarket.proving.circuits import Circuit
from tests.factories import ETHER, advance, assigned, frontend_account, item, start_frontend, wait_until
from tests.processes import conftest as processes

# The process tests' fixtures: a registry of the test's own, funded accounts, a prover in
# its market, and processes stopped by pid at the end.
rpc, funded, make_stack, make_prover, spawn = (
    processes.rpc,
    processes.funded,
    processes.make_stack,
    processes.make_prover,
    processes.spawn,
)

SQUARE = Circuit.load("square")
REQUESTER = "TEST::1"


def salted(client: RegistryClient, requester: str, task_id: str) -> list[TaskTerms]:
    """The tasks REQUESTER posted whose salt names TASK_ID: its re-posts."""
    return [
        TaskTerms.from_event(e.terms)
        for e in client.events(["TaskPosted"], prover=requester)
        if TaskTerms.from_event(e.terms).salt == int(task_id, 16)
    ]


def spent_on_gas(web3, account: str, first_block: int) -> int:
    """Everything ACCOUNT paid for gas in the blocks after FIRST_BLOCK."""
    total = 0
    for number in range(first_block + 1, web3.eth.block_number + 1):
        for tx in web3.eth.get_block(number, full_transactions=True)["transactions"]:
            if tx["from"].lower() == account.lower():
                receipt = web3.eth.get_transaction_receipt(tx["hash"])
                total += receipt["gasUsed"] * receipt["effectiveGasPrice"]
    return total


# ------------------------------------------------------------------ end to end


def test_reprice_watch__task_below_every_ask__reposted_higher_assigned_by_the_orderbook_and_proven(
    run, make_stack, make_prover, funded, spawn, chain, accounts, deployments_folder, tmp_path
):
    key, frontend = frontend_account(funded)
    stack = make_stack([frontend])
    prover_key, prover = make_prover(stack, capacity=1, ask=2 * ETHER // 100)
    deployments.save(replace(stack.client.deployment, network=network_name()), deployments_folder)
    start_frontend(spawn, stack, key, tmp_path / "orderbook")
    web3 = chain.provider.web3
    requester = accounts[1].address
    start_block = web3.eth.block_number
    wallet, credit = web3.eth.get_balance(requester), stack.client.balance(requester)

    posted = run(
        "requester", "post", str(stack.market_id), "--secret", "7", "--mechanism", str(stack.mechanism_id),
        "--reward", "0.01", "--assign-window", "40", "--proving-window", "60",
        "--reprice-after", "0.25", "--reprice-step", "150%", "--max-price", "0.03", "--json",
        account=REQUESTER,
    )  # fmt: skip
    assert posted.code == 0, posted.err
    first = posted.json()
    assert first["repricing"]["ceiling"] == 3 * ETHER // 100
    waiting = run("requester", "reprice", "--json", account=REQUESTER)
    assert waiting.code == 0, waiting.err
    [outcome] = waiting.json()["outcomes"]
    assert (outcome["task_id"], outcome["action"]) == (first["task_id"], "waiting")
    assert outcome["until"] == first["terms"]["posted_at"] + 10
    assert stack.client.task(first["task_id"]).assigned == 0  # the orderbook leaves it: 0.01 < 0.02

    advance(chain, 10)
    watched = run("requester", "reprice", "--watch", "--poll", "1", "--timeout", "60", account=REQUESTER)
    assert watched.code == 0, watched.err
    [second] = salted(stack.client, requester, first["task_id"])
    second_id = "0x" + stack.client.task_id(second).hex()
    assert f"re-posted as {second_id} with 1 slot at 0.025 ETH" in watched.out
    assert "a prover took a slot" in watched.out
    assert second.max_reward == 25 * ETHER // 1_000 and second.redundancy == 1
    old = stack.client.task(first["task_id"])
    assert (old.open, old.assigned, old.closed) == (0, 0, 1)
    [closed] = [e for e in old.timeline if e.name == "SlotsClosed"]
    assert (closed.cancelled, closed.refund) == (True, ETHER // 100)

    new = stack.client.task(second_id)
    [assignment] = [e for e in new.timeline if e.name == "TaskAssigned"]
    assert (assignment.prover, assignment.price) == (prover, 2 * ETHER // 100)
    made = default_backend().prove(SQUARE, first["inputs"], prover)
    proving = RegistryClient(web3, stack.registry.address, KeySigner(prover_key))
    proving.transact(
        "prove",
        second.as_tuple(),
        (assignment.slot, assignment.price, assignment.deadline, assignment.frontend),
        made.public_inputs,
        made.proof,
    )
    [proven] = stack.client.task(second_id).proofs
    assert proven.paid == 2 * ETHER // 100

    # Nothing lost, nothing paid twice: the requester is out the price paid for the
    # second task, its frontend fee and the gas of every transaction it sent.
    paid = wallet + credit - web3.eth.get_balance(requester) - stack.client.balance(requester)
    assert paid == proven.paid + proven.fee + spent_on_gas(web3, requester, start_block)
    record = json.loads((deployments_folder / f"repricing-{chain.chain_id}.json").read_text())
    assert record["tasks"][first["task_id"]]["reposted_as"] == second_id
    assert record["tasks"][second_id]["reposted_from"] == first["task_id"]
    assert record["tasks"][second_id]["stage"] == "taken"
    # The explorer, over the orderbook keeper's mirror, links the two tasks both ways.
    explorer = Explorer(tmp_path / "orderbook" / "mirror.sqlite")
    shown = wait_until(
        lambda: (page := explorer.task(second_id))["repost_of"] and page, what="the re-post in the mirror"
    )
    assert shown["repost_of"] == first["task_id"]
    assert explorer.task(first["task_id"])["reposted_as"] == second_id


# ------------------------------------------------------------------ resume after a crash


def test_reprice__crash_after_cancel_then_after_post__resumes_posting_the_refunded_slots_once(
    run, recorded, registry, market, mechanism, keeper, staked_provers, chain, accounts, deployments_folder
):
    client = RegistryClient(chain.provider.web3, registry.address, None, 0)
    requester = accounts[1].address
    posted = run(
        "requester", "post", str(market), "--secret", "7", "--mechanism", str(mechanism), "--redundancy", "2",
        "--reward", "0.01", "--assign-window", "100", "--proving-window", "300",
        "--reprice-after", "0.5", "--reprice-step", "0.01", "--max-price", "0.1", "--json",
        account=REQUESTER,
    )  # fmt: skip
    assert posted.code == 0, posted.err
    first = posted.json()
    task_id = first["task_id"]
    terms = client.task(task_id).terms
    path = deployments_folder / f"repricing-{chain.chain_id}.json"

    def rewrite(change) -> None:
        data = json.loads(path.read_text())
        change(data["tasks"])
        path.write_text(json.dumps(data))

    advance(chain, 60)
    # The client decided to re-price at 0.02, wrote so and sent the cancel; a prover took
    # slot 0 just before the cancel, and the client died before recording the cancel.
    rewrite(lambda tasks: tasks[task_id].update(stage="cancelling", reward=2 * ETHER // 100))
    assigned(registry, registry.assign(item(terms, staked_provers[0], terms.max_reward), sender=keeper))
    assert run("requester", "cancel", task_id, account=REQUESTER).code == 0

    resumed = run("requester", "reprice", "--json", account=REQUESTER)
    assert resumed.code == 0, resumed.err
    [again] = salted(client, requester, task_id)
    assert (again.redundancy, again.max_reward) == (1, 2 * ETHER // 100)  # the one slot refunded
    old = client.task(task_id)
    assert (old.assigned, old.closed) == (1, 1)  # the held slot stays with its prover
    second_id = "0x" + client.task_id(again).hex()
    outcomes = {o["task_id"]: o for o in resumed.json()["outcomes"]}
    assert outcomes[task_id]["reposted_as"] == second_id

    # Died after the re-post, before recording it: the salt finds it, nothing is posted twice.
    rewrite(lambda tasks: (tasks[task_id].update(stage="posting", reposted_as=None), tasks.pop(second_id)))
    nonce = accounts[1].nonce
    resumed = run("requester", "reprice", task_id, "--json", account=REQUESTER)
    assert resumed.code == 0, resumed.err
    assert len(salted(client, requester, task_id)) == 1
    assert accounts[1].nonce == nonce
    chains = resumed.json()["chains"]
    assert [link["task_id"] for link in chains[0]] == [task_id, second_id]
    assert chains[0][1]["stage"] == "watching"


# ------------------------------------------------------------------ refusals


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--reprice-after", "1.5", "--max-price", "0.1"], "--reprice-after '1.5' is out of range"),
        (["--reprice-after", "0.5"], "re-pricing needs a ceiling: give --max-price ETH"),
        (["--reprice-step", "10%"], "--reprice-step and --reprice-state go with --reprice-after"),
        (["--reprice-after", "0.5", "--reprice-step", "0%", "--max-price", "0.1"], "--reprice-step '0%'"),
        (["--reprice-after", "0.5", "--max-price", "0.001"], "--max-price 0.001 ETH is below what the task"),
        (["--mechanism", "1", "--reprice-after", "0.5", "--max-price", "0.1"], "an open race (mechanism 1)"),
    ],
)
def test_post_reprice__bad_options__one_line_and_nothing_sent(
    run, recorded, market, accounts, options, message
):
    nonce = accounts[1].nonce
    options = ["--mechanism", "2", *options] if "--mechanism" not in options else options
    result = run("requester", "post", str(market), "--secret", "7", *options, account=REQUESTER)
    assert result.code == 1, result
    assert result.error.count("error:") == 1 and message in result.error, result.err
    assert accounts[1].nonce == nonce


def test_reprice__task_not_watched_or_options_without_ceiling__refused(run, recorded, registry, create_task):
    task_id = "0x" + bytes(registry.task_id(create_task().as_tuple())).hex()
    result = run("requester", "reprice", task_id, account=REQUESTER)
    assert result.code == 1 and "is not watched for re-pricing" in result.error, result.err
    result = run("requester", "reprice", "--after", "0.5", account=REQUESTER)
    assert result.code == 1 and "--after and --step go with --max-price" in result.error, result.err
