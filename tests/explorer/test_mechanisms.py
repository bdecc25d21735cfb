"""The explorer's mechanisms and routing page (explorer/routing.py) over a mirror file filled
through the mirror's own projection with registry events as the chain logs them (a routed,
two registered mechanisms with a frontend, one retired, staked provers, tasks of three
personas and one requester of its own, assigned, proven, slashed and closed): the page's
QoS per mechanism and per persona equals qos.measure and summarize over the same events;
tasks are attributed to personas by the router's record, by their requester and by a
persona's plan terms; the router's recent choices show with their reasons and outcomes;
the figures follow the journal as it grows and after a reorg; a missing or broken
simulation report is said plainly, and a real one shows its headline table and plots."""

from __future__ import annotations

import html
import json
import re
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from explorer.app import inline_svg, templates
from explorer.routing import (
    BY_NOTHING,
    BY_REQUESTER,
    BY_ROUTER,
    BY_TERMS,
    UNATTRIBUTED,
    mechanisms_api,
    mechanisms_page,
    sim_report,
)
from provingmarket.chain.client import Event
from provingmarket.chain.database import connect
from provingmarket.chain.mirror.projection import Projection
from provingmarket.chain.mirror.schema import dumps, hex_id, loads, open_file, write_meta
from provingmarket.chain.mirror.tables import Tables
from provingmarket.formats import DUTCH, OPEN_RACE
from provingmarket.market.personas import persona_terms
from provingmarket.market.qos import measure, summarize
from provingmarket.market.router import Arm, MarketView, Pace, Router
from provingmarket.market.routing import persona_preferences
from simulation import report
from simulation.world import Outcome
from tests.factories import task_qos

MARKET = 1
LEAST = 10**15  # the market's least reward, wei
LEAST_COLLATERAL = 10**16
AUCTION, ELECTION = 3, 4
GENESIS = 1_700_000_000
FRONTEND = "0x" + "f0" * 20
REGISTRANT = "0x" + "e0" * 20
PROVERS = ["0x" + f"{n:02x}" * 20 for n in (1, 2, 3, 4)]
ARBITRAGE_BOT, BATCH_JOB, ROLLUP, OWN_TERMS = ("0x" + f"{n:02x}" * 20 for n in (0xA1, 0xB2, 0xC3, 0xD4))


class Chain:
    """A mirror file filled as `Mirror.sync` fills it: each event applied by the projection
    and journalled with its block's timestamp (12 s blocks)."""

    def __init__(self, path: Path):
        self.path = path
        self.db = open_file(str(path))
        write_meta(self.db, {"schema": "4", "start_block": "0", "cursor_block": "0"})
        self.projection = Projection(Tables(self.db))
        self.block = 0
        self.index = 0
        self.events: list[Event] = []
        self.salt = 0

    def time(self, block: int) -> int:
        return GENESIS + 12 * block

    def next(self, blocks: int = 1) -> int:
        self.block += blocks
        return self.block

    def emit(self, event_name: str, **args) -> Event:
        """One event in the current block (its own transaction)."""
        return self.transaction((event_name, args))[0]

    def transaction(self, *logs: tuple[str, dict]) -> list[Event]:
        """Events logged by one transaction, applied in order as the sync applies them."""
        tx = "0x" + f"{self.block:032x}{self.index:032x}"
        events = []
        for event_name, args in logs:
            events.append(Event(event_name, args, self.block, tx, self.index))
            self.index += 1
        self.db.execute("BEGIN")
        for n, event in enumerate(events):
            self.projection.apply(event, events[n + 1] if n + 1 < len(events) else None)
            self.db.execute(
                "INSERT INTO journal (block, log_index, block_hash, tx, name, task_id, args, time) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    event.block,
                    event.log_index,
                    "0x" + f"{event.block:064x}",
                    tx,
                    event.name,
                    hex_id(event.args["task_id"]) if "task_id" in event.args else None,
                    dumps(event.args),
                    self.time(self.block),
                ),
            )
            # what the journal gives back, as the chain client decodes it
            self.events.append(Event(event.name, loads(dumps(event.args)), event.block, tx, event.log_index))
        write_meta(self.db, {"cursor_block": str(self.block)})
        self.db.execute("COMMIT")
        return events

    def post(self, requester: str, **terms) -> str:
        self.salt += 1
        values = dict(
            market_id=MARKET,
            requester=requester,
            posted_at=self.time(self.block),
            inputs_commitment=b"\x01" * 32,
            prover_input_hash=b"\x02" * 32,
            max_reward=LEAST,
            frontend_fee=0,
            assign_window=600,
            proving_window=300,
            collateral=LEAST_COLLATERAL,
            capabilities=0,
            redundancy=1,
            mechanism_id=AUCTION,
            start_price=0,
            ramp=0,
            decay=False,
            decay_floor=0,
            salt=self.salt,
        )
        values.update(terms)
        task_id = self.salt.to_bytes(32, "big")
        self.emit(
            "TaskPosted",
            task_id=task_id,
            requester=requester,
            market_id=MARKET,
            terms=values,
            prover_input=b"{}",
            input_uri="",
        )
        return hex_id(task_id)

    def assign(self, task_id: str, prover: str, slot: int = 0, price: int = LEAST) -> None:
        self.emit(
            "TaskAssigned",
            task_id=bytes.fromhex(task_id[2:]),
            prover=prover,
            frontend=FRONTEND,
            slot=slot,
            price=price,
            deadline=self.time(self.block) + 300,
        )

    def prove(self, task_id: str, prover: str, slot: int = 0, paid: int = LEAST, refund: int = 0) -> None:
        self.emit(
            "TaskProven",
            task_id=bytes.fromhex(task_id[2:]),
            prover=prover,
            frontend=FRONTEND,
            slot=slot,
            paid=paid,
            fee=0,
            refund=refund,
            public_inputs=[1, 2],
            proof=b"\x05" * 64,
        )


@pytest.fixture
def journal(tmp_path) -> Chain:
    c = Chain(tmp_path / "mirror.sqlite")
    c.next()
    c.emit(
        "MarketCreated",
        market_id=MARKET,
        creator=REGISTRANT,
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
    c.emit("MechanismRegistered", mechanism_id=AUCTION, registrant=REGISTRANT, name="auction")
    c.emit("FrontendSet", mechanism_id=AUCTION, frontend=FRONTEND, allowed=True)
    c.emit("MechanismRegistered", mechanism_id=ELECTION, registrant=REGISTRANT, name="election")
    for who in PROVERS:
        c.emit("Staked", prover=who, amount=10**18, stake=10**18)
        c.emit(
            "ProverJoined", prover=who, market_id=MARKET, capacity=3, ask=0, proving_time=20, capabilities=0
        )
        for mechanism_id in (AUCTION, ELECTION):
            c.emit(
                "MechanismAccepted", prover=who, market_id=MARKET, mechanism_id=mechanism_id, accepted=True
            )
    return c


def market_view() -> MarketView:
    return MarketView(
        MARKET, LEAST, LEAST_COLLATERAL, tuple((20, frozenset({AUCTION, ELECTION})) for _ in PROVERS)
    )


@pytest.fixture
def routed(journal, tmp_path) -> dict:
    """Tasks of every kind; the router's state file recording the batch job's first task."""
    c = journal
    found: dict = {}
    # arbitrage: the persona's fixed plan (post --persona arbitrage), an open race proven in 24 s
    c.next()
    found["race"] = c.post(ARBITRAGE_BOT, **persona_terms("arbitrage", LEAST, LEAST_COLLATERAL))
    c.next(2)
    c.prove(found["race"], PROVERS[0], paid=3 * LEAST, refund=2 * LEAST)
    # batch: routed (post --auto --persona batch), through the auction
    router = Router([Arm("auction", AUCTION, least_time=60)], Pace(60, 600, 300))
    batch = persona_preferences("batch")
    choice = router.choose(batch, market_view(), BATCH_JOB)
    c.next()
    found["routed"] = c.post(BATCH_JOB, **choice.terms)
    router.record(found["routed"], choice, batch, BATCH_JOB, at=c.time(c.block))
    found["choice"], found["routed_at"] = choice, c.time(c.block)
    c.next(5)
    c.assign(found["routed"], PROVERS[1], price=LEAST // 2)
    c.next(3)
    c.prove(found["routed"], PROVERS[1], paid=LEAST // 2, refund=choice.terms["max_reward"] - LEAST // 2)
    # ... and one of its own terms: the same requester, so batch too
    c.next()
    found["batch_own"] = c.post(BATCH_JOB, max_reward=2 * LEAST)
    c.assign(found["batch_own"], PROVERS[2])
    c.next(10)
    c.prove(found["batch_own"], PROVERS[2], paid=LEAST)
    # rollup: the persona's plan through the election (3 provers); one slashed, its slot closed
    c.next()
    found["rollup"] = c.post(
        ROLLUP, **persona_terms("rollup", LEAST, LEAST_COLLATERAL, {"election": ELECTION})
    )
    c.next()
    for slot, who in enumerate(PROVERS[:3]):
        c.assign(found["rollup"], who, slot=slot, price=2 * LEAST)
    c.next(4)
    c.prove(found["rollup"], PROVERS[0], slot=0, paid=2 * LEAST)
    c.prove(found["rollup"], PROVERS[1], slot=1, paid=2 * LEAST)
    c.next(20)
    tid = bytes.fromhex(found["rollup"][2:])
    c.transaction(  # past the assignment window: the slot's escrow refunded, then the slash
        ("SlotsClosed", dict(task_id=tid, requester=ROLLUP, slots=1, refund=2 * LEAST, cancelled=False)),
        (
            "Slashed",
            dict(
                task_id=tid,
                prover=PROVERS[2],
                caller=PROVERS[3],
                slot=2,
                collateral=5 * LEAST_COLLATERAL,
                to_requester=LEAST_COLLATERAL,
                to_caller=LEAST_COLLATERAL,
                burnt=3 * LEAST_COLLATERAL,
                reopened=False,
            ),
        ),
    )
    # a requester of its own terms: never assigned, closed and refunded; the election retired
    c.next()
    found["own"] = c.post(OWN_TERMS, mechanism_id=DUTCH, max_reward=4 * LEAST, ramp=600)
    c.next(60)
    c.emit(
        "SlotsClosed",
        task_id=bytes.fromhex(found["own"][2:]),
        requester=OWN_TERMS,
        slots=1,
        refund=4 * LEAST,
        cancelled=False,
    )
    c.emit("MechanismRetired", mechanism_id=ELECTION)
    found["state"] = tmp_path / "router.json"
    router.save(found["state"])
    return found


def read_only(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    return db


def as_row(g) -> dict:
    return {
        "tasks": g.tasks,
        "proven": g.proven,
        "delivered": g.delivered,
        "first_proof": g.first_proof,
        "first_proof_p95": g.first_proof_p95,
        "price_ratio": g.price_ratio,
        "took_part": g.took_part,
        "slashes": g.slashes,
        "delivery": g.delivery,
        "spent": str(g.spent),
    }


def test_qos_per_mechanism_and_persona_equals_measure_and_summarize(journal, routed):
    db = read_only(journal.path)
    page = mechanisms_page(db, journal.block, [routed["state"]], None)
    tasks = measure(journal.events, journal.time)
    assert page["tasks"] == len(tasks) == 5

    by_id = {m["id"]: m for m in page["mechanisms"]}
    assert [m["id"] for m in page["mechanisms"]] == [OPEN_RACE, DUTCH, AUCTION, ELECTION]
    assert (by_id[AUCTION]["name"], by_id[AUCTION]["registrant"], by_id[AUCTION]["frontends"]) == (
        "auction",
        REGISTRANT,
        [FRONTEND],
    )
    assert by_id[ELECTION]["retired"] and not by_id[AUCTION]["retired"]
    assert by_id[OPEN_RACE]["built_in"] and by_id[OPEN_RACE]["name"] == "open race"
    for g in summarize(tasks, lambda q: str(q.mechanism_id)):
        assert {k: by_id[int(g.key)]["qos"][k] for k in as_row(g)} == as_row(g)

    personas = {
        routed["race"]: "arbitrage",
        routed["routed"]: "batch",
        routed["batch_own"]: "batch",
        routed["rollup"]: "rollup",
        routed["own"]: UNATTRIBUTED,
    }
    rows = {(r["persona"], r["mechanism_id"]): r for r in page["personas"]}
    groups = summarize(tasks, lambda q: f"{personas[q.task_id]}|{q.mechanism_id}")
    assert len(rows) == len(groups) == 4
    for g in groups:
        persona, mechanism_id = g.key.split("|")
        assert {k: rows[persona, int(mechanism_id)][k] for k in as_row(g)} == as_row(g)
    # the figures a user reads: the rollup's two proofs of three in 60 s, one slash
    rollup = rows["rollup", ELECTION]
    assert (rollup["proofs"], rollup["proofs_asked"], rollup["slashes"], rollup["first_proof"]) == (
        2,
        3,
        1,
        60,
    )
    assert rows["arbitrage", OPEN_RACE]["first_proof"] == 24
    assert rows["arbitrage", OPEN_RACE]["price_ratio"] == pytest.approx(3 / 5)
    assert page["attribution"] == {BY_ROUTER: 1, BY_REQUESTER: 1, BY_TERMS: 2, BY_NOTHING: 1}
    # one plot per figure, each an SVG with a title, the personas on its axis
    assert sorted(page["plots"]) == ["delivery", "first_proof", "price_ratio", "slashes", "took_part"]
    for title, svg in page["plots"].values():
        assert svg.startswith("<svg") and title in svg
        assert "arbitrage" in svg and "rollup" in svg and "batch" in svg
    json.dumps(mechanisms_api(page))  # the API's answer is JSON as it stands


def test_the_routers_choices_show_with_their_reasons_and_outcomes(journal, routed):
    db = read_only(journal.path)
    page = mechanisms_page(db, journal.block, [routed["state"], routed["state"].with_name("none.json")])
    ours, missing = page["routers"]
    assert ours["error"] is None and ours["pending"] == 1
    (shown,) = ours["choices"]
    choice = routed["choice"]
    assert shown["task_id"] == routed["routed"]
    assert (shown["arm"], shown["reason"], shown["terms"]) == ("auction", choice.reason, choice.describe())
    assert shown["reason"].startswith("exploring: no task through auction")
    assert shown["persona"] == "batch" and shown["requester"] == BATCH_JOB
    assert (shown["in_mirror"], shown["proofs"], shown["redundancy"], shown["first_proof"]) == (
        True,
        1,
        1,
        96,
    )
    assert shown["at"] == routed["routed_at"]
    assert shown["when"] == time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(shown["at"]))
    assert missing["choices"] == [] and "no router state file at" in missing["error"]


def test_a_broken_router_state_file_is_said_not_raised(journal, routed, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    page = mechanisms_page(read_only(journal.path), journal.block, [bad])
    assert page["routers"][0]["error"].startswith(f"{bad}: not a router state file")
    # without the router's record, neither the routed task nor its requester's other is attributed
    assert page["attribution"][BY_ROUTER] == 0


def test_the_figures_follow_the_journal_and_a_reorg(journal, routed):
    db = read_only(journal.path)
    before = mechanisms_page(db, journal.block, [routed["state"]])
    assert before["tasks"] == 5
    journal.next()
    extra = journal.post(OWN_TERMS, mechanism_id=DUTCH, max_reward=4 * LEAST, ramp=600)
    journal.assign(extra, PROVERS[3])
    journal.next(2)
    journal.prove(extra, PROVERS[3], paid=LEAST, refund=3 * LEAST)
    after = mechanisms_page(db, journal.block, [routed["state"]])
    dutch = next(m for m in after["mechanisms"] if m["id"] == DUTCH)["qos"]
    assert (after["tasks"], dutch["tasks"], dutch["proven"], dutch["first_proof"]) == (6, 2, 1, 24)
    by_id = {m["id"]: m["qos"] for m in after["mechanisms"]}
    for g in summarize(measure(journal.events, journal.time), lambda q: str(q.mechanism_id)):
        assert {k: by_id[int(g.key)][k] for k in as_row(g)} == as_row(g)
    # a reorg drops the last blocks: the rows read are gone, the page starts afresh
    writer = connect(str(journal.path))
    writer.execute("DELETE FROM journal WHERE block > ?", (before["cursor"],))
    writer.close()
    again = mechanisms_page(db, before["cursor"], [routed["state"]])
    assert {k: again[k] for k in ("tasks", "mechanisms", "personas")} == {
        k: before[k] for k in ("tasks", "mechanisms", "personas")
    }


def test_no_simulation_report_is_said_plainly(tmp_path):
    none = sim_report(None)
    assert not none["found"] and "--sim-report DIR" in none["message"]
    empty = sim_report(tmp_path)
    assert (
        not empty["found"]
        and f"No simulation report in {tmp_path}: it has no results.json" in empty["message"]
    )
    (tmp_path / "results.json").write_text('{"splits": 3}')
    broken = sim_report(tmp_path)
    assert not broken["found"] and "cannot be read" in broken["message"]


def write_report(folder: Path) -> None:
    def outcome(policy: str, persona: str, index: int, first: int, utility: float) -> Outcome:
        q = task_qos((first,), LEAST, least=LEAST, could=4, task_id="0x" + f"{index:064x}")
        return Outcome(1, policy, index, persona, "auction", "", q, utility)

    outcomes = [
        outcome("auction", "batch", 1, 30, 0.6),
        outcome("auction", "rollup", 2, 90, 0.3),
        outcome("router", "batch", 3, 20, 0.7),
        outcome("router", "rollup", 4, 60, 0.5),
    ]
    report.write(folder, "small", {"training": outcomes}, ["batch", "rollup"], ["auction", "router"], "")


def test_a_simulation_report_shows_its_headline_table_and_plots(tmp_path):
    write_report(tmp_path)
    sim = sim_report(tmp_path)
    assert sim["found"] and sim["config"] == "small"
    (split,) = sim["splits"]
    assert split["name"] == "training" and split["policies"] == ["auction", "router"]
    cells = {r["persona"]: r["cells"] for r in split["rows"]}
    assert list(cells) == ["batch", "rollup", "overall"]
    assert cells["rollup"]["auction"]["loss"] == pytest.approx(0.2)
    assert cells["batch"]["router"]["utility"] == pytest.approx(0.7)
    assert "router" in split["verdict"]
    names = sorted(p["name"] for p in sim["plots"])
    assert names == sorted(p.name for p in tmp_path.glob("*.svg")) and "loss-training.svg" in names
    loss = next(p for p in sim["plots"] if p["name"] == "loss-training.svg")
    assert loss["title"] == "QoS loss (lower is better), training seeds"
    assert loss["uri"].startswith("data:image/svg+xml;base64,")


@pytest.fixture
def explorer_url(journal, routed, tmp_path):
    """`python -m explorer` over the mirror, the router's state and an empty report folder;
    stopped by its pid."""
    process = subprocess.Popen(
        [sys.executable, "-m", "explorer", "--mirror", str(journal.path), "--port", "0"]
        + ["--router-state", str(routed["state"]), "--sim-report", str(tmp_path / "no-report")],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert process.stdout is not None
        line = json.loads(process.stdout.readline())
        assert line["event"] == "explorer.listening"
        deadline = time.monotonic() + 20
        while True:  # the socket is bound before the server accepts on it
            try:
                with urllib.request.urlopen(line["url"] + "healthz", timeout=2) as response:
                    assert json.loads(response.read())["ok"]
                    break
            except OSError:
                assert time.monotonic() < deadline, "the explorer did not answer /healthz within 20 s"
                time.sleep(0.1)
        yield line["url"]
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_the_page_and_its_api_through_the_explorer(explorer_url, journal, routed):
    with urllib.request.urlopen(explorer_url + "mechanisms", timeout=10) as response:
        assert response.status == 200
        text = response.read().decode()
    assert text.count("<h1>") == 1 and "<h1>Mechanisms and routing</h1>" in text
    for heading in (
        "Mechanisms",
        "QoS per persona",
        "The router's recent choices",
        "The simulation's last report",
    ):
        assert f">{heading}</h2>" in text
    tasks = measure(journal.events, journal.time)
    auction = next(g for g in summarize(tasks, lambda q: str(q.mechanism_id)) if g.key == str(AUCTION))
    row = re.search(r'<tr data-mechanism="3">(.*?)</tr>', text, re.S).group(1)
    assert f'data-figure="tasks" data-value="{auction.tasks}"' in row
    assert f'data-figure="first_proof" data-value="{auction.first_proof}"' in row
    assert re.search(r'<tr data-persona="rollup" data-mechanism="4">', text)
    assert html.escape(routed["choice"].reason) in text
    assert f'href="/tasks/{routed["routed"]}"' in text
    assert "No simulation report in" in text and 'id="sim-missing"' in text
    assert (
        text.count("<svg") == len(re.findall(r'<svg role="img" aria-label="[^"]+"[^>]*><title>', text)) == 5
    )
    with urllib.request.urlopen(explorer_url + "api/mechanisms", timeout=10) as response:
        api = json.loads(response.read())
    assert api["tasks"] == 5 and api["routers"][0]["choices"][0]["reason"] == routed["choice"].reason
    assert not api["sim"]["found"]


def test_the_page_renders_a_simulation_report_and_its_routers_choices(journal, routed, tmp_path):
    folder = tmp_path / "sim"
    write_report(folder)
    data = mechanisms_page(read_only(journal.path), journal.block, [routed["state"]], folder)
    data["plots"] = {k: inline_svg(svg, title) for k, (title, svg) in data["plots"].items()}
    text = templates().get_template("mechanisms.html").render(path="/mechanisms", **data)
    rollup = re.search(r'<tr data-persona="rollup">(.*?)</tr>', text, re.S).group(1)
    assert '<td class="n" data-policy="auction" data-value="0.2' in rollup
    assert 'alt="QoS loss (lower is better), training seeds"' in text
    assert "No simulation report" not in text
    assert html.escape(routed["choice"].reason) in text
