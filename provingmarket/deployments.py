"""Deployments recorded per network, written by `ape run operator deploy` and read by every
other command and process.

One JSON file per network in a deployments folder (`ethereum-sepolia.json`,
`ethereum-local.json`; where the folder is: `default_folder`):
the registry's address, the block it was deployed in, the chain id, and each market's
circuit and verifier. Files for local chains are ignored by git: a local chain starts empty
each time, and a recorded address with no code behind it is reported as stale.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from provingmarket.errors import ProvingMarketError

# Run from the repository, the records are its deployments/ whatever the current directory;
# installed as a package, they are deployments/ in the current directory.
_CHECKOUT = Path(__file__).resolve().parent.parent
DEPLOYMENTS = _CHECKOUT / "deployments" if (_CHECKOUT / "ape-config.yaml").is_file() else Path("deployments")
# An environment variable that names another folder (tests point it at one of their own).
FOLDER_ENV = "PROVINGMARKET_DEPLOYMENTS"


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

    def to_json(self) -> str:
        data = asdict(self)
        data["markets"] = {str(k): asdict(v) for k, v in self.markets.items()}
        return json.dumps(data, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str) -> Deployment:
        try:
            data = json.loads(text)
            markets = {int(k): MarketRecord(**v) for k, v in data.pop("markets", {}).items()}
            return cls(**data, markets=markets)
        except (json.JSONDecodeError, TypeError, ValueError, AttributeError) as error:
            raise DeploymentError(f"{source}: not a deployment record ({error}); deploy again") from None


def network_key(network: str) -> str:
    """`ethereum:local:foundry` -> `ethereum:local`: the provider does not change the chain."""
    parts = network.split(":")
    return ":".join(parts[:2]) if len(parts) >= 2 else network


def default_folder() -> Path:
    """The folder named by $PROVINGMARKET_DEPLOYMENTS, else `DEPLOYMENTS`."""
    return Path(os.environ.get(FOLDER_ENV, DEPLOYMENTS))


def path_for(network: str, folder: Path | None = None) -> Path:
    return (folder or default_folder()) / (network_key(network).replace(":", "-") + ".json")


def load(network: str, folder: Path | None = None) -> Deployment:
    path = path_for(network, folder)
    if not path.exists():
        raise DeploymentError(
            f"no deployment recorded for {network_key(network)} ({path}); "
            f"deploy first: ape run operator deploy --network {network} --account <account>"
        )
    return Deployment.from_json(path.read_text(), str(path))


def save(deployment: Deployment, folder: Path | None = None) -> Path:
    path = path_for(deployment.network, folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(deployment.to_json())
    return path
