"""Stand up a registry with a real Groth16 market on a development chain (anvil): used by
the demo, the benchmark and the tests.

The market proves the sample circuit `square` (provingmarket/proving/samples/square: "I know
x with x*x = y", the prover's address as public input 0) and its verifier is
contracts/verifiers/Groth16Verifier.vy deployed with that circuit's verifying key. Proofs
are real Groth16 proofs from a proving backend (groth16py in-process when installed, else
snarkjs). The circuit's keys come from a single-party setup: for tests and demos only.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass

from eth_utils import keccak

from provingmarket.chain.markets import MarketTerms, deploy_registry, open_market
from provingmarket.formats import DUTCH, OPEN_RACE, TaskTerms, inputs_commitment
from provingmarket.proving.backends import CommandBackend, Groth16pyBackend, ProvingBackend
from provingmarket.proving.circuits import Circuit

ETHER = 10**18
SQUARE = Circuit.load("square")
ADDRESS_INPUT = SQUARE.address_input
SAMPLE_INPUTS = SQUARE.sample  # {"x": 7, "y": 49}
STATEMENT = SQUARE.statement(SAMPLE_INPUTS)  # [0, 49]: prover address (filled by the registry), y
PROVER_INPUT = json.dumps(SAMPLE_INPUTS, sort_keys=True).encode()  # what the prover needs: x


@functools.cache
def default_backend() -> ProvingBackend:
    """groth16py in-process if installed (the optional GPL extra), else snarkjs."""
    try:
        return Groth16pyBackend()
    except RuntimeError:
        return CommandBackend.snarkjs()


@functools.cache
def square_proof(public_inputs: tuple[int, ...] | list[int], prover: str | None = None) -> bytes:
    """A real proof of the square circuit for `public_inputs` ([address, y] with y a
    perfect square), made as `prover` (None keeps the address input as given)."""
    public = list(public_inputs)
    y = public[1]
    x = math.isqrt(y)
    if x * x != y:
        raise ValueError(f"{y} is not a perfect square; this helper proves squares only")
    address = prover if prover is not None else public[ADDRESS_INPUT]
    return default_backend().prove(SQUARE, {"x": x, "y": y}, address).proof


def proof_for(public_inputs: list[int], prover: str | None = None) -> bytes:
    return square_proof(tuple(public_inputs), prover)


@dataclass
class Stack:
    registry: object
    verifier: object
    market_id: int
    mechanism_id: int


def deploy_stack(ape, owner, frontends: list, unbonding_delay: int = 3_600, grace_period: int = 60) -> Stack:
    """Deploy the registry and the square circuit's verifier, create its market
    (half a slashed collateral to the requester, a tenth to whoever slashes, the rest
    burnt), register a mechanism for `frontends`."""
    registry = deploy_registry(ape, owner, unbonding_delay)
    terms = MarketTerms(grace_period=grace_period)
    opened = open_market(ape, registry, SQUARE, owner, default_backend(), terms)
    verifier = ape.project.Groth16Verifier.at(opened.verifier)
    tx = registry.register_mechanism("orderbook", frontends, sender=owner)
    mechanism_id = tx.events.filter(registry.MechanismRegistered)[0].mechanism_id
    return Stack(registry, verifier, opened.market_id, mechanism_id)


def task_terms(market_id: int, mechanism_id: int, **overrides) -> TaskTerms:
    """Terms of a task proving STATEMENT, with the registry's fields left for it to fill.
    Built-in mechanisms pay no frontend fee, and an open race has no assignment window."""
    builtin = mechanism_id in (OPEN_RACE, DUTCH)
    values = dict(
        market_id=market_id,
        requester="0x" + "00" * 20,
        posted_at=0,
        inputs_commitment=inputs_commitment(STATEMENT, ADDRESS_INPUT),
        prover_input_hash=keccak(PROVER_INPUT),
        max_reward=ETHER // 10,
        frontend_fee=0 if builtin else ETHER // 1000,
        assign_window=0 if mechanism_id == OPEN_RACE else 600,
        proving_window=300,
        collateral=ETHER // 2,
        capabilities=0,
        redundancy=1,
        mechanism_id=mechanism_id,
        start_price=0,
        ramp=0,
        decay=False,
        decay_floor=0,
    )
    values.update(overrides)
    return TaskTerms(**values)


class Anvil:
    """An anvil node this process starts on a free loopback port and stops by its pid:
    for the demo and the benchmarks, which want a chain of their own (ape's foundry
    provider records a full step trace of every transaction, which makes large batches
    slow to mine). `block_time` None mines each transaction at once; a number mines a
    block every that many seconds, like a real chain."""

    def __init__(self, block_time: int | None = None, chain_id: int = 1337):
        import shutil
        import socket
        import subprocess
        import time

        binary = shutil.which("anvil")
        if binary is None:
            raise RuntimeError("anvil is not on PATH; run `make install` (it links it into .venv/bin)")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.uri = f"http://127.0.0.1:{self.port}"
        argv = [
            binary,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--chain-id",
            str(chain_id),
            "--silent",
        ]
        argv += ["--base-fee", "0", "--gas-price", "0"]
        if block_time is not None:
            argv += ["--block-time", str(block_time)]
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"anvil exited at start: {self.process.stderr.read().decode()[-500:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("anvil did not start listening within 30 s")

    def stop(self) -> None:
        import subprocess

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


def send_signed(client, call, value: int, nonce: int, gas: int = 1_000_000) -> bytes:
    """Sign `call` (a contract function call) from the client's signer at `nonce` and
    hand it to the node without waiting; its hash. Development chains only: fees are
    fixed (anvil runs with a base fee of 0 here)."""
    web3 = client.web3
    tx = {
        "to": client.address,
        "value": value,
        "data": call._encode_transaction_data(),
        "gas": gas,
        "nonce": nonce,
        "chainId": web3.eth.chain_id,
        "maxFeePerGas": 10**10,
        "maxPriorityFeePerGas": 0,
    }
    return web3.eth.send_raw_transaction(client.signer.sign_transaction(tx))


def send_all(client, calls: list[tuple[object, int]], gas: int = 1_000_000) -> list[dict]:
    """Send `calls` ((contract function call, value) pairs) from the client's signer with
    consecutive nonces, without waiting between them, then wait for every receipt; a
    reverted one raises. For setting up many transactions at once on a development chain."""
    web3 = client.web3
    nonce = web3.eth.get_transaction_count(client.signer.address, "pending")
    hashes = [send_signed(client, call, value, nonce + i, gas) for i, (call, value) in enumerate(calls)]
    receipts = [web3.eth.wait_for_transaction_receipt(h, timeout=300) for h in hashes]
    reverted = [r["transactionHash"].hex() for r in receipts if r["status"] != 1]
    if reverted:
        raise RuntimeError(f"{len(reverted)} transactions reverted, the first {reverted[0]}")
    return receipts


def stop_processes(processes: dict, logs, say) -> bool:
    """Stop each process started (name → subprocess.Popen) by its pid: SIGTERM, then
    SIGKILL after 30 s. True if every one exited 0 (one that had already exited counts
    with its own code); `say` names each that did not, with its log in `logs`."""
    import signal
    import subprocess

    clean = True
    for name, process in processes.items():
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        if process.returncode != 0:
            clean = False
            say(
                f"  {name} (pid {process.pid}) exited with {process.returncode}; see {logs / (name + '.log')}"
            )
    return clean
