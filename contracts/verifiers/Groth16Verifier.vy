# pragma version 0.4.3
# pragma experimental-codegen
"""
@title Groth16 verifier over BN254, for any circuit
@notice One contract serves any circuit with up to MAX_PUBLIC_INPUTS public
        inputs: its verifying key is given at deployment and kept in code
        (immutables), so a verification reads no storage.

        A proof is 256 bytes: A (x, y), B (x.c1, x.c0, y.c1, y.c0), C (x, y), each
        a 32-byte big-endian word, the EIP-197 order snarkjs and groth16py emit.
        `verify` checks e(A, B) = e(alpha, beta) e(vk_x, gamma) e(C, delta) with
        vk_x = IC[0] + sum(input[i] * IC[i + 1]) as one pairing-product call:
        e(A, B) e(C, -delta) e(alpha, -beta) e(vk_x, -gamma) = 1, the G2 points
        negated once at deployment. (In that order the proof's 256 bytes open the
        pairing input whole, followed by delta.)

        It answers False, and never reverts or accepts, for a wrong proof, wrong
        public inputs, a wrong number of inputs, an input at or above the scalar
        field modulus, proof points off the curve (or, for B, outside the
        subgroup) or coordinates at or above the base field modulus, and proof
        bytes of the wrong length. (Calls beyond the interface's bounds, more than
        16 inputs or 1024 proof bytes, are refused by the ABI decoder.)

        Running out of gas reverts, never answers False: the pairing precompile
        gets exactly the gas it costs (EIP-1108), and `verify` reverts first when
        that much is not left. So a failed precompile call means invalid points,
        and a caller who starves the call cannot turn a valid proof into a
        rejected one; gas estimation (which searches for the least gas that does
        not revert) finds the real cost.
"""

from ..interfaces import IVerifier

implements: IVerifier

MAX_PUBLIC_INPUTS: constant(uint256) = 16
MAX_PROOF_SIZE: constant(uint256) = 1024
PROOF_SIZE: constant(uint256) = 256

# BN254 base field (coordinates) and scalar field (public inputs).
P: constant(uint256) = 21888242871839275222246405745257275088696311157297823662689037894645226208583
R: constant(uint256) = 21888242871839275222246405745257275088548364400416034343698204186575808495617

# EIP-1108 pairing cost for four pairs, and the least gas left before the call
# that lets the precompile have all of it (a call passes on at most 63/64).
PAIRING_GAS: constant(uint256) = 45_000 + 4 * 34_000
PAIRING_RESERVE: constant(uint256) = PAIRING_GAS * 64 // 63 + 2_000

# Gas: this file compiles with Vyper's venom pipeline (see the first lines), and
# the order of the immutables is their layout in code: IC first (point i is read
# at code offset 64 * i), then DELTA_NEG, ALPHA and BETA_NEG side by side, so one
# CODECOPY puts all three into the pairing input.
IC: immutable(uint256[2][MAX_PUBLIC_INPUTS + 1])
DELTA_NEG: immutable(uint256[4])
ALPHA: immutable(uint256[2])
BETA_NEG: immutable(uint256[4])
GAMMA_NEG: immutable(uint256[4])
PUBLIC_INPUTS: immutable(uint256)


@deploy
def __init__(
    alpha: uint256[2],
    beta: uint256[4],
    gamma: uint256[4],
    delta: uint256[4],
    ic: DynArray[uint256[2], MAX_PUBLIC_INPUTS + 1],
):
    """
    @notice Deploy a verifier for one verifying key.
    @param alpha vk_alpha_1 in G1 (x, y).
    @param beta vk_beta_2 in G2, EIP-197 order (x.c1, x.c0, y.c1, y.c0).
    @param gamma vk_gamma_2 in G2, same order.
    @param delta vk_delta_2 in G2, same order.
    @param ic IC (snarkjs) or gamma_abc (arkworks): one G1 point for the
           constant and one per public input, so the circuit has len(ic) - 1
           public inputs.
    @dev A key with an IC point at infinity for a public input is refused: such
         an input takes part in no constraint and any value of it would verify
         (for this market, any prover's address). So is a key whose gamma equals
         its delta, for which anyone can forge a proof of anything.
    """
    assert len(ic) >= 1, "verifier: key has no IC points"
    assert self._on_g1(alpha) and alpha[0] | alpha[1] != 0, "verifier: alpha not a G1 point"
    assert self._on_g1(ic[0]), "verifier: IC[0] not a G1 point"
    points: uint256[2][MAX_PUBLIC_INPUTS + 1] = empty(uint256[2][MAX_PUBLIC_INPUTS + 1])
    points[0] = ic[0]
    for i: uint256 in range(1, MAX_PUBLIC_INPUTS + 1):
        if i == len(ic):
            break
        assert self._on_g1(ic[i]), "verifier: an IC point is not a G1 point"
        assert ic[i][0] | ic[i][1] != 0, "verifier: a public input takes part in no constraint"
        points[i] = ic[i]
    assert self._valid_g2(beta), "verifier: beta not a G2 point"
    assert self._valid_g2(gamma), "verifier: gamma not a G2 point"
    assert self._valid_g2(delta), "verifier: delta not a G2 point"
    # With gamma = delta, C = -vk_x cancels the inputs and A = alpha, B = beta
    # "proves" anything.
    same: bool = True
    for i: uint256 in range(4):
        same = same and gamma[i] == delta[i]
    assert not same, "verifier: gamma equals delta"

    ALPHA = alpha
    BETA_NEG = self._neg_g2(beta)
    GAMMA_NEG = self._neg_g2(gamma)
    DELTA_NEG = self._neg_g2(delta)
    IC = points
    PUBLIC_INPUTS = len(ic) - 1


@view
@external
def verify(public_inputs: DynArray[uint256, MAX_PUBLIC_INPUTS], proof: Bytes[MAX_PROOF_SIZE]) -> bool:
    """
    @notice Check a Groth16 proof against its public inputs.
    @param public_inputs The circuit's public inputs, in its order.
    @param proof A, B, C as eight 32-byte words (see the contract notice).
    @return True if and only if the proof is valid for these inputs. Reverts
            only when the call has too little gas to finish.
    @dev Declared first: the dispatcher tests this selector before the others.
         It costs at most what snarkjs's generated Solidity verifier costs for
         the same key and proof (scripts/bench.py, docs/benchmarks.md), so the
         code is shaped for the compiler: both lengths in one test, one loop over
         the inputs with a second counter for IC (indexing the inputs would check
         bounds twice), no branch for a zero input (ecMul gives the point at
         infinity, which ecAdd ignores), the pairing input built by one concat
         with the proof's 256 bytes copied whole, and the answer read from the
         precompile's return data alone (a failed call returns none, which
         converts to 0). Measure with `ape run bench --only verifier` after any
         change here.
    """
    if (len(proof) ^ PROOF_SIZE) | (len(public_inputs) ^ PUBLIC_INPUTS) != 0:
        return False

    # vk_x = IC[0] + sum(input[i] * IC[i + 1]). The key's points were checked at
    # deployment and each input is below R, so these calls fail only for gas,
    # and then the builtins revert.
    vk_x: uint256[2] = IC[0]
    i: uint256 = 1
    for value: uint256 in public_inputs:
        if value >= R:
            return False
        vk_x = ecadd(vk_x, ecmul(IC[i], value))
        i = unsafe_add(i, 1)  # at most 17: the ABI decoder bounds the inputs at 16

    # With the whole EIP-1108 price in hand, the precompile fails only for points
    # off the curve, outside the subgroup or with a coordinate at or above P.
    if msg.gas >= PAIRING_RESERVE:
        success: bool = False
        result: Bytes[32] = b""
        success, result = raw_call(
            0x0000000000000000000000000000000000000008,
            concat(
                slice(proof, 0, PROOF_SIZE),  # A, B, then C paired with -delta
                convert(DELTA_NEG[0], bytes32),
                convert(DELTA_NEG[1], bytes32),
                convert(DELTA_NEG[2], bytes32),
                convert(DELTA_NEG[3], bytes32),
                convert(ALPHA[0], bytes32),
                convert(ALPHA[1], bytes32),
                convert(BETA_NEG[0], bytes32),
                convert(BETA_NEG[1], bytes32),
                convert(BETA_NEG[2], bytes32),
                convert(BETA_NEG[3], bytes32),
                convert(vk_x[0], bytes32),
                convert(vk_x[1], bytes32),
                convert(GAMMA_NEG[0], bytes32),
                convert(GAMMA_NEG[1], bytes32),
                convert(GAMMA_NEG[2], bytes32),
                convert(GAMMA_NEG[3], bytes32),
            ),
            max_outsize=32,
            gas=PAIRING_GAS,
            is_static_call=True,
            revert_on_failure=False,
        )
        # 1 if the product is 1, 0 if not; empty, so 0, if the call failed.
        return convert(result, uint256) == 1
    raise "verifier: out of gas"


@view
@external
def public_inputs() -> uint256:
    """
    @notice How many public inputs this verifier's circuit has.
    """
    return PUBLIC_INPUTS


@view
@external
def verifying_key() -> (uint256[2], uint256[4], uint256[4], uint256[4], DynArray[uint256[2], MAX_PUBLIC_INPUTS + 1]):
    """
    @notice The verifying key this verifier was deployed with, in the constructor's
            form (G2 points as given, not negated), so anyone can compare it with
            a circuit's published key.
    """
    ic: DynArray[uint256[2], MAX_PUBLIC_INPUTS + 1] = []
    for i: uint256 in range(MAX_PUBLIC_INPUTS + 1):
        if i > PUBLIC_INPUTS:
            break
        ic.append(IC[i])
    return ALPHA, self._neg_g2(BETA_NEG), self._neg_g2(GAMMA_NEG), self._neg_g2(DELTA_NEG), ic


@pure
@internal
def _on_g1(point: uint256[2]) -> bool:
    # y^2 = x^3 + 3 over P, coordinates reduced; (0, 0) is the point at infinity.
    x: uint256 = point[0]
    y: uint256 = point[1]
    if x >= P or y >= P:
        return False
    if x == 0 and y == 0:
        return True
    return uint256_mulmod(y, y, P) == uint256_addmod(uint256_mulmod(uint256_mulmod(x, x, P), x, P), 3, P)


@view
@internal
def _valid_g2(point: uint256[4]) -> bool:
    # The pairing precompile checks G2 points: on the twist and in the subgroup.
    # e(G1, Q) e(-G1, Q) = 1 for any valid Q; the call fails for an invalid one.
    if point[0] | point[1] | point[2] | point[3] == 0:
        return False
    for word: uint256 in point:
        if word >= P:
            return False
    g1: Bytes[64] = concat(convert(1, bytes32), convert(2, bytes32))
    g1_neg: Bytes[64] = concat(convert(1, bytes32), convert(P - 2, bytes32))
    q: Bytes[128] = concat(
        convert(point[0], bytes32), convert(point[1], bytes32), convert(point[2], bytes32), convert(point[3], bytes32)
    )
    success: bool = False
    result: Bytes[32] = b""
    success, result = raw_call(
        0x0000000000000000000000000000000000000008,
        concat(g1, q, g1_neg, q),
        max_outsize=32,
        is_static_call=True,
        revert_on_failure=False,
    )
    return success and len(result) == 32 and convert(result, uint256) == 1


@pure
@internal
def _neg_g2(point: uint256[4]) -> uint256[4]:
    # -(x, y) = (x, -y); y's two words are reduced and P - 0 would not be.
    return [point[0], point[1], (P - point[2]) % P, (P - point[3]) % P]
