# pragma version 0.4.3
# pragma nonreentrancy on
"""
@title Tasks: post, assign, prove, decline, slash, cancel, reclaim
@notice A task escrows redundancy * (max_reward + frontend_fee) and carries its terms.
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

from . import reasons
from . import words
from . import stakes
from . import markets
from . import mechanisms
from . import memberships
from . import bids

uses: stakes
uses: markets
uses: mechanisms
uses: memberships
uses: bids

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
    if t.mechanism_id > mechanisms.DUTCH and t.proving_window <= (head >> words.GRACE_SHIFT) & words.MASK32:
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
    if t.mechanism_id == mechanisms.OPEN_RACE or t.mechanism_id == mechanisms.DUTCH:
        if t.frontend_fee != 0:
            reasons.fail(reasons.FEE_NEEDS_FRONTEND)
    else:
        reason = mechanisms.postable(t.mechanism_id)
        if reason != reasons.OK:
            reasons.fail(reason)
    if t.mechanism_id != mechanisms.OPEN_RACE and t.assign_window == 0:
        reasons.fail(reasons.ZERO_ASSIGN_WINDOW)
    # Redundancy means independent provers, which only an address input guarantees:
    # any other proof can be copied (Groth16 proofs can even be re-randomized). A race
    # needs a binding: an address input, or commits that take a slot.
    binding: uint256 = (head >> words.BINDING_SHIFT) & 255
    if t.redundancy > 1 and binding != markets.BINDING_ADDRESS_INPUT:
        reasons.fail(reasons.CANNOT_BIND)
    if t.mechanism_id == mechanisms.OPEN_RACE and binding == markets.BINDING_NONE:
        reasons.fail(reasons.CANNOT_BIND)
    if len(prover_input) > 0:
        if keccak256(prover_input) != t.prover_input_hash:
            reasons.fail(reasons.PROVER_INPUT_MISMATCH)
    elif len(input_uri) == 0:
        reasons.fail(reasons.NO_PROVER_INPUT)
    if msg.value != t.redundancy * (t.max_reward + t.frontend_fee):
        reasons.fail(reasons.WRONG_ESCROW)

    task_id: bytes32 = self._task_id(t)
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
def assign(item: AssignmentItem):
    """
    @notice Assign a task to a prover, as a frontend of the task's mechanism.
            Reverts with the reason the assignment does not hold.
    @param item The task's terms, the prover, the price and the prover's
           optional signed Bid.
    """
    reason: uint256 = self._assign(item, msg.sender)
    if reason != reasons.OK:
        reasons.fail(reason)


@external
def assign_batch(items: DynArray[AssignmentItem, MAX_BATCH]) -> uint256:
    """
    @notice Assign many; an item that does not hold is skipped with an
            AssignmentSkipped event naming why, and the rest apply.
    @param items Assignments, as for `assign`.
    @return How many were applied.
    """
    applied: uint256 = 0
    for item: AssignmentItem in items:
        reason: uint256 = self._assign(item, msg.sender)
        if reason == reasons.OK:
            applied += 1
        else:
            log AssignmentSkipped(
                task_id=self._task_id(item.terms), prover=item.prover, frontend=msg.sender, reason=reasons.text(reason)
            )
    return applied


@external
def lock(terms: TaskTerms):
    """
    @notice Take a slot of a DUTCH task at its current price, as the prover. The
            prover saw the task's inputs before locking, so it cannot decline.
    @param terms The task's terms.
    """
    if terms.mechanism_id != mechanisms.DUTCH:
        reasons.fail(reasons.NOT_DUTCH)
    self._take(terms)


@external
def commit_proof(terms: TaskTerms, digest: bytes32):
    """
    @notice Race an OPEN_RACE task in a BINDING_COMMIT_REVEAL market: commit to a
            proof already made, which takes a free slot at the reward of this moment,
            locking collateral like an assignment. Reveal it with `prove` (this
            assignment) within REVEAL_WINDOW, or be slashed. A copier who sees the
            reveal finds no free slot: only the first committer is paid.
    @param terms The task's terms.
    @param digest keccak256(abi.encode(task_id, prover, keccak256(proof))).
    """
    if terms.mechanism_id != mechanisms.OPEN_RACE:
        reasons.fail(reasons.NOT_A_RACE)
    if words.head_binding(markets.head(terms.market_id)) != markets.BINDING_COMMIT_REVEAL:
        reasons.fail(reasons.NOT_COMMIT_REVEAL)
    self._take(terms)
    self._proof_commits[digest] = True
    log ProofCommitted(task_id=self._task_id(terms), prover=msg.sender, digest=digest)


@external
def decline(terms: TaskTerms, assignment: Assignment):
    """
    @notice Give an assignment back within the market's grace period (and before
            its deadline), at no penalty. The slot reopens (or is refunded if the
            assignment window is over or the task was cancelled) and the sender can
            no longer be assigned this task. A slot the prover took itself (a DUTCH
            lock, a race commit) cannot be declined.
    @param terms The task's terms.
    @param assignment The assignment, as in its TaskAssigned event.
    """
    task_id: bytes32 = self._task_id(terms)
    if not self._assigned(task_id, assignment, msg.sender):
        reasons.fail(reasons.NOT_ASSIGNED)
    if assignment.frontend == empty(address):
        reasons.fail(reasons.LOCKED_SLOT)
    assigned_at: uint256 = assignment.deadline - terms.proving_window
    grace_end: uint256 = assigned_at + words.head_grace(markets.head(terms.market_id))
    if block.timestamp > min(grace_end, assignment.deadline):
        reasons.fail(reasons.GRACE_OVER)
    self._end_assignment(msg.sender, terms, 0, 0)
    self._engagements[task_id][msg.sender] = DECLINED
    reopened: bool = self._reopen_or_refund(task_id, terms, assignment.slot)
    log TaskDeclined(task_id=task_id, prover=msg.sender, slot=assignment.slot, reopened=reopened)


@external
def prove(
    terms: TaskTerms,
    assignment: Assignment,
    public_inputs: DynArray[uint256, markets.MAX_PUBLIC_INPUTS],
    proof: Bytes[markets.MAX_PROOF_SIZE],
):
    """
    @notice Submit the proof of an assignment, or of an OPEN_RACE task in a market
            with an address input (then `assignment` is ignored). A valid proof in
            time credits the prover its price (decayed if the task says so), the
            frontend its fee and the requester the rest of the slot's escrow, and
            frees collateral and capacity.
    @param terms The task's terms.
    @param assignment The sender's assignment, as in its TaskAssigned event.
    @param public_inputs The proof's public inputs; the market's address input,
           if any, is overwritten with the sender's address.
    @param proof The proof bytes.
    """
    reason: uint256 = self._prove(terms, assignment, public_inputs, proof)
    if reason != reasons.OK:
        reasons.fail(reason)


@external
def prove_batch(items: DynArray[ProofItem, MAX_BATCH]) -> uint256:
    """
    @notice Submit many proofs; one that does not hold is skipped with a
            ProofSkipped event naming why (a rival filled the race, the deadline
            passed), and the rest apply.
    @param items Proofs, as for `prove`.
    @return How many were applied.
    """
    applied: uint256 = 0
    for item: ProofItem in items:
        reason: uint256 = self._prove(item.terms, item.assignment, item.public_inputs, item.proof)
        if reason == reasons.OK:
            applied += 1
        else:
            log ProofSkipped(task_id=self._task_id(item.terms), prover=msg.sender, reason=reasons.text(reason))
    return applied


@external
def slash(terms: TaskTerms, prover: address, assignment: Assignment):
    """
    @notice Slash an assignment whose deadline passed without a proof. Anyone may.
            Its collateral is split as the market says, except that the caller's
            bounty is burnt when the caller is the task's requester or the slashed
            prover; the slot reopens while the assignment window lasts and the task
            is not cancelled, else its escrow is refunded.
            In a frozen market (its custom verifier's code changed) nobody is
            slashed, deadline or not: the assignment is voided, the collateral freed
            and the slot's escrow refunded (AssignmentVoided).
    @param terms The task's terms.
    @param prover The assigned prover.
    @param assignment The assignment, as in its TaskAssigned event.
    """
    task_id: bytes32 = self._task_id(terms)
    if not self._assigned(task_id, assignment, prover):
        reasons.fail(reasons.NOT_ASSIGNED)
    head: uint256 = markets.head(terms.market_id)
    if markets.frozen(terms.market_id, head):
        # Not the verifier everyone agreed to: nobody is punished. The prover gets its
        # collateral back and the requester the slot's escrow.
        self._end_assignment(prover, terms, 0, 0)
        self._slots[task_id][assignment.slot] = words.SLOT_DONE
        stakes.credit(terms.requester, terms.max_reward + terms.frontend_fee)
        log AssignmentVoided(task_id=task_id, prover=prover, slot=assignment.slot)
        return
    if block.timestamp <= assignment.deadline:
        reasons.fail(reasons.DEADLINE_NOT_PASSED)
    collateral: uint256 = terms.collateral
    self._end_assignment(prover, terms, collateral, 0)
    self._engagements[task_id][prover] = SLASHED

    to_requester: uint256 = min(collateral * words.head_requester_bps(head) // markets.BPS, terms.max_reward)
    to_caller: uint256 = 0
    # A requester or prover slashing itself would take the bounty on top of its share.
    if msg.sender != terms.requester and msg.sender != prover:
        to_caller = collateral * words.head_caller_bps(head) // markets.BPS
    burn: uint256 = collateral - to_requester - to_caller
    stakes.credit(terms.requester, to_requester)
    stakes.credit(msg.sender, to_caller)
    stakes.burn(burn)
    reopened: bool = self._reopen_or_refund(task_id, terms, assignment.slot)
    log Slashed(
        task_id=task_id,
        prover=prover,
        caller=msg.sender,
        slot=assignment.slot,
        collateral=collateral,
        to_requester=to_requester,
        to_caller=to_caller,
        burnt=burn,
        reopened=reopened,
    )


@external
def cancel(terms: TaskTerms):
    """
    @notice Close the task's open slots and refund their escrow; slots held now
            close and refund too if they are declined or slashed later. Not while
            an OPEN_RACE's race is on.
    @param terms The task's terms; only its requester may.
    """
    task_id: bytes32 = self._known(terms)
    if msg.sender != terms.requester:
        reasons.fail(reasons.NOT_REQUESTER)
    if terms.mechanism_id == mechanisms.OPEN_RACE:
        if block.timestamp <= terms.posted_at + terms.proving_window:
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
    task_id: bytes32 = self._known(terms)
    if block.timestamp <= self._assign_end(terms):
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
    return self._task_id(terms)


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
def _task_id(terms: TaskTerms) -> bytes32:
    return keccak256(abi_encode(_TASK_CHAIN_ID, self, terms))


@view
@internal
def _known(terms: TaskTerms) -> bytes32:
    """
    @dev The id of a posted task, so its terms are authenticated (and bounded) before
         any arithmetic on them; fails for terms nobody posted.
    """
    task_id: bytes32 = self._task_id(terms)
    if self._slots[task_id][0] == 0:
        reasons.fail(reasons.UNKNOWN_TASK)
    return task_id


@pure
@internal
def _assign_end(terms: TaskTerms) -> uint256:
    """
    @dev When slots stop being taken: the assignment window, or for a race its end.
    """
    if terms.mechanism_id == mechanisms.OPEN_RACE:
        return terms.posted_at + terms.proving_window
    return terms.posted_at + terms.assign_window


@pure
@internal
def _assignment_word(task_id: bytes32, prover: address, assignment: Assignment) -> uint256:
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
def _assigned(task_id: bytes32, assignment: Assignment, prover: address) -> bool:
    if assignment.slot >= MAX_REDUNDANCY:
        return False
    return self._slots[task_id][assignment.slot] == self._assignment_word(task_id, prover, assignment)


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
def _take(terms: TaskTerms):
    """
    @dev The sender takes a slot itself (a DUTCH lock or a race commit), at the price
         the registry sets.
    """
    item: AssignmentItem = AssignmentItem(
        terms=terms, prover=msg.sender, price=0, min_price=0, expiry=0, nonce=0, signature=b""
    )
    reason: uint256 = self._assign(item, empty(address))
    if reason != reasons.OK:
        reasons.fail(reason)


@internal
def _assign(item: AssignmentItem, frontend: address) -> uint256:
    """
    @dev The one place the assignment rules live: returns why `item` does not hold, or
         applies it and returns "". `frontend` is empty when the prover takes the slot
         itself: a DUTCH lock at the current price, or a commit-reveal race commit at
         the race's reward now, due within REVEAL_WINDOW. Nothing here can revert on
         an item's data: the terms are authenticated (a known task) before any
         arithmetic, and a known task's terms were bounded at post.
    """
    terms: TaskTerms = item.terms
    prover: address = item.prover
    task_id: bytes32 = self._task_id(terms)
    if self._slots[task_id][0] == 0:
        return reasons.UNKNOWN_TASK
    market_id: uint256 = terms.market_id
    mechanism_id: uint256 = terms.mechanism_id
    # The hot path of every assignment reads the packed words inline, in the layout
    # words.vy names: an internal call per field would cost more gas than the rule.
    head: uint256 = markets._market_head[market_id]
    reason: uint256 = reasons.OK
    if head & (words.PAUSED | words.CUSTOM) != 0:  # else trusted and open: nothing to ask
        reason = markets.refusal(market_id, head)
        if reason != reasons.OK:
            return reason
    if frontend != empty(address):
        if mechanism_id <= mechanisms.DUTCH:  # a posted task names a mechanism from 1 up
            return reasons.NOT_FOR_FRONTENDS
        if not mechanisms._frontends[mechanism_id][frontend]:
            return reasons.NOT_A_FRONTEND
    end: uint256 = terms.posted_at + terms.assign_window
    if mechanism_id == mechanisms.OPEN_RACE:
        end = terms.posted_at + terms.proving_window
    if block.timestamp > end:
        return reasons.TASK_EXPIRED
    membership: uint256 = memberships._memberships[prover][market_id]
    if membership & words.JOINED == 0:
        return reasons.NOT_IN_MARKET
    if frontend != empty(address):
        # An acceptance holds for the join it was made in: its epoch, 1 up.
        if memberships._accepts[prover][market_id][mechanism_id] != membership >> words.EPOCH_SHIFT:
            return reasons.MECHANISM_NOT_ACCEPTED
    slot: uint256 = 0
    slot_word: uint256 = 0
    slot, slot_word = self._open_slot(task_id, terms.redundancy)
    # A prover's record on the task exists only for redundancy above 1 or once a
    # slot was reopened: skip the cold read otherwise.
    if terms.redundancy > 1 or (slot != MAX_REDUNDANCY and slot_word & words.RECORDED != 0):
        record: uint8 = self._engagements[task_id][prover]
        if record == ENGAGED:
            return reasons.ALREADY_ON_TASK
        if record == DECLINED:
            return reasons.DECLINED_TASK
        if record == SLASHED:
            return reasons.SLASHED_ON_TASK
    if slot == MAX_REDUNDANCY:
        return reasons.NO_FREE_SLOT

    if (membership >> words.USED_SHIFT) & words.MASK16 >= (membership >> words.CAPACITY_SHIFT) & words.MASK16:
        return reasons.AT_CAPACITY
    stake_word: uint256 = stakes._stakes[prover]
    if (stake_word & words.MASK88) - ((stake_word >> words.LOCKED_SHIFT) & words.MASK88) < terms.collateral:
        return reasons.NOT_ENOUGH_FREE_STAKE
    # Capabilities were bounded to 64 bits at post: the AND keeps only the field's bits.
    if (membership >> words.CAPABILITIES_SHIFT) & terms.capabilities != terms.capabilities:
        return reasons.LACKS_CAPABILITIES
    if (membership >> words.PROVING_TIME_SHIFT) & words.MASK32 > terms.proving_window:
        return reasons.TOO_SLOW
    price: uint256 = item.price
    window: uint256 = terms.proving_window
    if frontend == empty(address):
        if terms.mechanism_id == mechanisms.DUTCH:
            price = self.dutch_price(terms, block.timestamp)
        else:
            price = self.reward_at(terms, terms.max_reward, end, block.timestamp)
            window = REVEAL_WINDOW
    if price > terms.max_reward:
        return reasons.PRICE_ABOVE_MAXIMUM
    if len(item.signature) > 0:
        reason = bids.check(
            task_id, prover, price, item.min_price, item.expiry, item.nonce, item.signature
        )
        if reason != reasons.OK:
            return reason
    elif price < membership & words.MASK96:
        return reasons.PRICE_BELOW_ASK

    # The item holds: lock collateral and a unit of capacity, fill the slot.
    stakes.lock(prover, stake_word, terms.collateral)
    memberships.occupy(prover, market_id, membership)
    if terms.redundancy > 1:
        self._engagements[task_id][prover] = ENGAGED
    assignment: Assignment = Assignment(
        slot=slot, price=price, deadline=block.timestamp + window, frontend=frontend
    )
    self._slots[task_id][slot] = self._assignment_word(task_id, prover, assignment)
    log TaskAssigned(
        task_id=task_id,
        prover=prover,
        frontend=frontend,
        slot=slot,
        price=price,
        deadline=assignment.deadline,
    )
    return reasons.OK


@internal
def _prove(
    terms: TaskTerms,
    assignment: Assignment,
    public_inputs: DynArray[uint256, markets.MAX_PUBLIC_INPUTS],
    proof: Bytes[markets.MAX_PROOF_SIZE],
) -> uint256:
    """
    @dev Returns why the proof is not accepted, or pays it and returns "". Every check
         comes before the first write, so a refusal changes nothing.
    """
    task_id: bytes32 = self._task_id(terms)
    if self._slots[task_id][0] == 0:
        return reasons.UNKNOWN_TASK
    head: uint256 = markets._market_head[terms.market_id]  # inline, as in _assign
    if head & words.CUSTOM != 0 and markets.frozen(terms.market_id, head):
        return reasons.VERIFIER_CHANGED
    binding: uint256 = (head >> words.BINDING_SHIFT) & 255
    race: bool = terms.mechanism_id == mechanisms.OPEN_RACE and binding != markets.BINDING_COMMIT_REVEAL
    slot: uint256 = 0
    paid: uint256 = 0
    frontend: address = empty(address)

    if race:
        # Anyone eligible may prove; the first `redundancy` valid proofs are paid.
        deadline: uint256 = self._assign_end(terms)
        if block.timestamp > deadline:
            return reasons.RACE_OVER
        membership: uint256 = memberships.word(msg.sender, terms.market_id)
        if membership & words.JOINED == 0:
            return reasons.NOT_IN_MARKET
        if words.member_capabilities(membership) & terms.capabilities != terms.capabilities:
            return reasons.LACKS_CAPABILITIES
        if words.stake_free(stakes.word(msg.sender)) < terms.collateral:
            return reasons.NOT_ENOUGH_FREE_STAKE
        if terms.redundancy > 1:
            if self._engagements[task_id][msg.sender] != 0:
                return reasons.ALREADY_ON_TASK
        slot_word: uint256 = 0
        slot, slot_word = self._open_slot(task_id, terms.redundancy)
        if slot == MAX_REDUNDANCY:
            return reasons.NO_FREE_SLOT
        paid = self.reward_at(terms, terms.max_reward, deadline, block.timestamp)
    else:
        if not self._assigned(task_id, assignment, msg.sender):
            if terms.mechanism_id == mechanisms.OPEN_RACE:
                return reasons.PROOF_NOT_COMMITTED  # a commit-reveal race: commit first
            return reasons.NOT_ASSIGNED
        if block.timestamp > assignment.deadline:
            return reasons.DEADLINE_PASSED
        slot = assignment.slot
        frontend = assignment.frontend
        if terms.mechanism_id == mechanisms.OPEN_RACE:
            # A commit-reveal race claim: its reward was fixed at the commit, and the
            # proof must be the one committed.
            if not self._proof_commits[keccak256(abi_encode(task_id, msg.sender, keccak256(proof)))]:
                return reasons.PROOF_NOT_COMMITTED
            paid = assignment.price
        elif terms.decay:
            paid = self.reward_at(terms, assignment.price, assignment.deadline, block.timestamp)
        else:
            paid = assignment.price

    # Bind the proof to its sender, check the inputs, then the proof.
    inputs: DynArray[uint256, markets.MAX_PUBLIC_INPUTS] = public_inputs
    index: uint256 = (head >> words.ADDRESS_INPUT_SHIFT) & 255
    if binding == markets.BINDING_ADDRESS_INPUT:
        if index >= len(inputs):
            return reasons.ADDRESS_INPUT_MISSING
        inputs[index] = 0
    if keccak256(abi_encode(inputs)) != terms.inputs_commitment:
        return reasons.INPUTS_MISMATCH
    proof_hash: bytes32 = empty(bytes32)
    if binding == markets.BINDING_ADDRESS_INPUT:
        inputs[index] = convert(msg.sender, uint256)
    else:
        # Nothing ties this proof to its sender: a proof already paid (on a task with
        # the same inputs, say) is someone else's work.
        proof_hash = keccak256(proof)
        if self._paid_proofs[proof_hash]:
            return reasons.PROOF_ALREADY_PAID
    reason: uint256 = markets.verify(words.to_address(head), inputs, proof)
    if reason != reasons.OK:
        return reason

    # Pay: the prover its (decayed) price, the frontend its fee, the requester the rest.
    if binding != markets.BINDING_ADDRESS_INPUT:
        self._paid_proofs[proof_hash] = True
    if race:
        if terms.redundancy > 1:
            self._engagements[task_id][msg.sender] = ENGAGED
        stakes.earn(msg.sender, paid)
    else:
        stakes.release(msg.sender, terms.collateral, 0, paid)
        memberships.vacate(msg.sender, terms.market_id)
    fee: uint256 = 0
    if frontend != empty(address):
        fee = terms.frontend_fee
    refund: uint256 = terms.max_reward + terms.frontend_fee - paid - fee
    stakes.credit(frontend, fee)
    stakes.credit(terms.requester, refund)
    self._slots[task_id][slot] = block.number << 2 | words.SLOT_DONE
    log TaskProven(
        task_id=task_id,
        prover=msg.sender,
        frontend=frontend,
        slot=slot,
        paid=paid,
        fee=fee,
        refund=refund,
        public_inputs=inputs,
        proof=proof,
    )
    return reasons.OK


@internal
def _end_assignment(prover: address, terms: TaskTerms, taken: uint256, earned: uint256):
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
def _open_slot(task_id: bytes32, redundancy: uint256) -> (uint256, uint256):
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
def _reopen_or_refund(task_id: bytes32, terms: TaskTerms, slot: uint256) -> bool:
    """
    @dev A slot given back (declined, slashed) reopens while slots may be taken and
         the task is not cancelled; else it closes and its escrow is refunded.
    """
    cancelled: bool = False
    if block.timestamp <= self._assign_end(terms):
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
