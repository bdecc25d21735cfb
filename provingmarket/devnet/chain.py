"""A development chain of one's own (anvil) and sending to it without waiting for each
transaction: development chains only. `Anvil(base_fee=BASE_FEE)` (1 gwei) charges fees as
a real chain does; `base_fee=0` gives a free chain."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass

from web3 import Web3

ETHER = 10**18
GWEI = 10**9
# The base fee a development chain starts with: nonzero, as on every real chain (it then
# moves with demand per EIP-1559).
BASE_FEE = GWEI


def free_port() -> int:
    """A loopback port free at the time of asking."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Anvil:
    """An anvil node this process starts on a free loopback port and stops by its pid:
    for the demo, the simulation and the benchmarks, which want a chain of their own (ape's
    foundry provider records a full step trace of every transaction, which makes large
    batches slow to mine). `block_time` None mines each transaction at once; a number mines
    a block every that many seconds, like a real chain. `base_fee` (wei) is the first
    block's base fee."""

    def __init__(self, block_time: int | None = None, chain_id: int = 1337, base_fee: int = 0):
        binary = shutil.which("anvil")
        if binary is None:
            raise RuntimeError("anvil is not on PATH; run `make install` (it links it into .venv/bin)")
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        argv = [binary, "--host", "127.0.0.1", "--port", str(self.port), "--chain-id", str(chain_id)]
        argv += ["--silent", "--base-fee", str(base_fee)]
        if base_fee == 0:
            argv += ["--gas-price", "0"]
        self.base_fee = base_fee
        self.chain_id = chain_id
        if block_time is not None:
            argv += ["--block-time", str(block_time)]
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                _, stderr = self.process.communicate()
                raise RuntimeError(f"anvil exited at start: {stderr.decode()[-500:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("anvil did not start listening within 30 s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def __enter__(self) -> Anvil:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def fund(web3, sender: str, addresses: list[str], value: int) -> None:
    """Send `value` wei from `sender` (an account the node holds) to each of `addresses`,
    then wait until every transfer is mined."""
    sent = [web3.eth.send_transaction({"from": sender, "to": to, "value": value}) for to in addresses]
    for tx in sent:
        web3.eth.wait_for_transaction_receipt(tx, timeout=60)


def fees_from_node(web3) -> tuple[int, int]:
    """EIP-1559 fees for a transaction sent now, from the node: (max fee, priority fee)
    per gas. The priority fee is the node's suggestion; the cap leaves room for the base
    fee to double twice (it rises at most 12.5% a block) while a batch is sent."""
    tip = int(web3.eth.max_priority_fee)
    base = int(web3.eth.get_block("latest").get("baseFeePerGas", 0) or 0)
    return 4 * base + tip, tip


def send_signed(client, call, value: int, nonce: int, gas: int = 1_000_000, fees=None) -> bytes:
    """Sign `call` (a contract function call) from the client's signer at `nonce` and
    hand it to the node without waiting; its hash. `fees`: (max fee, priority fee) per gas,
    read from the node (`fees_from_node`) if not given."""
    web3 = client.web3
    max_fee, tip = fees if fees is not None else fees_from_node(web3)
    tx = {
        "to": client.address,
        "value": value,
        "data": call._encode_transaction_data(),
        "gas": gas,
        "nonce": nonce,
        "chainId": web3.eth.chain_id,
        "maxFeePerGas": max_fee,
        "maxPriorityFeePerGas": tip,
    }
    return web3.eth.send_raw_transaction(client.signer.sign_transaction(tx))


def send_all(client, calls: list[tuple[object, int]], gas: int = 1_000_000) -> list[dict]:
    """Send `calls` ((contract function call, value) pairs) from the client's signer with
    consecutive nonces, without waiting between them, then wait for every receipt; a
    reverted one raises. For setting up many transactions at once on a development chain."""
    web3 = client.web3
    nonce = web3.eth.get_transaction_count(client.signer.address, "pending")
    fees = fees_from_node(web3)
    hashes = [send_signed(client, call, value, nonce + i, gas, fees) for i, (call, value) in enumerate(calls)]
    receipts = [web3.eth.wait_for_transaction_receipt(h, timeout=300) for h in hashes]
    reverted = [r["transactionHash"].hex() for r in receipts if r["status"] != 1]
    if reverted:
        raise RuntimeError(f"{len(reverted)} transactions reverted, the first {reverted[0]}")
    return receipts


@dataclass
class Spend:
    """What an account paid in transaction fees: wei (gas used times the effective gas
    price, base fee and priority fee together), gas and transactions."""

    wei: int = 0
    gas: int = 0
    transactions: int = 0

    def add(self, other: Spend) -> Spend:
        self.wei += other.wei
        self.gas += other.gas
        self.transactions += other.transactions
        return self

    def eth(self) -> str:
        """`0.001234 ETH, 1,234,567 gas (12 transactions)`."""
        plural = "" if self.transactions == 1 else "s"
        return f"{self.wei / ETHER:.6f} ETH, {self.gas:,} gas ({self.transactions} transaction{plural})"


def fees_paid(web3, from_block: int, to_block: int | None = None) -> dict[str, Spend]:
    """Transaction fees paid per sender (checksummed address) in blocks `from_block` to
    `to_block` (the head if None), from the receipts: gasUsed x effectiveGasPrice. One
    `eth_getBlockReceipts` call a block."""
    to_block = web3.eth.block_number if to_block is None else to_block
    spent: dict[str, Spend] = {}
    for number in range(from_block, to_block + 1):
        answer = web3.provider.make_request("eth_getBlockReceipts", [hex(number)])
        if "error" in answer:
            raise RuntimeError(f"eth_getBlockReceipts for block {number}: {answer['error']}")
        for receipt in answer["result"] or []:
            gas = int(receipt["gasUsed"], 16)
            one = spent.setdefault(Web3.to_checksum_address(receipt["from"]), Spend())
            one.wei += gas * int(receipt["effectiveGasPrice"], 16)
            one.gas += gas
            one.transactions += 1
    return spent


def spend_of(spent: dict[str, Spend], addresses) -> Spend:
    """The sum of `spent` (from `fees_paid`) over `addresses`."""
    total = Spend()
    for address in addresses:
        total.add(spent.get(Web3.to_checksum_address(address), Spend()))
    return total
