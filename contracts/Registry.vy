# pragma version 0.4.3
# pragma nonreentrancy on
# pragma optimize codesize
"""
@title Proving market registry
@notice A mechanism-agnostic registry of proof tasks. It enforces the rules every
        assignment mechanism must respect: prover capacity, stake locked as
        collateral, deadlines, slashing and payment. Off-chain frontends (an
        orderbook, a sealed-bid auction, an election) assign tasks; two mechanisms
        are built in and need none: OPEN_RACE and DUTCH.
@dev Storage is kept small on purpose, because Vyper does not pack storage:
     - a task stores no terms. Its id is the hash of its terms (`TaskTerms`), and
       every call about a task brings the terms back as calldata; the registry
       recomputes the id and so authenticates them.
     - a task stores one word per redundancy slot. A slot is OPEN, ASSIGNED (the
       word is a hash of the assignment: prover, price, deadline, frontend, which
       the prover or a slasher brings back as calldata) or DONE (proven, with the
       proof's block number, or closed and refunded).
     - a prover's stake and each market membership are one packed word each.
     Formats shared with the Python side (task id, input commitment, EIP-712
     domain and `Bid` type) are documented in docs/formats.md and implemented in
     `provingmarket/formats.py`; tests check that both sides agree.
"""

from interfaces import IVerifier

# ------------------------------------------------------------------ constants

MAX_REDUNDANCY: constant(uint256) = 8  # provers per task
MAX_PUBLIC_INPUTS: constant(uint256) = 16  # field elements
MAX_PROOF_SIZE: constant(uint256) = 1024  # bytes
MAX_PROVER_INPUT: constant(uint256) = 4096  # bytes carried in TaskPosted
MAX_URI: constant(uint256) = 256  # characters
MAX_BATCH: constant(uint256) = 64  # items per assign or prove batch
MAX_FRONTENDS: constant(uint256) = 16  # frontends set in one call
MAX_MECHANISMS: constant(uint256) = 16  # mechanisms accepted in one call
MAX_NAME: constant(uint256) = 64  # characters
REASON: constant(uint256) = 64  # characters of a revert or skip reason

BPS: constant(uint256) = 10_000  # basis points in 100%
MAX_CALLER_BPS: constant(uint256) = 1_000  # a slasher's bounty is capped at 10%

# Built-in mechanisms; registered mechanisms are numbered from 3.
OPEN_RACE: constant(uint256) = 1
DUTCH: constant(uint256) = 2

# How a market binds a proof to the prover that submits it.
BINDING_NONE: constant(uint256) = 0  # no binding: no OPEN_RACE, no redundancy above 1
BINDING_ADDRESS_INPUT: constant(uint256) = 1  # a public input carries the prover's address
BINDING_COMMIT_REVEAL: constant(uint256) = 2  # commit a hash of proof and prover first

# Slot words: the low two bits give the state.
SLOT_OPEN: constant(uint256) = 1
SLOT_DONE: constant(uint256) = 2  # bits 2.. hold the proof's block number; 0 = closed unproven
SLOT_ASSIGNED: constant(uint256) = 3  # bits 2.. hold the assignment hash
RECORDED: constant(uint256) = 4  # on an open slot: a prover declined or was slashed on this task
STATE_MASK: constant(uint256) = 3

# A prover's record on a task (only written when it matters).
ENGAGED: constant(uint8) = 1  # assigned or proved (redundancy above 1)
DECLINED: constant(uint8) = 2
SLASHED: constant(uint8) = 3

# Packed membership word: ask | capacity | used | proving time | capabilities | joined.
ASK_BITS: constant(uint256) = 96
CAPACITY_SHIFT: constant(uint256) = 96
USED_SHIFT: constant(uint256) = 112
PROVING_TIME_SHIFT: constant(uint256) = 128
CAPABILITIES_SHIFT: constant(uint256) = 160
JOINED_SHIFT: constant(uint256) = 224
JOINED: constant(uint256) = 1 << 224
EPOCH_SHIFT: constant(uint256) = 232  # counts joins, so acceptances from before a leave lapse
MASK16: constant(uint256) = 2**16 - 1
MASK32: constant(uint256) = 2**32 - 1
MASK64: constant(uint256) = 2**64 - 1
MASK96: constant(uint256) = 2**96 - 1
MASK80: constant(uint256) = 2**80 - 1
MASK88: constant(uint256) = 2**88 - 1
MASK128: constant(uint256) = 2**128 - 1
MASK160: constant(uint256) = 2**160 - 1

# Packed market head word: verifier | paused | binding | address input | grace | bps.
PAUSED_SHIFT: constant(uint256) = 160
BINDING_SHIFT: constant(uint256) = 168
ADDRESS_INPUT_SHIFT: constant(uint256) = 176
GRACE_SHIFT: constant(uint256) = 184
REQUESTER_BPS_SHIFT: constant(uint256) = 216
CALLER_BPS_SHIFT: constant(uint256) = 232

# EIP-712: a prover's consent to be assigned a task at any price from min_price up.
EIP712_DOMAIN_TYPEHASH: constant(bytes32) = keccak256(
    "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)
BID_TYPEHASH: public(constant(bytes32)) = keccak256(
    "Bid(bytes32 task,uint256 minPrice,uint256 expiry,uint256 nonce)"
)
EIP712_NAME: public(constant(String[32])) = "ProvingMarketRegistry"
EIP712_VERSION: public(constant(String[8])) = "1"
SECP256K1_HALF_N: constant(uint256) = 57896044618658097711785492504343953926418782139537452191302581570759080747168

# ------------------------------------------------------------------ immutables

UNBONDING_DELAY: public(immutable(uint256))  # seconds
_CACHED_CHAIN_ID: immutable(uint256)
_CACHED_DOMAIN_SEPARATOR: immutable(bytes32)

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
    frontend: address  # empty for DUTCH


struct AssignmentItem:
    terms: TaskTerms
    prover: address
    price: uint256
    # Optional consent (EIP-712 Bid): empty signature means the prover's ask rules.
    min_price: uint256
    expiry: uint256
    nonce: uint256
    signature: Bytes[65]


struct ProofItem:
    terms: TaskTerms
    assignment: Assignment
    public_inputs: DynArray[uint256, MAX_PUBLIC_INPUTS]
    proof: Bytes[MAX_PROOF_SIZE]


struct Market:
    verifier: address
    creator: address
    codehash: bytes32
    paused: bool
    binding: uint256
    address_input: uint256
    grace_period: uint256
    requester_bps: uint256
    caller_bps: uint256
    min_collateral: uint256
    min_reward: uint256


struct Membership:
    joined: bool
    capacity: uint256
    used: uint256
    ask: uint256
    proving_time: uint256
    capabilities: uint256


struct Standing:
    stake: uint256
    locked: uint256
    free: uint256
    unbonding: uint256
    unbonding_ready_at: uint256
    balance: uint256
    nonce: uint256


struct TaskStatus:
    open: uint256
    assigned: uint256
    proven: uint256
    closed: uint256


# ------------------------------------------------------------------ public state

market_count: public(uint256)
mechanism_count: public(uint256)  # the last id handed out; 1 and 2 are built in
burnt: public(uint256)  # wei of slashed collateral kept out of every balance forever
signature_nonce: public(HashMap[address, uint256])  # bump to revoke every signed Bid

# ------------------------------------------------------------------ internal state

_market_head: HashMap[uint256, uint256]
_market_limits: HashMap[uint256, uint256]  # min collateral | min reward << 128
_market_codehash: HashMap[uint256, bytes32]
_market_creator: HashMap[uint256, address]

_mechanisms: HashMap[uint256, uint256]  # registrant | retired << 160
_frontends: HashMap[uint256, HashMap[address, bool]]
_accepts: HashMap[address, HashMap[uint256, HashMap[uint256, uint256]]]  # prover, market, mechanism -> epoch

# A prover's stake | locked << 88 | earned << 176. Earnings ride in the word a proof
# writes anyway (to unlock collateral), which saves a cold balance write per proof.
_stakes: HashMap[address, uint256]
_balances: HashMap[address, uint256]  # wei credited to anyone, withdrawn by `withdraw`
_unbonding: HashMap[address, uint256]  # amount | ready_at << 128
_memberships: HashMap[address, HashMap[uint256, uint256]]

_slots: HashMap[bytes32, HashMap[uint256, uint256]]
_engagements: HashMap[bytes32, HashMap[address, uint8]]
_proof_commits: HashMap[bytes32, uint256]  # digest -> block number

# ------------------------------------------------------------------ events


event MarketCreated:
    market_id: indexed(uint256)
    creator: indexed(address)
    verifier: indexed(address)
    codehash: bytes32
    binding: uint256
    address_input: uint256
    min_collateral: uint256
    min_reward: uint256
    grace_period: uint256
    requester_bps: uint256
    caller_bps: uint256


event MarketPaused:
    market_id: indexed(uint256)
    paused: bool


event MechanismRegistered:
    mechanism_id: indexed(uint256)
    registrant: indexed(address)
    name: String[MAX_NAME]


event FrontendSet:
    mechanism_id: indexed(uint256)
    frontend: indexed(address)
    allowed: bool


event MechanismRetired:
    mechanism_id: indexed(uint256)


event Staked:
    prover: indexed(address)
    amount: uint256
    stake: uint256


event Unstaked:
    prover: indexed(address)
    amount: uint256
    unbonding: uint256
    ready_at: uint256


event StakeWithdrawn:
    prover: indexed(address)
    amount: uint256


event ProverJoined:
    prover: indexed(address)
    market_id: indexed(uint256)
    capacity: uint256
    ask: uint256
    proving_time: uint256
    capabilities: uint256


event ProverUpdated:
    prover: indexed(address)
    market_id: indexed(uint256)
    capacity: uint256
    ask: uint256
    proving_time: uint256
    capabilities: uint256


event ProverLeft:
    prover: indexed(address)
    market_id: indexed(uint256)


event MechanismAccepted:
    prover: indexed(address)
    market_id: indexed(uint256)
    mechanism_id: indexed(uint256)
    accepted: bool


event SignaturesRevoked:
    prover: indexed(address)
    nonce: uint256


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
    reason: String[REASON]


event TaskDeclined:
    task_id: indexed(bytes32)
    prover: indexed(address)
    slot: uint256
    reopened: bool


event ProofCommitted:
    digest: indexed(bytes32)
    prover: indexed(address)


event TaskProven:
    task_id: indexed(bytes32)
    prover: indexed(address)
    frontend: indexed(address)
    slot: uint256
    paid: uint256
    fee: uint256
    refund: uint256
    public_inputs: DynArray[uint256, MAX_PUBLIC_INPUTS]
    proof: Bytes[MAX_PROOF_SIZE]


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


event Withdrawn:
    account: indexed(address)
    amount: uint256


# ------------------------------------------------------------------ constructor


@deploy
def __init__(unbonding_delay: uint256):
    """
    @param unbonding_delay Seconds unstaked ETH waits before it can be withdrawn
           (days in production, seconds in tests).
    """
    UNBONDING_DELAY = unbonding_delay
    self.mechanism_count = DUTCH
    _CACHED_CHAIN_ID = chain.id
    _CACHED_DOMAIN_SEPARATOR = self._build_domain_separator()


# ------------------------------------------------------------------ markets


@external
def create_market(
    verifier: address,
    sample_inputs: DynArray[uint256, MAX_PUBLIC_INPUTS],
    sample_proof: Bytes[MAX_PROOF_SIZE],
    min_collateral: uint256,
    min_reward: uint256,
    grace_period: uint256,
    requester_bps: uint256,
    caller_bps: uint256,
    binding: uint256,
    address_input: uint256,
) -> uint256:
    """
    @notice Create a market for one proof type. Anyone may.
    @param verifier An IVerifier; its code hash is recorded, and if it ever
           changes no slash is possible in this market.
    @param sample_inputs Public inputs of a sample the verifier must accept now.
    @param sample_proof The sample proof.
    @param min_collateral Least collateral per prover a task may lock, in wei.
    @param min_reward Least maximum reward a task may offer, in wei.
    @param grace_period Seconds after assignment during which a prover may decline.
    @param requester_bps Share of a slashed collateral credited to the requester.
    @param caller_bps Share credited to whoever slashes (at most MAX_CALLER_BPS).
           The rest is burnt.
    @param binding BINDING_NONE, BINDING_ADDRESS_INPUT or BINDING_COMMIT_REVEAL.
    @param address_input With BINDING_ADDRESS_INPUT, the index of the public
           input that carries the prover's address.
    @return The new market's id.
    """
    if not verifier.is_contract:
        self._fail("registry: verifier has no code")
    if caller_bps > MAX_CALLER_BPS:
        self._fail("registry: caller share above cap")
    if requester_bps > BPS or requester_bps + caller_bps > BPS:
        self._fail("registry: shares above 100%")
    if binding > BINDING_COMMIT_REVEAL:
        self._fail("registry: unknown binding")
    if address_input >= MAX_PUBLIC_INPUTS:
        self._fail("registry: address input out of range")
    if grace_period > MASK32:
        self._fail("registry: grace period too long")
    if min_collateral > MASK128 or min_reward > MASK128:
        self._fail("registry: minimum too large")
    if not self._verify(verifier, sample_inputs, sample_proof):
        self._fail("registry: sample proof rejected")

    market_id: uint256 = self.market_count + 1
    self.market_count = market_id
    self._market_head[market_id] = (
        convert(verifier, uint256)
        | binding << BINDING_SHIFT
        | address_input << ADDRESS_INPUT_SHIFT
        | grace_period << GRACE_SHIFT
        | requester_bps << REQUESTER_BPS_SHIFT
        | caller_bps << CALLER_BPS_SHIFT
    )
    self._market_limits[market_id] = min_collateral | min_reward << 128
    self._market_codehash[market_id] = verifier.codehash
    self._market_creator[market_id] = msg.sender
    log MarketCreated(
        market_id=market_id,
        creator=msg.sender,
        verifier=verifier,
        codehash=verifier.codehash,
        binding=binding,
        address_input=address_input,
        min_collateral=min_collateral,
        min_reward=min_reward,
        grace_period=grace_period,
        requester_bps=requester_bps,
        caller_bps=caller_bps,
    )
    return market_id


@external
def set_market_paused(market_id: uint256, paused: bool):
    """
    @notice Pause or resume a market. Pausing stops new tasks and assignments;
            proofs, declines, slashes, cancels and withdrawals go on.
    @param market_id The market; only its creator may.
    @param paused True to pause.
    """
    if self._market_creator[market_id] != msg.sender:
        self._fail("registry: not the market creator")
    head: uint256 = self._market_head[market_id]
    head = head & ~(1 << PAUSED_SHIFT)
    if paused:
        head = head | (1 << PAUSED_SHIFT)
    self._market_head[market_id] = head
    log MarketPaused(market_id=market_id, paused=paused)


@view
@external
def market(market_id: uint256) -> Market:
    """
    @notice A market's configuration.
    @param market_id The market.
    @return Its configuration; an unknown market has an empty verifier.
    """
    head: uint256 = self._market_head[market_id]
    limits: uint256 = self._market_limits[market_id]
    return Market(
        verifier=self._head_verifier(head),
        creator=self._market_creator[market_id],
        codehash=self._market_codehash[market_id],
        paused=(head >> PAUSED_SHIFT) & 1 == 1,
        binding=(head >> BINDING_SHIFT) & 255,
        address_input=(head >> ADDRESS_INPUT_SHIFT) & 255,
        grace_period=(head >> GRACE_SHIFT) & MASK32,
        requester_bps=(head >> REQUESTER_BPS_SHIFT) & MASK16,
        caller_bps=(head >> CALLER_BPS_SHIFT) & MASK16,
        min_collateral=limits & MASK128,
        min_reward=limits >> 128,
    )


# ------------------------------------------------------------------ mechanisms


@external
def register_mechanism(name: String[MAX_NAME], frontends: DynArray[address, MAX_FRONTENDS]) -> uint256:
    """
    @notice Register an assignment mechanism. Anyone may; the sender manages it.
    @param name A readable name, carried in the event.
    @param frontends Addresses allowed to assign tasks that name this mechanism.
    @return The mechanism's id.
    """
    mechanism_id: uint256 = self.mechanism_count + 1
    self.mechanism_count = mechanism_id
    self._mechanisms[mechanism_id] = convert(msg.sender, uint256)
    log MechanismRegistered(mechanism_id=mechanism_id, registrant=msg.sender, name=name)
    for frontend: address in frontends:
        self._frontends[mechanism_id][frontend] = True
        log FrontendSet(mechanism_id=mechanism_id, frontend=frontend, allowed=True)
    return mechanism_id


@external
def set_frontend(mechanism_id: uint256, frontend: address, allowed: bool):
    """
    @notice Allow or forbid a frontend to assign for a mechanism.
    @param mechanism_id The mechanism; only its registrant may.
    @param frontend The frontend's address.
    @param allowed True to allow.
    """
    self._only_registrant(mechanism_id)
    self._frontends[mechanism_id][frontend] = allowed
    log FrontendSet(mechanism_id=mechanism_id, frontend=frontend, allowed=allowed)


@external
def retire_mechanism(mechanism_id: uint256):
    """
    @notice Retire a mechanism for good: no new task may name it. Tasks already
            posted may still be assigned by the frontends it keeps, so their
            requesters are served; remove frontends with `set_frontend` to stop that.
    @param mechanism_id The mechanism; only its registrant may.
    """
    self._only_registrant(mechanism_id)
    self._mechanisms[mechanism_id] = self._mechanisms[mechanism_id] | (1 << 160)
    log MechanismRetired(mechanism_id=mechanism_id)


@view
@external
def mechanism(mechanism_id: uint256) -> (address, bool):
    """
    @notice A registered mechanism's registrant and whether it is retired.
    @param mechanism_id The mechanism.
    @return (registrant, retired); an unknown mechanism has an empty registrant.
    """
    word: uint256 = self._mechanisms[mechanism_id]
    return convert(convert(word & MASK160, uint160), address), (word >> 160) & 1 == 1


@view
@external
def is_frontend(mechanism_id: uint256, frontend: address) -> bool:
    """
    @notice Whether an address may assign for a mechanism.
    @param mechanism_id The mechanism.
    @param frontend The address.
    @return True if allowed.
    """
    return self._frontends[mechanism_id][frontend]


# ------------------------------------------------------------------ provers


@payable
@external
def stake():
    """
    @notice Add the ETH sent to the sender's stake.
    """
    if msg.value == 0:
        self._fail("registry: zero stake")
    word: uint256 = self._stakes[msg.sender]
    total: uint256 = (word & MASK88) + msg.value
    if total > MASK88:
        self._fail("registry: stake too large")
    self._stakes[msg.sender] = (word & ~MASK88) | total
    log Staked(prover=msg.sender, amount=msg.value, stake=total)


@external
def unstake(amount: uint256):
    """
    @notice Move free stake to unbonding. It can be withdrawn once the unbonding
            delay has passed since the latest unstake, and cannot be locked meanwhile.
    @param amount Wei; at most the stake not locked by live assignments.
    """
    if amount == 0:
        self._fail("registry: zero amount")
    word: uint256 = self._stakes[msg.sender]
    total: uint256 = word & MASK88
    if total - ((word >> 88) & MASK88) < amount:
        self._fail("registry: not enough free stake")
    self._stakes[msg.sender] = (word & ~MASK88) | (total - amount)
    unbonding: uint256 = (self._unbonding[msg.sender] & MASK128) + amount
    ready_at: uint256 = block.timestamp + UNBONDING_DELAY
    self._unbonding[msg.sender] = unbonding | ready_at << 128
    log Unstaked(prover=msg.sender, amount=amount, unbonding=unbonding, ready_at=ready_at)


@external
def withdraw_stake():
    """
    @notice Send the sender its unbonded stake once the delay has passed.
    """
    word: uint256 = self._unbonding[msg.sender]
    amount: uint256 = word & MASK128
    if amount == 0:
        self._fail("registry: nothing unbonding")
    if block.timestamp < word >> 128:
        self._fail("registry: still unbonding")
    self._unbonding[msg.sender] = 0
    self._send(msg.sender, amount)
    log StakeWithdrawn(prover=msg.sender, amount=amount)


@external
def join_market(
    market_id: uint256,
    capacity: uint256,
    ask: uint256,
    proving_time: uint256,
    capabilities: uint256,
    mechanisms: DynArray[uint256, MAX_MECHANISMS],
):
    """
    @notice Join a market as a prover.
    @param market_id The market.
    @param capacity Tasks the sender runs at once in this market (at least 1).
    @param ask Least price, in wei, it is assigned at without a signed Bid.
    @param proving_time Seconds it needs to prove a task of this market.
    @param capabilities Bitmask of the hardware it brings.
    @param mechanisms Mechanisms it accepts assignments from (none by default).
    """
    if self._market_head[market_id] == 0:
        self._fail("registry: unknown market")
    word: uint256 = self._memberships[msg.sender][market_id]
    if word & JOINED != 0:
        self._fail("registry: already joined")
    if capacity == 0:
        self._fail("registry: zero capacity")
    epoch: uint256 = (word >> EPOCH_SHIFT) + 1
    self._memberships[msg.sender][market_id] = (
        self._pack_membership(capacity, 0, ask, proving_time, capabilities) | JOINED | epoch << EPOCH_SHIFT
    )
    log ProverJoined(
        prover=msg.sender,
        market_id=market_id,
        capacity=capacity,
        ask=ask,
        proving_time=proving_time,
        capabilities=capabilities,
    )
    for mechanism_id: uint256 in mechanisms:
        self._set_accepted(market_id, mechanism_id, epoch)


@external
def update_membership(
    market_id: uint256, capacity: uint256, ask: uint256, proving_time: uint256, capabilities: uint256
):
    """
    @notice Change what the sender offers in a market. A capacity below current
            use only stops new assignments.
    @param market_id The market.
    @param capacity Tasks at once (0 pauses new assignments).
    @param ask Least price in wei.
    @param proving_time Seconds to prove.
    @param capabilities Hardware bitmask.
    """
    word: uint256 = self._joined(market_id)
    used: uint256 = (word >> USED_SHIFT) & MASK16
    self._memberships[msg.sender][market_id] = self._pack_membership(
        capacity, used, ask, proving_time, capabilities
    ) | (word >> JOINED_SHIFT) << JOINED_SHIFT
    log ProverUpdated(
        prover=msg.sender,
        market_id=market_id,
        capacity=capacity,
        ask=ask,
        proving_time=proving_time,
        capabilities=capabilities,
    )


@external
def set_mechanism_accepted(market_id: uint256, mechanism_id: uint256, accepted: bool):
    """
    @notice Accept or refuse assignments from a mechanism in a market.
    @param market_id The market; the sender must have joined it.
    @param mechanism_id The mechanism.
    @param accepted True to accept.
    """
    epoch: uint256 = 0
    if accepted:
        epoch = self._joined(market_id) >> EPOCH_SHIFT
    else:
        self._joined(market_id)
    self._set_accepted(market_id, mechanism_id, epoch)


@external
def leave_market(market_id: uint256):
    """
    @notice Leave a market in which the sender holds no live assignment.
    @param market_id The market.
    """
    word: uint256 = self._joined(market_id)
    if (word >> USED_SHIFT) & MASK16 != 0:
        self._fail("registry: live assignments in market")
    # Keep the join count: acceptances made before this leave must not outlive it.
    self._memberships[msg.sender][market_id] = (word >> EPOCH_SHIFT) << EPOCH_SHIFT
    log ProverLeft(prover=msg.sender, market_id=market_id)


@external
def revoke_signatures():
    """
    @notice Revoke every Bid the sender has signed and not yet seen used.
    """
    nonce: uint256 = self.signature_nonce[msg.sender] + 1
    self.signature_nonce[msg.sender] = nonce
    log SignaturesRevoked(prover=msg.sender, nonce=nonce)


@view
@external
def membership(prover: address, market_id: uint256) -> Membership:
    """
    @notice A prover's standing in one market.
    @param prover The prover.
    @param market_id The market.
    @return Whether it joined, its capacity and use, ask, proving time, capabilities.
    """
    word: uint256 = self._memberships[prover][market_id]
    return Membership(
        joined=word & JOINED != 0,
        capacity=(word >> CAPACITY_SHIFT) & MASK16,
        used=(word >> USED_SHIFT) & MASK16,
        ask=word & MASK96,
        proving_time=(word >> PROVING_TIME_SHIFT) & MASK32,
        capabilities=(word >> CAPABILITIES_SHIFT) & MASK64,
    )


@view
@external
def accepts(prover: address, market_id: uint256, mechanism_id: uint256) -> bool:
    """
    @notice Whether a prover accepts assignments from a mechanism in a market.
    @param prover The prover.
    @param market_id The market.
    @param mechanism_id The mechanism.
    @return True if it does.
    """
    word: uint256 = self._memberships[prover][market_id]
    epoch: uint256 = self._accepts[prover][market_id][mechanism_id]
    return word & JOINED != 0 and epoch != 0 and epoch == word >> EPOCH_SHIFT


@view
@external
def standing(prover: address) -> Standing:
    """
    @notice A prover's money: stake (total, locked, free), unbonding and when it
            is ready, credited balance and signature nonce.
    @param prover The prover.
    @return Its standing.
    """
    word: uint256 = self._stakes[prover]
    unbonding: uint256 = self._unbonding[prover]
    return Standing(
        stake=word & MASK88,
        locked=(word >> 88) & MASK88,
        free=(word & MASK88) - ((word >> 88) & MASK88),
        unbonding=unbonding & MASK128,
        unbonding_ready_at=unbonding >> 128,
        balance=self._balances[prover] + (word >> 176),
        nonce=self.signature_nonce[prover],
    )


# ------------------------------------------------------------------ tasks


@payable
@external
def post_task(
    terms: TaskTerms, prover_input: Bytes[MAX_PROVER_INPUT], input_uri: String[MAX_URI]
) -> bytes32:
    """
    @notice Post a task and escrow redundancy * (max_reward + frontend_fee).
    @param terms The task's terms; `requester` and `posted_at` are filled by the
           registry (the sender and this block's timestamp).
    @param prover_input What a prover needs to produce the proof, hashing to
           terms.prover_input_hash; may be empty when input_uri is given.
    @param input_uri Where a large prover input can be fetched.
    @return The task id: keccak256(abi.encode(chain id, registry, terms)).
    """
    t: TaskTerms = terms
    t.requester = msg.sender
    t.posted_at = block.timestamp
    head: uint256 = self._market_head[t.market_id]
    if head == 0:
        self._fail("registry: unknown market")
    if (head >> PAUSED_SHIFT) & 1 != 0:
        self._fail("registry: market paused")
    limits: uint256 = self._market_limits[t.market_id]
    if t.redundancy == 0 or t.redundancy > MAX_REDUNDANCY:
        self._fail("registry: redundancy out of range")
    if t.collateral < limits & MASK128:
        self._fail("registry: collateral below market minimum")
    if t.max_reward < limits >> 128:
        self._fail("registry: reward below market minimum")
    if t.proving_window == 0:
        self._fail("registry: zero proving window")
    if t.max_reward > MASK80 or t.frontend_fee > MASK80 or t.collateral > MASK88:
        self._fail("registry: amount too large")
    if t.mechanism_id == OPEN_RACE or t.mechanism_id == DUTCH:
        if t.frontend_fee != 0:
            self._fail("registry: fee needs a frontend")
    else:
        word: uint256 = self._mechanisms[t.mechanism_id]
        if word == 0:
            self._fail("registry: unknown mechanism")
        if (word >> 160) & 1 != 0:
            self._fail("registry: mechanism retired")
    if t.mechanism_id != OPEN_RACE:
        if t.assign_window == 0:
            self._fail("registry: zero assignment window")
    if t.mechanism_id == DUTCH:
        if t.start_price > t.max_reward:
            self._fail("registry: start price above maximum")
    if t.mechanism_id == OPEN_RACE or t.redundancy > 1:
        if (head >> BINDING_SHIFT) & 255 == BINDING_NONE:
            self._fail("registry: market cannot bind proofs")
    if len(prover_input) > 0:
        if keccak256(prover_input) != t.prover_input_hash:
            self._fail("registry: prover input hash mismatch")
    else:
        if len(input_uri) == 0:
            self._fail("registry: no prover input")
    if msg.value != t.redundancy * (t.max_reward + t.frontend_fee):
        self._fail("registry: wrong escrow")

    task_id: bytes32 = self._task_id(t)
    if self._slots[task_id][0] != 0:
        self._fail("registry: task exists")
    for i: uint256 in range(MAX_REDUNDANCY):
        if i == t.redundancy:
            break
        self._slots[task_id][i] = SLOT_OPEN
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
    reason: String[REASON] = self._assign(item, msg.sender)
    assert len(reason) == 0, reason


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
        reason: String[REASON] = self._assign(item, msg.sender)
        if len(reason) == 0:
            applied += 1
        else:
            log AssignmentSkipped(
                task_id=self._task_id(item.terms), prover=item.prover, frontend=msg.sender, reason=reason
            )
    return applied


@external
def lock(terms: TaskTerms):
    """
    @notice Take a slot of a DUTCH task at its current price, as the prover.
    @param terms The task's terms.
    """
    if terms.mechanism_id != DUTCH:
        self._fail("registry: not a dutch task")
    item: AssignmentItem = AssignmentItem(
        terms=terms,
        prover=msg.sender,
        price=self._dutch_price(terms, block.timestamp),
        min_price=0,
        expiry=0,
        nonce=0,
        signature=b"",
    )
    reason: String[REASON] = self._assign(item, empty(address))
    assert len(reason) == 0, reason


@external
def decline(terms: TaskTerms, assignment: Assignment):
    """
    @notice Give an assignment back within the market's grace period, at no
            penalty. The slot reopens (or is refunded if the assignment window is
            over) and the sender can no longer be assigned this task.
    @param terms The task's terms.
    @param assignment The assignment, as in its TaskAssigned event.
    """
    task_id: bytes32 = self._task_id(terms)
    self._check_assigned(task_id, assignment, msg.sender)
    head: uint256 = self._market_head[terms.market_id]
    assigned_at: uint256 = assignment.deadline - terms.proving_window
    grace: uint256 = (head >> GRACE_SHIFT) & MASK32
    if block.timestamp > assigned_at + grace:
        self._fail("registry: grace period over")
    self._release(msg.sender, terms.market_id, terms.collateral, 0, 0)
    self._engagements[task_id][msg.sender] = DECLINED
    reopened: bool = self._reopen_or_refund(task_id, terms, assignment.slot)
    log TaskDeclined(task_id=task_id, prover=msg.sender, slot=assignment.slot, reopened=reopened)


@external
def commit_proof(digest: bytes32):
    """
    @notice First step of a proof in a BINDING_COMMIT_REVEAL market.
    @param digest keccak256(abi.encode(task_id, prover, keccak256(proof))).
    """
    if self._proof_commits[digest] != 0:
        self._fail("registry: already committed")
    self._proof_commits[digest] = block.number
    log ProofCommitted(digest=digest, prover=msg.sender)


@external
def prove(
    terms: TaskTerms,
    assignment: Assignment,
    public_inputs: DynArray[uint256, MAX_PUBLIC_INPUTS],
    proof: Bytes[MAX_PROOF_SIZE],
):
    """
    @notice Submit the proof of an assignment, or of an OPEN_RACE task (then
            `assignment` is ignored). A valid proof in time credits the prover
            its price (decayed if the task says so), the frontend its fee and
            the requester the rest of the slot's escrow, and frees collateral
            and capacity.
    @param terms The task's terms.
    @param assignment The sender's assignment, as in its TaskAssigned event.
    @param public_inputs The proof's public inputs; the market's address input,
           if any, is overwritten with the sender's address.
    @param proof The proof bytes.
    """
    self._prove(terms, assignment, public_inputs, proof)


@external
def prove_batch(items: DynArray[ProofItem, MAX_BATCH]):
    """
    @notice Submit many proofs; all or none apply.
    @param items Proofs, as for `prove`.
    """
    for item: ProofItem in items:
        self._prove(item.terms, item.assignment, item.public_inputs, item.proof)


@external
def slash(terms: TaskTerms, prover: address, assignment: Assignment):
    """
    @notice Slash an assignment whose deadline passed without a proof. Anyone
            may. Its collateral is split as the market says; the slot reopens
            while the assignment window lasts, else its escrow is refunded.
            If the market's verifier code changed since the market was created,
            nobody is slashed: the assignment is voided, the collateral freed and
            the slot's escrow refunded (AssignmentVoided).
    @param terms The task's terms.
    @param prover The assigned prover.
    @param assignment The assignment, as in its TaskAssigned event.
    """
    task_id: bytes32 = self._task_id(terms)
    self._check_assigned(task_id, assignment, prover)
    if block.timestamp <= assignment.deadline:
        self._fail("registry: deadline not passed")
    head: uint256 = self._market_head[terms.market_id]
    if self._head_verifier(head).codehash != self._market_codehash[terms.market_id]:
        # Not the verifier everyone agreed to: nobody is punished. The prover gets its
        # collateral back and the requester the slot's escrow.
        self._release(prover, terms.market_id, terms.collateral, 0, 0)
        self._slots[task_id][assignment.slot] = SLOT_DONE
        self._credit(terms.requester, terms.max_reward + terms.frontend_fee)
        log AssignmentVoided(task_id=task_id, prover=prover, slot=assignment.slot)
        return
    self._release(prover, terms.market_id, terms.collateral, terms.collateral, 0)
    self._engagements[task_id][prover] = SLASHED

    collateral: uint256 = terms.collateral
    to_requester: uint256 = min(
        collateral * ((head >> REQUESTER_BPS_SHIFT) & MASK16) // BPS, terms.max_reward
    )
    to_caller: uint256 = collateral * ((head >> CALLER_BPS_SHIFT) & MASK16) // BPS
    burn: uint256 = collateral - to_requester - to_caller
    self._credit(terms.requester, to_requester)
    self._credit(msg.sender, to_caller)
    self.burnt += burn
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
    @notice Close the task's slots that no prover holds and refund their escrow.
            Not while an OPEN_RACE's window is open.
    @param terms The task's terms; only its requester may.
    """
    if msg.sender != terms.requester:
        self._fail("registry: not the requester")
    if terms.mechanism_id == OPEN_RACE:
        if block.timestamp <= terms.posted_at + terms.proving_window:
            self._fail("registry: race in progress")
    self._close_open_slots(terms, True)


@external
def reclaim(terms: TaskTerms):
    """
    @notice Refund to the requester the escrow of slots nobody filled, once the
            assignment window (OPEN_RACE: the race) is over. Anyone may.
            Assigned slots left unproven are refunded by `slash`.
    @param terms The task's terms.
    """
    end: uint256 = terms.posted_at + terms.assign_window
    if terms.mechanism_id == OPEN_RACE:
        end = terms.posted_at + terms.proving_window
    if block.timestamp <= end:
        self._fail("registry: windows not passed")
    self._close_open_slots(terms, False)


@external
def withdraw():
    """
    @notice Send the sender everything credited to it.
    """
    word: uint256 = self._stakes[msg.sender]
    amount: uint256 = self._balances[msg.sender] + (word >> 176)
    if amount == 0:
        self._fail("registry: nothing to withdraw")
    self._balances[msg.sender] = 0
    if word >> 176 != 0:
        self._stakes[msg.sender] = word & (2**176 - 1)
    self._send(msg.sender, amount)
    log Withdrawn(account=msg.sender, amount=amount)


# ------------------------------------------------------------------ task views


@view
@external
def task_id(terms: TaskTerms) -> bytes32:
    """
    @notice The id of a task with these terms (requester and posted_at included).
    @param terms The terms.
    @return keccak256(abi.encode(chain id, registry, terms)).
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
    return self._task_status(task_id)


@view
@external
def proofs_delivered(task_id: bytes32) -> uint256:
    """
    @notice How many valid proofs a task has received.
    @param task_id The task.
    @return The count (a task of redundancy N is complete at N).
    """
    return self._task_status(task_id).proven


@view
@external
def slot_word(task_id: bytes32, slot: uint256) -> uint256:
    """
    @notice The raw word of one slot (0 unknown, 1 open, hash|3 assigned,
            block<<2|2 proven at that block, 2 closed).
    @param task_id The task.
    @param slot The slot index.
    @return The word.
    """
    return self._slots[task_id][slot]


@view
@external
def engagement(task_id: bytes32, prover: address) -> uint8:
    """
    @notice A prover's record on a task: 0 none, 1 engaged (redundancy above 1),
            2 declined, 3 slashed.
    @param task_id The task.
    @param prover The prover.
    @return The record.
    """
    return self._engagements[task_id][prover]


@view
@external
def dutch_price(terms: TaskTerms, at: uint256) -> uint256:
    """
    @notice The price a DUTCH task pays a prover that locks it at a time.
    @param terms The task's terms.
    @param at A timestamp.
    @return Wei.
    """
    return self._dutch_price(terms, at)


@view
@external
def reward_at(terms: TaskTerms, price: uint256, deadline: uint256, at: uint256) -> uint256:
    """
    @notice What a proof at a time pays, for an agreed price and deadline.
    @param terms The task's terms (decay and floor).
    @param price The agreed price.
    @param deadline The assignment's deadline (OPEN_RACE: posted_at + proving_window).
    @param at The proof's timestamp.
    @return Wei.
    """
    return self._reward_at(terms, price, deadline, at)


@view
@external
def balances(account: address) -> uint256:
    """
    @notice Wei credited to an account (earnings, fees, refunds, slash shares),
            which `withdraw` sends it.
    @param account The account.
    @return Wei.
    """
    return self._balances[account] + (self._stakes[account] >> 176)


@view
@external
def domain_separator() -> bytes32:
    """
    @notice The EIP-712 domain separator signed Bids must use.
    @return The separator for this chain and registry.
    """
    return self._domain_separator()


@view
@external
def bid_digest(task_id: bytes32, min_price: uint256, expiry: uint256, nonce: uint256) -> bytes32:
    """
    @notice The EIP-712 digest a prover signs to consent to a task at min_price up.
    @param task_id The task.
    @param min_price Least price it accepts, in wei.
    @param expiry Timestamp after which the consent is void.
    @param nonce The prover's signature_nonce.
    @return The digest.
    """
    return self._bid_digest(task_id, min_price, expiry, nonce)


# ------------------------------------------------------------------ internal


@pure
@internal
def _fail(reason: String[REASON]):
    """
    @dev Every revert goes through here so each reason string is encoded once
         per call site, not with a full revert encoding each (EIP-170 size).
    """
    raise reason


@internal
def _only_registrant(mechanism_id: uint256):
    word: uint256 = self._mechanisms[mechanism_id]
    if word == 0:
        self._fail("registry: unknown mechanism")
    if convert(convert(word & MASK160, uint160), address) != msg.sender:
        self._fail("registry: not the registrant")


@internal
def _set_accepted(market_id: uint256, mechanism_id: uint256, epoch: uint256):
    # An acceptance holds for the join it was made in (epoch); 0 refuses.
    self._accepts[msg.sender][market_id][mechanism_id] = epoch
    log MechanismAccepted(
        prover=msg.sender, market_id=market_id, mechanism_id=mechanism_id, accepted=epoch != 0
    )


@view
@internal
def _joined(market_id: uint256) -> uint256:
    word: uint256 = self._memberships[msg.sender][market_id]
    if word & JOINED == 0:
        self._fail("registry: prover not in market")
    return word


@pure
@internal
def _pack_membership(
    capacity: uint256, used: uint256, ask: uint256, proving_time: uint256, capabilities: uint256
) -> uint256:
    if capacity > MASK16:
        self._fail("registry: capacity too large")
    if ask > MASK96:
        self._fail("registry: ask too large")
    if proving_time > MASK32:
        self._fail("registry: proving time too long")
    if capabilities > MASK64:
        self._fail("registry: capabilities too wide")
    return (
        ask
        | capacity << CAPACITY_SHIFT
        | used << USED_SHIFT
        | proving_time << PROVING_TIME_SHIFT
        | capabilities << CAPABILITIES_SHIFT
    )


@pure
@internal
def _head_verifier(head: uint256) -> address:
    return convert(convert(head & MASK160, uint160), address)


@view
@internal
def _task_id(terms: TaskTerms) -> bytes32:
    return keccak256(abi_encode(chain.id, self, terms))


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
    return (digest & ~STATE_MASK) | SLOT_ASSIGNED


@view
@internal
def _check_assigned(task_id: bytes32, assignment: Assignment, prover: address):
    if assignment.slot >= MAX_REDUNDANCY:
        self._fail("registry: not assigned")
    if self._slots[task_id][assignment.slot] != self._assignment_word(task_id, prover, assignment):
        self._fail("registry: not assigned")


@view
@internal
def _dutch_price(terms: TaskTerms, at: uint256) -> uint256:
    if terms.ramp == 0 or at >= terms.posted_at + terms.ramp:
        return terms.max_reward
    elapsed: uint256 = 0
    if at > terms.posted_at:
        elapsed = at - terms.posted_at
    return terms.start_price + (terms.max_reward - terms.start_price) * elapsed // terms.ramp


@pure
@internal
def _reward_at(terms: TaskTerms, price: uint256, deadline: uint256, at: uint256) -> uint256:
    if not terms.decay:
        return price
    least: uint256 = min(terms.decay_floor, price)
    if at >= deadline:
        return least
    remaining: uint256 = min(deadline - at, terms.proving_window)
    return least + (price - least) * remaining // terms.proving_window


@internal
def _assign(item: AssignmentItem, frontend: address) -> String[REASON]:
    """
    @dev The one place the assignment rules live: returns why `item` does not
         hold, or applies it and returns "". `frontend` is empty for DUTCH locks.
    """
    terms: TaskTerms = item.terms
    prover: address = item.prover
    task_id: bytes32 = self._task_id(terms)

    head: uint256 = self._market_head[terms.market_id]
    if (head >> PAUSED_SHIFT) & 1 == 1:
        return "registry: market paused"
    if self._slots[task_id][0] == 0:
        return "registry: unknown task"
    if frontend != empty(address):
        if terms.mechanism_id == OPEN_RACE or terms.mechanism_id == DUTCH:
            return "registry: task is not for frontends"
        if not self._frontends[terms.mechanism_id][frontend]:
            return "registry: not a frontend of the mechanism"
    if block.timestamp > terms.posted_at + terms.assign_window:
        return "registry: task expired"
    membership: uint256 = self._memberships[prover][terms.market_id]
    if membership & JOINED == 0:
        return "registry: prover not in market"
    if frontend != empty(address):
        if self._accepts[prover][terms.market_id][terms.mechanism_id] != membership >> EPOCH_SHIFT:
            return "registry: prover does not accept the mechanism"
    slot: uint256 = 0
    slot_word: uint256 = 0
    slot, slot_word = self._open_slot(task_id, terms.redundancy)
    # A prover's record on the task exists only for redundancy above 1 or once a
    # slot was reopened: skip the cold read otherwise.
    if terms.redundancy > 1 or (slot != MAX_REDUNDANCY and slot_word & RECORDED != 0):
        record: uint8 = self._engagements[task_id][prover]
        if record == ENGAGED:
            return "registry: prover already on task"
        if record == DECLINED:
            return "registry: prover declined task"
        if record == SLASHED:
            return "registry: prover was slashed on task"
    if slot == MAX_REDUNDANCY:
        return "registry: no free slot"

    used: uint256 = (membership >> USED_SHIFT) & MASK16
    if used >= (membership >> CAPACITY_SHIFT) & MASK16:
        return "registry: prover at capacity"
    stake_word: uint256 = self._stakes[prover]
    locked: uint256 = (stake_word >> 88) & MASK88
    if (stake_word & MASK88) - locked < terms.collateral:
        return "registry: not enough free stake"
    capabilities: uint256 = (membership >> CAPABILITIES_SHIFT) & MASK64
    if capabilities & terms.capabilities != terms.capabilities:
        return "registry: prover lacks capabilities"
    if (membership >> PROVING_TIME_SHIFT) & MASK32 > terms.proving_window:
        return "registry: proving time exceeds window"
    if item.price > terms.max_reward:
        return "registry: price above maximum"
    if len(item.signature) > 0:
        reason: String[REASON] = self._check_bid(task_id, item)
        if len(reason) > 0:
            return reason
    elif item.price < membership & MASK96:
        return "registry: price below ask"

    # The item holds: lock collateral and a unit of capacity, fill the slot.
    self._stakes[prover] = stake_word + (terms.collateral << 88)
    self._memberships[prover][terms.market_id] = (
        membership & ~(MASK16 << USED_SHIFT)
    ) | (used + 1) << USED_SHIFT
    if terms.redundancy > 1:
        self._engagements[task_id][prover] = ENGAGED
    assignment: Assignment = Assignment(
        slot=slot, price=item.price, deadline=block.timestamp + terms.proving_window, frontend=frontend
    )
    self._slots[task_id][slot] = self._assignment_word(task_id, prover, assignment)
    log TaskAssigned(
        task_id=task_id,
        prover=prover,
        frontend=frontend,
        slot=slot,
        price=item.price,
        deadline=assignment.deadline,
    )
    return ""


@view
@internal
def _check_bid(task_id: bytes32, item: AssignmentItem) -> String[REASON]:
    if len(item.signature) != 65:
        return "registry: invalid signature"
    if item.expiry < block.timestamp:
        return "registry: signature expired"
    if item.nonce != self.signature_nonce[item.prover]:
        return "registry: signature revoked"
    if item.price < item.min_price:
        return "registry: price below signed minimum"
    r: uint256 = extract32(item.signature, 0, output_type=uint256)
    s: uint256 = extract32(item.signature, 32, output_type=uint256)
    v: uint256 = extract32(item.signature, 33, output_type=uint256) & 255
    if v != 27 and v != 28:
        return "registry: invalid signature v"
    if s > SECP256K1_HALF_N:
        return "registry: malleable signature"
    signer: address = ecrecover(
        self._bid_digest(task_id, item.min_price, item.expiry, item.nonce), v, r, s
    )
    if signer == empty(address):
        return "registry: invalid signature"
    if signer != item.prover:
        return "registry: signer is not the prover"
    return ""


@internal
def _prove(
    terms: TaskTerms,
    assignment: Assignment,
    public_inputs: DynArray[uint256, MAX_PUBLIC_INPUTS],
    proof: Bytes[MAX_PROOF_SIZE],
):
    task_id: bytes32 = self._task_id(terms)
    head: uint256 = self._market_head[terms.market_id]
    slot: uint256 = 0
    price: uint256 = 0
    deadline: uint256 = 0
    frontend: address = empty(address)

    if terms.mechanism_id == OPEN_RACE:
        # Anyone eligible may prove; the first `redundancy` valid proofs are paid.
        if self._slots[task_id][0] == 0:
            self._fail("registry: unknown task")
        deadline = terms.posted_at + terms.proving_window
        if block.timestamp > deadline:
            self._fail("registry: race over")
        membership: uint256 = self._memberships[msg.sender][terms.market_id]
        if membership & JOINED == 0:
            self._fail("registry: prover not in market")
        if (membership >> CAPABILITIES_SHIFT) & MASK64 & terms.capabilities != terms.capabilities:
            self._fail("registry: prover lacks capabilities")
        stake_word: uint256 = self._stakes[msg.sender]
        if (stake_word & MASK88) - ((stake_word >> 88) & MASK88) < terms.collateral:
            self._fail("registry: not enough free stake")
        if terms.redundancy > 1:
            if self._engagements[task_id][msg.sender] != 0:
                self._fail("registry: prover already on task")
            self._engagements[task_id][msg.sender] = ENGAGED
        slot_word: uint256 = 0
        slot, slot_word = self._open_slot(task_id, terms.redundancy)
        if slot == MAX_REDUNDANCY:
            self._fail("registry: no free slot")
        price = terms.max_reward
    else:
        self._check_assigned(task_id, assignment, msg.sender)
        if block.timestamp > assignment.deadline:
            self._fail("registry: deadline passed")
        slot = assignment.slot
        price = assignment.price
        deadline = assignment.deadline
        frontend = assignment.frontend

    # Bind the proof to its sender, check the inputs, then the proof.
    binding: uint256 = (head >> BINDING_SHIFT) & 255
    inputs: DynArray[uint256, MAX_PUBLIC_INPUTS] = public_inputs
    index: uint256 = (head >> ADDRESS_INPUT_SHIFT) & 255
    if binding == BINDING_ADDRESS_INPUT:
        if index >= len(inputs):
            self._fail("registry: address input missing")
        inputs[index] = 0
    if keccak256(abi_encode(inputs)) != terms.inputs_commitment:
        self._fail("registry: inputs do not match commitment")
    if binding == BINDING_ADDRESS_INPUT:
        inputs[index] = convert(msg.sender, uint256)
    elif binding == BINDING_COMMIT_REVEAL:
        self._check_reveal(task_id, terms.redundancy, proof)
    if not self._verify(self._head_verifier(head), inputs, proof):
        self._fail("registry: invalid proof")

    # Pay: the prover its (decayed) price, the frontend its fee, the requester the rest.
    paid: uint256 = self._reward_at(terms, price, deadline, block.timestamp)
    fee: uint256 = 0
    if frontend != empty(address):
        fee = terms.frontend_fee
    refund: uint256 = terms.max_reward + terms.frontend_fee - paid - fee
    if terms.mechanism_id == OPEN_RACE:
        self._stakes[msg.sender] = self._with_earnings(msg.sender, self._stakes[msg.sender], paid)
    else:
        self._release(msg.sender, terms.market_id, terms.collateral, 0, paid)
    self._credit(frontend, fee)
    self._credit(terms.requester, refund)
    self._slots[task_id][slot] = block.number << 2 | SLOT_DONE
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


@view
@internal
def _task_status(task_id: bytes32) -> TaskStatus:
    status: TaskStatus = empty(TaskStatus)
    for i: uint256 in range(MAX_REDUNDANCY):
        word: uint256 = self._slots[task_id][i]
        if word == 0:
            break
        state: uint256 = word & STATE_MASK
        if state == SLOT_OPEN:
            status.open += 1
        elif state == SLOT_ASSIGNED:
            status.assigned += 1
        elif word >> 2 != 0:
            status.proven += 1
        else:
            status.closed += 1
    return status


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
        if word & STATE_MASK == SLOT_OPEN:
            return i, word
    return MAX_REDUNDANCY, 0


@view
@internal
def _check_reveal(task_id: bytes32, redundancy: uint256, proof: Bytes[MAX_PROOF_SIZE]):
    committed: uint256 = self._proof_commits[
        keccak256(abi_encode(task_id, msg.sender, keccak256(proof)))
    ]
    if committed == 0:
        self._fail("registry: proof not committed")
    if committed >= block.number:
        self._fail("registry: reveal too early")
    # A proof copied from an earlier reveal was committed after it: refuse it.
    for i: uint256 in range(MAX_REDUNDANCY):
        if i == redundancy:
            break
        word: uint256 = self._slots[task_id][i]
        if word & STATE_MASK == SLOT_DONE and word >> 2 != 0:
            if committed >= word >> 2:
                self._fail("registry: committed after a reveal")


@view
@internal
def _verify(
    verifier: address, inputs: DynArray[uint256, MAX_PUBLIC_INPUTS], proof: Bytes[MAX_PROOF_SIZE]
) -> bool:
    # A malformed answer counts as rejecting the proof. A verifier that reverts (out
    # of gas, for one) has not answered: say so rather than call the proof invalid.
    success: bool = False
    response: Bytes[32] = b""
    success, response = raw_call(
        verifier,
        abi_encode(inputs, proof, method_id=method_id("verify(uint256[],bytes)")),
        max_outsize=32,
        is_static_call=True,
        revert_on_failure=False,
    )
    if not success:
        self._fail("registry: verifier reverted (out of gas?)")
    return len(response) == 32 and convert(response, uint256) == 1


@internal
def _release(prover: address, market_id: uint256, collateral: uint256, taken: uint256, earned: uint256):
    """
    @dev End an assignment: unlock its collateral and a unit of capacity, take
         `taken` of the stake (a slash) and credit `earned` (a proof).
    """
    self._stakes[prover] = self._with_earnings(prover, self._stakes[prover] - (collateral << 88) - taken, earned)
    membership: uint256 = self._memberships[prover][market_id]
    self._memberships[prover][market_id] = membership - (1 << USED_SHIFT)


@internal
def _with_earnings(prover: address, stake_word: uint256, earned: uint256) -> uint256:
    """
    @dev Credit earnings inside the stake word, or to the balance if they would overflow it.
    """
    if (stake_word >> 176) + earned <= MASK80:
        return stake_word + (earned << 176)
    self._credit(prover, earned)
    return stake_word


@internal
def _reopen_or_refund(task_id: bytes32, terms: TaskTerms, slot: uint256) -> bool:
    if block.timestamp <= terms.posted_at + terms.assign_window:
        self._slots[task_id][slot] = SLOT_OPEN | RECORDED
        return True
    self._slots[task_id][slot] = SLOT_DONE
    self._credit(terms.requester, terms.max_reward + terms.frontend_fee)
    log SlotsClosed(
        task_id=task_id,
        requester=terms.requester,
        slots=1,
        refund=terms.max_reward + terms.frontend_fee,
        cancelled=False,
    )
    return False


@internal
def _close_open_slots(terms: TaskTerms, cancelled: bool):
    task_id: bytes32 = self._task_id(terms)
    if self._slots[task_id][0] == 0:
        self._fail("registry: unknown task")
    closed: uint256 = 0
    for i: uint256 in range(MAX_REDUNDANCY):
        if i == terms.redundancy:
            break
        if self._slots[task_id][i] & STATE_MASK == SLOT_OPEN:
            self._slots[task_id][i] = SLOT_DONE
            closed += 1
    if closed == 0:
        self._fail("registry: no open slots")
    refund: uint256 = closed * (terms.max_reward + terms.frontend_fee)
    self._credit(terms.requester, refund)
    log SlotsClosed(
        task_id=task_id, requester=terms.requester, slots=closed, refund=refund, cancelled=cancelled
    )


@internal
def _credit(account: address, amount: uint256):
    if amount > 0:
        self._balances[account] += amount


@internal
def _send(to: address, amount: uint256):
    success: bool = raw_call(to, b"", value=amount, revert_on_failure=False)
    if not success:
        self._fail("registry: transfer failed")


@view
@internal
def _domain_separator() -> bytes32:
    if chain.id == _CACHED_CHAIN_ID:
        return _CACHED_DOMAIN_SEPARATOR
    return self._build_domain_separator()


@view
@internal
def _build_domain_separator() -> bytes32:
    return keccak256(
        abi_encode(
            EIP712_DOMAIN_TYPEHASH,
            keccak256(EIP712_NAME),
            keccak256(EIP712_VERSION),
            chain.id,
            self,
        )
    )


@view
@internal
def _bid_digest(task_id: bytes32, min_price: uint256, expiry: uint256, nonce: uint256) -> bytes32:
    struct_hash: bytes32 = keccak256(abi_encode(BID_TYPEHASH, task_id, min_price, expiry, nonce))
    return keccak256(concat(b"\x19\x01", self._domain_separator(), struct_hash))
