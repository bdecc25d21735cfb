# pragma version 0.4.3
# pragma nonreentrancy on
"""
@title Proofs: prove, prove_batch
@notice A proof pays a live assignment, or takes a slot of an open race in a market
        whose proofs carry the prover's address. It is checked against the task's
        committed inputs, bound to its sender and judged by the market's verifier.
        A batch skips a proof that does not hold, with a ProofSkipped event.
"""

from . import markets
from . import mechanisms
from . import memberships
from . import reasons
from . import stakes
from . import tasks
from . import words

uses: markets
uses: memberships
uses: stakes
uses: tasks

# ------------------------------------------------------------------ external


@external
def prove(
    terms: tasks.TaskTerms,
    assignment: tasks.Assignment,
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
def prove_batch(items: DynArray[tasks.ProofItem, tasks.MAX_BATCH]) -> uint256:
    """
    @notice Submit many proofs; one that does not hold is skipped with a
            ProofSkipped event naming why (a rival filled the race, the deadline
            passed), and the rest apply.
    @param items Proofs, as for `prove`.
    @return How many were applied.
    """
    applied: uint256 = 0
    for item: tasks.ProofItem in items:
        reason: uint256 = self._prove(item.terms, item.assignment, item.public_inputs, item.proof)
        if reason == reasons.OK:
            applied += 1
        else:
            log tasks.ProofSkipped(task_id=tasks.id_of(item.terms), prover=msg.sender, reason=reasons.text(reason))
    return applied


# ------------------------------------------------------------------ internal


@internal
def _prove(
    terms: tasks.TaskTerms,
    assignment: tasks.Assignment,
    public_inputs: DynArray[uint256, markets.MAX_PUBLIC_INPUTS],
    proof: Bytes[markets.MAX_PROOF_SIZE],
) -> uint256:
    """
    @dev Returns why the proof is not accepted, or pays it and returns "". Every check
         comes before the first write, so a refusal changes nothing.
    """
    task_id: bytes32 = tasks.id_of(terms)
    if tasks._slots[task_id][0] == 0:
        return reasons.UNKNOWN_TASK
    head: uint256 = markets._market_head[terms.market_id]  # inline, as in _assign
    if head & words.CUSTOM != 0:
        if markets.frozen(terms.market_id, head):
            return reasons.VERIFIER_CHANGED
    binding: uint256 = (head >> words.BINDING_SHIFT) & words.MASK2
    race: bool = terms.mechanism_id == mechanisms.OPEN_RACE and binding != markets.BINDING_COMMIT_REVEAL
    slot: uint256 = 0
    paid: uint256 = 0
    frontend: address = empty(address)
    deadline: uint256 = 0
    start: uint256 = terms.posted_at  # when the slot was taken, for the index's latency
    if assignment.deadline == 0:
        if terms.mechanism_id >= mechanisms.CHAIN:
            # A proof with no assignment on a chain races, while a race link is current.
            link: uint256 = mechanisms.link_at(terms.mechanism_id, terms.posted_at, block.timestamp)
            race = link & words.MASK32 == mechanisms.OPEN_RACE
            deadline = link >> 64
            start = unsafe_sub(deadline, (link >> 32) & words.MASK32)  # the link's start

    if race:
        # Anyone eligible may prove; the first `redundancy` valid proofs are paid.
        if deadline == 0:
            deadline = tasks.assign_end(terms)
        if block.timestamp > deadline:
            return reasons.RACE_OVER
        # The packed words read inline, as in _assign (words.vy names the layout).
        membership: uint256 = memberships._memberships[msg.sender][terms.market_id]
        if membership & words.JOINED == 0:
            return reasons.NOT_IN_MARKET
        # Capabilities were bounded to 64 bits at post: the AND keeps only the field's bits.
        if (membership >> words.CAPABILITIES_SHIFT) & terms.capabilities != terms.capabilities:
            return reasons.LACKS_CAPABILITIES
        stake_word: uint256 = stakes._stakes[msg.sender]
        if (stake_word & words.MASK88) - ((stake_word >> words.LOCKED_SHIFT) & words.MASK88) < terms.collateral:
            return reasons.NOT_ENOUGH_FREE_STAKE
        if terms.redundancy > 1:
            if tasks._engagements[task_id][msg.sender] != 0:
                return reasons.ALREADY_ON_TASK
        slot_word: uint256 = 0
        slot, slot_word = tasks.open_slot(task_id, terms.redundancy)
        if slot == tasks.MAX_REDUNDANCY:
            return reasons.NO_FREE_SLOT
        paid = tasks.reward_at(terms, terms.max_reward, deadline, block.timestamp)
    else:
        if not tasks.assigned(task_id, assignment, msg.sender):
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
            if not tasks._proof_commits[keccak256(abi_encode(task_id, msg.sender, keccak256(proof)))]:
                return reasons.PROOF_NOT_COMMITTED
            paid = assignment.price
        else:
            start = unsafe_sub(assignment.deadline, terms.proving_window)  # assigned then
            paid = assignment.price
            if terms.decay:
                paid = tasks.reward_at(terms, paid, assignment.deadline, block.timestamp)

    # Bind the proof to its sender, check the inputs, then the proof.
    inputs: DynArray[uint256, markets.MAX_PUBLIC_INPUTS] = public_inputs
    index: uint256 = (head >> words.ADDRESS_INPUT_SHIFT) & words.MASK4
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
        if tasks._paid_proofs[proof_hash]:
            return reasons.PROOF_ALREADY_PAID
    reason: uint256 = markets.verify(words.to_address(head), inputs, proof)
    if reason != reasons.OK:
        return reason

    # Pay: the prover its (decayed) price, the frontend its fee, the requester the rest.
    if binding != markets.BINDING_ADDRESS_INPUT:
        tasks._paid_proofs[proof_hash] = True
    if race:
        if terms.redundancy > 1:
            tasks._engagements[task_id][msg.sender] = tasks.ENGAGED
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
    tasks._slots[task_id][slot] = block.number << 2 | words.SLOT_DONE
    # The market's index (words.vy) rides in the head word this proof read: one warm
    # write. The slot was taken at `start`, never after now: a race's start or its link's,
    # an assignment's deadline less the proving window it was given (a commit-reveal
    # claim, given a reveal window instead, counts from the race's start, the posting).
    markets._market_head[terms.market_id] = words.with_proof(head, paid, unsafe_sub(block.timestamp, start))
    log tasks.TaskProven(
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
