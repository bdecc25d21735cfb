"""The projection: one handler per registry event (`_on_<EventName>`), writing what the
event changed into the derived tables, through `Tables` so that a reorg can undo it.

**Exact state, no chain reads.** Every change of a prover's stake word is in an event:
`Staked` carries the new total, `Unstaked` the amount and the new unbonding total and
time, `TaskAssigned` locks the task's collateral (the terms from `TaskPosted`),
`TaskProven` (assigned tasks), `TaskDeclined`, `AssignmentVoided` unlock it, `Slashed`
unlocks and takes it. So free stake (`stake - locked`) is mirrored exactly from events,
as are capacity use and credited balances (`TaskProven` paid/fee/refund, `Slashed`
shares, `SlotsClosed` refunds, `AssignmentVoided` refunds the slot's escrow,
`Withdrawn` empties). This holds when the mirror starts at or before the registry's
deployment block; started later, it lacks what happened before, and a handler meeting
an event about a task it never saw (or a slot not in the state the event implies)
raises `Inapplicable`: the sync skips that event with a log line.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from provingmarket.chain.client import Event
from provingmarket.chain.mirror import schema  # the slot and assignment states: schema.OPEN, …
from provingmarket.chain.mirror.schema import dumps, hex_id, loads, new_prover
from provingmarket.chain.mirror.tables import Inapplicable, Tables
from provingmarket.formats import CHAIN, OPEN_RACE, ZERO_ADDRESS, TaskTerms

# A membership after ProverLeft: no offer.
_NO_OFFER = {"capacity": 0, "ask": "0", "proving_time": 0, "capabilities": "0", "since": 0}


class Projection:
    def __init__(self, tables: Tables):
        self.tables = tables

    def apply(self, event: Event, following: Event | None) -> None:
        """Write one event's effect (`following`: the next event of the range, or None).
        Raises `Inapplicable` if the event does not fit the mirrored state."""
        self.tables.block = event.block
        handler = getattr(self, f"_on_{event.name}", None)
        if handler is not None:
            handler(event, following)

    # -------------------------------------------------------------- state helpers

    def _task(self, task_id: Any) -> tuple[str, dict]:
        """A known task's id (as stored) and terms."""
        tid = hex_id(task_id)
        row = self.tables.get("tasks", {"task_id": tid})
        if row is None:
            raise Inapplicable(f"unknown task {tid}")
        return tid, loads(row["terms"])

    def _slot(self, tid: str, slot: int, *states: str) -> dict:
        """A slot of the task, which must be in one of `states` (any, if none given)."""
        row = self.tables.get("slots", {"task_id": tid, "slot": slot})
        if row is None:
            raise Inapplicable(f"task {tid} has no slot {slot}")
        if states and row["state"] not in states:
            raise Inapplicable(f"slot {slot} of task {tid} is {row['state']}, not {'/'.join(states)}")
        return row

    def _live(self, tid: str, prover: str, slot: int) -> dict:
        row = self.tables.get("assignments", {"task_id": tid, "prover": prover})
        if row is None or row["state"] != schema.LIVE or row["slot"] != slot:
            raise Inapplicable(f"{prover} holds no live assignment of slot {slot} of task {tid}")
        return row

    def _member(self, prover: str, market_id: int) -> tuple[dict, dict]:
        """The key and row of a joined membership."""
        key = {"prover": prover, "market_id": market_id}
        member = self.tables.get("memberships", key)
        if member is None or not member["joined"]:
            raise Inapplicable(f"{prover} is not in market {market_id}")
        return key, member

    def _prover(self, prover: str) -> dict:
        return self.tables.get("provers", {"prover": prover}) or new_prover(prover)

    def _set_prover(self, prover: str, **changes: int) -> None:
        row = self._prover(prover)
        row.update({k: str(v) for k, v in changes.items()})
        row.pop("block", None)
        self.tables.put("provers", {"prover": prover}, {k: v for k, v in row.items() if k != "prover"})

    def _credit(self, account: str, amount: int) -> None:
        if amount > 0:
            row = self.tables.get("balances", {"account": account})
            total = int(row["amount"]) + amount if row else amount
            self.tables.put("balances", {"account": account}, {"amount": str(total)})

    def _set_flag(self, table: str, key: dict, on: bool) -> None:
        """A row that only says something holds (a frontend allowed, a mechanism accepted)."""
        if on:
            self.tables.put(table, key, {})
        else:
            self.tables.delete(table, key)

    def _set_membership(self, e: Event, joined: int, offer: dict) -> None:
        """Joined or left: a fresh membership (nothing used) with this offer."""
        self._clear_accepts(e.prover, e.market_id)  # acceptances hold for one join
        self.tables.put(
            "memberships",
            {"prover": e.prover, "market_id": e.market_id},
            {"joined": joined, "used": 0, **offer},
        )

    def _clear_accepts(self, prover: str, market_id: int) -> None:
        rows = self.tables.db.execute(
            "SELECT mechanism_id FROM accepts WHERE prover = ? AND market_id = ?", (prover, market_id)
        ).fetchall()
        for row in rows:
            self.tables.delete(
                "accepts", {"prover": prover, "market_id": market_id, "mechanism_id": row["mechanism_id"]}
            )

    def _put_assignment(
        self, tid: str, e: Event, price: int, deadline: int, frontend: str, state: str
    ) -> None:
        """The event's prover takes part in the task, on the event's slot."""
        self.tables.put(
            "assignments",
            {"task_id": tid, "prover": e.prover},
            {
                "slot": e.slot,
                "price": str(price),
                "deadline": str(deadline),
                "frontend": frontend,
                "state": state,
                "assigned_block": e.block,
            },
        )

    def _end_assignment(self, tid: str, terms: dict, e: Event, state: str, taken: int = 0) -> dict:
        """The live assignment of the event's prover on the event's (assigned) slot ended
        in `state`: unlock its collateral (taking `taken` of the stake) and free a unit of
        capacity. Returns the assignment as it was."""
        self._slot(tid, e.slot, schema.ASSIGNED)
        live = self._live(tid, e.prover, e.slot)
        self.tables.update("assignments", {"task_id": tid, "prover": e.prover}, state=state)
        standing = self._prover(e.prover)
        self._set_prover(
            e.prover,
            locked=int(standing["locked"]) - terms["collateral"],
            stake=int(standing["stake"]) - taken,
        )
        key = {"prover": e.prover, "market_id": terms["market_id"]}
        member = self.tables.get("memberships", key)
        if member is None or member["used"] < 1:
            raise Inapplicable(f"{e.prover} uses no capacity in market {terms['market_id']}")
        self.tables.update("memberships", key, used=member["used"] - 1)
        return live

    def _fill_slot(
        self,
        tid: str,
        slot: int,
        state: str,
        prover: str | None = None,
        price: int | None = None,
        deadline: int | None = None,
        frontend: str | None = None,
        **more: Any,
    ) -> None:
        """Set a slot's state and holder (none, for an open or closed slot)."""
        self.tables.update(
            "slots",
            {"task_id": tid, "slot": slot},
            state=state,
            prover=prover,
            price=None if price is None else str(price),
            deadline=None if deadline is None else str(deadline),
            frontend=frontend,
            **more,
        )

    def _end_slot(self, tid: str, slot: int, reopened: bool) -> None:
        """A slot's holder is gone: open it again (recording that), or close it."""
        self._fill_slot(tid, slot, schema.OPEN if reopened else schema.CLOSED, recorded=1 if reopened else 0)

    # -------------------------------------------------------------- markets and mechanisms

    def _on_MarketCreated(self, e: Event, _: Event | None) -> None:
        self.tables.put(
            "markets",
            {"market_id": e.market_id},
            {
                "creator": e.creator,
                "verifier": e.verifier,
                "codehash": hex_id(e.codehash),
                "binding": e.binding,
                "address_input": e.address_input,
                "min_collateral": str(e.min_collateral),
                "min_reward": str(e.min_reward),
                "grace_period": e.grace_period,
                "requester_bps": e.requester_bps,
                "caller_bps": e.caller_bps,
                "paused": 0,
                "custom": int(e.custom),
            },
        )

    def _on_MarketPaused(self, e: Event, _: Event | None) -> None:
        self.tables.update("markets", {"market_id": e.market_id}, paused=int(e.paused))

    def _on_MechanismRegistered(self, e: Event, _: Event | None) -> None:
        self.tables.put(
            "mechanisms",
            {"mechanism_id": e.mechanism_id},
            # e.args["name"]: `e.name` is the event's own name (MechanismRegistered)
            {"registrant": e.registrant, "name": e.args["name"], "retired": 0},
        )

    def _on_FrontendSet(self, e: Event, _: Event | None) -> None:
        self._set_flag("frontends", {"mechanism_id": e.mechanism_id, "frontend": e.frontend}, e.allowed)

    def _on_MechanismRetired(self, e: Event, _: Event | None) -> None:
        self.tables.update("mechanisms", {"mechanism_id": e.mechanism_id}, retired=1)

    # -------------------------------------------------------------- provers

    def _on_Staked(self, e: Event, _: Event | None) -> None:
        self._set_prover(e.prover, stake=e.stake)  # the event carries the new total

    def _on_Unstaked(self, e: Event, _: Event | None) -> None:
        stake = int(self._prover(e.prover)["stake"]) - e.amount
        if stake < 0:
            raise Inapplicable(f"{e.prover} unstakes more than its mirrored stake")
        self._set_prover(e.prover, stake=stake, unbonding=e.unbonding, unbonding_ready_at=e.ready_at)

    def _on_StakeWithdrawn(self, e: Event, _: Event | None) -> None:
        self._set_prover(e.prover, unbonding=0, unbonding_ready_at=0)

    def _on_SignaturesRevoked(self, e: Event, _: Event | None) -> None:
        self._set_prover(e.prover, nonce=e.nonce)

    def _on_ProverJoined(self, e: Event, _: Event | None) -> None:
        self._set_membership(e, 1, _offer(e))

    def _on_ProverUpdated(self, e: Event, _: Event | None) -> None:
        key = self._member(e.prover, e.market_id)[0]
        self.tables.update("memberships", key, **_offer(e))

    def _on_ProverLeft(self, e: Event, _: Event | None) -> None:
        self._set_membership(e, 0, _NO_OFFER)

    def _on_MechanismAccepted(self, e: Event, _: Event | None) -> None:
        key = {"prover": e.prover, "market_id": e.market_id, "mechanism_id": e.mechanism_id}
        self._set_flag("accepts", key, e.accepted)

    def _on_Withdrawn(self, e: Event, _: Event | None) -> None:
        self.tables.delete("balances", {"account": e.account})

    # -------------------------------------------------------------- tasks

    def _on_TaskPosted(self, e: Event, _: Event | None) -> None:
        terms = TaskTerms.from_event(e.terms)
        tid = hex_id(e.task_id)
        if self.tables.get("tasks", {"task_id": tid}) is not None:
            raise Inapplicable(f"task {tid} posted twice")
        self.tables.put(
            "tasks",
            {"task_id": tid},
            {
                "market_id": terms.market_id,
                # A chain's value does not fit SQLite's integers: its tasks hold 0 (no
                # mechanism has that id) and their terms say the links.
                "mechanism_id": 0 if terms.mechanism_id >= CHAIN else terms.mechanism_id,
                "requester": terms.requester,
                "terms": dumps(asdict(terms)),
                "prover_input": bytes(e.prover_input),
                "input_uri": e.input_uri,
                "redundancy": terms.redundancy,
                "posted_block": e.block,
                "tx": e.tx,
            },
        )
        for slot in range(terms.redundancy):
            self.tables.put(
                "slots",
                {"task_id": tid, "slot": slot},
                {
                    "state": schema.OPEN,
                    "recorded": 0,
                    "prover": None,
                    "price": None,
                    "deadline": None,
                    "frontend": None,
                    "proven_block": None,
                },
            )

    def _on_TaskAssigned(self, e: Event, _: Event | None) -> None:
        tid, terms = self._task(e.task_id)
        self._slot(tid, e.slot, schema.OPEN)
        self._fill_slot(tid, e.slot, schema.ASSIGNED, e.prover, e.price, e.deadline, e.frontend)
        self._put_assignment(tid, e, e.price, e.deadline, e.frontend, schema.LIVE)
        key, member = self._member(e.prover, terms["market_id"])
        self.tables.update("memberships", key, used=member["used"] + 1)
        standing = self._prover(e.prover)
        self._set_prover(e.prover, locked=int(standing["locked"]) + terms["collateral"])

    def _on_AssignmentSkipped(self, e: Event, _: Event | None) -> None:
        self.tables.put(
            "skipped_assignments",
            {"block": e.block, "log_index": e.log_index},
            {
                "task_id": hex_id(e.task_id),
                "prover": e.prover,
                "frontend": e.frontend,
                "reason": e.reason,
                "tx": e.tx,
            },
        )

    def _on_TaskDeclined(self, e: Event, _: Event | None) -> None:
        tid, terms = self._task(e.task_id)
        self._end_assignment(tid, terms, e, schema.DECLINED)
        self._end_slot(tid, e.slot, e.reopened)

    def _on_Slashed(self, e: Event, _: Event | None) -> None:
        tid, terms = self._task(e.task_id)
        self._end_assignment(tid, terms, e, schema.SLASHED, taken=e.collateral)
        self._credit(terms["requester"], e.to_requester)
        self._credit(e.caller, e.to_caller)
        self._end_slot(tid, e.slot, e.reopened)

    def _on_AssignmentVoided(self, e: Event, _: Event | None) -> None:
        tid, terms = self._task(e.task_id)
        self._end_assignment(tid, terms, e, schema.VOIDED)
        self._credit(terms["requester"], terms["max_reward"] + terms["frontend_fee"])
        self._end_slot(tid, e.slot, False)

    def _on_TaskProven(self, e: Event, _: Event | None) -> None:
        tid, terms = self._task(e.task_id)
        claimed = self.tables.db.execute(
            "SELECT 1 FROM assignments WHERE task_id = ? AND prover = ? AND slot = ? AND state = ?",
            (tid, e.prover, e.slot, schema.LIVE),
        ).fetchone()
        chained = terms["mechanism_id"] >= CHAIN
        if (terms["mechanism_id"] == OPEN_RACE or chained) and not claimed:  # a race proof takes an open slot
            self._slot(tid, e.slot, schema.OPEN)
            window = terms["assign_window"] if chained else terms["proving_window"]  # a chain's race: its end
            price, deadline = terms["max_reward"], terms["posted_at"] + window
            self._put_assignment(tid, e, price, deadline, ZERO_ADDRESS, schema.PROVEN)
        else:
            live = self._end_assignment(tid, terms, e, schema.PROVEN)
            price, deadline = int(live["price"]), int(live["deadline"])
        proven = schema.PROVEN
        self._fill_slot(tid, e.slot, proven, e.prover, price, deadline, e.frontend, proven_block=e.block)
        self._credit(e.prover, e.paid)
        self._credit(e.frontend, e.fee)
        self._credit(terms["requester"], e.refund)

    def _on_SlotsClosed(self, e: Event, following: Event | None) -> None:
        tid, terms = self._task(e.task_id)
        self._credit(terms["requester"], e.refund)
        # A decline or slash past the assignment window (or of a cancelled task) refunds
        # its slot first (this event, one slot) and then reports it (reopened False):
        # that event closes it.
        if (
            e.slots == 1
            and following is not None
            and following.name in ("TaskDeclined", "Slashed")
            and following.tx == e.tx
            and following.log_index == e.log_index + 1
            and bytes(following.task_id) == bytes(e.task_id)
            and not following.reopened
        ):
            return
        rows = self.tables.db.execute(
            "SELECT slot FROM slots WHERE task_id = ? AND state = ? ORDER BY slot", (tid, schema.OPEN)
        ).fetchall()
        if len(rows) != e.slots:
            raise Inapplicable(f"{e.slots} slots closed but the mirror has {len(rows)} open")
        for row in rows:
            self._end_slot(tid, row["slot"], False)


def _offer(e: Event) -> dict:
    """A membership's offer as ProverJoined or ProverUpdated sets it; `since` orders equal
    asks by time (block << 32 | log index)."""
    return {
        "capacity": e.capacity,
        "ask": str(e.ask),
        "proving_time": e.proving_time,
        "capabilities": str(e.capabilities),
        "since": e.block << 32 | e.log_index,
    }
