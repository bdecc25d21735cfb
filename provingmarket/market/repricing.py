"""Re-pricing: a requester's client cancels a task nobody took after a share of its
assignment window and posts it again at a higher reward, in steps up to a ceiling, as
`ape run requester reprice` (and `post --reprice-after`) does.

The steps of one re-price, each safe to repeat after a crash:

1. cancel the old task: the registry closes its open slots and credits their escrow back
   (a slot assigned meanwhile stays with its prover, and its escrow stays escrowed);
2. withdraw what the registry credited, so the escrow comes back to the wallet;
3. post the same inputs again at the new reward, with as many slots as the cancel closed
   (never more: a slot assigned in the race between the look and the cancel is not posted
   twice), and the old task's id as the new task's salt: the link is on chain, so anyone
   (the explorer, this client after a crash) can tell that the new task re-posts the old.

The chain decides what was done: a cancel is the old task's first `SlotsClosed` event
marked cancelled, a re-post a `TaskPosted` by the same requester whose salt is the old
id. The local record (`repricing-<chain id>.json` next to the deployment record, like the
router's state) keeps the policy of each task opted in and the step each re-price reached,
and is written before each transaction, so a re-price cut short is resumed, never sent
twice.

The arithmetic (`Step`, `Policy`, `next_reward`, `due_at`) and the decision (`decide`)
need no chain."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from web3 import Web3

from provingmarket.chain import requester as following
from provingmarket.chain.checks import when
from provingmarket.chain.client import ClientError, RegistryClient, TaskState, chain_time, parse_ether
from provingmarket.chain.client import format_ether as eth
from provingmarket.formats import MAX_REWARD, OPEN_RACE, TaskTerms, chain_links
from provingmarket.market.files import per_chain_file
from provingmarket.market.preferences import Preferences

SCALE = 10_000  # shares of the assignment window and percentages, in basis points
DEFAULT_AFTER = 5_000  # re-price once half the assignment window has passed
DEFAULT_STEP = "25%"
RECORD_VERSION = 1

# The stages of one task in the record.
WATCHING = "watching"  # opted in, nothing sent
CANCELLING = "cancelling"  # the cancel may have been sent
CANCELLED = "cancelled"  # the cancel is mined: `slots` closed, `refund` credited
POSTING = "posting"  # the re-post may have been sent
REPOSTED = "reposted"  # `reposted_as` names the new task
TAKEN = "taken"  # a prover took a slot before the cancel: nothing to re-price
ENDED = "ended"  # proven, closed, at the ceiling or past the deadline: watched no more
FINAL = (REPOSTED, TAKEN, ENDED)


# ------------------------------------------------------------------ the arithmetic


@dataclass(frozen=True)
class Step:
    """How much each re-price adds to the reward: a share of it (basis points) or wei."""

    bps: int = 0
    wei: int = 0

    def raised(self, reward: int) -> int:
        """The reward one step up, rounded up to the wei (so every step raises it)."""
        if self.bps:
            return reward + max(1, -(-reward * self.bps // SCALE))
        return reward + self.wei

    def describe(self) -> str:
        return f"{_percent(self.bps)}%" if self.bps else eth(self.wei)


def _percent(bps: int) -> str:
    text = f"{Decimal(bps) / 100:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def parse_step(text: str, what: str = "--reprice-step") -> Step:
    """`25%` (a share of the reward) or `0.001` (ETH added each time)."""
    value = str(text).strip()
    if value.endswith("%"):
        try:
            share = Decimal(value[:-1].strip())
        except InvalidOperation:
            raise ClientError(f"{what} {text!r} is not a percentage (write it like 25%)") from None
        bps = share * 100
        if bps != bps.to_integral_value() or not 0 < bps <= 100 * SCALE:
            raise ClientError(f"{what} {text!r} is out of range: give 0.01% to 10000%, in steps of 0.01%")
        return Step(bps=int(bps))
    wei = parse_ether(value, what)
    if wei == 0:
        raise ClientError(f"{what} {text!r} is 0: each re-price must raise the reward (e.g. 25% or 0.001)")
    return Step(wei=wei)


def parse_after(text: str, what: str = "--reprice-after") -> int:
    """The share of the assignment window after which a task nobody took is re-priced:
    above 0 and below 1 (0.5: halfway), in basis points."""
    try:
        share = Decimal(str(text).strip())
    except InvalidOperation:
        raise ClientError(
            f"{what} {text!r} is not a number (a share of the assignment window, e.g. 0.5)"
        ) from None
    bps = share * SCALE
    if not 0 < bps < SCALE or bps != bps.to_integral_value():
        raise ClientError(
            f"{what} {text!r} is out of range: give a share of the assignment window above 0 and below 1 "
            "(e.g. 0.5), to 4 decimals; at 1 the window is over and the task can no longer be assigned"
        )
    return int(bps)


@dataclass(frozen=True)
class Policy:
    """When and how far to re-price: after `after` basis points of the assignment window,
    by `step`, while the task costs at most `ceiling` wei in all (each slot's reward and
    fee), and, given a `deadline` (chain time), only while a proof could still come by it."""

    after: int
    step: Step
    ceiling: int
    deadline: int | None = None

    def describe(self) -> str:
        by = f", proof by {self.deadline}" if self.deadline is not None else ""
        return (
            f"after {Decimal(self.after) / SCALE} of the assignment window, +{self.step.describe()} "
            f"a time, up to {eth(self.ceiling)} in all{by}"
        )

    def data(self) -> dict:
        return {
            "after": self.after,
            "step": asdict(self.step),
            "ceiling": self.ceiling,
            "deadline": self.deadline,
        }

    @classmethod
    def from_data(cls, data: dict) -> Policy:
        return cls(data["after"], Step(**data["step"]), data["ceiling"], data.get("deadline"))


def make_policy(after: str | None, step: str | None, ceiling: int | None) -> Policy:
    """The policy from a requester's options; the ceiling (--max-price) is required."""
    if ceiling is None:
        raise ClientError(
            "re-pricing needs a ceiling: give --max-price ETH, the most the task may cost in all"
        )
    return Policy(
        DEFAULT_AFTER if after is None else parse_after(after),
        parse_step(DEFAULT_STEP if step is None else step),
        ceiling,
    )


def due_at(terms: TaskTerms, policy: Policy) -> int:
    """When (chain time) the task is re-priced if nobody took it."""
    return terms.posted_at + -(-terms.assign_window * policy.after // SCALE)


def next_reward(reward: int, fee: int, slots: int, policy: Policy) -> int | None:
    """The reward per slot one step up, cut to what the ceiling allows for SLOTS slots of
    reward + fee; None if that is no raise (the task is at its ceiling)."""
    most = min(policy.ceiling // max(slots, 1) - fee, MAX_REWARD)
    new = min(policy.step.raised(reward), most)
    return new if new > reward else None


def check_repriceable(terms: TaskTerms, policy: Policy) -> None:
    """What makes a task one that re-pricing cannot serve, in one line."""
    if terms.mechanism_id == OPEN_RACE:
        raise ClientError(
            "an open race (mechanism 1) has no assignment window and cannot be cancelled while it runs: "
            "re-pricing needs another mechanism"
        )
    if any(link.mechanism == OPEN_RACE for link in chain_links(terms.mechanism_id)):
        raise ClientError(
            "a chain with an open race link cannot be cancelled while the race runs: re-pricing needs a "
            "chain without one (or let the race be the chain's last resort, without --reprice-after)"
        )
    if terms.escrow() > policy.ceiling:
        raise ClientError(
            f"--max-price {eth(policy.ceiling)} is below what the task already escrows "
            f"({eth(terms.escrow())}): re-pricing only raises it"
        )


def policy_for(prefs: Preferences, terms: dict, now: int, after: int = DEFAULT_AFTER) -> Policy | None:
    """For the router: the re-pricing that lets a task it prices low still meet the
    persona's limits rather than expire unserved. TERMS are the chosen terms by name
    (`Choice.terms`), NOW the chain time of posting. None when re-pricing cannot help:
    no price limit, an open race or a chain with a race link (neither can be cancelled
    while the race runs), or terms with no step left below the price limit. Raises the
    reward by 25% a step up to the limit (`max_price`), and, given `max_time`, re-posts
    only while a proof may still come in time."""
    mechanism_id = terms["mechanism_id"]
    if prefs.max_price is None or mechanism_id == OPEN_RACE:
        return None
    if any(link.mechanism == OPEN_RACE for link in chain_links(mechanism_id)):
        return None
    deadline = None if prefs.max_time is None else now + prefs.max_time
    policy = Policy(after, parse_step(DEFAULT_STEP), prefs.max_price, deadline)
    if next_reward(terms["max_reward"], terms["frontend_fee"], terms["redundancy"], policy) is None:
        return None
    return policy


def reposts(terms: TaskTerms) -> str:
    """The id of the task these terms would re-post: their salt read as a task id. It is a
    re-post if a task of the same requester has that id and was cancelled (for the
    explorer's "re-posted as"; a random 64-bit salt names no task)."""
    return "0x" + (terms.salt % 2**256).to_bytes(32, "big").hex()


# ------------------------------------------------------------------ the record


@dataclass
class Entry:
    """One task opted in to re-pricing, and how far its re-price went."""

    task_id: str
    requester: str
    policy: Policy
    stage: str = WATCHING
    reposted_from: str | None = None
    slots: int | None = None  # closed by the cancel
    refund: int | None = None  # credited by the cancel
    withdrawn: int | None = None
    reward: int | None = None  # the re-post's reward per slot
    reposted_as: str | None = None
    note: str = ""  # why it ended

    def data(self) -> dict:
        data = asdict(self)
        data["policy"] = self.policy.data()
        return data

    @classmethod
    def from_data(cls, data: dict) -> Entry:
        return cls(**{**data, "policy": Policy.from_data(data["policy"])})


@dataclass
class Record:
    """The file the client keeps: every task opted in, by id."""

    path: Path
    chain_id: int
    registry: str
    entries: dict[str, Entry] = field(default_factory=dict)

    def save(self) -> None:
        """Written whole to a temporary file and moved over the old: a crash leaves one or
        the other, never half."""
        data = {
            "version": RECORD_VERSION,
            "chain_id": self.chain_id,
            "registry": self.registry,
            "tasks": {k: e.data() for k, e in self.entries.items()},
        }
        part = self.path.with_name(self.path.name + ".part")
        try:
            part.write_text(json.dumps(data, indent=1) + "\n")
            os.replace(part, self.path)
        except OSError as error:
            raise ClientError(
                f"cannot write the re-pricing record {self.path} ({error.strerror or error}); "
                "nothing more is sent until it can be written"
            ) from None

    def watched(self, requester: str | None = None) -> list[Entry]:
        """The entries not at a final stage (the requester's, given one), oldest first."""
        return [
            e
            for e in self.entries.values()
            if e.stage not in FINAL and (requester is None or e.requester.lower() == requester.lower())
        ]

    def chain_of(self, task_id: str) -> list[str]:
        """The task ids from the first posted to the last re-post, through TASK_ID."""
        first = task_id
        while (e := self.entries.get(first)) is not None and e.reposted_from:
            first = e.reposted_from
        ids = [first]
        while (e := self.entries.get(ids[-1])) is not None and e.reposted_as:
            ids.append(e.reposted_as)
        return ids


def record_path(registry: RegistryClient, given: str | None, folder: Path) -> Path:
    """--reprice-state, else `repricing-<chain id>.json` in FOLDER (next to the deployment
    record), one file per chain."""
    return per_chain_file(registry, given, folder, "repricing", "--reprice-state")


def load(path: Path, chain_id: int, registry: str) -> Record:
    """The record at PATH (empty if there is none), refused if it is another chain's or
    another registry's."""
    if not path.exists():
        return Record(path, chain_id, registry)
    try:
        data = json.loads(path.read_text())
        entries = {k: Entry.from_data(v) for k, v in data["tasks"].items()}
        seen = (data["chain_id"], data["registry"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ClientError(
            f"the re-pricing record {path} cannot be read ({error}); move it away to start a new one "
            "(tasks it watched go unwatched)"
        ) from None
    if seen[0] != chain_id or seen[1].lower() != registry.lower():
        raise ClientError(
            f"the re-pricing record {path} is for chain {seen[0]}'s registry {seen[1]}, not chain "
            f"{chain_id}'s {registry}: give --reprice-state FILE for this one"
        )
    return Record(path, chain_id, registry, entries)


# ------------------------------------------------------------------ the decision


@dataclass(frozen=True)
class Seen:
    """What the chain says of a task opted in, for `decide`."""

    now: int
    terms: TaskTerms
    open: int
    assigned: int
    proven: int
    closed: int
    cancelled_slots: int | None  # slots its cancel closed, if it was cancelled
    reposted_as: str | None  # the task re-posting it (salt = its id), if one was posted


@dataclass(frozen=True)
class Action:
    """What to do next: `wait` (until `until`), `cancel`, `post` (`slots` at `reward`),
    or `stop` at `stage` (with `note`, and `reposted_as` when found)."""

    kind: str
    stage: str = ""
    until: int = 0
    slots: int = 0
    reward: int = 0
    note: str = ""
    reposted_as: str | None = None


def decide(entry: Entry, seen: Seen) -> Action:
    """The next step of ENTRY's re-price from what the chain says; the chain wins over the
    record, so a step done but not recorded (a crash) is never done twice."""
    if seen.reposted_as is not None:
        return Action("stop", REPOSTED, reposted_as=seen.reposted_as)
    if seen.cancelled_slots is not None:
        return _after_cancel(entry, seen, seen.cancelled_slots)
    if entry.stage in (CANCELLED, POSTING):
        raise ClientError(
            f"the re-pricing record says task {entry.task_id} was cancelled, but the chain has no "
            "cancel for it: is this the record of another chain?"
        )
    return _before_cancel(entry, seen)


def _after_cancel(entry: Entry, seen: Seen, slots: int) -> Action:
    """Cancelled: post the slots its cancel closed, at the price chosen before it."""
    if slots == 0:
        return Action("stop", TAKEN, note="every slot was taken before the cancel: nothing to re-post")
    terms = seen.terms
    reward = entry.reward
    if reward is None:  # cancelled by hand, not by this client: the next step up
        reward = next_reward(terms.max_reward, terms.frontend_fee, slots, entry.policy)
    if reward is None:
        return Action("stop", ENDED, note="cancelled at its ceiling: not re-posted")
    return Action("post", slots=slots, reward=reward)


def _before_cancel(entry: Entry, seen: Seen) -> Action:
    """Not cancelled: wait, stop, or cancel to re-price."""
    terms, policy = seen.terms, entry.policy
    if seen.proven or seen.assigned:
        return Action("stop", TAKEN, note="a prover took a slot")
    if seen.closed or seen.open == 0:
        return Action("stop", ENDED, note="its slots are closed")
    if seen.now > terms.posted_at + terms.assign_window:
        return Action("stop", ENDED, note="its assignment window passed; `reclaim` refunds it")
    due = due_at(terms, policy)
    if seen.now < due:
        return Action("wait", until=due)
    reward = next_reward(terms.max_reward, terms.frontend_fee, seen.open, policy)
    if reward is None:
        return Action("stop", ENDED, note=f"at its ceiling {eth(policy.ceiling)}: left to run as it is")
    if policy.deadline is not None and seen.now + terms.proving_window > policy.deadline:
        return Action("stop", ENDED, note="a re-post could no longer be proven by the deadline")
    return Action("cancel", reward=reward)


# ------------------------------------------------------------------ the flow


def look(registry: RegistryClient, state: TaskState, requester: str) -> Seen:
    """What the chain says of the task: counts, its cancel, a task re-posting it."""
    cancels = [e for e in state.timeline if e.name == "SlotsClosed" and e.cancelled]
    salt = int.from_bytes(state.task_id, "big")
    reposts = [
        e
        for e in registry.events(["TaskPosted"], prover=requester)
        if TaskTerms.from_event(e.terms).salt == salt
    ]
    return Seen(
        chain_time(registry.web3),
        state.terms,
        state.open,
        state.assigned,
        state.proven,
        state.closed,
        cancels[0].slots if cancels else None,
        "0x" + bytes(reposts[0].task_id).hex() if reposts else None,
    )


def opt_in(
    record: Record, task_id: str, requester: str, policy: Policy, reposted_from: str | None = None
) -> Entry:
    """Watch TASK_ID with POLICY (a task already watched keeps its stage, takes the policy)."""
    entry = record.entries.get(task_id)
    if entry is None:
        entry = Entry(task_id, requester, policy, reposted_from=reposted_from)
        record.entries[task_id] = entry
    elif entry.stage not in FINAL:
        entry.policy = policy
    record.save()
    return entry


@dataclass(frozen=True)
class Outcome:
    """What one pass over a task did: `action` (waiting, repriced, stopped), the task,
    and for a re-price the new task, its reward, slots and the refund."""

    task_id: str
    action: str
    stage: str
    until: int = 0
    reposted_as: str | None = None
    reward: int = 0
    slots: int = 0
    refund: int = 0
    withdrawn: int = 0
    note: str = ""

    def line(self) -> str:
        short = self.task_id[:10] + "…"
        if self.action == "repriced":
            return (
                f"task {short} re-priced: cancelled, {eth(self.refund)} refunded"
                + (f" and {eth(self.withdrawn)} withdrawn" if self.withdrawn else "")
                + f"; re-posted as {self.reposted_as} with {self.slots} slot{'s' if self.slots != 1 else ''} "
                f"at {eth(self.reward)}"
            )
        if self.action == "waiting":
            return f"task {short} has no assignment yet; re-priced at {when(self.until)} unless taken"
        return f"task {short}: {self.stage}" + (f" ({self.note})" if self.note else "")


def step(registry: RegistryClient, record: Record, entry: Entry, requester: str) -> Outcome:
    """One pass over ENTRY: resume or start its re-price if due, else say when it is due."""
    state = registry.task(entry.task_id)
    if state.terms.requester.lower() != requester.lower():
        raise ClientError(
            f"task {entry.task_id} is {state.terms.requester}'s; only its requester may re-price it"
        )
    action = decide(entry, look(registry, state, requester))
    if action.kind == "wait":
        return Outcome(entry.task_id, "waiting", entry.stage, until=action.until)
    if action.kind == "stop":
        entry.stage, entry.note = action.stage, action.note
        if action.reposted_as is not None:
            _reposted(record, entry, action.reposted_as)
        record.save()
        return Outcome(entry.task_id, "stopped", entry.stage, reposted_as=entry.reposted_as, note=entry.note)
    if action.kind == "cancel":
        entry.stage, entry.reward = CANCELLING, action.reward
        record.save()  # before the cancel: a crash after it is resumed from the chain
        try:
            closed = following.cancel(registry, requester, state.task_id)
        except ClientError:
            # A prover took every slot between the look and the cancel: the chain says so.
            after = decide(entry, look(registry, registry.task(entry.task_id), requester))
            if after.kind != "stop":
                raise
            entry.stage, entry.note = after.stage, after.note
            record.save()
            return Outcome(entry.task_id, "stopped", entry.stage, note=entry.note)
        entry.stage, entry.slots, entry.refund = CANCELLED, closed.slots, closed.refund
        record.save()
        if closed.slots == 0:
            entry.stage, entry.note = TAKEN, "every slot was taken before the cancel: nothing to re-post"
            record.save()
            return Outcome(entry.task_id, "stopped", entry.stage, note=entry.note)
        # A slot taken meanwhile stays with its prover: only the slots closed are posted
        # again, at the price chosen for more (so within the ceiling).
        slots, reward = closed.slots, action.reward
    else:
        slots, reward = action.slots, action.reward
        entry.reward = reward
    return _repost(registry, record, entry, state, requester, slots, reward)


def _repost(
    registry: RegistryClient,
    record: Record,
    entry: Entry,
    state: TaskState,
    requester: str,
    slots: int,
    reward: int,
) -> Outcome:
    """Withdraw the credited escrow and post SLOTS slots of the same task at REWARD, its
    salt the old task's id."""
    if entry.slots is None:
        entry.slots = slots
    withdrawn = 0
    if registry.balance(requester) > 0:
        _, withdrawn = following.withdraw(registry, requester)
        entry.withdrawn = (entry.withdrawn or 0) + withdrawn
    entry.stage = POSTING
    record.save()  # before the post: a crash after it finds the post by its salt
    terms = state.terms
    new = replace(
        terms,
        requester="0x" + "00" * 20,
        posted_at=0,
        max_reward=reward,
        redundancy=slots,
        salt=int.from_bytes(state.task_id, "big"),
    )
    web3, address = registry.web3, Web3.to_checksum_address(requester)
    if web3.eth.get_transaction_count(address, "pending") > web3.eth.get_transaction_count(address):
        # Maybe a re-post sent before a crash and not mined yet: posting now could post twice.
        raise ClientError(
            f"{requester} has a transaction pending; task {entry.task_id}'s re-post waits until it is "
            "mined (run `reprice` again then)"
        )
    held = web3.eth.get_balance(address)
    if held < new.escrow():
        raise ClientError(
            f"task {entry.task_id} is cancelled and its escrow refunded, but {requester} holds {eth(held)}, "
            f"less than the re-post's escrow {eth(new.escrow())}: fund it and run `reprice` again to post it"
        )
    _, events = registry.transact(
        "post_task", new.as_tuple(), state.prover_input, state.input_uri, value=new.escrow(), action="re-post"
    )
    new_id = "0x" + bytes(next(e for e in events if e.name == "TaskPosted").task_id).hex()
    _reposted(record, entry, new_id)
    record.save()
    return Outcome(
        entry.task_id,
        "repriced",
        entry.stage,
        reposted_as=new_id,
        reward=reward,
        slots=slots,
        refund=entry.refund or slots * (terms.max_reward + terms.frontend_fee),
        withdrawn=entry.withdrawn or 0,
    )


def _reposted(record: Record, entry: Entry, new_id: str) -> None:
    entry.stage, entry.reposted_as = REPOSTED, new_id
    if new_id not in record.entries:
        record.entries[new_id] = Entry(new_id, entry.requester, entry.policy, reposted_from=entry.task_id)


def run(
    registry: RegistryClient,
    record: Record,
    requester: str,
    task_ids: list[str] | None,
    *,
    watch: bool,
    poll: float,
    timeout: float,
    report: Callable[[Outcome], None],
) -> list[Outcome]:
    """One pass over the requester's watched tasks (or TASK_IDS and their re-posts); with
    WATCH, passes every POLL seconds until none is watched any more or TIMEOUT passes."""
    started = time.monotonic()
    last: dict[str, Outcome] = {}
    while True:
        for entry in _watched(record, requester, task_ids):
            outcome = step(registry, record, entry, requester)
            if last.get(entry.task_id) != outcome:
                report(outcome)
            last[entry.task_id] = outcome
        if not watch or not _watched(record, requester, task_ids):
            return list(last.values())
        if time.monotonic() - started >= timeout:
            raise ClientError(f"--timeout {timeout:g} s passed with tasks still watched: run again to go on")
        time.sleep(poll)


def _watched(record: Record, requester: str, task_ids: list[str] | None) -> list[Entry]:
    """The requester's watched entries, or those in the chains of re-posts of TASK_IDS."""
    entries = record.watched(requester)
    if task_ids is None:
        return entries
    chains = {t for task_id in task_ids for t in record.chain_of(task_id)}
    return [e for e in entries if e.task_id in chains]


def summary(record: Record, task_id: str) -> list[dict[str, Any]]:
    """The chain of re-posts through TASK_ID, as the record has it."""
    return [
        {"task_id": t, **({"stage": e.stage, "reward": e.reward} if (e := record.entries.get(t)) else {})}
        for t in record.chain_of(task_id)
    ]
