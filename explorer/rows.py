"""The rows of the explorer's pages, shaped from the mirror's tables: a task's state and its
chain of mechanisms, the provers' standings, assignments, events, proofs, escrow, re-posting
links, windows and the plots over time. Plain functions over a connection or a row; the
queries that page and cache them are explorer/data.py's."""

from __future__ import annotations

import json
import sqlite3
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from eth_utils.address import to_checksum_address

from explorer.inputs import (
    PAGE_SIZE,
)
from provingmarket import rules
from provingmarket.chain.database import (
    Connection,
)
from provingmarket.chain.mirror.schema import loads
from provingmarket.formats import BUILT_IN_MECHANISMS, OPEN_RACE, TaskTerms, chain_links
from provingmarket.market.repricing import reposts
from provingmarket.proving.circuits import Circuit, CircuitError

PLOT_BUCKETS = 24  # points on the plots over time
TASK_STATES = ("open", "assigned", "proven", "closed")


@dataclass(frozen=True)
class CircuitInfo:
    name: str
    proving_system: str
    public: tuple[str, ...]
    outputs: tuple[str, ...]
    circuit: Circuit | None


ASSIGNMENTS = "SELECT a.*, t.market_id, t.terms FROM assignments a JOIN tasks t ON t.task_id = a.task_id"

# A task's state from its slots' counts (SQL and Python say the same).
STATE_SQL = (
    "SELECT CASE WHEN COUNT(*) FILTER (WHERE s.state = 'assigned') > 0 THEN 'assigned' "
    "WHEN COUNT(*) FILTER (WHERE s.state = 'open') > 0 THEN 'open' "
    "WHEN COUNT(*) FILTER (WHERE s.state = 'proven') > 0 THEN 'proven' ELSE 'closed' END "
    "FROM slots s WHERE s.task_id = t.task_id"
)


def state_of(counts: Mapping[str, int]) -> str:
    for state in ("assigned", "open", "proven"):
        if counts.get(state):
            return state
    return "closed"


def state_counts(db: Connection, market_id: int | None = None) -> dict[str, int]:
    where, params = ("WHERE t.market_id = ?", [market_id]) if market_id is not None else ("", [])
    found = {
        r[0]: r[1]
        for r in db.execute(
            f"SELECT ({STATE_SQL}) AS state, COUNT(*) FROM tasks t {where} GROUP BY state", params
        )
    }
    return {s: found.get(s, 0) for s in TASK_STATES}


def mechanism_label(names: Mapping[int, str], mechanism_id: int) -> str:
    """A mechanism's name; a chain's links' names in order."""
    links = chain_links(mechanism_id)
    if links:
        return "chain: " + ", then ".join(names.get(x.mechanism, f"mechanism {x.mechanism}") for x in links)
    return names.get(mechanism_id, f"mechanism {mechanism_id}")


def chain_row(names: Mapping[int, str], terms: TaskTerms, now: int) -> list[dict]:
    """A chained task's links: name, id, window, its start and end, and whether it is the
    one that may take a slot now (`rules.link_at`); [] for a single mechanism."""
    out, end = [], terms.posted_at
    current = rules.link_at(terms, now)
    for link in chain_links(terms.mechanism_id):
        start, end = end, end + link.window
        out.append(
            {
                "mechanism_id": link.mechanism,
                "name": names.get(link.mechanism, f"mechanism {link.mechanism}"),
                "window": link.window,
                "start": start,
                "end": end,
                "current": current[0] == link.mechanism and current[2] == end,
            }
        )
    return out


def mechanism_names(db: Connection) -> dict[int, str]:
    names = dict(BUILT_IN_MECHANISMS)
    names.update({r[0]: r[1] for r in db.execute("SELECT mechanism_id, name FROM mechanisms")})
    return names


def task_rows(
    db: Connection, where: str, params: Sequence[Any], limit: int, offset: int, now: int
) -> list[dict]:
    # The page's rows are chosen first (their rowids), then only they get their state: an
    # OFFSET over the whole query would work out the state of every row it skips.
    rows = db.execute(
        f"SELECT t.task_id, t.market_id, t.mechanism_id, t.requester, t.terms, t.redundancy, "
        f"({STATE_SQL}) AS state FROM tasks t WHERE t.rowid IN ("
        f"SELECT t.rowid FROM tasks t WHERE {where} "
        "ORDER BY t.posted_block DESC, t.task_id LIMIT ? OFFSET ?) ORDER BY t.posted_block DESC, t.task_id",
        [*params, limit, offset],
    ).fetchall()
    out = []
    names: dict[int, str] | None = None
    for r in rows:
        terms = loads(r["terms"])
        mechanism = r["mechanism_id"]
        if mechanism == 0:  # a chain (the mirror's tasks hold 0): its links' names
            names = mechanism_names(db) if names is None else names
            mechanism = mechanism_label(names, int(terms["mechanism_id"]))
        out.append(
            {
                "task_id": r["task_id"],
                "market_id": r["market_id"],
                "mechanism_id": mechanism,
                "requester": r["requester"],
                "redundancy": r["redundancy"],
                "max_reward": int(terms["max_reward"]),
                "posted_at": int(terms["posted_at"]),
                "state": r["state"],
            }
        )
    return out


# How a list of memberships is ordered: cheapest ask first, or busiest first.
BY_ASK = "m.market_id, CAST(m.ask AS REAL), m.prover"
BY_USE = "m.market_id, m.used DESC, m.capacity DESC, m.prover"


def membership_rows(
    db: Connection,
    where: str,
    params: list[Any],
    offset: int,
    limit: int | None = PAGE_SIZE,
    order: str = BY_ASK,
) -> list[dict]:
    rows = db.execute(
        "SELECT m.*, p.stake, p.locked FROM memberships m LEFT JOIN provers p ON p.prover = m.prover "
        f"WHERE m.joined = 1 AND {where} ORDER BY {order} "
        f"LIMIT ? OFFSET ?",
        [*params, 2**62 if limit is None else limit, offset],  # no limit: one both engines take
    ).fetchall()
    keys = {(r["prover"], r["market_id"]) for r in rows}
    accepts: dict[tuple[str, int], list[int]] = {}
    if keys:
        for r in db.execute(
            "SELECT prover, market_id, mechanism_id FROM accepts "
            f"WHERE prover IN ({','.join('?' * len(keys))})",
            [k[0] for k in keys],
        ):
            if (r["prover"], r["market_id"]) in keys:
                accepts.setdefault((r["prover"], r["market_id"]), []).append(r["mechanism_id"])
    return [
        {
            "prover": r["prover"],
            "market_id": r["market_id"],
            "capacity": r["capacity"],
            "used": r["used"],
            "ask": int(r["ask"]),
            "proving_time": r["proving_time"],
            "stake": int(r["stake"] or 0),
            "locked": int(r["locked"] or 0),
            "mechanisms": sorted(accepts.get((r["prover"], r["market_id"]), [])),
        }
        for r in rows
    ]


def standing_row(r: sqlite3.Row) -> dict:
    stake, locked = int(r["stake"]), int(r["locked"])
    keys = r.keys()
    return {
        "prover": r["prover"],
        "stake": stake,
        "locked": locked,
        "free": stake - locked,
        "unbonding": int(r["unbonding"]),
        "unbonding_ready_at": int(r["unbonding_ready_at"]),
        "balance": int(r["balance"]),
        **{k: r[k] for k in ("markets", "proofs", "live") if k in keys},
    }


def assignment_row(r: sqlite3.Row, now: int) -> dict:
    deadline = int(r["deadline"])
    terms = loads(r["terms"])
    return {
        "task_id": r["task_id"],
        "market_id": r["market_id"],
        "slot": r["slot"],
        "price": int(r["price"]),
        "deadline": deadline,
        "left": deadline - now,
        "frontend": r["frontend"],
        "state": r["state"],
        "collateral": int(terms["collateral"]),
        "assigned_block": r["assigned_block"],
    }


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def event_row(r: sqlite3.Row) -> dict:
    args = loads(r["args"])
    args.pop("task_id", None)
    if r["name"] == "TaskPosted":
        args.pop("terms", None)
        args.pop("prover_input", None)
    return {
        "name": r["name"],
        "block": r["block"],
        "log_index": r["log_index"],
        "tx": r["tx"],
        "time": r["time"],
        "args": _plain(args),
    }


def proof_row(e: dict, circuit: CircuitInfo | None) -> dict:
    values = [int(v) for v in e["args"].get("public_inputs", [])]
    named: dict[str, str] = {}
    if circuit is not None and circuit.circuit is not None and len(values) == len(circuit.public):
        try:
            named = {k: str(v) for k, v in circuit.circuit.named(values).items()}
        except (CircuitError, ValueError):
            named = {}
    signal = circuit.circuit.address_signal if circuit is not None and circuit.circuit is not None else None
    address = None
    if signal and signal in named:
        address = to_checksum_address(f"0x{int(named[signal]) % 2**160:040x}")
    return {
        "prover": e["args"].get("prover"),
        "address_signal": signal,
        "address": address,
        "slot": e["args"].get("slot"),
        "paid": int(e["args"].get("paid", 0)),
        "public_inputs": [str(v) for v in values],
        "named": named,
        "outputs": circuit.outputs if circuit else (),
        "proof": e["args"].get("proof", "0x"),
        "block": e["block"],
        "time": e["time"],
    }


def escrow_row(terms: TaskTerms, events: Iterable[dict]) -> dict:
    """Where the task's escrow went: to provers, to frontends, back to the requester, and
    what the registry still holds for it; slashed collateral paid to the requester besides."""
    escrowed = terms.escrow()
    paid = fees = refunded = compensation = 0
    for e in events:
        a = e["args"]
        if e["name"] == "TaskProven":
            paid += int(a["paid"])
            fees += int(a["fee"])
            refunded += int(a["refund"])
        elif e["name"] == "SlotsClosed":
            refunded += int(a["refund"])
        elif e["name"] == "AssignmentVoided":
            refunded += terms.max_reward + terms.frontend_fee
        elif e["name"] == "Slashed":
            compensation += int(a["to_requester"])
    return {
        "escrowed": escrowed,
        "paid": paid,
        "fees": fees,
        "refunded": refunded,
        "held": escrowed - paid - fees - refunded,
        "compensation": compensation,
    }


def repost_links(db: Connection, key: str, terms: TaskTerms, events: Sequence[dict]) -> dict:
    """A re-priced task and its successor (provingmarket/market/repricing.py): the new task's
    salt is the old task's id, both of one requester, and the old one was cancelled."""
    earlier = reposts(terms)
    row = db.execute("SELECT terms FROM tasks WHERE task_id = ?", (earlier,)).fetchone()
    repost_of = earlier if row and loads(row["terms"])["requester"] == terms.requester else None
    later = None
    if any(e["name"] == "SlotsClosed" and e["args"].get("cancelled") for e in events):
        pattern = f'%"requester":"{terms.requester}"%"salt":{int(key, 16)}}}'
        found = db.execute("SELECT task_id FROM tasks WHERE terms LIKE ? LIMIT 1", (pattern,)).fetchone()
        later = found[0] if found else None
    return {"repost_of": repost_of, "reposted_as": later}


def windows_row(terms: TaskTerms, now: int) -> dict:
    race = terms.mechanism_id == OPEN_RACE
    assign_until = terms.posted_at + (terms.proving_window if race else terms.assign_window)
    return {"race": race, "assign_until": assign_until, "assign_left": assign_until - now}


def history_rows(db: Connection) -> dict:
    """Aggregates over the whole history: tasks per state, proofs, and the plots' series."""
    proofs = db.execute(
        "SELECT j.time, j.args, t.terms FROM journal j JOIN tasks t ON t.task_id = j.task_id "
        "WHERE j.name = 'TaskProven' ORDER BY j.block, j.log_index"
    ).fetchall()
    points = []
    for r in proofs:
        args, terms = json.loads(r["args"]), json.loads(r["terms"])
        points.append(
            (r["time"], r["time"] - int(terms["posted_at"]), int(args["paid"]), int(terms["max_reward"]))
        )
    latest = points[-1][0] if points else None
    recent = [p for p in points if latest is not None and p[0] > latest - 600]
    return {
        "states": state_counts(db),
        "proofs": {
            "total": len(points),
            "per_minute": len(recent) / 10 if points else 0.0,
            "median_time": statistics.median(p[1] for p in points) if points else None,
            "median_paid": statistics.median(p[2] for p in points) if points else None,
        },
        "series": _series(points),
    }


def _series(points: Sequence[tuple[int, int, int, int]]) -> dict:
    """Per time bucket: the median time to proof (s) and median price paid (ETH)."""
    if not points:
        return {"x": [], "time": [], "paid": [], "start": None}
    start, end = points[0][0], points[-1][0]
    width = max(1, -(-(end - start + 1) // PLOT_BUCKETS))
    buckets: dict[int, list[tuple[int, int, int, int]]] = {}
    for p in points:
        buckets.setdefault((p[0] - start) // width, []).append(p)
    xs = sorted(buckets)
    return {
        "start": start,
        "x": [(i * width + width / 2) / 60 for i in xs],
        "time": [statistics.median(p[1] for p in buckets[i]) for i in xs],
        "paid": [statistics.median(p[2] for p in buckets[i]) / 10**18 for i in xs],
    }
