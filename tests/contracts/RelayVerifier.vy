# pragma version 0.4.3
"""
@title A verifier that relays the question to another contract (tests only)
@notice Its answer is whatever the contract it names says, so it can change without its
        own code changing. The registry marks a market on it `custom`.
"""

interface IVerifier:
    def verify(public_inputs: DynArray[uint256, 16], proof: Bytes[1024]) -> bool: view

target: public(address)


@deploy
def __init__(target: address):
    self.target = target


@view
@external
def verify(public_inputs: DynArray[uint256, 16], proof: Bytes[1024]) -> bool:
    return staticcall IVerifier(self.target).verify(public_inputs, proof)
