# pragma version 0.4.3
"""
@title Keccak commitment verifier (a stand-in, not a zero-knowledge verifier)
@notice FOR TESTS AND THE DEMO ONLY, until the Groth16 verifier lands: a "proof"
        is valid when it equals keccak256(abi.encode(public_inputs)). Like a real
        circuit whose public input carries the prover's address, a proof made for
        one prover fails for another. `set_broken` makes it reject everything, to
        test a verifier that misbehaves.
"""

broken: public(bool)


@external
def set_broken(broken: bool):
    """
    @notice Make every proof fail (tests of a misbehaving verifier).
    @param broken True to reject everything.
    """
    self.broken = broken


@view
@external
def verify(public_inputs: DynArray[uint256, 16], proof: Bytes[1024]) -> bool:
    """
    @notice Accept proof == keccak256(abi.encode(public_inputs)).
    @param public_inputs The statement.
    @param proof 32 bytes.
    @return Whether the proof matches.
    """
    if self.broken:
        return False
    return len(proof) == 32 and extract32(proof, 0) == keccak256(abi_encode(public_inputs))
