"""Deciding what to take and at what price (the cost model's floor, docs/agent.md): which
OPEN_RACE tasks to enter, which DUTCH slots to lock once their rising price reaches the
floor, and what to bid in the auctions of each `--auction` frontend; with the capacity
and stake already promised (`Committed`) so no more is taken on than can be served."""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from provingmarket import rules
from provingmarket.agent.auction import Auction, AuctionClient
from provingmarket.agent.context import Context, Service
from provingmarket.agent.monitor import MAX_SAID, Monitor
from provingmarket.agent.store import (
    PROVED,
    PROVING,
    QUEUED,
    Bid,
    Work,
    hex_id,
    lock_key,
    race_key,
)
from provingmarket.agent.submitter import Submitter
from provingmarket.chain.client import ClientError, format_ether
from provingmarket.chain.mirror import TaskView
from provingmarket.chain.tasks import RACE
from provingmarket.costs import dutch_price, dutch_time_for, price_for_reward, reward_at
from provingmarket.formats import CHAIN, DUTCH, OPEN_RACE, TaskTerms, bid_typed_data
from provingmarket.runtime import process as runtime

log = logging.getLogger("provingmarket.agent.agent")

GAS_PRICE_EVERY = 5.0  # seconds between reads of the node's gas price
COST_LOG_CHANGE = Fraction(1, 10)  # agent.cost again once a floor moved by this much
BID_EXPIRY_AFTER_CLOSE = 120  # seconds a bid stays good after its auction closes


@dataclass
class Committed:
    """Capacity and stake promised this round beyond what the mirror shows as used:
    DUTCH locks in flight, bids that may still win, races being proven."""

    slots: dict[int, int] = field(default_factory=dict)  # market -> units of capacity
    collateral: int = 0  # wei of free stake

    def add(self, market_id: int, collateral: int) -> None:
        self.slots[market_id] = self.slots.get(market_id, 0) + 1
        self.collateral += collateral


class Picker(Service):
    """Races, DUTCH locks and auction bids worth taking this round, at the floor's price."""

    def __init__(self, context: Context, monitor: Monitor, submitter: Submitter, auctions: AuctionClient):
        super().__init__(context)
        self.monitor = monitor
        self.submitter = submitter
        self.auctions = auctions
        self.cost = context.settings.cost
        self.gas_price_read: tuple[float, int] | None = None  # (monotonic time, wei)
        self.floors_logged: dict[int, int] = {}  # market -> the floor agent.cost last said
        self.said: set[tuple[str, str]] = set()  # (task, event) logged once

    # -------------------------------------------------------------- races

    def races(self, now: int, memberships: Mapping[int, Any], gas_price: int) -> list[Work]:
        """OPEN_RACE tasks worth entering now, and races it had started (a restart)."""
        standing = self.mirror.prover(self.me)
        found: list[Work] = []
        for market_id, membership in memberships.items():
            if self.monitor.untrusted(market_id) is not None:
                continue
            expected = self.store.expected(market_id, memberships)
            needs = expected + self.settings.margin
            # A race locks no collateral and a beaten racer is not slashed: none at risk.
            least = self.cost.least_price(expected, gas_price, 0)
            floor = max(membership.ask, self.settings.race_min_reward, least)
            # Chains whose race link is current race too, until the link's end.
            for task in self.mirror.open_tasks(now=now, market_id=market_id, mechanism_id=OPEN_RACE):
                terms = task.terms
                end = terms.posted_at + terms.proving_window
                if terms.mechanism_id >= CHAIN:
                    end = rules.link_at(terms, now)[2]
                started = self.store.get(race_key(task.task_id))
                if started is not None:
                    if started["state"] in (QUEUED, PROVING, PROVED):
                        found.append(self._race_work(task, end))
                    continue
                if not (
                    task.eligible(self.me)
                    and not rules.offer_refusal(terms, membership.capabilities, 0)
                    and standing.free >= terms.collateral
                    and now + needs <= end
                ):
                    continue
                why = self.monitor.unprovable(task.task_id, terms, task.prover_input, task.input_uri)
                if why is not None:
                    self._once(task.task_id, "agent.pass", market=market_id, race=True, reason=why)
                    continue
                # What a proof made now pays: the reward, decayed to when it would land.
                reward = reward_at(terms, terms.max_reward, end, math.ceil(now + needs))
                if reward < floor:
                    self._once(
                        task.task_id,
                        "agent.pass",
                        market=market_id,
                        race=True,
                        reward=reward,
                        floor=floor,
                        reason="the race pays less than the floor",
                    )
                    continue
                self._once(task.task_id, "agent.race", market=market_id, reward=reward, floor=floor)
                found.append(self._race_work(task, end))
        return sorted(found, key=lambda w: w.deadline)

    @staticmethod
    def _race_work(task: TaskView, end: int) -> Work:
        return Work(
            race_key(task.task_id),
            task.task_id,
            task.terms.market_id,
            task.terms,
            RACE,
            end,
            task.prover_input,
            task.input_uri,
            None,
        )

    # -------------------------------------------------------------- pricing

    def gas_price(self) -> int:
        """Wei per gas a transaction sent now pays: the pending block's base fee plus the
        node's priority fee (what the outbox offers), read every GAS_PRICE_EVERY seconds."""
        clock = time.monotonic()
        if self.gas_price_read is not None and clock - self.gas_price_read[0] < GAS_PRICE_EVERY:
            return self.gas_price_read[1]
        try:
            block = self.web3.eth.get_block("pending")
        except Exception:  # a node without a pending block (one that is down fails again below)
            block = self.web3.eth.get_block("latest")
        price = (block.get("baseFeePerGas", 0) or 0) + self.web3.eth.max_priority_fee
        self.gas_price_read = (clock, price)
        return price

    def log_costs(self, memberships: Mapping[int, Any], gas_price: int) -> None:
        """agent.cost for each market at start and when its floor moved by COST_LOG_CHANGE."""
        least_collateral = {m.market_id: m.min_collateral for m in self.mirror.markets()}
        for market_id in memberships:
            expected = self.store.expected(market_id, memberships)
            collateral = least_collateral.get(market_id, 0)
            floor = self.cost.least_price(expected, gas_price, collateral)
            self.metrics.gauge(
                "floor_wei",
                "Least price worth proving for (at the market's least collateral)",
                floor,
                market=market_id,
            )
            before = self.floors_logged.get(market_id)
            if before is not None and abs(floor - before) <= before * COST_LOG_CHANGE:
                continue
            self.floors_logged[market_id] = floor
            runtime.emit(
                log,
                "agent.cost",
                market=market_id,
                reason="start" if before is None else "changed",
                expected_s=round(expected, 3),
                gas_price=gas_price,
                floor=floor,
                floor_eth=format_ether(floor),
                collateral=collateral,
                race_floor=self.cost.least_price(expected, gas_price, 0),
                lock_floor=self.cost.least_price(expected, gas_price, collateral, needs_lock=True),
                cost_per_second=self.cost.cost_per_second,
                risk_rate=str(self.cost.risk_rate),
                price_margin=str(self.cost.margin),
            )

    def _once(self, task: bytes | str, event: str, **fields: Any) -> None:
        """Log a decision about a task once (per event and reason), not every round."""
        task = hex_id(task) if isinstance(task, (bytes, bytearray)) else task
        mark = (task, f"{event}:{fields.get('reason', '')}")
        if mark not in self.said:
            if len(self.said) >= MAX_SAID:  # a long run: forget, at worst say some again
                self.said.clear()
            self.said.add(mark)
            runtime.emit(log, event, task=task, **fields)

    def committed(self, now: int, in_flight: set[str]) -> Committed:
        """Capacity and collateral promised beyond the mirror's `used` and `locked`: locks
        in flight, bids that may still win (one per task), races being proven."""
        committed = Committed()
        for key in in_flight:
            if key.startswith("lock:"):
                task = self.mirror.task(key.split(":", 1)[1])
                if task is not None:
                    committed.add(task.terms.market_id, task.terms.collateral)
        counted: set[str] = set()
        for row in self.store.bids_standing(now):
            if row["task_id"] in counted:
                continue
            task = self.mirror.task(row["task_id"])
            if task is not None and (self.me in task.engaged or task.open == 0):
                continue  # won (then the mirror counts it) or lost
            counted.add(row["task_id"])
            committed.add(row["market_id"], int(row["collateral"]))
        for row in self.store.rows((QUEUED, PROVING)):
            if row["kind"] == "race":
                committed.slots[row["market_id"]] = committed.slots.get(row["market_id"], 0) + 1
        return committed

    def _room(
        self, membership: Any, committed: Committed, standing: Any, collateral: int
    ) -> dict[str, Any] | None:
        """Why one more task of this market cannot be taken on now (a reason and its
        numbers, for agent.pass), or None if it can."""
        used = membership.used + committed.slots.get(membership.market_id, 0)
        free = standing.free - committed.collateral
        reason = rules.room_refusal(membership.capacity, used, free, collateral)
        if reason == rules.AT_CAPACITY:
            return {"reason": "no free capacity", "in_use_or_promised": used, "capacity": membership.capacity}
        if reason == rules.NOT_ENOUGH_FREE_STAKE:
            return {"reason": "not enough free stake", "free_stake": free, "collateral": collateral}
        return None

    def _fits(self, membership: Any, terms: TaskTerms, needs: float) -> str | None:
        """Why this prover cannot serve a task of the market at all, or None."""
        reason = rules.offer_refusal(terms, membership.capabilities, membership.proving_time)
        if reason == rules.LACKS_CAPABILITIES:
            return "lacks the task's capabilities"
        if reason == rules.TOO_SLOW or needs > terms.proving_window:
            return (
                f"proving time does not fit the {terms.proving_window} s window "
                f"(declared {membership.proving_time} s, expected with margin {round(needs, 3)} s)"
            )
        return None

    def _offer(
        self,
        task: TaskView,
        membership: Any,
        expected: float,
        gas_price: int,
        where: dict[str, Any],
        lock: bool,
    ) -> tuple[int, int] | None:
        """The floor and the least price to take the task at (a DUTCH lock's: at least the
        ask, which the registry enforces; a bid's minimum price), whose reward, decayed
        over the proving time, pays the floor; None (agent.pass, with `where`) if the
        prover cannot serve the task or the most it pays is below that."""
        terms = task.terms
        needs = expected + self.settings.margin
        why = self._fits(membership, terms, needs) or self.monitor.unprovable(
            task.task_id, terms, task.prover_input, task.input_uri
        )
        if why is not None:  # a locked slot cannot be declined: check the inputs first
            self._once(task.task_id, "agent.pass", **where, reason=why)
            return None
        least = self.cost.least_price(expected, gas_price, terms.collateral, needs_lock=lock)
        wanted = price_for_reward(terms, least, terms.proving_window - needs)
        if wanted is not None and lock:
            wanted = max(membership.ask, wanted)
        if wanted is None or wanted > terms.max_reward:
            self._once(
                task.task_id,
                "agent.pass",
                **where,
                max_reward=terms.max_reward,
                floor=least,
                **({"ask": membership.ask} if lock else {}),
                reason="the most the task pays is below the floor",
            )
            return None
        return least, wanted

    # -------------------------------------------------------------- DUTCH locks

    def lock_dutch(
        self,
        now: int,
        memberships: Mapping[int, Any],
        in_flight: set[str],
        committed: Committed,
        gas_price: int,
    ) -> None:
        """Lock a slot of each DUTCH task whose price reached the floor, while there is room."""
        standing = self.mirror.prover(self.me)
        paused = {m.market_id for m in self.mirror.markets() if m.paused}
        for market_id, membership in memberships.items():
            if market_id in paused or self.stop.stopped or self.monitor.untrusted(market_id) is not None:
                continue
            expected = self.store.expected(market_id, memberships)
            for task in self.mirror.open_tasks(now=now, market_id=market_id, mechanism_id=DUTCH):
                key = lock_key(task.task_id)
                if key in in_flight or not task.eligible(self.me):
                    continue  # locking, or locked (then it is an assignment)
                if self.submitter.refused_lately(key):
                    continue
                self._lock(task, membership, expected, gas_price, now, committed, standing)

    def _lock(
        self,
        task: TaskView,
        membership: Any,
        expected: float,
        gas_price: int,
        now: int,
        committed: Committed,
        standing: Any,
    ) -> None:
        """Lock one DUTCH task's slot if its price reached the target and there is room."""
        terms, market_id = task.terms, task.terms.market_id
        offer = self._offer(task, membership, expected, gas_price, {"market": market_id, "dutch": True}, True)
        if offer is None:
            return
        least, target = offer
        price = dutch_price(terms, now)
        if price < target:
            self._once(
                task.task_id,
                "agent.dutch_wait",
                market=market_id,
                price=price,
                floor=least,
                target=target,
                at=dutch_time_for(terms, target),
            )
            return
        room = self._room(membership, committed, standing, terms.collateral)
        if room is not None:
            self._once(task.task_id, "agent.pass", market=market_id, dutch=True, **room)
            return
        sent = self.submitter.lock(task.task_id, terms, lock_key(task.task_id))
        if sent is None:
            return
        committed.add(market_id, terms.collateral)
        self.metrics.counter("locks_total", "DUTCH locks sent")
        runtime.emit(
            log,
            "agent.lock",
            task=hex_id(task.task_id),
            market=market_id,
            price=price,
            target=target,
            floor=least,
            tx=sent.tx_hash,
        )

    # -------------------------------------------------------------- auctions

    def bid_at(
        self, url: str, now: int, memberships: Mapping[int, Any], committed: Committed, gas_price: int
    ) -> None:
        """Bid on the open auctions of one auction frontend it can serve, once a round each."""
        auctions = self.auctions.open_auctions(url)
        if auctions is None:
            return
        standing = self.mirror.prover(self.me)
        for entry in auctions:
            if self.stop.stopped:
                return
            try:
                auction = Auction.from_json(entry)
            except (KeyError, TypeError, ValueError, ClientError) as error:
                name = entry.get("task_id") if isinstance(entry, dict) else None
                self._once(
                    str(name or json.dumps(entry, default=str)[:80]),
                    "agent.auction_error",
                    url=url,
                    reason=f"an auction the agent cannot read: {type(error).__name__}: {error}"[:300],
                )
                continue
            if not self._bid(url, auction, now, memberships, committed, gas_price, standing):
                return

    def _bid(
        self,
        url: str,
        auction: Auction,
        now: int,
        memberships: Mapping[int, Any],
        committed: Committed,
        gas_price: int,
        standing: Any,
    ) -> bool:
        """Bid on one auction if it is worth it; False when the server failed (stop asking it)."""
        tid = hex_id(auction.task_id)
        if auction.closes_at < now or self.store.bid_sent(url, tid, auction.round):
            return True
        task = self.mirror.task(auction.task_id)
        if task is None or task.open == 0 or not task.eligible(self.me):
            return True  # not mirrored yet, or taken
        terms = task.terms
        said = (auction.market_id, auction.mechanism_id, auction.max_reward, auction.collateral)
        mechanisms = {terms.mechanism_id, *rules.mechanisms_of(terms)}  # a chain's: the link auctioned
        if (
            said[0] != terms.market_id
            or said[1] not in mechanisms
            or said[2:] != (terms.max_reward, terms.collateral)
        ):
            self._once(tid, "agent.pass", url=url, reason="the auction's terms are not the task's on chain")
            return True
        membership = memberships.get(terms.market_id)
        if membership is None or self.monitor.untrusted(terms.market_id) is not None:
            return True  # a market it did not join, or whose verifier it does not trust
        if not membership.accepts(rules.mechanism_at(terms, now)):  # a chain: its link current now
            self._once(tid, "agent.pass", url=url, reason=f"does not accept mechanism {terms.mechanism_id}")
            return True
        expected = self.store.expected(terms.market_id, memberships)
        offer = self._offer(task, membership, expected, gas_price, {"url": url}, False)
        if offer is None:
            return True
        room = self._room(membership, committed, standing, terms.collateral)
        if room is not None:
            self._once(tid, "agent.pass", url=url, round=auction.round, **room)
            return True
        return self._send_bid(url, auction, terms, offer, committed, standing.nonce)

    def _send_bid(
        self,
        url: str,
        auction: Auction,
        terms: TaskTerms,
        offer: tuple[int, int],
        committed: Committed,
        nonce: int,
    ) -> bool:
        """Sign a bid at the offer's minimum price and send it; False when the server failed."""
        least, min_price = offer
        tid = hex_id(auction.task_id)
        expiry = max(auction.closes_at + BID_EXPIRY_AFTER_CLOSE, auction.min_expiry)
        bid = Bid(url, tid, auction.round, terms.market_id, terms.collateral, min_price, expiry, nonce)
        signature = self.signer.sign_typed(
            bid_typed_data(
                self.outbox.chain_id, self.client.address, auction.task_id, min_price, expiry, nonce
            )
        )
        body = {
            "task_id": tid,
            "prover": self.me,
            "min_price": str(min_price),
            "expiry": expiry,
            "nonce": nonce,
            "signature": "0x" + bytes(signature).hex(),
        }
        said = {"floor": least, "max_reward": terms.max_reward, "closes_at": auction.closes_at}
        posted = self.auctions.post(bid, body, said, self.settings.simulate.wait)
        if posted.reached:  # it may win: its capacity and collateral are promised
            committed.add(terms.market_id, terms.collateral)
        return posted.answered
