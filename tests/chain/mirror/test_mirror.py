"""The registry's mirror in SQLite on anvil: after a task's whole lifecycle it says what
the chain's own views say; it resumes from its cursor after a restart or a crash, applying
nothing twice; it waits for confirmations; it notices a reorg, rolls back and matches the
chain again; and bad logs are skipped with a log line."""

from __future__ import annotations

import json
import logging

import ape
import pytest
from eth_abi import encode
from web3 import Web3

from provingmarket import OPEN_RACE
from provingmarket.chain.client import KeySigner, RegistryClient
from provingmarket.chain.logs import LogReader, LogsError
from provingmarket.chain.mirror import DECLINED, SCHEMA_VERSION, SLASHED, Mirror, MirrorError
from provingmarket.formats import ZERO_ADDRESS
from tests.factories import ETHER, GRACE_PERIOD, STATEMENT, advance, assigned, item, proof_for

# anvil's default key for accounts[0] (mnemonic "test ... junk")
KEY_0 = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"


@pytest.fixture
def client(chain, registry):
    return RegistryClient(chain.provider.web3, registry.address)


@pytest.fixture
def mirror(client):
    with Mirror(":memory:", client, start_block=0) as m:
        yield m


@pytest.fixture
def records(caplog):
    """The mirror's log lines, each parsed as the JSON object it is."""
    caplog.set_level(logging.INFO, logger="provingmarket.chain.mirror")

    def lines(kind: str | None = None) -> list[dict]:
        found = [json.loads(r.getMessage()) for r in caplog.records if r.name == "provingmarket.chain.mirror"]
        return [f for f in found if kind is None or f["event"] == kind]

    return lines


def assign(registry, keeper, terms, prover, price=None):
    tx = registry.assign(item(terms, prover, terms.max_reward if price is None else price), sender=keeper)
    [(_, assignment)] = assigned(registry, tx)
    return assignment


def prove(registry, terms, prover, assignment=None):
    race = (0, 0, 0, ZERO_ADDRESS)
    registry.prove(
        terms.as_tuple(),
        assignment.as_tuple() if assignment else race,
        STATEMENT,
        proof_for(STATEMENT, prover.address),
        sender=prover,
    )


def task_id(client, terms) -> bytes:
    return client.task_id(terms)


def assert_matches_chain(mirror: Mirror, client: RegistryClient, actors) -> None:
    """Every task's slot counts and each actor's record on it, standings, balances,
    memberships, acceptances, markets, mechanisms and live assignments: as the chain says."""
    addresses = [a.address for a in actors]
    assert_tasks_match(mirror, client, addresses)
    market_count = client.call("market_count")
    mechanism_count = client.call("mechanism_count")
    for address in addresses:
        assert_prover_matches(mirror, client, address, market_count, mechanism_count)
    assert_markets_match(mirror, client, addresses, market_count, mechanism_count)


def assert_tasks_match(mirror: Mirror, client: RegistryClient, addresses: list[str]) -> None:
    """Every posted task's slot counts, and each address's engagement on it."""
    posted = {bytes(e.task_id) for e in client.events(["TaskPosted"])}
    harness = ape.project.RegistryHarness.at(client.address)  # its engagement view is for tests
    tasks = {t.task_id: t for t in mirror.tasks()}
    assert set(tasks) == posted
    for tid, task in tasks.items():
        assert (task.open, task.assigned, task.proven, task.closed) == tuple(client.call("task_status", tid))
        states = {a.prover: a.state for a in mirror.assignments(task_id=tid)}
        for address in addresses:
            state = states.get(address)
            expected = {DECLINED: 2, SLASHED: 3}.get(state, 1 if state and task.terms.redundancy > 1 else 0)
            assert harness.engagement(tid, address) == expected, (tid.hex(), address)


def assert_prover_matches(
    mirror: Mirror, client: RegistryClient, address: str, market_count: int, mechanism_count: int
) -> None:
    """A prover's standing, balance, memberships, acceptances and live assignments."""
    standing = client.standing(address)
    mirrored = mirror.prover(address)
    assert (mirrored.stake, mirrored.locked, mirrored.free, mirrored.unbonding) == (
        standing.stake,
        standing.locked,
        standing.free,
        standing.unbonding,
    )
    assert (mirrored.unbonding_ready_at, mirrored.balance, mirrored.nonce) == (
        standing.unbonding_ready_at,
        standing.balance,
        standing.nonce,
    )
    assert mirror.balance(address) == client.balance(address)
    joined = {m.market_id: m for m in mirror.memberships(prover=address)}
    for market_id in range(1, market_count + 1):
        chain_view = client.membership(address, market_id)
        member = joined.get(market_id)
        assert chain_view.joined == (member is not None)
        if member is not None:
            assert (
                member.capacity,
                member.used,
                member.ask,
                member.proving_time,
                member.capabilities,
            ) == (
                chain_view.capacity,
                chain_view.used,
                chain_view.ask,
                chain_view.proving_time,
                chain_view.capabilities,
            )
        for mechanism_id in range(1, mechanism_count + 1):
            assert client.call("accepts", address, market_id, mechanism_id) == (
                member is not None and member.accepts(mechanism_id)
            )
    live = [(a.task_id, a.assignment.as_tuple()) for a in client.prover_status(address).live]
    assert sorted(live) == sorted(
        (a.task_id, (a.slot, a.price, a.deadline, a.frontend)) for a in mirror.live_assignments(address)
    )


def assert_markets_match(
    mirror: Mirror, client: RegistryClient, addresses: list[str], market_count: int, mechanism_count: int
) -> None:
    """Every market's settings and every registered mechanism's registrant, state and frontends."""
    markets = {m.market_id: m for m in mirror.markets()}
    assert set(markets) == set(range(1, market_count + 1))
    for market_id, view in markets.items():
        chain_market = client.market(market_id)
        assert (view.verifier, view.creator, view.codehash, view.paused, view.binding) == (
            chain_market.verifier,
            chain_market.creator,
            chain_market.codehash,
            chain_market.paused,
            chain_market.binding,
        )
        assert (view.grace_period, view.min_collateral, view.min_reward, view.caller_bps) == (
            chain_market.grace_period,
            chain_market.min_collateral,
            chain_market.min_reward,
            chain_market.caller_bps,
        )
    mechanisms = {m.mechanism_id: m for m in mirror.mechanisms()}
    assert set(mechanisms) == set(range(3, mechanism_count + 1))
    registered = {e.mechanism_id: e.args["name"] for e in client.events(["MechanismRegistered"])}
    for mechanism_id, view in mechanisms.items():
        assert (view.registrant, view.retired) == client.mechanism(mechanism_id)
        assert view.name == registered[mechanism_id]
        for address in addresses:
            assert client.call("is_frontend", mechanism_id, address) == (address in view.frontends)


def assert_same_as_fresh(mirror: Mirror, client: RegistryClient) -> None:
    """The mirror's derived tables equal those of a new mirror synced from scratch."""
    with Mirror(
        ":memory:", client, start_block=mirror.start_block, confirmations=mirror.confirmations
    ) as fresh:
        fresh.sync()
        assert fresh.cursor == mirror.cursor
        assert fresh.dump() == mirror.dump()


@pytest.fixture
def actors(accounts):
    return list(accounts[:8])


# ------------------------------------------------------------------ lifecycle


def lifecycle(registry, create_task, provers, keeper, requester) -> tuple:
    """Tasks in every state a slot can reach, before the slashes: (pair, reopens, refunds,
    late_a, late_b, cancelled, held, race)."""
    p0, p1, p2 = provers
    # Two slots: p0 proves, p1 declines (its slot reopens), a second item for p0 is skipped.
    pair = create_task(redundancy=2)
    tx = registry.assign_batch(
        [item(pair, p0, pair.max_reward), item(pair, p1, pair.max_reward), item(pair, p0, pair.max_reward)],
        sender=keeper,
    )
    (_, a0), (_, a1) = assigned(registry, tx)
    prove(registry, pair, p0, a0)
    registry.decline(pair.as_tuple(), a1.as_tuple(), sender=p1)
    # Slashed within the assignment window (reopens) and after it (refunds the slot).
    reopens = create_task()
    refunds = create_task(assign_window=100)
    late_a = assign(registry, keeper, reopens, p2)
    late_b = assign(registry, keeper, refunds, p1)
    # Three slots, one held by p0, the other two cancelled; an open race p1 proves.
    cancelled = create_task(redundancy=3)
    held = assign(registry, keeper, cancelled, p0)
    registry.cancel(cancelled.as_tuple(), sender=requester)
    race = create_task(mechanism_id=OPEN_RACE, redundancy=2)
    prove(registry, race, p1)
    return pair, reopens, refunds, late_a, late_b, cancelled, held, race


def test_sync__whole_lifecycle__matches_the_chains_own_views(
    mirror,
    client,
    registry,
    create_task,
    provers,
    keeper,
    requester,
    stranger,
    chain,
    market,
    actors,
    records,
):
    p0, p1, p2 = provers
    mirror.sync()
    pair, reopens, refunds, late_a, late_b, cancelled, held, race = lifecycle(
        registry, create_task, provers, keeper, requester
    )
    mirror.sync()  # a sync in the middle: the rest applies on top of it
    latest = chain.provider.web3.eth.get_block("latest")["timestamp"]
    assert mirror.overdue(latest) == []
    assert {(a.prover, a.task_id) for a in mirror.overdue(latest + 400)} == {
        (p2.address, task_id(client, reopens)),
        (p1.address, task_id(client, refunds)),
        (p0.address, task_id(client, cancelled)),
    }
    advance(chain, 400)
    registry.slash(reopens.as_tuple(), p2, late_a.as_tuple(), sender=stranger)
    registry.slash(refunds.as_tuple(), p1, late_b.as_tuple(), sender=stranger)
    # Money and memberships: unstake, revoke, update, leave, withdraw.
    registry.unstake(ETHER, sender=p2)
    registry.revoke_signatures(sender=p1)
    registry.update_membership(market, 3, ETHER // 50, 90, 0b111, sender=p0)
    registry.leave_market(market, sender=p2)
    registry.withdraw(sender=keeper)
    registry.set_mechanism_accepted(market, OPEN_RACE, True, sender=p1)

    report = mirror.sync()

    assert report.to_block == chain.provider.web3.eth.block_number and report.skipped == 0
    assert_matches_chain(mirror, client, actors)
    assert_same_as_fresh(mirror, client)
    # What a mechanism reads: open tasks, who is on them or barred, capacity, live work.
    now = chain.provider.web3.eth.get_block("latest")["timestamp"]
    snap = mirror.snapshot(now=now)
    assert snap.block == report.to_block
    tasks = {t.task_id: t for t in mirror.open_tasks()}
    ids = {name: task_id(client, t) for name, t in [("pair", pair), ("reopens", reopens), ("race", race)]}
    assert set(tasks) == set(ids.values())
    assert (tasks[ids["pair"]].open, tasks[ids["pair"]].proven) == (1, 1)
    assert tasks[ids["pair"]].on_task == {p0.address} and tasks[ids["pair"]].barred == {p1.address}
    assert not tasks[ids["pair"]].eligible(p1.address) and tasks[ids["pair"]].eligible(p2.address)
    assert tasks[ids["reopens"]].barred == {p2.address} and tasks[ids["reopens"]].slots[0].recorded
    assert tasks[ids["pair"]].terms == pair and tasks[ids["pair"]].prover_input == b'{"x": 7, "y": 49}'
    # Past the race's window, only the reopened tasks are still assignable now.
    assert {t.task_id for t in snap.open_tasks} == {ids["pair"], ids["reopens"]}
    [live] = snap.live_of(p0)
    assert (live.task_id, live.slot, live.collateral) == (task_id(client, cancelled), held.slot, ETHER // 2)
    assert snap.membership(p0, market).used == 1 and snap.membership(p0, market).capacity == 3
    assert snap.membership(p2, market) is None
    assert snap.provers[p2.address].free == 5 * ETHER - ETHER - reopens.collateral
    assert [s["reason"] for s in mirror.skipped_assignments()] == ["registry: prover already on task"]
    assert [e.name for e in mirror.timeline(ids["pair"])] == [
        "TaskPosted",
        "TaskAssigned",
        "TaskAssigned",
        "AssignmentSkipped",
        "TaskProven",
        "TaskDeclined",
    ]
    batches = records("mirror.batch")
    assert batches and {"from_block", "to_block", "applied", "skipped", "cursor", "ms"} <= set(batches[-1])


def test_sync__decline_after_the_assignment_window__refunds_and_closes_the_slot(
    mirror, client, registry, create_task, provers, keeper, chain, actors
):
    terms = create_task(assign_window=10)
    assignment = assign(registry, keeper, terms, provers[0])
    advance(chain, GRACE_PERIOD // 2)
    registry.decline(terms.as_tuple(), assignment.as_tuple(), sender=provers[0])  # refunds: window over

    mirror.sync()

    assert_matches_chain(mirror, client, actors)
    assert mirror.task(task_id(client, terms)).closed == 1
    # The refund is reported first, then the decline that caused it (reopened False).
    assert [e.name for e in mirror.timeline(task_id(client, terms))][-2:] == ["SlotsClosed", "TaskDeclined"]


# ------------------------------------------------------------------ restart and crash


def test_restart__new_mirror_on_the_same_file__backfills_from_its_cursor_applying_nothing_twice(
    client, registry, create_task, provers, keeper, chain, tmp_path, actors, monkeypatch
):
    path = tmp_path / "mirror.sqlite"
    with Mirror(str(path), client, start_block=0) as first:
        first.sync()
        cursor = first.cursor
    # While it is down: a post, an assignment, a proof, a stake.
    terms = create_task()
    prove(registry, terms, provers[0], assign(registry, keeper, terms, provers[0]))
    registry.stake(sender=provers[1], value=20 * ETHER)  # a stake above 2**63 wei
    ranges = []
    get_logs = chain.provider.web3.eth.get_logs

    def spy(params):
        ranges.append((params["fromBlock"], params["toBlock"]))
        return get_logs(params)

    monkeypatch.setattr(chain.provider.web3.eth, "get_logs", spy)

    with Mirror(str(path), client, start_block=12345, batch_blocks=2) as second:
        assert (second.cursor, second.start_block) == (cursor, 0)
        report = second.sync()
        again = second.sync()

        assert report.from_block == cursor and report.to_block == chain.provider.web3.eth.block_number
        assert ranges[0][0] == cursor + 1 and all(to - frm < 2 for frm, to in ranges)
        assert (again.applied, again.batches) == (0, 0)
        journal = [(e.block, e.log_index) for e in second.timeline()]
        on_chain = [(e.block, e.log_index) for e in client.events(from_block=0)]
        assert journal == on_chain
        assert_matches_chain(second, client, actors)
        assert_same_as_fresh(second, client)


def test_crash__mid_range__leaves_nothing_of_it_and_a_restart_applies_it_whole(
    client, registry, create_task, provers, keeper, tmp_path, actors, monkeypatch
):
    path = tmp_path / "mirror.sqlite"
    with Mirror(str(path), client, start_block=0) as first:
        first.sync()
        cursor, dump, journal = first.cursor, first.dump(), len(first.timeline())
        terms = create_task()
        assign(registry, keeper, terms, provers[0])

        def crash(self, block, block_hash):
            raise RuntimeError("power cut")

        with monkeypatch.context() as patch:
            patch.setattr(Mirror, "_store_cursor", crash)  # after the range's events are applied
            with pytest.raises(RuntimeError, match="power cut"):
                first.sync()

    with Mirror(str(path), client) as second:
        assert (second.cursor, second.dump(), len(second.timeline())) == (cursor, dump, journal)
        second.sync()
        assert_matches_chain(second, client, actors)
        assert [a.prover for a in second.live_assignments()] == [provers[0].address]


def test_sync__node_refuses_wide_ranges__read_in_pages__a_node_down_ends_the_sync(
    client, chain, actors, monkeypatch
):
    web3 = chain.provider.web3
    get_logs = web3.eth.get_logs
    calls = []

    def limited(params):
        calls.append((params["fromBlock"], params["toBlock"]))
        if params["toBlock"] != "latest" and params["toBlock"] - params["fromBlock"] >= 3:
            raise ValueError({"code": -32602, "message": "query exceeds max block range 3"})
        return get_logs(params)

    monkeypatch.setattr(web3.eth, "get_logs", limited)
    with Mirror(":memory:", client, start_block=0) as mirror:
        mirror.sync()
        assert mirror.cursor == web3.eth.block_number and len(calls) > 2
        assert all(to - frm < 3 for frm, to in calls[1:])  # the limit the node named, kept
        assert_matches_chain(mirror, client, actors)

    def down(params):
        calls.append((params["fromBlock"], params["toBlock"]))
        raise ConnectionError("node unreachable")

    monkeypatch.setattr(web3.eth, "get_logs", down)
    client.logs = LogReader(web3, attempts=2, backoff=0)
    calls.clear()
    with Mirror(":memory:", client, start_block=0) as mirror:
        with pytest.raises(LogsError, match="failed 2 times, last: node unreachable"):
            mirror.sync()
        assert (mirror.cursor, len(calls), mirror.dump()["provers"]) == (-1, 2, [])


def test_open__a_file_of_another_registry__refused(client, tmp_path, chain, accounts):
    path = str(tmp_path / "mirror.sqlite")
    Mirror(path, client).close()
    other = RegistryClient(chain.provider.web3, accounts[9].address)
    with pytest.raises(MirrorError, match="use another file"):
        Mirror(path, other)


def test_open__a_file_of_an_older_schema__rebuilt_from_the_chain_other_tables_kept(
    client, create_task, tmp_path, caplog
):
    create_task()
    path = str(tmp_path / "mirror.sqlite")
    with Mirror(path, client, start_block=0) as mirror:
        mirror.sync()
        synced = mirror.dump()
        cursor = mirror.cursor
        mirror.db.execute("UPDATE meta SET value = '1' WHERE key = 'schema'")
        mirror.db.execute("CREATE TABLE outbox (tx_hash TEXT PRIMARY KEY)")  # not the mirror's own
        mirror.db.execute("INSERT INTO outbox VALUES ('0xunsent')")
    with caplog.at_level("INFO", logger="provingmarket.chain.mirror"), Mirror(path, client, 0) as mirror:
        assert mirror.cursor == -1 and mirror.dump()["tasks"] == []
        assert [r[0] for r in mirror.db.execute("SELECT tx_hash FROM outbox")] == ["0xunsent"]
        mirror.sync(max_blocks=cursor + 1)
        assert mirror.dump() == synced
    rebuilt = [json.loads(r.getMessage()) for r in caplog.records if "mirror.rebuild" in r.getMessage()]
    assert [(r["schema"], r["to_schema"]) for r in rebuilt] == [("1", SCHEMA_VERSION)]


# ------------------------------------------------------------------ confirmations


def test_confirmations__events_newer_than_head_less_n__wait(client, registry, create_task, chain):
    web3 = chain.provider.web3
    with Mirror(":memory:", client, start_block=0, confirmations=3) as mirror:
        mirror.sync()
        assert mirror.cursor == web3.eth.block_number - 3
        terms = create_task()
        tid = task_id(client, terms)

        mirror.sync()
        assert mirror.task(tid) is None and mirror.cursor == web3.eth.block_number - 3
        chain.mine(2)
        mirror.sync()
        assert mirror.task(tid) is None
        chain.mine(1)
        mirror.sync()
        assert mirror.task(tid) is not None and mirror.task(tid).open == 1


# ------------------------------------------------------------------ reorgs


def test_reorg__anvil_drops_an_applied_block__rolled_back_and_matches_again(
    mirror, client, registry, create_task, provers, keeper, chain, actors, records
):
    web3 = chain.provider.web3
    terms = create_task()
    assign(registry, keeper, terms, provers[0])
    mirror.sync()
    dropped = web3.eth.block_number
    assert [a.prover for a in mirror.live_assignments()] == [provers[0].address]

    chain.provider.make_request("anvil_reorg", [1, []])  # the assignment's block, replaced empty
    assert web3.eth.get_block(dropped)["transactions"] == []
    report = mirror.sync()

    assert report.reorgs == [(dropped, dropped - 1)]
    assert mirror.live_assignments() == [] and mirror.task(task_id(client, terms)).open == 1
    assert mirror.prover(provers[0]).locked == 0
    assert_matches_chain(mirror, client, actors)
    assert_same_as_fresh(mirror, client)
    [line] = records("mirror.reorg")
    assert (line["cursor"], line["fork"], line["depth"]) == (dropped, dropped - 1, 1)
    assert line["undone_writes"] > 0 and line["dropped_events"] == 1


def test_reorg__snapshot_reverted_and_other_blocks_mined_at_the_same_heights__follows_the_new_chain(
    mirror, client, registry, create_task, provers, keeper, chain, actors
):
    p0, p1, _ = provers
    terms = create_task()
    mirror.sync()
    fork = mirror.cursor
    snapshot = chain.snapshot()
    assign(registry, keeper, terms, p0)
    registry.unstake(ETHER, sender=p0)
    registry.stake(sender=p0, value=ETHER // 3)
    mirror.sync()
    assert mirror.prover(p0).unbonding == ETHER and len(mirror.live_assignments(p0)) == 1

    chain.restore(snapshot)  # back to the fork: the same heights get other blocks
    assign(registry, keeper, terms, p1)
    chain.mine(1)
    report = mirror.sync()

    assert [f for _, f in report.reorgs] == [fork]
    assert mirror.live_assignments(p0) == [] and len(mirror.live_assignments(p1)) == 1
    assert mirror.prover(p0).unbonding == 0 and mirror.prover(p0).stake == 5 * ETHER
    assert_matches_chain(mirror, client, actors)
    assert_same_as_fresh(mirror, client)


def test_reorg__while_a_range_is_read__nothing_written_and_the_range_read_again(
    mirror, client, registry, create_task, provers, keeper, chain, actors, records, monkeypatch
):
    mirror.sync()
    terms = create_task()
    assign(registry, keeper, terms, provers[0])
    get_logs = mirror._get_logs
    reorged = []

    def reorg_then_read(frm, to):
        if not reorged:  # the chain moves between the headers and the logs
            reorged.append(chain.provider.make_request("anvil_reorg", [1, []]))
        return get_logs(frm, to)

    monkeypatch.setattr(mirror, "_get_logs", reorg_then_read)
    report = mirror.sync()

    assert reorged and report.reorgs == [] and report.batches == 1
    assert [line["reason"] for line in records("mirror.moved")] == [
        f"block {report.to_block} changed while its logs were read"
    ]
    assert mirror.live_assignments() == [] and mirror.task(task_id(client, terms)).open == 1
    assert_matches_chain(mirror, client, actors)
    assert_same_as_fresh(mirror, client)


def test_reorg__deeper_than_the_kept_hashes__resyncs_from_the_start(
    client, registry, create_task, provers, keeper, chain, actors, records
):
    with Mirror(":memory:", client, start_block=0, keep_blocks=2) as mirror:
        terms = create_task()
        assign(registry, keeper, terms, provers[0])
        chain.mine(3)
        mirror.sync()

        chain.provider.make_request("anvil_reorg", [4, []])
        report = mirror.sync()

        assert report.reorgs == [(report.from_block, -1)]
        assert records("mirror.reset")
        assert mirror.task(task_id(client, terms)).open == 1
        assert_matches_chain(mirror, client, actors)
        assert_same_as_fresh(mirror, client)


# ------------------------------------------------------------------ bad logs


def emitter_code(topics: int) -> bytes:
    """EVM code that logs its calldata: `topics` words of topics, then the data (LOGn)."""
    skip = (32 * topics).to_bytes(2, "big")
    size = b"\x61" + skip + b"\x36\x03"  # PUSH2 skip, CALLDATASIZE, SUB
    code = size + b"\x80\x61" + skip + b"\x60\x00\x37\x50"  # DUP1 PUSH2 skip PUSH1 0 CALLDATACOPY POP
    for i in reversed(range(topics)):
        code += b"\x61" + (32 * i).to_bytes(2, "big") + b"\x35"  # PUSH2 32i CALLDATALOAD
    return code + size + b"\x60\x00" + bytes([0xA0 + topics]) + b"\x00"  # PUSH1 0 LOGn STOP


def test_sync__unknown_and_malformed_logs__skipped_with_a_log_line_and_the_rest_applied(
    chain, registry, provers, records
):
    web3 = chain.provider.web3
    emitter = "0x" + "ee" * 20  # logs as if it were a registry
    client = RegistryClient(web3, Web3.to_checksum_address(emitter))
    topic = {name: bytes.fromhex(t[2:]) for t, name in client._events.items()}
    signer = KeySigner(KEY_0)
    with Mirror(":memory:", client, start_block=web3.eth.block_number + 1) as mirror:

        def emit(*topics: bytes, data: bytes = b"") -> None:
            chain.provider.make_request("anvil_setCode", [emitter, "0x" + emitter_code(len(topics)).hex()])
            receipt = signer.send(
                web3, {"to": client.address, "data": b"".join(topics) + data, "gas": 100_000, "value": 0}
            )
            assert receipt["status"] == 1

        emit(data=b"no topic at all")
        emit(keccak_of(b"Unknown(uint256)"), data=encode(["uint256"], [1]))
        emit(topic["TaskPosted"], data=b"\x01\x02")  # too few topics and data for a TaskPosted
        emit(topic["Staked"], word(provers[0].address), data=encode(["uint256", "uint256"], [5, 7]))
        emit(  # well formed, about a task the mirror never saw posted
            topic["TaskAssigned"],
            b"\x11" * 32,
            word(provers[0].address),
            word(ZERO_ADDRESS),
            data=encode(["uint256", "uint256", "uint256"], [0, 1, 2]),
        )

        report = mirror.sync()

        assert (report.applied, report.skipped) == (1, 4)
        assert mirror.cursor == web3.eth.block_number
        assert mirror.prover(provers[0]).stake == 7
        reasons = [line["reason"] for line in records("mirror.skip")]
        assert reasons[:2] == ["unknown event", "unknown event"]
        assert reasons[2].startswith("malformed: ")
        assert reasons[3].startswith("TaskAssigned not applied: unknown task 0x1111")
        assert [e.name for e in mirror.timeline()] == ["Staked"]


def keccak_of(text: bytes) -> bytes:
    return Web3.keccak(text)


def word(address: str) -> bytes:
    return bytes(12) + bytes.fromhex(address[2:])
