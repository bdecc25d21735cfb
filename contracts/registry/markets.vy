# pragma version 0.4.3
# pragma nonreentrancy on
"""
@title Markets and their verifiers
@notice A market is a proof type: a verifier, a sample the verifier accepted at
        creation, the least collateral and reward a task in it may name, the grace
        period for a free decline, how a slash is split and how a proof is bound to
        its prover.

        The trust model. The registry deploys verifiers itself from blueprints fixed
        when it was deployed (`deploy_verifier`): such a verifier (the Groth16 one:
        its key in immutables, no storage, no calls but to the precompiles) cannot
        change its answers, and a market on it is trusted. A market may name any
        other verifier, but then it is marked `custom`: its answers may depend on
        storage or other contracts, so provers should take part only if they have
        reviewed its code (the prover agent and `prover join` refuse a custom market
        unless their operator names its exact code hash). A custom verifier's code
        hash is recorded at creation; if it ever changes, the market is frozen: no
        new tasks or assignments, proofs refused, and live assignments are voided
        (not slashed) by `slash`.
"""

from . import reasons
from . import words

# ------------------------------------------------------------------ constants

MAX_PUBLIC_INPUTS: constant(uint256) = 16  # field elements
MAX_PROOF_SIZE: constant(uint256) = 1024  # bytes
MAX_BLUEPRINTS: constant(uint256) = 4  # verifier blueprints fixed at deployment
MAX_VERIFIER_ARGS: constant(uint256) = 2_048  # bytes of a verifier's constructor arguments
MAX_VERIFY_GAS: constant(uint256) = 3_000_000  # gas a verifier may use per proof

BPS: constant(uint256) = 10_000  # basis points in 100%
MAX_CALLER_BPS: constant(uint256) = 1_000  # a slasher's bounty is capped at 10%
MIN_GRACE_PERIOD: constant(uint256) = 2  # seconds: a decline must be possible
MAX_GRACE_PERIOD: constant(uint256) = 86_400  # seconds

# How a market binds a proof to the prover that submits it.
BINDING_NONE: constant(uint256) = 0  # no binding: assigned tasks of one prover only
BINDING_ADDRESS_INPUT: constant(uint256) = 1  # a public input carries the prover's address
BINDING_COMMIT_REVEAL: constant(uint256) = 2  # races are run by commits that take a slot

# ERC-5202: a blueprint's code starts 0xFE 0x71 0x00 (never runs); an EIP-7702
# delegated account's code is 0xEF 0x01 0x00 followed by the delegate's address.
BLUEPRINT_PREAMBLE: constant(bytes3) = 0xfe7100
DELEGATION_PREFIX: constant(bytes3) = 0xef0100

# ------------------------------------------------------------------ structs


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
    custom: bool  # the verifier was not deployed by the registry from a blueprint
    frozen: bool  # custom, and its code hash is no longer the one recorded


# ------------------------------------------------------------------ public state

market_count: public(uint256)
blueprint_count: uint256  # blueprints registered at deployment, from 1

# ------------------------------------------------------------------ internal state

_blueprints: HashMap[uint256, address]  # id (from 1) -> ERC-5202 blueprint
_verifier_blueprints: HashMap[address, uint256]  # verifier -> the blueprint it came from
_market_head: HashMap[uint256, uint256]  # the head word (words.vy)
_market_limits: HashMap[uint256, uint256]  # min collateral | min reward << 128
_market_codehash: HashMap[uint256, bytes32]
_market_creator: HashMap[uint256, address]

# ------------------------------------------------------------------ events


event BlueprintRegistered:
    blueprint_id: indexed(uint256)
    blueprint: indexed(address)
    codehash: bytes32


event VerifierDeployed:
    verifier: indexed(address)
    blueprint_id: indexed(uint256)
    deployer: indexed(address)
    codehash: bytes32


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
    custom: bool


event MarketPaused:
    market_id: indexed(uint256)
    paused: bool


@deploy
def __init__(blueprints: DynArray[address, MAX_BLUEPRINTS]):
    """
    @param blueprints ERC-5202 blueprints of the verifiers the registry may deploy
           (the Groth16 verifier first); fixed for the registry's life.
    """
    for blueprint: address in blueprints:
        assert blueprint.codesize > 3, "registry: blueprint has no code"
        assert convert(slice(blueprint.code, 0, 3), bytes3) == BLUEPRINT_PREAMBLE, "registry: not a blueprint"
        blueprint_id: uint256 = self.blueprint_count + 1
        self.blueprint_count = blueprint_id
        self._blueprints[blueprint_id] = blueprint
        log BlueprintRegistered(blueprint_id=blueprint_id, blueprint=blueprint, codehash=blueprint.codehash)


# ------------------------------------------------------------------ external


@external
def deploy_verifier(blueprint_id: uint256, args: Bytes[MAX_VERIFIER_ARGS]) -> address:
    """
    @notice Deploy a verifier from one of the registry's blueprints. Markets on it
            are trusted (not custom). Anyone may.
    @param blueprint_id The blueprint (1: the Groth16 verifier).
    @param args The verifier's ABI-encoded constructor arguments (Groth16: its
           verifying key); the verifier's constructor checks them.
    @return The new verifier's address.
    """
    blueprint: address = self._blueprints[blueprint_id]
    if blueprint == empty(address):
        reasons.fail(reasons.UNKNOWN_BLUEPRINT)
    verifier: address = create_from_blueprint(blueprint, args, raw_args=True, code_offset=3)
    self._verifier_blueprints[verifier] = blueprint_id
    log VerifierDeployed(
        verifier=verifier, blueprint_id=blueprint_id, deployer=msg.sender, codehash=verifier.codehash
    )
    return verifier


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
    @param verifier An IVerifier. One the registry deployed (`deploy_verifier`) makes
           a trusted market; any other makes a custom one (see the module notice).
    @param sample_inputs Public inputs of a sample the verifier must accept now.
    @param sample_proof The sample proof.
    @param min_collateral Least collateral per prover a task may lock, in wei.
    @param min_reward Least maximum reward a task may offer, in wei.
    @param grace_period Seconds after assignment during which a prover may decline
           (MIN_GRACE_PERIOD to MAX_GRACE_PERIOD); a task's proving window must be
           longer.
    @param requester_bps Share of a slashed collateral credited to the requester.
    @param caller_bps Share credited to whoever slashes (at most MAX_CALLER_BPS;
           burnt when the caller is the task's requester or the slashed prover).
           The rest is burnt.
    @param binding BINDING_NONE, BINDING_ADDRESS_INPUT or BINDING_COMMIT_REVEAL.
    @param address_input With BINDING_ADDRESS_INPUT, the index of the public
           input that carries the prover's address.
    @return The new market's id.
    """
    custom: bool = self._verifier_blueprints[verifier] == 0
    if custom:
        if not verifier.is_contract:
            reasons.fail(reasons.VERIFIER_HAS_NO_CODE)
        if verifier.codesize >= 3 and convert(slice(verifier.code, 0, 3), bytes3) == DELEGATION_PREFIX:
            reasons.fail(reasons.VERIFIER_DELEGATED)
    if caller_bps > MAX_CALLER_BPS:
        reasons.fail(reasons.CALLER_SHARE_ABOVE_CAP)
    if requester_bps > BPS or requester_bps + caller_bps > BPS:
        reasons.fail(reasons.SHARES_ABOVE_ALL)
    if binding > BINDING_COMMIT_REVEAL:
        reasons.fail(reasons.UNKNOWN_BINDING)
    if binding == BINDING_ADDRESS_INPUT:
        if address_input >= len(sample_inputs):
            reasons.fail(reasons.ADDRESS_INPUT_OUT_OF_RANGE)
    if address_input >= MAX_PUBLIC_INPUTS:
        reasons.fail(reasons.ADDRESS_INPUT_OUT_OF_RANGE)
    if grace_period < MIN_GRACE_PERIOD:
        reasons.fail(reasons.GRACE_TOO_SHORT)
    if grace_period > MAX_GRACE_PERIOD:
        reasons.fail(reasons.GRACE_TOO_LONG)
    if min_collateral > words.MASK88 or min_reward > words.MASK80:
        reasons.fail(reasons.MINIMUM_TOO_LARGE)
    reason: uint256 = self.verify(verifier, sample_inputs, sample_proof)
    if reason == reasons.INVALID_PROOF:
        reasons.fail(reasons.SAMPLE_REJECTED)
    if reason != reasons.OK:
        reasons.fail(reason)

    market_id: uint256 = self.market_count + 1
    self.market_count = market_id
    head: uint256 = (
        convert(verifier, uint256)
        | binding << words.BINDING_SHIFT
        | address_input << words.ADDRESS_INPUT_SHIFT
        | grace_period << words.GRACE_SHIFT
        | requester_bps << words.REQUESTER_BPS_SHIFT
        | caller_bps << words.CALLER_BPS_SHIFT
    )
    if custom:
        head = head | words.CUSTOM
    self._market_head[market_id] = head
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
        custom=custom,
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
        reasons.fail(reasons.NOT_MARKET_CREATOR)
    head: uint256 = self._market_head[market_id] & ~words.PAUSED
    if paused:
        head = head | words.PAUSED
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
        verifier=words.to_address(head),
        creator=self._market_creator[market_id],
        codehash=self._market_codehash[market_id],
        paused=head & words.PAUSED != 0,
        binding=words.head_binding(head),
        address_input=(head >> words.ADDRESS_INPUT_SHIFT) & words.MASK4,
        grace_period=words.head_grace(head),
        requester_bps=words.head_requester_bps(head),
        caller_bps=words.head_caller_bps(head),
        min_collateral=limits & words.MASK128,
        min_reward=limits >> 128,
        custom=head & words.CUSTOM != 0,
        frozen=self.frozen(market_id, head),
    )


@view
@external
def market_index(market_id: uint256) -> (uint256, uint256, uint256):
    """
    @notice The market's price and latency index: exponential moving averages, with
            smoothing 1/8 (new = (7 * old + sample) / 8), of what each proof paid its
            prover and of the time from the slot's assignment (a race: its start) to
            the proof, updated by every proof (words.vy has the layout).
    @param market_id The market.
    @return (price in wei, latency in seconds, proofs counted up to 255); all 0 before
            the first proof, and for an unknown market.
    """
    index: uint256 = self._market_head[market_id] >> words.INDEX_SHIFT
    return (
        words.expand(index >> words.INDEX_PRICE_SHIFT, words.PRICE_MANTISSA),
        words.expand(index >> words.INDEX_LATENCY_SHIFT & 65535, words.LATENCY_MANTISSA) >> words.LATENCY_UNITS,
        index & 255,
    )


@view
@external
def blueprint(blueprint_id: uint256) -> address:
    """
    @notice A verifier blueprint the registry deploys from.
    @param blueprint_id From 1 to blueprint_count.
    @return Its address (empty if unknown).
    """
    return self._blueprints[blueprint_id]


@view
@external
def verifier_blueprint(verifier: address) -> uint256:
    """
    @notice Which blueprint the registry deployed a verifier from.
    @param verifier The verifier.
    @return The blueprint id, or 0 for a verifier the registry did not deploy.
    """
    return self._verifier_blueprints[verifier]


# ------------------------------------------------------------------ internal


@view
@internal
def frozen(market_id: uint256, head: uint256) -> bool:
    """
    @dev A custom market whose verifier's code is no longer what it was at creation.
         Trusted verifiers cannot change (no SELFDESTRUCT, no delegation), so only
         custom markets pay for the EXTCODEHASH.
    """
    if head & words.CUSTOM == 0:
        return False
    return words.to_address(head).codehash != self._market_codehash[market_id]


@view
@internal
def refusal(market_id: uint256, head: uint256) -> uint256:
    """
    @dev Why a market takes no new task or assignment now, or "".
    """
    if head == 0:
        return reasons.UNKNOWN_MARKET
    if head & words.PAUSED != 0:
        return reasons.MARKET_PAUSED
    if self.frozen(market_id, head):
        return reasons.VERIFIER_CHANGED
    return reasons.OK


@view
@internal
def verify(
    verifier: address, inputs: DynArray[uint256, MAX_PUBLIC_INPUTS], proof: Bytes[MAX_PROOF_SIZE]
) -> uint256:
    """
    @dev "" for a proof the verifier accepts, else why not. A malformed answer counts
         as a rejection. A verifier that reverts (out of gas, for one) has not
         answered: say so rather than call the proof invalid. It gets at most
         MAX_VERIFY_GAS, so one verifier cannot eat a batch's gas.
    """
    success: bool = False
    response: Bytes[32] = b""
    success, response = raw_call(
        verifier,
        abi_encode(inputs, proof, method_id=method_id("verify(uint256[],bytes)")),
        max_outsize=32,
        gas=MAX_VERIFY_GAS,
        is_static_call=True,
        revert_on_failure=False,
    )
    if not success:
        return reasons.VERIFIER_REVERTED
    if len(response) == 32 and convert(response, uint256) == 1:
        return reasons.OK
    return reasons.INVALID_PROOF
