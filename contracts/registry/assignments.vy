# pragma version 0.4.3
# pragma nonreentrancy on
"""
@title Assignments: assign, lock, commit, decline, slash
@notice A slot of a task is given to a prover by a frontend of the task's mechanism
        (`assign`, `assign_batch`), or taken by the prover itself (`lock` a DUTCH
        task, `commit_proof` to a commit-reveal race). The one function `_assign`
        holds every assignment rule. A frontend's assignment may be declined within
        the market's grace period; one the prover missed is slashed by anyone, or
        voided if the market is frozen.
"""

from . import bids
from . import markets
from . import mechanisms
from . import memberships
from . import reasons
from . import stakes
from . import tasks
from . import words

uses: bids
uses: markets
uses: mechanisms
uses: memberships
uses: stakes
uses: tasks

# ------------------------------------------------------------------ external


@external
def assign(item: tasks.AssignmentItem):
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
def assign_batch(items: DynArray[tasks.AssignmentItem, tasks.MAX_BATCH]) -> uint256:
    """
    @notice Assign many; an item that does not hold is skipped with an
            AssignmentSkipped event naming why, and the rest apply.
    @param items Assignments, as for `assign`.
    @return How many were applied.
    """
    applied: uint256 = 0
    for item: tasks.AssignmentItem in items:
        reason: uint256 = self._assign(item, msg.sender)
        if reason == reasons.OK:
            applied += 1
        else:
            log tasks.AssignmentSkipped(
                task_id=tasks.id_of(item.terms), prover=item.prover, frontend=msg.sender, reason=reasons.text(reason)
            )
    return applied


@external
def lock(terms: tasks.TaskTerms):
    """
    @notice Take a slot of a DUTCH task at its current price, as the prover. The
            prover saw the task's inputs before locking, so it cannot decline.
    @param terms The task's terms.
    """
    if terms.mechanism_id < mechanisms.CHAIN:
        if terms.mechanism_id != mechanisms.DUTCH:
            reasons.fail(reasons.NOT_DUTCH)  # a chain's current link is checked in _assign
    self._take(terms)


@external
def commit_proof(terms: tasks.TaskTerms, digest: bytes32):
    """
    @notice Race an OPEN_RACE task in a BINDING_COMMIT_REVEAL market: commit to a
            proof already made, which takes a free slot at the reward of this moment,
            locking collateral like an assignment. Reveal it with `prove` (this
            assignment) within tasks.REVEAL_WINDOW, or be slashed. A copier who sees the
            reveal finds no free slot: only the first committer is paid.
    @param terms The task's terms.
    @param digest keccak256(abi.encode(task_id, prover, keccak256(proof))).
    """
    if terms.mechanism_id != mechanisms.OPEN_RACE:
        reasons.fail(reasons.NOT_A_RACE)
    if words.head_binding(markets._market_head[terms.market_id]) != markets.BINDING_COMMIT_REVEAL:
        reasons.fail(reasons.NOT_COMMIT_REVEAL)
    self._take(terms)
    tasks._proof_commits[digest] = True
    log tasks.ProofCommitted(task_id=tasks.id_of(terms), prover=msg.sender, digest=digest)


@external
def decline(terms: tasks.TaskTerms, assignment: tasks.Assignment):
    """
    @notice Give an assignment back within the market's grace period (and before
            its deadline), at no penalty. The slot reopens (or is refunded if the
            assignment window is over or the task was cancelled) and the sender can
            no longer be assigned this task. A slot the prover took itself (a DUTCH
            lock, a race commit) cannot be declined.
    @param terms The task's terms.
    @param assignment The assignment, as in its TaskAssigned event.
    """
    task_id: bytes32 = tasks.id_of(terms)
    if not tasks.assigned(task_id, assignment, msg.sender):
        reasons.fail(reasons.NOT_ASSIGNED)
    if assignment.frontend == empty(address):
        reasons.fail(reasons.LOCKED_SLOT)
    assigned_at: uint256 = assignment.deadline - terms.proving_window
    grace_end: uint256 = assigned_at + words.head_grace(markets._market_head[terms.market_id])
    if block.timestamp > min(grace_end, assignment.deadline):
        reasons.fail(reasons.GRACE_OVER)
    tasks.end_assignment(msg.sender, terms, 0, 0)
    tasks._engagements[task_id][msg.sender] = tasks.DECLINED
    reopened: bool = tasks.reopen_or_refund(task_id, terms, assignment.slot)
    log tasks.TaskDeclined(task_id=task_id, prover=msg.sender, slot=assignment.slot, reopened=reopened)


@external
def slash(terms: tasks.TaskTerms, prover: address, assignment: tasks.Assignment):
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
    task_id: bytes32 = tasks.id_of(terms)
    if not tasks.assigned(task_id, assignment, prover):
        reasons.fail(reasons.NOT_ASSIGNED)
    head: uint256 = markets._market_head[terms.market_id]
    if markets.frozen(terms.market_id, head):
        # Not the verifier everyone agreed to: nobody is punished. The prover gets its
        # collateral back and the requester the slot's escrow.
        tasks.end_assignment(prover, terms, 0, 0)
        tasks._slots[task_id][assignment.slot] = words.SLOT_DONE
        stakes.credit(terms.requester, terms.max_reward + terms.frontend_fee)
        log tasks.AssignmentVoided(task_id=task_id, prover=prover, slot=assignment.slot)
        return
    if block.timestamp <= assignment.deadline:
        reasons.fail(reasons.DEADLINE_NOT_PASSED)
    collateral: uint256 = terms.collateral
    tasks.end_assignment(prover, terms, collateral, 0)
    tasks._engagements[task_id][prover] = tasks.SLASHED

    to_requester: uint256 = min(collateral * words.head_requester_bps(head) // markets.BPS, terms.max_reward)
    to_caller: uint256 = 0
    # A requester or prover slashing itself would take the bounty on top of its share.
    if msg.sender != terms.requester:
        if msg.sender != prover:
            to_caller = collateral * words.head_caller_bps(head) // markets.BPS
    burn: uint256 = collateral - to_requester - to_caller
    stakes.credit(terms.requester, to_requester)
    stakes.credit(msg.sender, to_caller)
    stakes.burnt += burn
    reopened: bool = tasks.reopen_or_refund(task_id, terms, assignment.slot)
    log tasks.Slashed(
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


# ------------------------------------------------------------------ internal


@internal
def _take(terms: tasks.TaskTerms):
    """
    @dev The sender takes a slot itself (a DUTCH lock or a race commit), at the price
         the registry sets.
    """
    item: tasks.AssignmentItem = tasks.AssignmentItem(
        terms=terms, prover=msg.sender, price=0, min_price=0, expiry=0, nonce=0, signature=b""
    )
    reason: uint256 = self._assign(item, empty(address))
    if reason != reasons.OK:
        reasons.fail(reason)


@internal
def _assign(item: tasks.AssignmentItem, frontend: address) -> uint256:
    """
    @dev The one place the assignment rules live: returns why `item` does not hold, or
         applies it and returns "". `frontend` is empty when the prover takes the slot
         itself: a DUTCH lock at the current price, or a commit-reveal race commit at
         the race's reward now, due within tasks.REVEAL_WINDOW. Nothing here can revert on
         an item's data: the terms are authenticated (a known task) before any
         arithmetic, and a known task's terms were bounded at post.
    """
    terms: tasks.TaskTerms = item.terms
    prover: address = item.prover
    task_id: bytes32 = tasks.id_of(terms)
    if tasks._slots[task_id][0] == 0:
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
    if mechanism_id >= mechanisms.CHAIN:
        # A chain: the mechanism is its link current now, as mechanisms.link_at finds it,
        # unrolled here (no call, no loop) so that an assignment costs no more than a
        # single task's. Link i is current after the previous link's end (posting, for
        # the first) up to and with its own: posting plus the windows of links 1 to i (no
        # sum overflows: bounded at post). Shifts cut the fields out of the terms' word:
        # << 160 >> 224 is link 1's mechanism, << 128 >> 224 its window, << 96 and << 64
        # link 2's, << 32 and >> 224 alone link 3's. A current link ends within the
        # assignment window, so a chain needs no expiry check; a link of mechanism 0 (a
        # hand-made chain's) serves nobody: the checks below refuse it.
        if block.timestamp > unsafe_add(terms.posted_at, mechanism_id << 128 >> 224):
            second_end: uint256 = unsafe_add(
                unsafe_add(terms.posted_at, mechanism_id << 128 >> 224), mechanism_id << 64 >> 224
            )
            if block.timestamp > second_end:
                if block.timestamp > unsafe_add(second_end, mechanism_id >> 224):
                    return reasons.TASK_EXPIRED  # past the last link
                mechanism_id = mechanism_id << 32 >> 224
            else:
                mechanism_id = mechanism_id << 96 >> 224
        else:
            mechanism_id = mechanism_id << 160 >> 224  # the first link: the common case
        if frontend == empty(address):
            if mechanism_id != mechanisms.DUTCH:
                return reasons.NOT_DUTCH  # only a lock takes a chain's slot itself
    else:
        # A single mechanism, until its window's end (a race's: the proving window's).
        end: uint256 = terms.posted_at + terms.assign_window
        if mechanism_id == mechanisms.OPEN_RACE:
            end = terms.posted_at + terms.proving_window
        if block.timestamp > end:
            return reasons.TASK_EXPIRED
    if frontend != empty(address):
        if mechanism_id <= mechanisms.DUTCH:  # built in, or a hand-made chain link of mechanism 0
            return reasons.NOT_FOR_FRONTENDS
        if not mechanisms._frontends[mechanism_id][frontend]:
            return reasons.NOT_A_FRONTEND
    membership: uint256 = memberships._memberships[prover][market_id]
    if membership & words.JOINED == 0:
        return reasons.NOT_IN_MARKET
    if frontend != empty(address):
        # An acceptance holds for the join it was made in: its epoch, 1 up.
        if memberships._accepts[prover][market_id][mechanism_id] != membership >> words.EPOCH_SHIFT:
            return reasons.MECHANISM_NOT_ACCEPTED
    slot: uint256 = 0
    slot_word: uint256 = 0
    slot, slot_word = tasks.open_slot(task_id, terms.redundancy)
    # A prover's record on the task exists only for redundancy above 1 or once a
    # slot was reopened: skip the cold read otherwise.
    if terms.redundancy > 1 or (slot != tasks.MAX_REDUNDANCY and slot_word & words.RECORDED != 0):
        record: uint8 = tasks._engagements[task_id][prover]
        if record == tasks.ENGAGED:
            return reasons.ALREADY_ON_TASK
        if record == tasks.DECLINED:
            return reasons.DECLINED_TASK
        if record == tasks.SLASHED:
            return reasons.SLASHED_ON_TASK
    if slot == tasks.MAX_REDUNDANCY:
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
        if mechanism_id == mechanisms.DUTCH:
            # A chain's DUTCH link too: the price rises from posting.
            price = tasks.dutch_price(terms, block.timestamp)
        else:
            # A race commit (a single OPEN_RACE task): its reward at the race's end.
            price = tasks.reward_at(terms, terms.max_reward, unsafe_add(terms.posted_at, terms.proving_window), block.timestamp)
            window = tasks.REVEAL_WINDOW
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

    # The item holds: lock collateral (free stake was checked above) and a unit of
    # capacity in the words just read, fill the slot.
    stakes._stakes[prover] = stake_word + (terms.collateral << words.LOCKED_SHIFT)
    memberships._memberships[prover][market_id] = membership + words.ONE_USED
    if terms.redundancy > 1:
        tasks._engagements[task_id][prover] = tasks.ENGAGED
    assignment: tasks.Assignment = tasks.Assignment(
        slot=slot, price=price, deadline=block.timestamp + window, frontend=frontend
    )
    tasks._slots[task_id][slot] = tasks.assignment_word(task_id, prover, assignment)
    log tasks.TaskAssigned(
        task_id=task_id,
        prover=prover,
        frontend=frontend,
        slot=slot,
        price=price,
        deadline=assignment.deadline,
    )
    return reasons.OK
