"""The auction frontend as a real process against anvil, through its real HTTP API: sealed
bids cleared at the second price and paid so on chain, N winners at the (N+1)th price, a
single bid paid the maximum, no bids leaving the task to its requester, forged bids
refused by the frontend and by the registry, every bad input answered 4xx with a reason,
sealed bids surviving SIGKILL, and schemathesis finding no 5xx and no answer outside the
OpenAPI description."""

from __future__ import annotations

import json
import signal
import urllib.error
import urllib.request

from eth_account import Account

from provingmarket.chain.client import KeySigner, RegistryClient
from provingmarket.formats import sign_bid
from tests.factories import ETHER, STATEMENT, proof_for, schemathesis, spawn_frontend, wait_until

HOUR = 3_600


# ------------------------------------------------------------------ helpers


def start(spawn, stack, key, db, *extra, window=4, name="auction"):
    options = ("--window", str(window), "--port", "0", *extra)
    return spawn_frontend(spawn, stack, key, db, *options, mechanism="auction", name=name)


def api_url(process, count: int = 1) -> str:
    return process.wait_for("auction.api", count, timeout=60)[-1]["url"]


def call(method: str, url: str, body=None, raw: bytes | None = None) -> tuple[int, dict]:
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def frontend_account(funded):
    key = funded()
    return key, Account.from_key(key).address


def task_hex(stack, terms) -> str:
    return "0x" + stack.client.task_id(terms).hex()


def opened(url: str, task_id: str) -> dict:
    def found():
        status, body = call("GET", f"{url}/auctions/{task_id}")
        return body if status == 200 and body["state"] == "open" else None

    return wait_until(found, timeout=30, what=f"an auction for {task_id}")


def closed(url: str, task_id: str, round: int = 1, timeout: float = 30) -> dict:
    def found():
        status, body = call("GET", f"{url}/auctions/{task_id}?round={round}")
        return body if status == 200 and body["state"] == "closed" else None

    return wait_until(found, timeout=timeout, what=f"round {round} of {task_id} closed")


def signed(stack, key: str, task_id: str, min_price: int, expiry: int, nonce: int = 0, prover=None) -> dict:
    """A bid body: the Bid signed with `key`, claimed for `prover` (the key's own by default)."""
    signature = sign_bid(
        key,
        stack.client.web3.eth.chain_id,
        stack.registry.address,
        bytes.fromhex(task_id[2:]),
        min_price,
        expiry,
        nonce,
    )
    return {
        "task_id": task_id,
        "prover": prover or Account.from_key(key).address,
        "min_price": str(min_price),
        "expiry": expiry,
        "nonce": nonce,
        "signature": "0x" + signature.hex(),
    }


def chain_now(stack) -> int:
    return stack.client.web3.eth.get_block("latest")["timestamp"]


def assigned(stack, task_id: str) -> list:
    return stack.client.events(["TaskAssigned"], task_id=bytes.fromhex(task_id[2:]))


def caught_up(url: str, block: int) -> None:
    """Wait until the frontend's view includes `block` (its mirror's cursor)."""
    wait_until(lambda: (call("GET", f"{url}/health")[1].get("block") or 0) >= block, what=f"block {block}")


def prover_client(stack, key: str) -> RegistryClient:
    return RegistryClient(stack.client.web3, stack.registry.address, KeySigner(key))


# ------------------------------------------------------------------ outcomes


def test_second_price__the_lowest_bid_wins__paid_the_second_on_chain__requester_refunded_the_rest(
    make_stack, make_prover, funded, post, spawn, tmp_path
):
    key, address = frontend_account(funded)
    stack = make_stack([address])
    provers = [make_prover(stack, capacity=1) for _ in range(3)]
    frontend = start(spawn, stack, key, tmp_path / "auction")
    url = api_url(frontend)
    terms = post(stack, max_reward=ETHER // 10)
    task_id = task_hex(stack, terms)
    auction = opened(url, task_id)
    assert auction["max_reward"] == str(ETHER // 10) and auction["open_slots"] == 1

    expiry = chain_now(stack) + HOUR
    prices = [5 * ETHER // 100, 2 * ETHER // 100, 3 * ETHER // 100]  # 0.05, 0.02, 0.03
    ids = []
    for (prover_key, _), price in zip(provers, prices, strict=True):
        status, body = call("POST", f"{url}/bids", signed(stack, prover_key, task_id, price, expiry))
        assert status == 202, body
        assert body["status"] == "sealed"
        ids.append(body["bid_id"])

    # sealed: a count, no prices, no provers
    status, listing = call("GET", f"{url}/auctions")
    [mine] = [a for a in listing if a["task_id"] == task_id]
    assert mine["bids"] == 3
    text = json.dumps(listing) + json.dumps(call("GET", f"{url}/auctions/{task_id}")[1])
    assert not any(p.lower()[2:] in text.lower() for _, p in provers)
    assert not any(f'"{price}"' in text for price in prices)
    assert call("GET", f"{url}/bids/{ids[1]}")[1]["status"] == "sealed"

    result = closed(url, task_id)["result"]
    cheapest = provers[1][1]
    assert result["winners"] == [{"prover": cheapest, "price": str(prices[2])}]
    assert result["price"] == str(prices[2]) and result["bids"] == 3
    statuses = [call("GET", f"{url}/bids/{i}")[1] for i in ids]
    assert [s["status"] for s in statuses] == ["lost", "won", "lost"]
    assert statuses[1]["price"] == str(prices[2])

    [event] = wait_until(lambda: assigned(stack, task_id), what="the assignment")
    assert (event.prover, event.price, event.frontend) == (cheapest, prices[2], address)
    # proven: the winner is paid the second price, the requester gets the rest back
    winner = prover_client(stack, provers[1][0])
    _, events = winner.transact(
        "prove",
        terms.as_tuple(),
        (event.slot, event.price, event.deadline, event.frontend),
        STATEMENT,
        proof_for(STATEMENT, cheapest),
    )
    [proven] = [e for e in events if e.name == "TaskProven"]
    assert proven.paid == prices[2]
    assert proven.refund == terms.max_reward - prices[2]
    frontend.wait_for("auction.confirmed", where=lambda e: e["task"] == task_id)
    assert call("GET", f"{url}/bids/{ids[1]}")[1]["assigned_block"] == event.block
    assert frontend.stop() == 0


def test_redundancy_two__the_two_lowest_win_at_the_third_price__a_single_bid_gets_the_maximum(
    make_stack, make_prover, funded, post, spawn, tmp_path
):
    key, address = frontend_account(funded)
    stack = make_stack([address])
    provers = [make_prover(stack, capacity=2) for _ in range(3)]
    frontend = start(spawn, stack, key, tmp_path / "auction")
    url = api_url(frontend)
    pair = task_hex(stack, post(stack, redundancy=2, max_reward=ETHER // 10))
    single = task_hex(stack, post(stack, max_reward=ETHER // 10))
    opened(url, pair), opened(url, single)

    expiry = chain_now(stack) + HOUR
    prices = [4 * ETHER // 100, ETHER // 100, 2 * ETHER // 100]
    for (prover_key, _), price in zip(provers, prices, strict=True):
        assert call("POST", f"{url}/bids", signed(stack, prover_key, pair, price, expiry))[0] == 202
    assert call("POST", f"{url}/bids", signed(stack, provers[0][0], single, ETHER // 50, expiry))[0] == 202

    result = closed(url, pair)["result"]
    assert sorted(w["prover"] for w in result["winners"]) == sorted([provers[1][1], provers[2][1]])
    assert {w["price"] for w in result["winners"]} == {str(prices[0])}
    alone = closed(url, single)["result"]
    assert alone["winners"] == [{"prover": provers[0][1], "price": str(ETHER // 10)}]

    wait_until(lambda: len(assigned(stack, pair)) == 2 and assigned(stack, single), what="three assignments")
    assert sorted((e.prover, e.price) for e in assigned(stack, pair)) == sorted(
        [(provers[1][1], prices[0]), (provers[2][1], prices[0])]
    )
    assert [(e.prover, e.price) for e in assigned(stack, single)] == [(provers[0][1], ETHER // 10)]
    assert frontend.stop() == 0


def test_no_bids__the_auction_closes_so__the_task_stays_open__its_requester_cancels(
    make_stack, make_prover, funded, post, spawn, tmp_path, requester
):
    key, address = frontend_account(funded)
    stack = make_stack([address])
    make_prover(stack)
    frontend = start(spawn, stack, key, tmp_path / "auction", window=2)
    url = api_url(frontend)
    terms = post(stack)
    task_id = task_hex(stack, terms)
    opened(url, task_id)

    first = closed(url, task_id, round=1)
    assert first["result"] == {"winners": [], "price": None, "bids": 0, "note": "no bids"}
    assert stack.client.call("task_status", bytes.fromhex(task_id[2:]))[0] == 1  # one slot open
    # another round is open while the assignment window lasts
    assert opened(url, task_id)["round"] >= 2

    tx = stack.registry.cancel(terms.as_tuple(), sender=requester)
    assert tuple(stack.client.call("task_status", bytes.fromhex(task_id[2:]))) == (0, 0, 0, 1)
    caught_up(url, tx.block_number)
    latest = wait_until(
        lambda: (body := call("GET", f"{url}/auctions/{task_id}")[1])["state"] == "closed" and body,
        what="the open round closed",
    )
    assert latest["result"]["note"] == "the task was cancelled or its escrow reclaimed"
    assert not assigned(stack, task_id)
    assert frontend.stop() == 0


def test_forged_bid__refused_by_the_frontend__and_skipped_by_the_registry_when_sent_anyway(
    make_stack, make_prover, funded, post, spawn, tmp_path
):
    key, address = frontend_account(funded)
    stack = make_stack([address])
    _, victim = make_prover(stack)
    forger_key = funded()
    frontend = start(spawn, stack, key, tmp_path / "auction", window=30)
    url = api_url(frontend)
    terms = post(stack)
    task_id = task_hex(stack, terms)
    opened(url, task_id)

    expiry = chain_now(stack) + HOUR
    forged = signed(stack, forger_key, task_id, ETHER // 100, expiry, prover=victim)
    status, body = call("POST", f"{url}/bids", forged)
    assert status == 401
    assert f"not prover {victim}'s" in body["detail"]
    assert frontend.stop() == 0

    # sent straight to the registry, by the frontend's own account: skipped, with the reason
    frontend_client = prover_client(stack, key)
    item = (
        terms.as_tuple(),
        victim,
        ETHER // 100,
        ETHER // 100,
        expiry,
        0,
        bytes.fromhex(forged["signature"][2:]),
    )
    _, events = frontend_client.transact("assign_batch", [item])
    assert [(e.name, e.reason) for e in events] == [
        ("AssignmentSkipped", "registry: signer is not the prover")
    ]
    assert not assigned(stack, task_id)


# ------------------------------------------------------------------ bad input


def bidders(stack, make_prover, funded) -> tuple:
    """(good key, good address, busy, poor, revoked, flood, outsider keys): provers in the
    stack's market, three of them then unable to take the task (no capacity, stake or
    signatures left), and an account in no market."""
    good_key, good = make_prover(stack)
    busy_key, _ = make_prover(stack)
    poor_key, _ = make_prover(stack)
    revoked_key, _ = make_prover(stack)
    flood_key, _ = make_prover(stack)
    outsider_key = funded()
    prover_client(stack, busy_key).transact("update_membership", stack.market_id, 0, ETHER // 100, 10, 0)
    prover_client(stack, poor_key).transact("unstake", 5 * ETHER)
    prover_client(stack, revoked_key).transact("revoke_signatures")
    return good_key, good, busy_key, poor_key, revoked_key, flood_key, outsider_key


def test_bad_input__every_kind_answered_4xx_with_a_reason__never_5xx(
    make_stack, make_prover, funded, post, spawn, tmp_path
):
    key, address = frontend_account(funded)
    stack = make_stack([address])
    good_key, good, busy_key, poor_key, revoked_key, flood_key, outsider_key = bidders(
        stack, make_prover, funded
    )
    limits = ("--prover-rate", "0.2", "--prover-burst", "5", "--bids-per-prover", "3")
    frontend = start(spawn, stack, key, tmp_path / "auction", *limits, window=12)
    url = api_url(frontend)
    terms = post(stack, max_reward=ETHER // 10)
    task_id = task_hex(stack, terms)
    auction = opened(url, task_id)
    expiry = chain_now(stack) + HOUR

    def bid(k=good_key, min_price=ETHER // 100, until=expiry, nonce=0, **changes) -> dict:
        body = signed(stack, k, task_id, min_price, until, nonce)
        body.update(changes)
        return body

    def refused(status: int, words: str, body=None, raw=None, path="/bids") -> None:
        got, answer = call("POST", f"{url}{path}", body, raw)
        assert got == status, (got, answer)
        assert isinstance(answer["detail"], str) and words in answer["detail"], answer

    refused(422, "not valid JSON", raw=b'{"task_id": ')
    refused(422, "body: the body is not valid JSON", raw=b"\xff\xfe{}")
    refused(422, "min_price", {**bid(), "min_price": 1.5})
    refused(422, "expiry", {**bid(), "expiry": True})
    refused(422, "nonce", {**bid(), "nonce": [0]})
    refused(422, "min_price", {**bid(), "min_price": "-1"})
    refused(422, "signature: Field required", {k: v for k, v in bid().items() if k != "signature"})
    refused(422, "Extra inputs are not permitted", bid(tip="1"))
    refused(422, "bad checksum", bid(prover="0x" + good[2:3].lower() + good[3:].swapcase()))
    refused(413, "at most", raw=json.dumps({"task_id": "0x" + "ab" * 5_000}).encode())
    refused(404, "no auction for task", bid(task_id="0x" + "ee" * 32))
    refused(401, f"not prover {good}'s", bid(k=outsider_key, prover=good))
    refused(422, "v is 0", bid(signature=bid()["signature"][:-2] + "00"))
    refused(422, "above the task's max_reward", bid(min_price=terms.max_reward + 1))
    refused(422, f"must last until at least {auction['min_expiry']}", bid(until=auction["closes_at"] + 1))
    refused(409, "was revoked", bid(k=revoked_key))
    refused(422, "not prover", bid(nonce=3))
    refused(409, "no free capacity", bid(k=busy_key))
    refused(409, "less than the task's collateral", bid(k=poor_key))
    refused(409, "is not in market", bid(k=outsider_key))

    accepted = bid()
    assert call("POST", f"{url}/bids", accepted)[0] == 202
    refused(409, "submitted before", accepted)  # replayed

    # a flood from one prover: three bids stand in an auction, then the rate limit
    answers = [
        call("POST", f"{url}/bids", bid(k=flood_key, min_price=ETHER // 100 + i))[0] for i in range(10)
    ]
    assert answers[:3] == [202, 202, 202] and set(answers[3:]) == {429}
    refused(429, "slow down", bid(k=flood_key, min_price=1))
    status, body = call("GET", f"{url}/auctions/{task_id}")
    assert body["bids"] == 2  # the good prover's and the flooder's latest

    # reads: malformed ids 422, unknown ones 404
    assert call("GET", f"{url}/auctions/0x1234")[0] == 422
    assert call("GET", f"{url}/auctions/{task_id}?round=0")[0] == 422
    assert call("GET", f"{url}/auctions/0x{'ee' * 32}")[0] == 404
    assert call("GET", f"{url}/bids/not-an-id")[0] == 422
    assert call("GET", f"{url}/bids/{'0' * 32}")[0] == 404

    result = closed(url, task_id)["result"]
    assert [w["prover"] for w in result["winners"]] == [good]
    refused(409, "closed at", bid(min_price=ETHER // 50))
    assert not any(line.get("event") == "auction.api_error" for line in frontend.lines)
    assert frontend.stop() == 0


# ------------------------------------------------------------------ restart


def test_sigkill_mid_auction__sealed_bids_survive__the_auction_clears_after_restart(
    make_stack, make_prover, funded, post, spawn, tmp_path
):
    key, address = frontend_account(funded)
    stack = make_stack([address])
    provers = [make_prover(stack, capacity=1) for _ in range(3)]
    db = tmp_path / "auction"
    frontend = start(spawn, stack, key, db, window=10)
    url = api_url(frontend)
    task_id = task_hex(stack, post(stack, max_reward=ETHER // 10))
    opened(url, task_id)
    expiry = chain_now(stack) + HOUR
    prices = [3 * ETHER // 100, ETHER // 100, 2 * ETHER // 100]
    ids = [
        call("POST", f"{url}/bids", signed(stack, k, task_id, price, expiry))[1]["bid_id"]
        for (k, _), price in zip(provers, prices, strict=True)
    ]

    frontend.kill(signal.SIGKILL)
    frontend.popen.wait(10)
    frontend.start()
    url = api_url(frontend, 2)
    restarted = len(frontend.lines)
    kept = [call("GET", f"{url}/bids/{i}")[1] for i in ids]
    assert [(b["prover"], b["min_price"]) for b in kept] == [
        (p, str(price)) for (_, p), price in zip(provers, prices, strict=True)
    ]
    assert {b["status"] for b in kept} == {"sealed"}  # the window (10 s) outlasts the restart

    result = closed(url, task_id, timeout=40)["result"]
    # cleared by the restarted process, from the bids it found on disk
    assert [e for e in frontend.lines[restarted:] if e.get("event") == "auction.cleared"]
    assert result["winners"] == [{"prover": provers[1][1], "price": str(prices[2])}]
    assert result["bids"] == 3
    [event] = wait_until(lambda: assigned(stack, task_id), what="the assignment")
    assert (event.prover, event.price) == (provers[1][1], prices[2])
    assert frontend.stop() == 0


# ------------------------------------------------------------------ the OpenAPI description


def test_schemathesis__no_5xx__every_answer_as_the_openapi_description_says(
    make_stack, make_prover, funded, post, spawn, tmp_path
):
    key, address = frontend_account(funded)
    stack = make_stack([address])
    make_prover(stack)
    frontend = start(spawn, stack, key, tmp_path / "auction", window=60)
    url = api_url(frontend)
    opened(url, task_hex(stack, post(stack)))

    schemathesis(f"{url}/openapi.json", tmp_path)
    assert not any(line.get("event") == "auction.api_error" for line in frontend.lines)
    assert frontend.alive() and frontend.stop() == 0
