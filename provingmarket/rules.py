"""The registry's assignment rule in Python, once.

`assign_refusal` answers what `Registry.assign` answers for one item (the contract's
`_assign`, contracts/registry/assignments.vy): "" when the item holds, else the registry's
reason, the rules checked in the registry's order so the first one that fails is the one
named. `bid_refusal` answers the registry's signature check of a prover's signed Bid
(`bids.check`). The prices a slot is taken at by the prover itself come from
`dutch_price` and `reward_at` (provingmarket/costs.py, which mirror the registry's to the
wei).

Python code that decides whether an assignment would hold (a frontend's book, the
auction's eligibility, the agent choosing what to take, the mirror's views) asks here;
tests/chain/test_rules_parity.py checks, for generated states on anvil, that this module
refuses exactly what the registry refuses, with the same reason.

What the registry knows of one prover for one task is a `Candidate`; of the task beside
its terms, a `Slots`. Amounts are wei, times seconds, addresses compared without case.
"""

from __future__ import annotations

from dataclasses import dataclass

from eth_account import Account
from eth_account.messages import encode_typed_data

from provingmarket.costs import dutch_price, reward_at
from provingmarket.formats import CHAIN, DUTCH, OPEN_RACE, TaskTerms, bid_typed_data, chain_links, task_id

# The registry's reasons (contracts/registry/reasons.vy), as its revert messages and
# AssignmentSkipped events carry them after "registry: ".
UNKNOWN_TASK = "unknown task"
UNKNOWN_MARKET = "unknown market"
MARKET_PAUSED = "market paused"
VERIFIER_CHANGED = "verifier changed"
NOT_FOR_FRONTENDS = "task is not for frontends"
NOT_A_FRONTEND = "not a frontend of the mechanism"
NOT_DUTCH = "not a dutch task"
TASK_EXPIRED = "task expired"
NOT_IN_MARKET = "prover not in market"
MECHANISM_NOT_ACCEPTED = "mechanism not accepted by prover"
ALREADY_ON_TASK = "prover already on task"
DECLINED_TASK = "prover declined task"
SLASHED_ON_TASK = "prover was slashed on task"
NO_FREE_SLOT = "no free slot"
AT_CAPACITY = "prover at capacity"
NOT_ENOUGH_FREE_STAKE = "not enough free stake"
LACKS_CAPABILITIES = "prover lacks capabilities"
TOO_SLOW = "proving time exceeds window"
PRICE_ABOVE_MAXIMUM = "price above maximum"
PRICE_BELOW_ASK = "price below ask"
INVALID_SIGNATURE = "invalid signature"
SIGNATURE_EXPIRED = "signature expired"
SIGNATURE_REVOKED = "signature revoked"
BELOW_SIGNED_MINIMUM = "price below signed minimum"
INVALID_SIGNATURE_V = "invalid signature v"
MALLEABLE_SIGNATURE = "malleable signature"
SIGNER_NOT_PROVER = "signer is not the prover"

# A prover's record on a task (`Registry.engagement`): none, or one of these.
ENGAGED = "engaged"
DECLINED = "declined"
SLASHED = "slashed"
ENGAGEMENT_REASONS = {ENGAGED: ALREADY_ON_TASK, DECLINED: DECLINED_TASK, SLASHED: SLASHED_ON_TASK}

SIGNATURE_SIZE = 65
SECP256K1_HALF_N = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0


@dataclass(frozen=True, slots=True)
class Candidate:
    """One prover as the registry sees it for one task's market, at one moment."""

    address: str
    joined: bool = True  # a member of the task's market
    accepts: bool = True  # accepts the task's mechanism in its current join (frontends only)
    ask: int = 0  # least price it is assigned at without a signed Bid
    capacity: int = 0
    used: int = 0  # live assignments in the market, from any mechanism
    proving_time: int = 0  # seconds it declared it needs
    capabilities: int = 0  # hardware bitmask
    free_stake: int = 0  # stake not locked by live assignments nor unbonding
    engagement: str = ""  # its record on the task: "", ENGAGED, DECLINED or SLASHED


@dataclass(frozen=True, slots=True)
class Slots:
    """What the registry knows of a task beside its terms."""

    known: bool = True  # posted (its id has slots)
    open: int = 0  # open slots
    market: str = ""  # why the task's market takes no assignment now ("" if it does)


@dataclass(frozen=True, slots=True)
class Bid:
    """A prover's signed consent to a task at any price from `min_price` up."""

    min_price: int
    expiry: int
    nonce: int
    signature: bytes


def taking_ends(terms: TaskTerms) -> int:
    """The last second a slot of the task may be taken: the assignment window's end, or
    for an open race the proving window's (racers take slots until the deadline)."""
    window = terms.proving_window if terms.mechanism_id == OPEN_RACE else terms.assign_window
    return terms.posted_at + window


def link_at(terms: TaskTerms, at: int) -> tuple[int, int, int]:
    """(mechanism, start, end): the mechanism that may take a slot of the task at `at` and
    its window (a single mechanism's: posting to `taking_ends`; a chain's: the current
    link's, which starts after the previous link's end and includes its own), or (0, 0, 0)
    once none may. A pure function of the terms, as the registry's `mechanisms.link_at`."""
    if terms.mechanism_id < CHAIN:
        end = taking_ends(terms)
        return (terms.mechanism_id, terms.posted_at, end) if at <= end else (0, 0, 0)
    end = terms.posted_at
    for link in chain_links(terms.mechanism_id):
        start, end = end, end + link.window
        if at <= end:
            return link.mechanism, start, end
    return 0, 0, 0


def mechanism_at(terms: TaskTerms, at: int) -> int:
    """The mechanism a slot of the task goes to at `at`: a single task's one mechanism
    (whether its window is still open is `taking_ends`'), a chain's current link, or 0 once
    the chain is over."""
    if terms.mechanism_id < CHAIN:
        return terms.mechanism_id
    return link_at(terms, at)[0]


def mechanisms_of(terms: TaskTerms) -> tuple[int, ...]:
    """Every mechanism the task names: its one, or its chain's links in order."""
    return tuple(link.mechanism for link in chain_links(terms.mechanism_id)) or (terms.mechanism_id,)


def self_taken_price(terms: TaskTerms, now: int) -> int:
    """What a prover taking a slot itself is paid: a DUTCH lock at the price rising from
    posting (a chain's DUTCH link too), a race at the race's reward now."""
    if terms.mechanism_id < CHAIN:
        mechanism, end = terms.mechanism_id, taking_ends(terms)
    else:
        mechanism, _, end = link_at(terms, now)
    if mechanism == DUTCH:
        return dutch_price(terms, now)
    return reward_at(terms, terms.max_reward, end or taking_ends(terms), now)


def assign_refusal(
    terms: TaskTerms,
    slots: Slots,
    candidate: Candidate,
    now: int,
    price: int = 0,
    frontend_serves: bool | None = True,
    bid: Bid | None = None,
    bid_check: BidCheck | None = None,
) -> str:
    """Why the registry refuses to give `candidate` a slot of the task at `now`, or "".

    `frontend_serves` is whether the caller is a frontend of the task's mechanism (a chain's:
    of its link current at `now`, `mechanism_at`), and `candidate.accepts` whether the
    prover accepts that mechanism; None
    when the prover takes the slot itself (a DUTCH lock, a race commit), which sets the
    price by the registry's formula and ignores `price`. A `bid` is checked by
    `bid_check` (the registry's domain and the prover's current nonce)."""
    by_frontend = frontend_serves is not None
    reason = task_refusal(terms, slots, now, frontend_serves)
    if not reason:
        reason = prover_refusal(terms, slots, candidate, by_frontend)
    if reason:
        return reason
    if not by_frontend:
        price = self_taken_price(terms, now)
    if price > terms.max_reward:
        return PRICE_ABOVE_MAXIMUM
    if bid is not None and bid.signature:
        if bid_check is None:
            raise ValueError("a signed Bid needs a BidCheck (the registry's domain and the nonce)")
        return bid_check.refusal(terms, candidate.address, price, bid, now)
    return PRICE_BELOW_ASK if price < candidate.ask else ""


def task_refusal(terms: TaskTerms, slots: Slots, now: int, frontend_serves: bool | None) -> str:
    """The rules of `assign_refusal` about the task and the caller, in the registry's order."""
    if not slots.known:
        return UNKNOWN_TASK
    if slots.market:
        return slots.market
    # The task's window first (a chain's links add up to its assignment window), then who
    # may take a slot: a chain's current link is the mechanism.
    if now > taking_ends(terms):
        return TASK_EXPIRED
    mechanism = mechanism_at(terms, now)
    if frontend_serves is None:
        if terms.mechanism_id >= CHAIN and mechanism != DUTCH:
            return NOT_DUTCH  # only a lock takes a chain's slot itself
    elif mechanism <= DUTCH:
        return NOT_FOR_FRONTENDS  # a link of mechanism 0 (a hand-made chain's) too
    elif not frontend_serves:
        return NOT_A_FRONTEND
    return ""


def prover_refusal(terms: TaskTerms, slots: Slots, candidate: Candidate, by_frontend: bool) -> str:
    """The rules of `assign_refusal` about the prover (and the task's open slots), in the
    registry's order; the price apart."""
    if not candidate.joined:
        return NOT_IN_MARKET
    if by_frontend and not candidate.accepts:
        return MECHANISM_NOT_ACCEPTED
    # The registry reads a prover's record only where one can exist: redundancy above 1,
    # or a slot reopened after a decline or a slash (so an open one).
    if candidate.engagement and (terms.redundancy > 1 or slots.open > 0):
        return ENGAGEMENT_REASONS[candidate.engagement]
    if slots.open <= 0:
        return NO_FREE_SLOT
    room = room_refusal(candidate.capacity, candidate.used, candidate.free_stake, terms.collateral)
    if room:
        return room
    return offer_refusal(terms, candidate.capabilities, candidate.proving_time)


def room_refusal(capacity: int, used: int, free_stake: int, collateral: int) -> str:
    """Why a member has no room for one more task now: a unit of capacity and the task's
    collateral in free stake; or ""."""
    if used >= capacity:
        return AT_CAPACITY
    return NOT_ENOUGH_FREE_STAKE if free_stake < collateral else ""


def offer_refusal(terms: TaskTerms, capabilities: int, proving_time: int) -> str:
    """Why a prover's standing offer in the task's market (its capabilities and declared
    proving time) can never serve the task, whatever its capacity and stake, or ""."""
    if capabilities & terms.capabilities != terms.capabilities:
        return LACKS_CAPABILITIES
    if proving_time > terms.proving_window:
        return TOO_SLOW
    return ""


@dataclass(frozen=True, slots=True)
class BidCheck:
    """The registry's check of a signed Bid (`bids.check`): its EIP-712 domain and the
    prover's current signature nonce (`Registry.signature_nonce`)."""

    chain_id: int  # the chain's id now (a Bid's domain)
    registry: str
    nonce: int
    task_chain_id: int | None = None  # the chain id the registry was deployed on (task ids)

    def refusal(self, terms: TaskTerms, prover: str, price: int, bid: Bid, now: int) -> str:
        """Why the registry refuses `bid` as `prover`'s consent at `price`, or ""."""
        if len(bid.signature) != SIGNATURE_SIZE:
            return INVALID_SIGNATURE
        if bid.expiry < now:
            return SIGNATURE_EXPIRED
        if bid.nonce != self.nonce:
            return SIGNATURE_REVOKED
        if price < bid.min_price:
            return BELOW_SIGNED_MINIMUM
        deployed = self.chain_id if self.task_chain_id is None else self.task_chain_id
        reason, signer = signer_of(self.chain_id, self.registry, task_id(deployed, self.registry, terms), bid)
        if reason:
            return reason
        return "" if signer.lower() == prover.lower() else SIGNER_NOT_PROVER


def market_refusal(known: bool, paused: bool, frozen: bool = False) -> str:
    """Why a market takes no assignment now (`Registry.market`'s view of it), or ""."""
    if not known:
        return UNKNOWN_MARKET
    if paused:
        return MARKET_PAUSED
    return VERIFIER_CHANGED if frozen else ""


def signer_of(chain_id: int, registry: str, task: bytes, bid: Bid) -> tuple[str, str]:
    """(reason, signer): who signed `bid` for the task by the registry's rules (65 bytes
    r, s, v; v 27 or 28; s in the lower half of the curve's order), or why the registry
    finds no signer."""
    signature = bytes(bid.signature)
    if len(signature) != SIGNATURE_SIZE:
        return INVALID_SIGNATURE, ""
    if signature[64] not in (27, 28):
        return INVALID_SIGNATURE_V, ""
    if int.from_bytes(signature[32:64], "big") > SECP256K1_HALF_N:
        return MALLEABLE_SIGNATURE, ""
    message = encode_typed_data(
        full_message=bid_typed_data(chain_id, registry, task, bid.min_price, bid.expiry, bid.nonce)
    )
    try:
        return "", Account.recover_message(message, signature=signature)
    except Exception:  # r or s out of range: ecrecover finds no key
        return INVALID_SIGNATURE, ""


# ------------------------------------------------------------------ slashing

BPS = 10_000  # the registry's basis points (markets.BPS)


@dataclass(frozen=True)
class SlashSplit:
    """Where a slashed assignment's collateral goes (contracts/registry/assignments.vy,
    `slash`): the task's requester, whoever slashed, and the rest burnt."""

    to_requester: int
    to_caller: int
    burnt: int


def slash_split(
    collateral: int, max_reward: int, requester_bps: int, caller_bps: int, caller_is_party: bool = False
) -> SlashSplit:
    """The registry's split, to the wei: the requester gets `requester_bps` of the
    collateral but never more than the task's max reward (its cap); the caller gets
    `caller_bps`, except that a caller who is the task's requester or the slashed prover
    gets nothing (`caller_is_party`); everything else, the requester's share above its cap
    included, is burnt. Nothing goes to a frontend or a treasury."""
    to_requester = min(collateral * requester_bps // BPS, max_reward)
    to_caller = 0 if caller_is_party else collateral * caller_bps // BPS
    return SlashSplit(to_requester, to_caller, collateral - to_requester - to_caller)
