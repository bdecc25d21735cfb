"""The read model: what keepers, mechanisms and agents read from the mirror.

Plain frozen dataclasses with Python ints, addresses checksummed and task ids as 32
bytes (`TaskView`, `MembershipView`, `ProverView`, `AssignmentView`, ...), and `Reader`,
the queries over the derived tables that `Mirror` inherits; `Reader.snapshot()` reads
everything a mechanism needs in one SQLite transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from provingmarket import rules
from provingmarket.chain.client import Event, Market
from provingmarket.chain.database import Connection, fetch, marks
from provingmarket.chain.mirror.schema import (
    ASSIGNED,
    CLOSED,
    DECLINED,
    KEYS,
    LIVE,
    OPEN,
    PROVEN,
    SLASHED,
    checksum,
    hex_id,
    loads,
    meta_block,
    new_prover,
    optional_int,
    read_meta,
    terms_from,
)
from provingmarket.formats import OPEN_RACE, TaskTerms


@dataclass(frozen=True)
class MechanismView:
    mechanism_id: int
    registrant: str
    name: str
    retired: bool
    frontends: tuple[str, ...]


@dataclass(frozen=True)
class ProverView:
    """A prover's money as the registry's `standing()` reports it (`balance` is what it
    may withdraw: earnings and any credits)."""

    prover: str
    stake: int
    locked: int
    unbonding: int
    unbonding_ready_at: int
    balance: int
    nonce: int

    @property
    def free(self) -> int:
        return self.stake - self.locked


@dataclass(frozen=True)
class MembershipView:
    prover: str
    market_id: int
    capacity: int
    used: int
    ask: int
    proving_time: int
    capabilities: int
    mechanisms: tuple[int, ...]  # mechanisms it accepts in this market (since it last joined)
    # When its offer was last set (joined or updated): block << 32 | log index; an
    # increasing key for time priority among equal asks.
    since: int = 0

    @property
    def free_capacity(self) -> int:
        return max(self.capacity - self.used, 0)

    def accepts(self, mechanism_id: int) -> bool:
        return mechanism_id in self.mechanisms


@dataclass(frozen=True)
class SlotView:
    slot: int
    state: str  # open, assigned, proven, closed
    recorded: bool  # open again after a prover declined or was slashed on it
    prover: str | None  # assigned: the holder; proven: the prover paid
    price: int | None
    deadline: int | None
    frontend: str | None


@dataclass(frozen=True)
class AssignmentView:
    task_id: bytes
    market_id: int
    prover: str
    slot: int
    price: int
    deadline: int
    frontend: str
    collateral: int
    state: str  # live, proven, declined, slashed, voided
    assigned_block: int
    terms: TaskTerms


def _slots_in(state: str) -> property:
    """A TaskView property: how many of its slots are in `state`."""
    return property(lambda task: task.count(state), doc=f"How many slots are {state}.")


@dataclass(frozen=True)
class TaskView:
    task_id: bytes
    terms: TaskTerms
    prover_input: bytes
    input_uri: str
    posted_block: int
    slots: tuple[SlotView, ...]
    engaged: frozenset[str]  # every prover that was assigned or proved, whatever came of it
    barred: frozenset[str]  # declined or slashed: the registry refuses them this task

    def count(self, state: str) -> int:
        return sum(1 for s in self.slots if s.state == state)

    open = _slots_in(OPEN)
    assigned = _slots_in(ASSIGNED)
    proven = _slots_in(PROVEN)
    closed = _slots_in(CLOSED)

    @property
    def on_task(self) -> frozenset[str]:
        """Provers holding or having proved a slot (or voided): none may take another."""
        return self.engaged - self.barred

    @property
    def assignable_until(self) -> int:
        """The last timestamp a slot may be taken: the assignment window, or for an
        OPEN_RACE the race."""
        window = (
            self.terms.proving_window if self.terms.mechanism_id == OPEN_RACE else self.terms.assign_window
        )
        return self.terms.posted_at + window

    def eligible(self, prover: str) -> bool:
        """Not refused by the registry for having been on this task (capacity, stake and
        the rest are the membership's and the standing's business)."""
        return checksum(prover) not in self.engaged


@dataclass(frozen=True)
class Snapshot:
    block: int  # the cursor: everything up to this block is applied
    block_hash: str | None
    markets: dict[int, Market]
    mechanisms: dict[int, MechanismView]
    provers: dict[str, ProverView]
    memberships: tuple[MembershipView, ...]  # joined ones
    open_tasks: tuple[TaskView, ...]
    live: tuple[AssignmentView, ...]

    def membership(self, prover: str, market_id: int) -> MembershipView | None:
        prover = checksum(prover)
        return next((m for m in self.memberships if (m.prover, m.market_id) == (prover, market_id)), None)

    def live_of(self, prover: str) -> list[AssignmentView]:
        prover = checksum(prover)
        return [a for a in self.live if a.prover == prover]


class Reader:
    """Queries over the mirror's tables (`Mirror` is one; it sets `db`)."""

    db: Connection

    def snapshot(self, now: int | None = None) -> Snapshot:
        """Everything a mechanism needs, read in one SQLite transaction: markets,
        mechanisms, provers' standings, joined memberships, tasks with open slots (with
        `now`, only those still assignable then) and every live assignment."""
        self.db.execute("BEGIN")
        try:
            meta = read_meta(self.db)
            return Snapshot(
                block=meta_block(meta, "cursor_block"),
                block_hash=meta.get("cursor_hash"),
                markets={m.market_id: m for m in self.markets()},
                mechanisms={m.mechanism_id: m for m in self.mechanisms()},
                provers={p.prover: p for p in self.provers()},
                memberships=tuple(self.memberships()),
                open_tasks=tuple(self.open_tasks(now=now)),
                live=tuple(self.live_assignments()),
            )
        finally:
            self.db.execute("COMMIT")

    def markets(self) -> list[Market]:
        return [
            Market(
                market_id=r["market_id"],
                verifier=r["verifier"],
                creator=r["creator"],
                codehash=bytes.fromhex(r["codehash"][2:]),
                paused=bool(r["paused"]),
                binding=r["binding"],
                address_input=r["address_input"],
                grace_period=r["grace_period"],
                requester_bps=r["requester_bps"],
                caller_bps=r["caller_bps"],
                min_collateral=int(r["min_collateral"]),
                min_reward=int(r["min_reward"]),
                custom=bool(r["custom"]),
            )
            for r in self.db.execute("SELECT * FROM markets ORDER BY market_id")
        ]

    def mechanisms(self) -> list[MechanismView]:
        frontends: dict[int, list[str]] = {}
        for r in self.db.execute("SELECT mechanism_id, frontend FROM frontends ORDER BY frontend"):
            frontends.setdefault(r["mechanism_id"], []).append(r["frontend"])
        return [
            MechanismView(
                r["mechanism_id"],
                r["registrant"],
                r["name"],
                bool(r["retired"]),
                tuple(frontends.get(r["mechanism_id"], ())),
            )
            for r in self.db.execute("SELECT * FROM mechanisms ORDER BY mechanism_id")
        ]

    def provers(self) -> list[ProverView]:
        balances = {r["account"]: int(r["amount"]) for r in self.db.execute("SELECT * FROM balances")}
        return [
            _prover_view(r, balances.get(r["prover"], 0))
            for r in self.db.execute("SELECT * FROM provers ORDER BY prover")
        ]

    def prover(self, address: str) -> ProverView:
        """A prover's standing (all zero for one the mirror never saw)."""
        address = checksum(address)
        row = fetch(self.db, "provers", {"prover": address}) or new_prover(address)
        return _prover_view(row, self.balance(address))

    def balance(self, account: str) -> int:
        """Wei credited to an account and not withdrawn (the registry's `balances`)."""
        row = fetch(self.db, "balances", {"account": checksum(account)})
        return int(row["amount"]) if row else 0

    def memberships(self, market_id: int | None = None, prover: str | None = None) -> list[MembershipView]:
        """Joined memberships, with capacity used and the mechanisms accepted."""
        where, params = _where(
            "joined = 1", {"market_id": market_id, "prover": None if prover is None else checksum(prover)}
        )
        accepted: dict[tuple[str, int], list[int]] = {}
        for r in self.db.execute("SELECT * FROM accepts ORDER BY mechanism_id"):
            accepted.setdefault((r["prover"], r["market_id"]), []).append(r["mechanism_id"])
        rows = self.db.execute(f"SELECT * FROM memberships WHERE {where} ORDER BY market_id, prover", params)
        return [
            MembershipView(
                r["prover"],
                r["market_id"],
                r["capacity"],
                r["used"],
                int(r["ask"]),
                r["proving_time"],
                int(r["capabilities"]),
                tuple(accepted.get((r["prover"], r["market_id"]), ())),
                r["since"] or 0,
            )
            for r in rows
        ]

    def task(self, task_id: bytes | str) -> TaskView | None:
        found = self._task_views("t.task_id = ?", [hex_id(task_id)])
        return found[0] if found else None

    def tasks(self, market_id: int | None = None) -> list[TaskView]:
        """Every task mirrored, oldest first, whatever the state of its slots."""
        return self._task_views(*_where("1 = 1", {"t.market_id": market_id}))

    def open_tasks(
        self, now: int | None = None, market_id: int | None = None, mechanism_id: int | None = None
    ) -> list[TaskView]:
        """Tasks with at least one open slot, oldest first; with `now`, only those whose
        slots may still be taken then (`TaskView.assignable_until`). With `mechanism_id`,
        the tasks of that mechanism and the chains naming it: with `now`, only those whose
        current link it is (`rules.mechanism_at`)."""
        # The open slots by their index (state, task_id), not every task ever posted
        # looked up in turn: a keeper reads this twice a round, whatever the history.
        where, params = _where(
            "t.task_id IN (SELECT s.task_id FROM slots s WHERE s.state = 'open')",
            {"t.market_id": market_id},
        )
        if mechanism_id is not None:  # a chain's tasks hold 0 (projection.py)
            where, params = f"{where} AND t.mechanism_id IN (?, 0)", [*params, mechanism_id]
        tasks = self._task_views(where, params)
        if mechanism_id is not None:
            tasks = [
                t
                for t in tasks
                if t.terms.mechanism_id == mechanism_id
                or (
                    rules.mechanism_at(t.terms, now) == mechanism_id
                    if now is not None
                    else mechanism_id in rules.mechanisms_of(t.terms)
                )
            ]
        return [t for t in tasks if now is None or now <= t.assignable_until]

    def _task_views(self, where: str, params: list[Any]) -> list[TaskView]:
        tasks = self.db.execute(
            f"SELECT * FROM tasks t WHERE {where} ORDER BY t.posted_block, t.task_id", params
        ).fetchall()
        if not tasks:
            return []
        subquery = f"SELECT t.task_id FROM tasks t WHERE {where}"
        slots: dict[str, list[SlotView]] = {}
        for r in self.db.execute(
            f"SELECT * FROM slots WHERE task_id IN ({subquery}) ORDER BY task_id, slot", params
        ):
            slots.setdefault(r["task_id"], []).append(
                SlotView(
                    r["slot"],
                    r["state"],
                    bool(r["recorded"]),
                    r["prover"],
                    optional_int(r["price"]),
                    optional_int(r["deadline"]),
                    r["frontend"],
                )
            )
        engaged: dict[str, set[str]] = {}
        barred: dict[str, set[str]] = {}
        for r in self.db.execute(
            f"SELECT task_id, prover, state FROM assignments WHERE task_id IN ({subquery})", params
        ):
            engaged.setdefault(r["task_id"], set()).add(r["prover"])
            if r["state"] in (DECLINED, SLASHED):
                barred.setdefault(r["task_id"], set()).add(r["prover"])
        return [
            TaskView(
                bytes.fromhex(t["task_id"][2:]),
                terms_from(t["terms"]),
                bytes(t["prover_input"]),
                t["input_uri"],
                t["posted_block"],
                tuple(slots.get(t["task_id"], ())),
                frozenset(engaged.get(t["task_id"], ())),
                frozenset(barred.get(t["task_id"], ())),
            )
            for t in tasks
        ]

    def live_assignments(self, prover: str | None = None) -> list[AssignmentView]:
        """Assignments awaiting a proof (not proven, declined, slashed or voided)."""
        return self.assignments(prover=prover, states=(LIVE,))

    def overdue(self, now: int) -> list[AssignmentView]:
        """Live assignments whose deadline passed before `now`: anyone may slash them."""
        return [a for a in self.live_assignments() if a.deadline < now]

    def assignments(
        self, prover: str | None = None, task_id: bytes | str | None = None, states: Iterable[str] = ()
    ) -> list[AssignmentView]:
        where, params = _where(
            "1 = 1",
            {
                "a.prover": None if prover is None else checksum(prover),
                "a.task_id": None if task_id is None else hex_id(task_id),
            },
        )
        states = tuple(states)
        if states:
            where += f" AND a.state IN ({marks(states)})"
            params.extend(states)
        rows = self.db.execute(
            "SELECT a.*, t.terms FROM assignments a JOIN tasks t ON t.task_id = a.task_id "
            f"WHERE {where} ORDER BY a.assigned_block, a.task_id, a.slot",
            params,
        )
        views = []
        for r in rows:
            terms = terms_from(r["terms"])
            views.append(
                AssignmentView(
                    bytes.fromhex(r["task_id"][2:]),
                    terms.market_id,
                    r["prover"],
                    r["slot"],
                    int(r["price"]),
                    int(r["deadline"]),
                    r["frontend"],
                    terms.collateral,
                    r["state"],
                    r["assigned_block"],
                    terms,
                )
            )
        return views

    def skipped_assignments(self, task_id: bytes | str | None = None) -> list[dict]:
        """AssignmentSkipped events: task id, prover, frontend, reason, block, tx."""
        return [dict(r) for r in self._in_order("skipped_assignments", task_id)]

    def timeline(self, task_id: bytes | str | None = None) -> list[Event]:
        """Applied events from the journal, oldest first (as the client decodes them)."""
        return [
            Event(r["name"], loads(r["args"]), r["block"], r["tx"], r["log_index"])
            for r in self._in_order("journal", task_id)
        ]

    def _in_order(self, table: str, task_id: bytes | str | None) -> list[Any]:
        """The rows of a table of events (of one task, if given), oldest first."""
        where, params = _where("1 = 1", {"task_id": None if task_id is None else hex_id(task_id)})
        return self.db.execute(
            f"SELECT * FROM {table} WHERE {where} ORDER BY block, log_index", params
        ).fetchall()

    def dump(self) -> dict[str, list[dict]]:
        """Every derived table's rows, in key order: for comparing two mirrors."""
        return {
            table: [dict(r) for r in self.db.execute(f"SELECT * FROM {table} ORDER BY {', '.join(keys)}")]
            for table, keys in KEYS.items()
        }


def _where(first: str, equal: Mapping[str, Any]) -> tuple[str, list[Any]]:
    """A WHERE condition: `first` and `column = ?` for each column given a value (not
    None), with the parameters."""
    given = {column: value for column, value in equal.items() if value is not None}
    return " AND ".join([first, *(f"{column} = ?" for column in given)]), list(given.values())


def _prover_view(r: Mapping[str, Any], balance: int) -> ProverView:
    return ProverView(
        r["prover"],
        int(r["stake"]),
        int(r["locked"]),
        int(r["unbonding"]),
        int(r["unbonding_ready_at"]),
        balance,
        int(r["nonce"]),
    )
