"""The registry from Python: one client for the command line, the frontends, the prover
agent and the tests.

`RegistryClient` wraps a web3 connection and the registry's address. It reads everything
in typed models (markets, memberships, a prover's standing, a task's whole state and
timeline), decodes every event, and sends transactions through a `Signer` only after the
same call has succeeded as an eth_call, so a refusal arrives as `Refused` with the
registry's reason and nothing is sent.

It works inside ape (`RegistryClient.from_ape(network_name, account)`: ape's provider and
any ape account) and from a plain RPC URL with a key (`RegistryClient.connect(url,
address, key)`), which long-running processes use.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Protocol, cast

from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_typing import BlockIdentifier, ChecksumAddress
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from web3 import Web3
from web3.exceptions import ContractLogicError, TimeExhausted, Web3RPCError
from web3.types import TxParams

from provingmarket import deployments
from provingmarket.chain.endpoints import EndpointError, FailoverProvider, Silent, parse_urls, shown
from provingmarket.chain.logs import LogReader
from provingmarket.errors import ProvingMarketError, Refusal
from provingmarket.formats import Assignment, TaskTerms, bid_typed_data

# The registry's ABI, package data: `make compile` writes it from the compiled project, and
# tests/test_package.py fails when it differs from what `ape compile` produced.
REGISTRY_ABI = Path(__file__).resolve().parent / "abi" / "Registry.json"
ETHER = 10**18
GAS_MARGIN = 1.25  # headroom over eth_estimateGas


class ClientError(ProvingMarketError, RuntimeError):
    """Something a person can act on: the message says what and what to do."""


class NoNodeAnswers(ClientError):
    """No RPC endpoint answered (each refused, reset, failed with a 5xx or 429, or timed out)."""


class Refused(ClientError, Refusal):
    """The registry would refuse (or did refuse) a transaction; `reason` (and `code`) is its
    own ("registry: <text>"), the message says which action it refused."""

    def __init__(self, reason: str, action: str = ""):
        Refusal.__init__(self, reason, reason, f"{action + ': ' if action else ''}{reason}")


@cache
def registry_abi() -> list[dict]:
    """The registry's ABI, as shipped with the package (`REGISTRY_ABI`)."""
    try:
        return json.loads(REGISTRY_ABI.read_text())
    except FileNotFoundError:
        raise ClientError(f"{REGISTRY_ABI} is missing: reinstall the package (or `make compile`)") from None


# ------------------------------------------------------------------ signers


class Signer(Protocol):
    address: ChecksumAddress

    def sign_typed(self, typed_data: dict) -> bytes:
        """A 65-byte (r, s, v) EIP-712 signature."""
        ...

    def sign_transaction(self, tx: dict) -> bytes:
        """The signed raw transaction (nonce, gas, fees and chain id filled by the caller)."""
        ...

    def send(self, web3: Web3, tx: dict) -> Any:
        """Sign and send `tx` (to, data, value, gas filled); return the receipt."""
        ...


class KeySigner:
    """A private key held by this process (a keeper, an agent, a test account)."""

    def __init__(self, key: str | bytes):
        try:
            self.account = Account.from_key(key)
        except (ValueError, TypeError):
            raise ClientError("not a private key (expected 32 bytes as hex)") from None
        self.address = self.account.address

    def sign_typed(self, typed_data: dict) -> bytes:
        return bytes(self.account.sign_message(encode_typed_data(full_message=typed_data)).signature)

    def sign_transaction(self, tx: dict) -> bytes:
        """The signed raw transaction (nonce, gas, fees and chain id filled by the caller)."""
        return bytes(
            self.account.sign_transaction({k: v for k, v in tx.items() if k != "from"}).raw_transaction
        )

    def send(self, web3: Web3, tx: dict) -> Any:
        tx = dict(tx)
        tx.setdefault("from", self.address)
        tx.setdefault("nonce", web3.eth.get_transaction_count(self.address, "pending"))
        tx.setdefault("chainId", web3.eth.chain_id)
        if "maxFeePerGas" not in tx and "gasPrice" not in tx:
            base = web3.eth.get_block("latest").get("baseFeePerGas", 0) or 0
            tip = web3.eth.max_priority_fee
            tx["maxPriorityFeePerGas"] = tip
            tx["maxFeePerGas"] = 2 * base + tip
        signed = self.account.sign_transaction(tx)
        tx_hash = web3.eth.send_raw_transaction(signed.raw_transaction)
        try:
            return web3.eth.wait_for_transaction_receipt(tx_hash, timeout=120)
        except TimeExhausted:
            raise ClientError(f"transaction {tx_hash.hex()} not mined within 120 s; check it later") from None


class ApeSigner:
    """Any ape account (keyfile, hardware, test): ape signs, with its own prompts off."""

    def __init__(self, account):
        self.ape_account = account
        self.address = to_checksum_address(account.address)

    def sign_typed(self, typed_data: dict) -> bytes:
        signature = self.ape_account.sign_message(encode_typed_data(full_message=typed_data))
        if signature is None:
            raise ClientError(f"account {self.address} declined to sign")
        return signature.encode_rsv()

    def send(self, web3: Web3, tx: dict) -> Any:
        import ape

        ecosystem = ape.chain.provider.network.ecosystem
        txn = ecosystem.create_transaction(
            chain_id=web3.eth.chain_id,
            receiver=tx["to"],
            data=tx["data"],
            value=tx.get("value", 0),
            gas_limit=tx["gas"],
            sender=self.address,
        )
        receipt = self.ape_account.call(txn, raise_on_revert=False)
        return web3.eth.get_transaction_receipt(receipt.txn_hash)

    def sign_transaction(self, tx: dict) -> bytes:
        """The signed raw transaction, signed by ape (a keyfile account asks for its
        passphrase, or reads it from APE_ACCOUNTS_<alias>_PASSPHRASE)."""
        import ape

        txn = ape.chain.provider.network.ecosystem.create_transaction(
            chain_id=tx["chainId"],
            receiver=tx["to"],
            data=tx["data"],
            value=tx.get("value", 0),
            gas_limit=tx["gas"],
            nonce=tx["nonce"],
            max_fee=tx["maxFeePerGas"],
            max_priority_fee=tx["maxPriorityFeePerGas"],
            sender=self.address,
            type=2,
        )
        signed = self.ape_account.sign_transaction(txn)
        if signed is None or signed.signature is None:
            raise ClientError(f"account {self.address} declined to sign")
        return bytes(signed.serialize_transaction())


def signer_for(account) -> Signer:
    """A signer for an ape account: its key when ape holds one in the clear (test
    accounts), else ape itself."""
    key = getattr(account, "private_key", None)
    return KeySigner(key) if key else ApeSigner(account)


# ------------------------------------------------------------------ models


@dataclass(frozen=True)
class Event:
    name: str
    args: dict
    block: int
    tx: str
    log_index: int

    def __getattr__(self, item: str) -> Any:
        try:
            return self.args[item]
        except KeyError:
            raise AttributeError(item) from None


@dataclass(frozen=True)
class Market:
    market_id: int
    verifier: str
    creator: str
    codehash: bytes
    paused: bool
    binding: int
    address_input: int
    grace_period: int
    requester_bps: int
    caller_bps: int
    min_collateral: int
    min_reward: int
    # The verifier was not deployed by the registry from its blueprint: its answers may
    # change, so provers take part only if they reviewed its code hash (docs/security.md).
    custom: bool = False
    # Custom, and its verifier's code hash is no longer the one recorded: no new tasks,
    # assignments or proofs; live assignments are voided. The mirror cannot see this (no
    # event says so): read `RegistryClient.market` for it.
    frozen: bool = False

    @property
    def exists(self) -> bool:
        return int(self.verifier, 16) != 0


@dataclass(frozen=True)
class Membership:
    market_id: int
    joined: bool
    capacity: int
    used: int
    ask: int
    proving_time: int
    capabilities: int


@dataclass(frozen=True)
class Standing:
    stake: int
    locked: int
    free: int
    unbonding: int
    unbonding_ready_at: int
    balance: int  # credited earnings and refunds, withdrawable now
    nonce: int


@dataclass(frozen=True)
class LiveAssignment:
    task_id: bytes
    market_id: int
    assignment: Assignment
    terms: TaskTerms


@dataclass
class ProverStatus:
    prover: str
    standing: Standing
    memberships: list[Membership]
    live: list[LiveAssignment]


@dataclass
class TaskState:
    task_id: bytes
    terms: TaskTerms
    prover_input: bytes
    input_uri: str
    open: int
    assigned: int
    proven: int
    closed: int
    timeline: list[Event] = field(default_factory=list)

    @property
    def proofs(self) -> list[Event]:
        return [e for e in self.timeline if e.name == "TaskProven"]

    @property
    def live_assignments(self) -> dict[str, tuple[Assignment, Event]]:
        """prover -> its assignment still awaiting a proof (not proven, declined,
        slashed or voided)."""
        return live_assignments(self.timeline)

    @property
    def done(self) -> bool:
        return self.open == 0 and self.assigned == 0


# ------------------------------------------------------------------ the client


class RegistryClient:
    # The deployment record it was built from (from_ape, runtime.process.connect); unset
    # for a client made from an address alone.
    deployment: deployments.Deployment
    # WebSocket URLs whose new heads wake a process's rounds (connect's `ws`; none: polling).
    ws_urls: tuple[str, ...] = ()

    def __init__(self, web3: Web3, address: str, signer: Signer | None = None, from_block: int = 0):
        self.web3 = web3
        self.address = to_checksum_address(address)
        self.contract = web3.eth.contract(address=self.address, abi=registry_abi())
        self.signer = signer
        self.from_block = from_block  # where log searches start: the deployment's block
        self.logs = LogReader(web3)  # paged eth_getLogs, learning the node's limits
        self._events = {
            Web3.to_hex(keccak(text=_signature(item))): item["name"]
            for item in registry_abi()
            if item["type"] == "event"
        }

    # -------------------------------------------------------------- construction

    @classmethod
    def connect(
        cls,
        rpc_url: str | Sequence[str],
        address: str,
        key: str | None = None,
        from_block: int = 0,
        chain_id: int | None = None,
        ws: str | Sequence[str] = (),
    ) -> RegistryClient:
        """From plain RPC URLs (one, or several of one chain, comma-separated or a list:
        tried in order, failing over; provingmarket/chain/endpoints.py) and, to send
        transactions, a private key. With `chain_id`, every endpoint answering must be that
        chain. `ws`: WebSocket URLs whose new heads wake the process's rounds
        (provingmarket/chain/heads.py)."""
        try:
            provider = FailoverProvider(parse_urls(rpc_url))
            ws_urls = tuple(parse_urls(ws, ("ws", "wss")))
            if chain_id is not None:
                provider.check_chains(chain_id, "the deployment record's")
        except Silent as error:
            raise NoNodeAnswers(str(error)) from None
        except EndpointError as error:
            raise ClientError(str(error)) from None
        web3 = Web3(provider)
        if not web3.is_connected():
            raise NoNodeAnswers(f"no node answers at {', '.join(shown(u) for u in provider.urls)}")
        client = cls(web3, address, KeySigner(key) if key else None, from_block)
        client.ws_urls = ws_urls
        client.check_deployed()
        return client

    @classmethod
    def from_ape(cls, network: str, account=None, folder: Path = deployments.DEPLOYMENTS) -> RegistryClient:
        """Inside an ape command: ape's provider, the deployment recorded for `network`."""
        import ape

        record = deployments.load(network, folder)
        web3 = ape.chain.provider.web3
        client = cls(
            web3, record.registry, signer_for(account) if account is not None else None, record.block
        )
        client.deployment = record
        if web3.eth.chain_id != record.chain_id:
            raise ClientError(
                f"the deployment recorded for {deployments.network_key(network)} is on chain "
                f"{record.chain_id}, but the node is on chain {web3.eth.chain_id}; deploy again"
            )
        client.check_deployed(network)
        return client

    def check_deployed(self, network: str = "") -> None:
        if not self.web3.eth.get_code(self.address):
            where = f" on {deployments.network_key(network)}" if network else ""
            raise ClientError(
                f"no registry at {self.address}{where} (a local chain restarted?); "
                "deploy again: ape run operator deploy "
                f"--network {network or '<network>'} --account <account>"
            )

    # -------------------------------------------------------------- reads

    def call(self, name: str, *args) -> Any:
        return getattr(self.contract.functions, name)(*args).call()

    def market(self, market_id: int) -> Market:
        return Market(market_id, *self.call("market", market_id))

    def markets(self) -> list[Market]:
        return [self.market(i) for i in range(1, self.call("market_count") + 1)]

    def membership(self, prover: str, market_id: int) -> Membership:
        return Membership(market_id, *self.call("membership", to_checksum_address(prover), market_id))

    def standing(self, prover: str) -> Standing:
        return Standing(*self.call("standing", to_checksum_address(prover)))

    def balance(self, account: str) -> int:
        return self.call("balances", to_checksum_address(account))

    def mechanism(self, mechanism_id: int) -> tuple[str, bool]:
        registrant, retired = self.call("mechanism", mechanism_id)
        return registrant, retired

    def unbonding_delay(self) -> int:
        return self.call("UNBONDING_DELAY")

    def task_id(self, terms: TaskTerms) -> bytes:
        return bytes(self.call("task_id", terms.as_tuple()))

    def posted(self, task_id: bytes) -> Event | None:
        """The TaskPosted event of a task, or None for an unknown task id."""
        found = self.events(["TaskPosted"], task_id=task_id)
        return found[0] if found else None

    def task(self, task_id: bytes | str) -> TaskState:
        """A task's whole state: terms, slot counts and its timeline of events."""
        task_id = parse_task_id(task_id)
        timeline = self.events(TASK_EVENTS, task_id=task_id)
        if not timeline or timeline[0].name != "TaskPosted":
            raise ClientError(f"no task {Web3.to_hex(task_id)} in the registry at {self.address}")
        posted = timeline[0]
        status = self.call("task_status", task_id)
        return TaskState(
            task_id,
            TaskTerms.from_event(posted.terms),
            bytes(posted.prover_input),
            posted.input_uri,
            *status,
            timeline=timeline,
        )

    def prover_status(self, prover: str) -> ProverStatus:
        """A prover's standing, its memberships and its live assignments with deadlines."""
        prover = to_checksum_address(prover)
        memberships = [self.membership(prover, m) for m in range(1, self.call("market_count") + 1)]
        # One search for every event naming the prover (its second indexed argument),
        # then the terms of only the tasks it still holds.
        by_task: dict[bytes, list[Event]] = {}
        for e in self.events(PROVER_EVENTS, prover=prover):
            by_task.setdefault(bytes(e.task_id), []).append(e)
        live: list[LiveAssignment] = []
        for task_id, events in by_task.items():
            held = live_assignments(events).get(prover)
            if held is not None:
                posted = self.posted(task_id)
                if posted is None:
                    raise ClientError(f"no TaskPosted event for task {Web3.to_hex(task_id)}")
                terms = TaskTerms.from_event(posted.terms)
                live.append(LiveAssignment(task_id, terms.market_id, held[0], terms))
        return ProverStatus(prover, self.standing(prover), [m for m in memberships if m.joined], live)

    def sign_bid(self, task_id: bytes, min_price: int, expiry: int) -> bytes:
        """The signer's EIP-712 Bid for a task (in this registry's domain, at its current
        signature nonce): consent to be assigned at any price from `min_price` up to the
        task's maximum, until `expiry`."""
        signer = self.require_signer("signing a bid needs an account")
        nonce = self.call("signature_nonce", signer.address)
        typed = bid_typed_data(
            self.web3.eth.chain_id, self.address, parse_task_id(task_id), min_price, expiry, nonce
        )
        return signer.sign_typed(typed)

    def require_signer(self, why: str) -> Signer:
        """The client's signer; a ClientError saying `why` one is needed if it has none."""
        if self.signer is None:
            raise ClientError(why)
        return self.signer

    # -------------------------------------------------------------- events

    def decode(self, log: Any) -> Event | None:
        if not log["topics"]:
            return None
        name = self._events.get(Web3.to_hex(log["topics"][0]))
        if name is None:
            return None
        decoded = getattr(self.contract.events, name)().process_log(log)
        return Event(
            name,
            {k: _plain(v) for k, v in decoded["args"].items()},
            decoded["blockNumber"],
            Web3.to_hex(decoded["transactionHash"]),
            decoded["logIndex"],
        )

    def receipt_events(self, receipt: Any) -> list[Event]:
        return [e for log in receipt["logs"] if (e := self.decode(log)) is not None]

    def events(
        self,
        names: Sequence[str] | None = None,
        from_block: int | None = None,
        to_block: BlockIdentifier = "latest",
        task_id: bytes | None = None,
        prover: str | None = None,
    ) -> list[Event]:
        """The registry's events in a block range, oldest first; `task_id` or `prover`
        narrow them by the first or second indexed argument (task events). Read in pages
        the node accepts (`self.logs`, provingmarket/chain/logs.py)."""
        topics: list[Any] = [None]
        if names:
            topics[0] = [t for t, n in self._events.items() if n in names]
        if task_id is not None:
            topics.append(Web3.to_hex(task_id))
        if prover is not None:
            topics += [None] * (2 - len(topics)) + [
                "0x" + "00" * 12 + to_checksum_address(prover)[2:].lower()
            ]
        start = self.from_block if from_block is None else from_block
        logs = self.logs.read(self.address, start, self.block_number(to_block), topics)
        return [e for log in logs if (e := self.decode(log)) is not None]

    def block_number(self, block: BlockIdentifier) -> int:
        """A block's number: `block` itself when it is one, else what the node says the
        tag ("latest", "safe", "finalized", a hash) names."""
        if isinstance(block, int):
            return block
        if block == "latest":
            return self.web3.eth.block_number
        return int(reported(self.web3.eth.get_block(block), "number"))

    # -------------------------------------------------------------- writes

    def transact(self, name: str, *args, value: int = 0, action: str = "") -> tuple[Any, list[Event]]:
        """Simulate, then send. Raises Refused with the registry's reason (nothing sent)
        if the simulation reverts, or if the mined transaction reverted anyway."""
        signer = self.require_signer("this command sends a transaction: give an account (--account)")
        fn = getattr(self.contract.functions, name)(*args)
        try:
            gas = fn.estimate_gas({"from": signer.address, "value": value})
        except ContractLogicError as error:
            raise Refused(revert_reason(error), action) from None
        except (ValueError, Web3RPCError) as error:  # some nodes report reverts as plain RPC errors
            raise Refused(revert_reason(error), action) from None
        tx = {
            "from": signer.address,
            "to": self.address,
            "value": value,
            "data": fn._encode_transaction_data(),
            "gas": int(gas * GAS_MARGIN),
        }
        receipt = signer.send(self.web3, tx)
        if receipt["status"] != 1:
            raise Refused(self._replay_reason(tx, receipt), action)
        return receipt, self.receipt_events(receipt)

    def _replay_reason(self, tx: dict, receipt: Any) -> str:
        try:
            call = cast(TxParams, {k: v for k, v in tx.items() if k != "gas"})
            self.web3.eth.call(call, receipt["blockNumber"] - 1)
        except Exception as error:
            return revert_reason(error)
        return f"the transaction {Web3.to_hex(receipt['transactionHash'])} reverted"


# ------------------------------------------------------------------ helpers

# Events of a task that name a prover as their second indexed argument.
PROVER_EVENTS = ["TaskAssigned", "TaskProven", "TaskDeclined", "Slashed", "AssignmentVoided"]


def live_assignments(events: Iterable[Event]) -> dict[str, tuple[Assignment, Event]]:
    """prover -> its assignment still awaiting a proof, from a task's events in order."""
    live: dict[str, tuple[Assignment, Event]] = {}
    for e in events:
        if e.name == "TaskAssigned":
            live[e.prover] = (Assignment(e.slot, e.price, e.deadline, e.frontend), e)
        elif e.name in PROVER_EVENTS:
            live.pop(e.prover, None)
    return live


TASK_EVENTS = [
    "TaskPosted",
    "TaskAssigned",
    "AssignmentSkipped",
    "TaskDeclined",
    "TaskProven",
    "Slashed",
    "AssignmentVoided",
    "SlotsClosed",
]


def _signature(item: dict) -> str:
    def kind(inp: dict) -> str:
        if inp["type"].startswith("tuple"):
            return "(" + ",".join(kind(c) for c in inp["components"]) + ")" + inp["type"][5:]
        return inp["type"]

    return f"{item['name']}({','.join(kind(i) for i in item['inputs'])})"


def _plain(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


_REASON = re.compile(r"(registry: [^'\"\\]+|verifier: [^'\"\\]+)")


def revert_reason(error: BaseException) -> str:
    """The registry's reason from a web3 or node error, else the error's own words."""
    text = " ".join(str(a) for a in getattr(error, "args", ())) or str(error)
    found = _REASON.search(text)
    if found:  # web3 appends the raw revert data after the message
        return found.group(1).split(" 0x")[0].strip()
    message = getattr(error, "message", None) or text
    return str(message).replace("execution reverted: ", "").strip() or "reverted without a reason"


def chain_time(web3: Web3) -> int:
    """When the next transaction will be checked: the pending block's timestamp, which the
    node predicts (on a live chain about now; on anvil, now plus any time a test moved it,
    or the latest block's time right after a snapshot is restored). The wall clock is no
    substitute: a local chain's clock can be minutes away from it."""
    try:
        return reported(web3.eth.get_block("pending"), "timestamp")
    except Exception:  # a node without a pending block
        return reported(web3.eth.get_block("latest"), "timestamp")


def reported(answer: Mapping[str, Any], key: str) -> Any:
    """A field every node puts in a block or transaction it returns, though web3 types it
    as optional; a ClientError naming it if this node left it out."""
    if key not in answer:
        raise ClientError(f"the node's answer has no {key!r}")
    return answer[key]


def parse_task_id(value: bytes | str) -> bytes:
    if isinstance(value, bytes) and len(value) == 32:
        return value
    text = value if isinstance(value, str) else value.hex()
    text = text.removeprefix("0x")
    if len(text) != 64:
        raise ClientError(f"{value!r} is not a task id (32 bytes as hex, 0x and 64 digits)")
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise ClientError(f"{value!r} is not a task id (32 bytes as hex, 0x and 64 digits)") from None


def parse_address(value: str, what: str = "address") -> str:
    if not isinstance(value, str) or not re.fullmatch(r"0x[0-9a-fA-F]{40}", value):
        raise ClientError(f"{what} {value!r} is not an address (0x and 40 hex digits)")
    digits = value[2:]
    if digits != digits.lower() and digits != digits.upper() and to_checksum_address(value) != value:
        raise ClientError(f"{what} {value!r} has a bad checksum (its mixed case does not match EIP-55)")
    return to_checksum_address(value)


_AMOUNT = re.compile(r"(\d+)(?:\.(\d+))?")


def parse_ether(value: str, what: str = "amount") -> int:
    """An amount of ETH as a person writes it ("1", "0.25", "1e-3" is refused) in wei."""
    text = str(value).strip()
    match = _AMOUNT.fullmatch(text)
    if text.startswith("-"):
        raise ClientError(f"{what} {value!r} is negative")
    if not match:
        raise ClientError(f"{what} {value!r} is not a number of ETH (write it like 0.25)")
    whole, fraction = match.group(1), match.group(2) or ""
    if len(fraction) > 18:
        raise ClientError(f"{what} {value!r} has more than 18 decimals (the smallest unit is 1 wei)")
    return int(whole) * ETHER + int(fraction.ljust(18, "0"))


def format_ether(wei: int) -> str:
    """Exact: 0.1 ETH, 1.000000000000000001 ETH."""
    whole, fraction = divmod(int(wei), ETHER)
    text = f"{whole}.{fraction:018d}".rstrip("0").rstrip(".")
    return f"{text} ETH"
