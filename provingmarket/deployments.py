"""Deployments recorded per network, written by `ape run operator deploy` and read by every
other command and process.

One JSON file per network in a deployments folder (`ethereum-sepolia.json`,
`ethereum-local.json`; where the folder is: `default_folder`):
the registry's address, the block it was deployed in, the chain id, and each market's
circuit and verifier. Files for local chains are ignored by git: a local chain starts empty
each time, and a recorded address with no code behind it is reported as stale.

Since schema version 2 a record also knows which chain it belongs to, beyond its id: the
genesis hash, the deployment transaction and its block's hash (`Deployment.identity()`,
which every command and process checks against its node before acting), and the sha256
of the registry ABI it was deployed with. A version 1 record (no `version` field) still
loads, migrated in memory: it knows only the chain id, so only that is checked, until a
deployment writes a new one. Overwriting a record keeps the old file as
`<name>.json.<UTC time>.bak` beside it (`save(..., backup=True)`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from provingmarket.errors import ProvingMarketError

if TYPE_CHECKING:
    from provingmarket.chain.identity import ChainIdentity

# Run from the repository, the records are its deployments/ whatever the current directory;
# installed as a package, they are deployments/ in the current directory.
_CHECKOUT = Path(__file__).resolve().parent.parent
DEPLOYMENTS = _CHECKOUT / "deployments" if (_CHECKOUT / "ape-config.yaml").is_file() else Path("deployments")
# An environment variable that names another folder (tests point it at one of their own).
FOLDER_ENV = "PROVINGMARKET_DEPLOYMENTS"
# The public testnets ape-config.yaml names, and the environment variable each one's RPC
# URL comes from there (`uri: ${SEPOLIA_RPC_URL}`).
TESTNET_RPC_ENV = {"sepolia": "SEPOLIA_RPC_URL", "hoodi": "HOODI_RPC_URL"}
# The record's schema: 1 (no `version` field) knew the chain id alone; 2 adds the chain's
# identity (genesis hash, deployment transaction and block hash) and the ABI's hash.
SCHEMA_VERSION = 2
# The registry's ABI as the package ships it; its hash says which registry code a record's
# address was deployed from.
REGISTRY_ABI = Path(__file__).resolve().parent / "chain" / "abi" / "Registry.json"


class DeploymentError(ProvingMarketError, LookupError):
    """No usable deployment for a network; the message says how to make one."""


@dataclass
class MarketRecord:
    circuit: str
    verifier: str


@dataclass
class Deployment:
    network: str  # ecosystem:network, as ape names it (ethereum:local, ethereum:sepolia)
    chain_id: int
    registry: str
    block: int
    unbonding_delay: int
    markets: dict[int, MarketRecord] = field(default_factory=dict)
    # Schema 2: which chain, exactly (empty in a record migrated from version 1).
    genesis_hash: str = ""
    deploy_tx: str = ""  # the registry's deployment transaction
    block_hash: str = ""  # the hash of `block`, where the registry was deployed
    abi_hash: str = ""  # sha256 of the registry ABI it was deployed with (`abi_hash()`)
    version: int = SCHEMA_VERSION

    def identity(self) -> ChainIdentity:
        """The chain this record belongs to, as `ChainIdentity.verify` checks it against a
        node: chain id, genesis hash and the deployment block's hash (the last two empty,
        so not compared, in a record from schema version 1)."""
        from provingmarket.chain.identity import ChainIdentity

        return ChainIdentity(self.chain_id, self.genesis_hash, self.registry, self.block, self.block_hash)

    def to_json(self) -> str:
        data = asdict(self)
        data["markets"] = {str(k): asdict(v) for k, v in self.markets.items()}
        version = data.pop("version")
        return json.dumps({"version": version, **data}, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str) -> Deployment:
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            version = int(data.pop("version", 1))
            if version > SCHEMA_VERSION:
                raise DeploymentError(
                    f"{source}: deployment record schema {version} is newer than this version "
                    f"understands ({SCHEMA_VERSION}); upgrade proving-market"
                )
            markets = {int(k): MarketRecord(**v) for k, v in data.pop("markets", {}).items()}
            # Version 1 had no chain identity and no ABI hash: the defaults (empty) say so.
            return cls(**data, markets=markets, version=version)
        except (json.JSONDecodeError, TypeError, ValueError, AttributeError) as error:
            raise DeploymentError(f"{source}: not a deployment record ({error}); deploy again") from None


def abi_hash(path: Path = REGISTRY_ABI) -> str:
    """sha256 of the registry ABI as canonical JSON (sorted keys, no spaces), so the
    file's layout does not change it."""
    canonical = json.dumps(json.loads(path.read_text()), sort_keys=True, separators=(",", ":"))
    return "0x" + hashlib.sha256(canonical.encode()).hexdigest()


def network_key(network: str) -> str:
    """`ethereum:local:foundry` -> `ethereum:local`: the provider does not change the chain."""
    parts = network.split(":")
    return ":".join(parts[:2]) if len(parts) >= 2 else network


def default_folder() -> Path:
    """The folder named by $PROVINGMARKET_DEPLOYMENTS, else `DEPLOYMENTS`."""
    return Path(os.environ.get(FOLDER_ENV, DEPLOYMENTS))


def path_for(network: str, folder: Path | None = None) -> Path:
    return (folder or default_folder()) / (network_key(network).replace(":", "-") + ".json")


def load(network: str, folder: Path | None = None, choice: str | None = None) -> Deployment:
    """The record for `network`; if there is none, the error's hint repeats `choice` (the
    --network the user gave) or else `network`."""
    path = path_for(network, folder)
    if not path.exists():
        raise DeploymentError(
            f"no deployment recorded for {network_key(network)} ({path}); "
            f"deploy first: ape run operator deploy --network {choice or network} --account <account>"
        )
    return Deployment.from_json(path.read_text(), str(path))


def save(deployment: Deployment, folder: Path | None = None, backup: bool = False) -> Path:
    """Write the record (atomically: a reader never sees half of it). With `backup`, an
    existing record is first kept as `backup_path` (`<name>.json.<UTC time>.bak`)."""
    path = path_for(deployment.network, folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    if backup and path.exists():
        shutil.copy2(path, backup_path(path))
    partial = path.with_name(path.name + ".partial")
    partial.write_text(deployment.to_json())
    partial.replace(path)
    return path


def backup_path(path: Path) -> Path:
    """Where a record about to be replaced is kept: beside it, named by the time (UTC)."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    return path.with_name(f"{path.name}.{stamp}.bak")
