"""What an account paid in fees, as `provingmarket.devnet.fees_paid` reads it from the
receipts (the demo, the simulation and the benches report it): on the test chain, which
charges a base fee, an account's balance falls by exactly what it sent plus that."""

from __future__ import annotations

from provingmarket.devnet import fees_from_node, fees_paid, spend_of


def test_fees_paid__a_senders_balance_falls_by_its_value_plus_the_fees_read_from_the_receipts(
    accounts, chain
):
    web3 = chain.provider.web3
    alice, bob, carol = accounts[5], accounts[6], accounts[7]
    assert web3.eth.get_block("latest")["baseFeePerGas"] > 0  # ape-config.yaml: base_fee
    first = web3.eth.block_number + 1
    before = {a.address: web3.eth.get_balance(a.address) for a in (alice, bob)}
    max_fee, tip = fees_from_node(web3)
    assert max_fee >= tip and max_fee >= web3.eth.get_block("latest")["baseFeePerGas"]
    for sender, value in ((alice, 10**15), (alice, 2 * 10**15), (bob, 3 * 10**15)):
        sender.transfer(carol, value)
    spent = fees_paid(web3, first)
    assert spent[alice.address].transactions == 2 and spent[bob.address].transactions == 1
    assert spent[alice.address].gas == 2 * 21_000 and spent[alice.address].wei > 0
    assert (
        web3.eth.get_balance(alice.address) == before[alice.address] - 3 * 10**15 - spent[alice.address].wei
    )
    assert web3.eth.get_balance(bob.address) == before[bob.address] - 3 * 10**15 - spent[bob.address].wei
    both = spend_of(spent, [alice.address, bob.address.lower(), carol.address])
    assert (both.transactions, both.wei) == (3, spent[alice.address].wei + spent[bob.address].wei)
