"""The proving backend of each market, from `--backend` (docs/agent.md), and the check a
command backend's proof passes before it is kept: the market's verifier, by eth_call."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from pathlib import Path

from web3 import Web3

from provingmarket.chain.client import RegistryClient
from provingmarket.proving.backends import (
    BackendError,
    ProofCheck,
    ProvingBackend,
    backend_from_config,
)
from provingmarket.runtime import process as runtime

VERIFY_ABI = [
    {
        "type": "function",
        "name": "verify",
        "stateMutability": "view",
        "inputs": [{"name": "public_inputs", "type": "uint256[]"}, {"name": "proof", "type": "bytes"}],
        "outputs": [{"name": "", "type": "bool"}],
    }
]


class Backends:
    """The backend of each market, from `--backend`: a name for every market, or a JSON
    file holding one configuration for every market ({"backend": "snarkjs", ...}) or one
    per market id, with an optional "default" ({"1": {...}, "default": {...}})."""

    def __init__(self, spec: str, check_for: Callable[[int], ProofCheck]):
        self.spec = spec
        self.check_for = check_for
        self.default: Mapping[str, object] | None = None
        self.per_market: dict[int, Mapping[str, object]] = {}
        if spec in ("auto", "groth16py", "snarkjs"):
            self.default = {"backend": spec}
        else:
            self._load(Path(spec))
        self._built: dict[int, ProvingBackend] = {}
        self._lock = threading.Lock()
        for market_id in self.per_market:  # a bad configuration fails at start, not mid-task
            self.for_market(market_id)
        if self.default is not None:
            backend_from_config(self.default)

    def _load(self, path: Path) -> None:
        if not path.exists():
            raise BackendError(
                f"--backend {path}: no such file; give groth16py, snarkjs or a JSON backend configuration"
            )
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise BackendError(f"--backend {path}: not JSON") from None
        if not isinstance(data, dict):
            raise BackendError(f"--backend {path}: expected a JSON object")
        if "backend" in data:
            self.default = data
            return
        for name, config in data.items():
            if not isinstance(config, dict):
                raise BackendError(f"--backend {path}: the configuration of {name!r} is not an object")
            if name == "default":
                self.default = config
            elif name.isdigit():
                self.per_market[int(name)] = config
            else:
                raise BackendError(f"--backend {path}: {name!r} is neither a market id nor default")

    def config(self, market_id: int) -> Mapping[str, object] | None:
        return self.per_market.get(market_id, self.default)

    def for_market(self, market_id: int) -> ProvingBackend:
        with self._lock:
            if market_id not in self._built:
                config = self.config(market_id)
                if config is None:
                    raise BackendError(f"no backend configured for market {market_id} (and no default)")
                self._built[market_id] = backend_from_config(config, self.check_for(market_id))
            return self._built[market_id]

    def describe(self, market_id: int) -> str:
        config = self.config(market_id)
        return str(config.get("backend")) if config else "none"


def verifier_check(client: RegistryClient, market_id: int) -> ProofCheck:
    """For command backends: the market's verifier, asked by eth_call, must accept
    the proof before it is kept (a rejected one counts as a failed attempt)."""

    def check(proof: bytes, public_inputs: list[int]) -> bool:
        try:
            verifier = client.market(market_id).verifier
            contract = client.web3.eth.contract(address=Web3.to_checksum_address(verifier), abi=VERIFY_ABI)
            return bool(contract.functions.verify(public_inputs, proof).call())
        except runtime.RPC_ERRORS:
            # The node is not answering: keep the proof. Submitting simulates the
            # registry's call first, which checks it again before anything is sent.
            return True

    return check
