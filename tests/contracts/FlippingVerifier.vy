# pragma version 0.4.3
"""
@title A verifier whose answer is a switch in its own storage (tests only)
@notice The first finding of the review: it accepts the sample when its market is
        created, then its owner flips it to reject every proof (honest provers are
        slashed) or to accept any (requesters pay for garbage), and its code hash never
        changes. The registry marks a market on it `custom`; provers refuse such
        markets unless they reviewed the code.
"""

accepting: public(bool)


@deploy
def __init__():
    self.accepting = True


@external
def set_accepting(accepting: bool):
    self.accepting = accepting


@view
@external
def verify(public_inputs: DynArray[uint256, 16], proof: Bytes[1024]) -> bool:
    return self.accepting
