# pragma version 0.4.3
"""
@title A requester/prover contract that tries to re-enter the registry (tests only)
@notice On receiving ETH from `withdraw` it calls `withdraw` again; the registry's
        reentrancy lock must make that inner call fail, and so the whole withdrawal.
"""

interface IRegistry:
    def withdraw(): nonpayable
    def stake(): payable
    def unstake(amount: uint256): nonpayable
    def withdraw_stake(): nonpayable

registry: public(IRegistry)
attacking: bool


@deploy
def __init__(registry: address):
    self.registry = IRegistry(registry)


@payable
@external
def stake():
    extcall self.registry.stake(value=msg.value)


@external
def unstake_and_withdraw(amount: uint256):
    extcall self.registry.unstake(amount)


@external
def withdraw_stake():
    self.attacking = True
    extcall self.registry.withdraw_stake()
    self.attacking = False


@payable
@external
def __default__():
    if self.attacking:
        extcall self.registry.withdraw_stake()
