"""Which chain a record, a database or a process belongs to, and the check that refuses
any other.

A chain is known by three things: its chain id (which a restarted devnet or a fork keeps),
its genesis block's hash (which a restarted devnet changes) and, once the registry is
deployed, the hash of the block it was deployed in (which a fork from before the
deployment, or a replaced devnet that happens to share a genesis, changes).

    identity = ChainIdentity.read(web3, registry, deploy_block)   # what the node says now
    identity.verify(web3)             # raises WrongChain (one line) if the node differs
    recorded.check(identity, "outbox.sqlite")   # two identities that must agree

Deployment records, the mirror, the outbox and the auction's bid store all carry one, so a
signed transaction kept on disk is never sent to a chain it was not made for, and a process
whose node was replaced under it stops (exit code `EXIT_WRONG_CHAIN`) instead of acting on
a chain it does not know.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from web3 import Web3

from provingmarket.errors import ProvingMarketError

# The exit code of a process that finds itself on another chain than its records.
EXIT_WRONG_CHAIN = 2


class WrongChain(ProvingMarketError, RuntimeError):
    """The node is not the chain a record or a database was made on; the message says
    which differs and what to do."""

    exit_code = EXIT_WRONG_CHAIN


def _hex(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return Web3.to_hex(bytes(value))
    return str(value).lower()


@dataclass(frozen=True)
class ChainIdentity:
    chain_id: int
    genesis_hash: str
    # The registry and the block it was deployed in; empty/0 before a deployment (or for a
    # record that only knows the chain).
    registry: str = ""
    deploy_block: int = 0
    deploy_block_hash: str = ""

    @classmethod
    def read(cls, web3: Web3, registry: str = "", deploy_block: int | None = None) -> ChainIdentity:
        """What the node at `web3` says now (the deployment block's hash only if
        `deploy_block` is given and the node has that block)."""
        genesis = web3.eth.get_block(0)
        block_hash = ""
        if deploy_block is not None:
            block_hash = _block_hash(web3, deploy_block) or ""
        return cls(
            int(web3.eth.chain_id),
            _hex(genesis.get("hash")),
            registry,
            int(deploy_block or 0),
            block_hash,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ChainIdentity:
        return cls(
            int(data["chain_id"]),
            str(data.get("genesis_hash") or "").lower(),
            str(data.get("registry") or ""),
            int(data.get("deploy_block") or 0),
            str(data.get("deploy_block_hash") or "").lower(),
        )

    def describe(self) -> str:
        genesis = self.genesis_hash[:10] + "…" if self.genesis_hash else "?"
        return f"chain {self.chain_id} (genesis {genesis})"

    def differences(self, other: ChainIdentity) -> list[str]:
        """What differs between two identities, each as a phrase; fields either side does
        not know (empty) are not compared."""
        found = []
        if self.chain_id != other.chain_id:
            found.append(f"chain id {self.chain_id} != {other.chain_id}")
        if self.genesis_hash and other.genesis_hash and self.genesis_hash != other.genesis_hash:
            found.append(f"genesis {self.genesis_hash[:10]}… != {other.genesis_hash[:10]}…")
        if self.registry and other.registry and self.registry.lower() != other.registry.lower():
            found.append(f"registry {self.registry} != {other.registry}")
        if (
            self.deploy_block_hash
            and other.deploy_block_hash
            and self.deploy_block == other.deploy_block
            and self.deploy_block_hash != other.deploy_block_hash
        ):
            found.append(
                f"block {self.deploy_block} hash {self.deploy_block_hash[:10]}… "
                f"!= {other.deploy_block_hash[:10]}…"
            )
        return found

    def check(self, actual: ChainIdentity, what: str, hint: str = "") -> None:
        """Raise `WrongChain` if `actual` (what the node says) is not this recorded chain."""
        found = self.differences(actual)
        if found:
            raise WrongChain(
                f"{what} belongs to {self.describe()}, but the node is {actual.describe()} "
                f"({'; '.join(found)}); "
                f"{hint or 'point it at the right node, or start afresh for this chain'}"
            )

    def verify(self, web3: Web3, what: str = "the deployment", hint: str = "") -> None:
        """Ask the node and raise `WrongChain` if it is another chain: chain id, genesis
        hash and, when recorded, the deployment block's hash (a block the node does not
        have counts as a difference)."""
        actual = ChainIdentity.read(
            web3, self.registry, self.deploy_block if self.deploy_block_hash else None
        )
        if self.deploy_block_hash and not actual.deploy_block_hash:
            raise WrongChain(
                f"{what} belongs to {self.describe()}, deployed in block {self.deploy_block}, but the node "
                f"({actual.describe()}) has no block {self.deploy_block}; "
                f"{hint or 'point it at the right node, or deploy again on this one'}"
            )
        self.check(actual, what, hint)

    def still_here(self, web3: Web3) -> bool:
        """The cheap check a process makes every round: one call for the deployment
        block's hash (or the genesis hash when no deployment is recorded)."""
        if self.deploy_block_hash:
            return _block_hash(web3, self.deploy_block) == self.deploy_block_hash
        return _block_hash(web3, 0) == self.genesis_hash


def _block_hash(web3: Web3, number: int) -> str | None:
    block = web3.eth.get_block(number) if number <= web3.eth.block_number else None
    return _hex(block.get("hash")) if block else None
