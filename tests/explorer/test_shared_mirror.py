"""The explorer over the shared mirror on Postgres: filled with the same registry events as a
SQLite mirror file (through the mirror's own projection), every page's data is the same on
both (overview, a market, the task list filtered and paged, a task, the provers, a prover,
the mechanisms page); a database with no mirror yet is said plainly, as a missing file is."""

from __future__ import annotations

import pytest

from explorer.data import Explorer
from explorer.routing import mechanisms_page
from tests.explorer.test_mechanisms import AUCTION, FRONTEND, LEAST, LEAST_COLLATERAL, MARKET, PROVERS, Chain

NOW = 1_700_000_000 + 12 * 40


def fill(chain: Chain) -> list[str]:
    """A market, a mechanism, four provers, tasks proven, live, slashed and open."""
    chain.next()
    chain.emit(
        "MarketCreated",
        market_id=MARKET,
        creator=FRONTEND,
        verifier="0x" + "11" * 20,
        codehash=b"\x07" * 32,
        binding=1,
        address_input=0,
        min_collateral=LEAST_COLLATERAL,
        min_reward=LEAST,
        grace_period=60,
        requester_bps=5_000,
        caller_bps=1_000,
        custom=False,
    )
    chain.emit("MechanismRegistered", mechanism_id=AUCTION, registrant=FRONTEND, name="auction")
    chain.emit("FrontendSet", mechanism_id=AUCTION, frontend=FRONTEND, allowed=True)
    for n, who in enumerate(PROVERS):
        chain.emit("Staked", prover=who, amount=(n + 1) * 10**18, stake=(n + 1) * 10**18)
        chain.emit(
            "ProverJoined",
            prover=who,
            market_id=MARKET,
            capacity=3,
            ask=n * 10**15,
            proving_time=20,
            capabilities=0,
        )
        chain.emit("MechanismAccepted", prover=who, market_id=MARKET, mechanism_id=AUCTION, accepted=True)
    tasks = []
    for n in range(6):
        chain.next()
        task = chain.post("0x" + "99" * 20, max_reward=(n + 1) * LEAST)
        tasks.append(task)
        if n < 4:
            chain.assign(task, PROVERS[n % 4], price=LEAST)
        if n < 2:
            chain.next(2)
            chain.prove(task, PROVERS[n % 4], paid=LEAST, refund=n * LEAST)
    chain.next()
    chain.emit(
        "Slashed",
        task_id=bytes.fromhex(tasks[3][2:]),
        prover=PROVERS[3],
        caller=FRONTEND,
        slot=0,
        collateral=LEAST_COLLATERAL,
        to_requester=LEAST_COLLATERAL // 2,
        to_caller=LEAST_COLLATERAL // 10,
        burnt=LEAST_COLLATERAL - LEAST_COLLATERAL // 2 - LEAST_COLLATERAL // 10,
        reopened=True,
    )
    return tasks


def pages(explorer: Explorer, tasks: list[str]) -> dict:
    return {
        "overview": explorer.overview(),
        "market": explorer.market(MARKET),
        "tasks": explorer.tasks(),
        "open": explorer.tasks(state="open", market=str(MARKET)),
        "prefix": explorer.tasks(q=tasks[0][:6], redirect=False),
        "task": [explorer.task(t) for t in tasks],
        "provers": explorer.provers(),
        "prover": [explorer.prover(p) for p in PROVERS],
        "mechanisms": explorer.read(lambda db: mechanisms_page(db, explorer.cursor())),
    }


def test_every_page_is_the_same_on_sqlite_and_postgres(tmp_path, postgres_server):
    url = postgres_server.create_database("explorer_pages")
    lite, shared = Chain(tmp_path / "mirror.sqlite"), Chain(url)  # type: ignore[arg-type]
    tasks = fill(lite)
    assert fill(shared) == tasks
    on_file = Explorer(tmp_path / "mirror.sqlite", clock=lambda: NOW)
    on_postgres = Explorer(url, clock=lambda: NOW)
    assert on_postgres.cursor() == on_file.cursor() > 0
    expected = pages(on_file, tasks)
    assert expected["overview"]["states"]["proven"] == 2 and expected["provers"]["provers"]
    assert pages(on_postgres, tasks) == expected


def test_a_database_with_no_mirror_yet_is_said_plainly(postgres_server):
    explorer = Explorer(postgres_server.create_database("explorer_empty"), clock=lambda: NOW)
    with pytest.raises(FileNotFoundError, match=r"no mirror readable at postgresql://.*start the indexer"):
        explorer.overview()
    with pytest.raises(FileNotFoundError, match="cannot open"):
        Explorer(postgres_server.url.rsplit(":", 1)[0] + ":1/none").cursor()
