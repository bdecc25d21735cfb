# pragma version 0.4.3
# pragma nonreentrancy on
"""
@title Tasks: terms, escrow and slots; post, cancel, reclaim
@notice A task escrows redundancy * (max_reward + frontend_fee) and carries its terms.
        This module holds what every step shares: the terms and their bounds, the
        slots, the records, the events, and the helpers the assignments and proofs
        modules call. Those two modules hold the steps between post and close.
        A frontend of the task's mechanism assigns its slots (or a prover locks a
        DUTCH slot, or races an OPEN_RACE), within every rule below; an assigned
        prover proves by its deadline, declines within the market's grace period, or
        is slashed. Every term is bounded at `post_task`, so for every accepted task
        no later step's arithmetic can revert, and the batch paths skip a bad item
        with an event naming why instead of reverting.
@dev Storage is kept small on purpose, because Vyper does not pack storage:
     - a task stores no terms. Its id is the hash of its terms (`TaskTerms`), and
       every call about a task brings the terms back as calldata; the registry
       recomputes the id and so authenticates them.
     - a task stores one word per redundancy slot (words.vy: OPEN, ASSIGNED with the
       hash of the assignment, which the prover or a slasher brings back as calldata,
       or DONE).
     Formats shared with the Python side (task id, input commitment, EIP-712 domain
     and `Bid` type) are documented in docs/formats.md and implemented in
     `provingmarket/formats.py`; tests check that both sides agree.
"""

from . import bids  # its SIGNATURE_SIZE only
from . import reasons
from . import words
from . import stakes
from . import markets
from . import mechanisms
from . import memberships

uses: stakes
uses: markets
uses: mechanisms
uses: memberships

# ------------------------------------------------------------------ constants

MAX_REDUNDANCY: constant(uint256) = 8  # provers per task
MAX_PROVER_INPUT: constant(uint256) = 4096  # bytes carried in TaskPosted
MAX_URI: constant(uint256) = 256  # characters
MAX_BATCH: constant(uint256) = 64  # items per assign or prove batch

# Bounds on a task's terms, checked at post_task; every later step's arithmetic fits
# in them (a deadline is a timestamp plus at most a window; a decayed or Dutch price
# is at most MAX_REWARD times a window).
MAX_ASSIGN_WINDOW: constant(uint256) = 30 * 86_400  # seconds; also bounds the Dutch ramp
MAX_PROVING_WINDOW: constant(uint256) = 30 * 86_400  # seconds
MAX_REWARD: constant(uint256) = words.MASK80  # wei: max_reward and frontend_fee
MAX_COLLATERAL: constant(uint256) = words.MASK88  # wei: fits the stake word
MAX_CAPABILITIES: constant(uint256) = words.MASK64  # fits the membership word
REVEAL_WINDOW: constant(uint256) = 600  # seconds a commit-reveal race claim has to reveal

# A prover's record on a task (written only when it matters).
ENGAGED: constant(uint8) = 1  # assigned or proved (redundancy above 1)
DECLINED: constant(uint8) = 2
SLASHED: constant(uint8) = 3

# ------------------------------------------------------------------ immutables

# Task ids hash the chain id the registry was deployed on, not the current one: after
# a fork that changes the chain id, live tasks keep their ids and go on being proven,
# slashed and refunded on each side. (Signed Bids do use the current chain id.)
_TASK_CHAIN_ID: immutable(uint256)

# ------------------------------------------------------------------ structs


struct TaskTerms:
    market_id: uint256
    requester: address  # filled by the registry at post: the sender
    posted_at: uint256  # filled by the registry at post: the block's timestamp
    inputs_commitment: bytes32  # keccak256(abi.encode(uint256[] inputs)), address input zeroed
    prover_input_hash: bytes32  # keccak256 of what a prover needs (in TaskPosted, or at a URI)
    max_reward: uint256  # wei, per prover
    frontend_fee: uint256  # wei, per slot, to the frontend whose assignment is proven
    assign_window: uint256  # seconds after posting during which slots may be assigned
    proving_window: uint256  # seconds an assigned prover has (OPEN_RACE: the race)
    collateral: uint256  # wei, per prover
    capabilities: uint256  # bitmask a prover must cover
    redundancy: uint256  # provers, each proves and each is paid
    mechanism_id: uint256  # OPEN_RACE, DUTCH or a registered mechanism
    start_price: uint256  # DUTCH: the price at posting
    ramp: uint256  # DUTCH: seconds for the price to reach max_reward
    decay: bool  # the reward decays over the proving window
    decay_floor: uint256  # wei, what a decaying reward falls to at the deadline
    salt: uint256  # any value: tells apart identical tasks a requester posts in one block


struct Assignment:
    slot: uint256
    price: uint256
    deadline: uint256
    frontend: address  # empty when the prover took the slot itself (DUTCH lock, race commit)


struct AssignmentItem:
    terms: TaskTerms
    prover: address
    price: uint256
    # Optional consent (EIP-712 Bid): empty signature means the prover's ask rules.
    min_price: uint256
    expiry: uint256
    nonce: uint256
    signature: Bytes[bids.SIGNATURE_SIZE]


struct ProofItem:
    terms: TaskTerms
    assignment: Assignment
    public_inputs: DynArray[uint256, markets.MAX_PUBLIC_INPUTS]
    proof: Bytes[markets.MAX_PROOF_SIZE]


struct TaskStatus:
    open: uint256
    assigned: uint256
    proven: uint256
    closed: uint256


# ------------------------------------------------------------------ internal state

_slots: HashMap[bytes32, HashMap[uint256, uint256]]  # the slot word (words.vy)
_engagements: HashMap[bytes32, HashMap[address, uint8]]
_proof_commits: HashMap[bytes32, bool]  # commit-reveal race: digest committed with a claim
_paid_proofs: HashMap[bytes32, bool]  # keccak256(proof) paid in a market that cannot bind
_cancelled: HashMap[bytes32, bool]  # cancelled while a slot was held: it closes, not reopens

# ------------------------------------------------------------------ events


event TaskPosted:
    task_id: indexed(bytes32)
    requester: indexed(address)
    market_id: indexed(uint256)
    terms: TaskTerms
    prover_input: Bytes[MAX_PROVER_INPUT]
    input_uri: String[MAX_URI]


event TaskAssigned:
    task_id: indexed(bytes32)
    prover: indexed(address)
    frontend: indexed(address)
    slot: uint256
    price: uint256
    deadline: uint256


event AssignmentSkipped:
    task_id: indexed(bytes32)
    prover: indexed(address)
    frontend: indexed(address)
    reason: String[reasons.TEXT]


event TaskDeclined:
    task_id: indexed(bytes32)
    prover: indexed(address)
    slot: uint256
    reopened: bool


event ProofCommitted:
    task_id: indexed(bytes32)
    prover: indexed(address)
    digest: bytes32


event TaskProven:
    task_id: indexed(bytes32)
    prover: indexed(address)
    frontend: indexed(address)
    slot: uint256
    paid: uint256
    fee: uint256
    refund: uint256
    public_inputs: DynArray[uint256, markets.MAX_PUBLIC_INPUTS]
    proof: Bytes[markets.MAX_PROOF_SIZE]


event ProofSkipped:
    task_id: indexed(bytes32)
    prover: indexed(address)
    reason: String[reasons.TEXT]


event Slashed:
    task_id: indexed(bytes32)
    prover: indexed(address)
    caller: indexed(address)
    slot: uint256
    collateral: uint256
    to_requester: uint256
    to_caller: uint256
    burnt: uint256
    reopened: bool


event AssignmentVoided:
    task_id: indexed(bytes32)
    prover: indexed(address)
    slot: uint256


event SlotsClosed:
    task_id: indexed(bytes32)
    requester: indexed(address)
    slots: uint256
    refund: uint256
    cancelled: bool  # True: the requester cancelled; False: the windows passed


@deploy
def __init__():
    _TASK_CHAIN_ID = chain.id


# ------------------------------------------------------------------ external


@payable
@external
def post_task(
    terms: TaskTerms, prover_input: Bytes[MAX_PROVER_INPUT], input_uri: String[MAX_URI]
) -> bytes32:
    """
    @notice Post a task and escrow redundancy * (max_reward + frontend_fee).
    @param terms The task's terms; `requester` and `posted_at` are filled by the
           registry (the sender and this block's timestamp). Each is bounded (the
           MAX_ constants); for a registered mechanism the proving window must be
           longer than the market's grace period, so an assigned prover can always
           decline in time.
    @param prover_input What a prover needs to produce the proof, hashing to
           terms.prover_input_hash; may be empty when input_uri is given.
    @param input_uri Where a large prover input can be fetched.
    @return The task id: keccak256(abi.encode(deployment chain id, registry, terms)).
    """
    t: TaskTerms = terms
    t.requester = msg.sender
    t.posted_at = block.timestamp
    head: uint256 = markets._market_head[t.market_id]
    reason: uint256 = reasons.OK
    if head == 0 or head & (words.PAUSED | words.CUSTOM) != 0:  # else known, trusted and open
        reason = markets.refusal(t.market_id, head)
        if reason != reasons.OK:
            reasons.fail(reason)
    limits: uint256 = markets._market_limits[t.market_id]
    if t.redundancy == 0 or t.redundancy > MAX_REDUNDANCY:
        reasons.fail(reasons.REDUNDANCY_OUT_OF_RANGE)
    if t.collateral < limits & words.MASK128:
        reasons.fail(reasons.COLLATERAL_TOO_LOW)
    if t.max_reward < limits >> 128:
        reasons.fail(reasons.REWARD_TOO_LOW)
    if t.max_reward > MAX_REWARD or t.frontend_fee > MAX_REWARD or t.collateral > MAX_COLLATERAL:
        reasons.fail(reasons.AMOUNT_TOO_LARGE)
    if t.proving_window == 0:
        reasons.fail(reasons.ZERO_PROVING_WINDOW)
    # A frontend's assignment can be declined within the grace period, so its window
    # must outlast it. A DUTCH lock or a race commit is taken by a prover who saw the
    # task first, and cannot be declined.
    if t.mechanism_id > mechanisms.DUTCH:
        if t.proving_window <= (head >> words.GRACE_SHIFT) & words.MASK17:
            reasons.fail(reasons.WINDOW_WITHIN_GRACE)
    if t.proving_window > MAX_PROVING_WINDOW:
        reasons.fail(reasons.PROVING_WINDOW_TOO_LONG)
    if t.assign_window > MAX_ASSIGN_WINDOW:
        reasons.fail(reasons.ASSIGN_WINDOW_TOO_LONG)
    if t.ramp > MAX_ASSIGN_WINDOW:
        reasons.fail(reasons.RAMP_TOO_LONG)
    if t.start_price > t.max_reward:
        reasons.fail(reasons.START_PRICE_TOO_HIGH)
    if t.decay_floor > t.max_reward:
        reasons.fail(reasons.DECAY_FLOOR_TOO_HIGH)
    if t.capabilities > MAX_CAPABILITIES:
        reasons.fail(reasons.CAPABILITIES_TOO_WIDE)
    binding: uint256 = (head >> words.BINDING_SHIFT) & words.MASK2
    if t.mechanism_id >= mechanisms.CHAIN:
        # A chain (mechanisms.vy): each link's mechanism known and not retired, a race
        # link only where proofs carry the prover's address (no commit-reveal race in a
        # chain), the low 64 bits zero and the windows adding up to the assignment window.
        # A link of no window is never current (`mechanisms.link_at`) and one of mechanism
        # 0 serves nobody (no frontend, no lock), so either harms nobody; a fee nobody earns
        # comes back with the slot's escrow.
        word: uint256 = t.mechanism_id >> 64
        total: uint256 = 0
        for i: uint256 in range(mechanisms.MAX_LINKS):
            link: uint256 = word & words.MASK32
            if link == mechanisms.OPEN_RACE:
                if binding != markets.BINDING_ADDRESS_INPUT:
                    reason = reasons.CANNOT_BIND
            elif link > mechanisms.DUTCH:
                if reason == reasons.OK:
                    reason = mechanisms.postable(link)
            total = unsafe_add(total, (word >> 32) & words.MASK32)  # 3 x 32 bits
            word = word >> 64
        if total != t.assign_window or t.mechanism_id & words.MASK64 != 0:
            reason = reasons.BAD_CHAIN
    elif t.mechanism_id == mechanisms.OPEN_RACE or t.mechanism_id == mechanisms.DUTCH:
        if t.frontend_fee != 0:
            reason = reasons.FEE_NEEDS_FRONTEND
    else:
        reason = mechanisms.postable(t.mechanism_id)
    if reason != reasons.OK:
        reasons.fail(reason)
    if t.mechanism_id != mechanisms.OPEN_RACE:
        if t.assign_window == 0:
            reasons.fail(reasons.ZERO_ASSIGN_WINDOW)
    # Redundancy means independent provers, which only an address input guarantees:
    # any other proof can be copied (Groth16 proofs can even be re-randomized). A race
    # needs a binding: an address input, or commits that take a slot.
    if t.redundancy > 1:
        if binding != markets.BINDING_ADDRESS_INPUT:
            reasons.fail(reasons.CANNOT_BIND)
    if t.mechanism_id == mechanisms.OPEN_RACE:
        if binding == markets.BINDING_NONE:
            reasons.fail(reasons.CANNOT_BIND)
    if len(prover_input) > 0:
        if keccak256(prover_input) != t.prover_input_hash:
            reasons.fail(reasons.PROVER_INPUT_MISMATCH)
    elif len(input_uri) == 0:
        reasons.fail(reasons.NO_PROVER_INPUT)
    if msg.value != t.redundancy * (t.max_reward + t.frontend_fee):
        reasons.fail(reasons.WRONG_ESCROW)

    task_id: bytes32 = self.id_of(t)
    if self._slots[task_id][0] != 0:
        reasons.fail(reasons.TASK_EXISTS)
    for i: uint256 in range(MAX_REDUNDANCY):
        if i == t.redundancy:
            break
        self._slots[task_id][i] = words.SLOT_OPEN
    log TaskPosted(
        task_id=task_id,
        requester=msg.sender,
        market_id=t.market_id,
        terms=t,
        prover_input=prover_input,
        input_uri=input_uri,
    )
    return task_id


@external
def cancel(terms: TaskTerms):
    """
    @notice Close the task's open slots and refund their escrow; slots held now
            close and refund too if they are declined or slashed later. Not while
            an OPEN_RACE's race is on.
    @param terms The task's terms; only its requester may.
    """
    task_id: bytes32 = self.known(terms)
    if msg.sender != terms.requester:
        reasons.fail(reasons.NOT_REQUESTER)
    if terms.mechanism_id == mechanisms.OPEN_RACE:
        if block.timestamp <= terms.posted_at + terms.proving_window:
            reasons.fail(reasons.RACE_IN_PROGRESS)
    elif terms.mechanism_id >= mechanisms.CHAIN:
        if mechanisms.link_at(terms.mechanism_id, terms.posted_at, block.timestamp) & words.MASK32 == mechanisms.OPEN_RACE:
            reasons.fail(reasons.RACE_IN_PROGRESS)
    closed: uint256 = 0
    held: uint256 = 0
    closed, held = self._close_open_slots(task_id, terms)
    if held > 0:
        self._cancelled[task_id] = True
    elif closed == 0:
        reasons.fail(reasons.NO_OPEN_SLOTS)
    self._refund_closed(task_id, terms, closed, True)


@external
def reclaim(terms: TaskTerms):
    """
    @notice Refund to the requester the escrow of slots nobody filled, once the
            assignment window (OPEN_RACE: the race) is over. Anyone may.
            Assigned slots left unproven are refunded by `slash`.
    @param terms The task's terms.
    """
    task_id: bytes32 = self.known(terms)
    if block.timestamp <= self.assign_end(terms):
        reasons.fail(reasons.WINDOWS_NOT_PASSED)
    closed: uint256 = 0
    held: uint256 = 0
    closed, held = self._close_open_slots(task_id, terms)
    if closed == 0:
        reasons.fail(reasons.NO_OPEN_SLOTS)
    self._refund_closed(task_id, terms, closed, False)


@view
@external
def task_id(terms: TaskTerms) -> bytes32:
    """
    @notice The id of a task with these terms (requester and posted_at included).
    @param terms The terms.
    @return keccak256(abi.encode(deployment chain id, registry, terms)).
    """
    return self.id_of(terms)


@view
@external
def task_status(task_id: bytes32) -> TaskStatus:
    """
    @notice How many of a task's slots are open, assigned, proven and closed.
    @param task_id The task.
    @return The counts; all zero for an unknown task.
    """
    return self.status(task_id)


# ------------------------------------------------------------------ internal


@view
@internal
def id_of(terms: TaskTerms) -> bytes32:
    return keccak256(abi_encode(_TASK_CHAIN_ID, self, terms))


@view
@internal
def known(terms: TaskTerms) -> bytes32:
    """
    @dev The id of a posted task, so its terms are authenticated (and bounded) before
         any arithmetic on them; fails for terms nobody posted.
    """
    task_id: bytes32 = self.id_of(terms)
    if self._slots[task_id][0] == 0:
        reasons.fail(reasons.UNKNOWN_TASK)
    return task_id


@pure
@internal
def assign_end(terms: TaskTerms) -> uint256:
    """
    @dev When slots stop being taken: the assignment window, or for a race its end.
    """
    if terms.mechanism_id == mechanisms.OPEN_RACE:
        return terms.posted_at + terms.proving_window
    return terms.posted_at + terms.assign_window


@pure
@internal
def assignment_word(task_id: bytes32, prover: address, assignment: Assignment) -> uint256:
    digest: uint256 = convert(
        keccak256(
            abi_encode(
                task_id,
                assignment.slot,
                prover,
                assignment.price,
                assignment.deadline,
                assignment.frontend,
            )
        ),
        uint256,
    )
    return (digest & ~words.STATE_MASK) | words.SLOT_ASSIGNED


@view
@internal
def assigned(task_id: bytes32, assignment: Assignment, prover: address) -> bool:
    if assignment.slot >= MAX_REDUNDANCY:
        return False
    return self._slots[task_id][assignment.slot] == self.assignment_word(task_id, prover, assignment)


@view
@internal
def dutch_price(terms: TaskTerms, at: uint256) -> uint256:
    """
    @dev The price a DUTCH task pays a prover that locks it at `at`: start_price rising
         linearly to max_reward over `ramp` seconds.
    """
    if terms.ramp == 0 or at >= terms.posted_at + terms.ramp:
        return terms.max_reward
    elapsed: uint256 = 0
    if at > terms.posted_at:
        elapsed = at - terms.posted_at
    return terms.start_price + (terms.max_reward - terms.start_price) * elapsed // terms.ramp


@pure
@internal
def reward_at(terms: TaskTerms, price: uint256, deadline: uint256, at: uint256) -> uint256:
    """
    @dev What a proof at `at` pays for an agreed price and deadline: the price, or with
         decay a linear fall over the proving window to the floor at the deadline.
    """
    if not terms.decay:
        return price
    least: uint256 = min(terms.decay_floor, price)
    if at >= deadline:
        return least
    remaining: uint256 = min(deadline - at, terms.proving_window)
    return least + (price - least) * remaining // terms.proving_window


@internal
def end_assignment(prover: address, terms: TaskTerms, taken: uint256, earned: uint256):
    """
    @dev Unlock an assignment's collateral and capacity, take `taken` (a slash) and
         credit `earned` (a proof).
    """
    stakes.release(prover, terms.collateral, taken, earned)
    memberships.vacate(prover, terms.market_id)


@view
@internal
def status(task_id: bytes32) -> TaskStatus:
    result: TaskStatus = empty(TaskStatus)
    for i: uint256 in range(MAX_REDUNDANCY):
        word: uint256 = self._slots[task_id][i]
        if word == 0:
            break
        state: uint256 = word & words.STATE_MASK
        if state == words.SLOT_OPEN:
            result.open += 1
        elif state == words.SLOT_ASSIGNED:
            result.assigned += 1
        elif word >> 2 != 0:
            result.proven += 1
        else:
            result.closed += 1
    return result


@view
@internal
def open_slot(task_id: bytes32, redundancy: uint256) -> (uint256, uint256):
    """
    @dev The first open slot and its word, or MAX_REDUNDANCY if none is open.
    """
    for i: uint256 in range(MAX_REDUNDANCY):
        if i == redundancy:
            break
        word: uint256 = self._slots[task_id][i]
        if word & words.STATE_MASK == words.SLOT_OPEN:
            return i, word
    return MAX_REDUNDANCY, 0


@internal
def reopen_or_refund(task_id: bytes32, terms: TaskTerms, slot: uint256) -> bool:
    """
    @dev A slot given back (declined, slashed) reopens while slots may be taken and
         the task is not cancelled; else it closes and its escrow is refunded.
    """
    cancelled: bool = False
    if block.timestamp <= self.assign_end(terms):
        cancelled = self._cancelled[task_id]
        if not cancelled:
            self._slots[task_id][slot] = words.SLOT_OPEN | words.RECORDED
            return True
    self._slots[task_id][slot] = words.SLOT_DONE
    self._refund_closed(task_id, terms, 1, cancelled)
    return False


@internal
def _close_open_slots(task_id: bytes32, terms: TaskTerms) -> (uint256, uint256):
    """
    @dev Close the open slots; returns how many it closed and how many are held.
    """
    closed: uint256 = 0
    held: uint256 = 0
    for i: uint256 in range(MAX_REDUNDANCY):
        if i == terms.redundancy:
            break
        state: uint256 = self._slots[task_id][i] & words.STATE_MASK
        if state == words.SLOT_OPEN:
            self._slots[task_id][i] = words.SLOT_DONE
            closed += 1
        elif state == words.SLOT_ASSIGNED:
            held += 1
    return closed, held


@internal
def _refund_closed(task_id: bytes32, terms: TaskTerms, slots: uint256, cancelled: bool):
    refund: uint256 = slots * (terms.max_reward + terms.frontend_fee)
    stakes.credit(terms.requester, refund)
    log SlotsClosed(
        task_id=task_id, requester=terms.requester, slots=slots, refund=refund, cancelled=cancelled
    )
