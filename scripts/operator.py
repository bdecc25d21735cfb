"""The operator's commands: deploy the registry, register mechanisms and their frontends,
open and pause markets, show a market.

    ape run operator deploy --network ethereum:local:foundry --account TEST::0
    ape run operator market create square --network ... --account TEST::0
    ape run operator market show 1 --network ...
    ape run operator mechanism register orderbook --frontend 0x... --network ... --account ...

Every command checks first what the registry would refuse and says it in one line (exit
code 1, nothing sent); `--json` prints JSON instead of a table.
"""

from __future__ import annotations

import ape
import click

from provingmarket import cli as ui  # the commands' shared helpers
from provingmarket import deployments
from provingmarket.chain.checks import not_built_in, registered_mechanism
from provingmarket.chain.client import parse_address, parse_ether
from provingmarket.chain.markets import MarketError, MarketTerms, deploy_registry, open_market
from provingmarket.deployments import Deployment, DeploymentError, MarketRecord
from provingmarket.formats import MAX_FRONTENDS, MAX_NAME
from provingmarket.proving.backends import BackendError, backend_from_config
from provingmarket.proving.circuits import Circuit, CircuitError

BINDINGS = {0: "none", 1: "address input", 2: "commit-reveal"}


@click.group()
def cli():
    """Deploy and run the registry: markets and mechanisms."""


# ------------------------------------------------------------------ deploy


@ui.command(
    cli,
    click.option("--unbonding-delay", default=3_600, show_default=True, help="Seconds unstaked ETH waits."),
    click.option(
        "--replace", is_flag=True, help="Deploy even if a live registry is recorded for this network."
    ),
    account=True,
)
def deploy(account, unbonding_delay, replace, as_json):
    """Deploy the registry and record it for this network."""
    account = ui.require(account)
    network, folder = ui.network_name(), ui.deployments_folder()
    if unbonding_delay < 0:
        ui.fail(f"--unbonding-delay {unbonding_delay} is negative")
    try:
        existing = deployments.load(network, folder)
        live = ape.chain.chain_id == existing.chain_id and bool(
            ape.chain.provider.get_code(existing.registry)
        )
    except DeploymentError:
        live = False
    if live and not replace:
        ui.fail(
            f"a registry is already recorded for {network} at {existing.registry}; "
            "pass --replace to deploy a new one (its record replaces the old)"
        )
    registry = deploy_registry(ape, account, unbonding_delay)
    record = Deployment(
        network=network,
        chain_id=ape.chain.chain_id,
        registry=registry.address,
        block=ape.chain.provider.web3.eth.get_transaction_receipt(registry.txn_hash)["blockNumber"],
        unbonding_delay=unbonding_delay,
    )
    path = deployments.save(record, folder)
    ui.emit(
        as_json,
        {
            "registry": record.registry,
            "block": record.block,
            "chain_id": record.chain_id,
            "record": str(path),
        },
        lambda: f"registry deployed at {record.registry} (block {record.block}, chain {record.chain_id})\n"
        f"recorded in {path}",
    )


# ------------------------------------------------------------------ markets


@cli.group()
def market():
    """Open, pause and show markets."""


@ui.command(
    market,
    click.argument("circuit"),
    click.option("--verifier", "verifier_address", help="Reuse a deployed verifier (its key is checked)."),
    click.option(
        "--min-collateral", default="0.1", show_default=True, help="Least collateral per prover, ETH."
    ),
    click.option(
        "--min-reward", default="0.01", show_default=True, help="Least maximum reward of a task, ETH."
    ),
    click.option(
        "--grace-period", default=60, show_default=True, help="Seconds a prover may decline for free."
    ),
    click.option("--requester-bps", default=5_000, show_default=True, help="Slashed share to the requester."),
    click.option("--caller-bps", default=1_000, show_default=True, help="Slashed share to whoever slashes."),
    click.option(
        "--backend",
        type=click.Choice(["snarkjs", "groth16py"]),
        default="snarkjs",
        show_default=True,
        help="How the sample is proved for the checks.",
    ),
    name="create",
    account=True,
)
def market_create(
    account,
    circuit,
    verifier_address,
    min_collateral,
    min_reward,
    grace_period,
    requester_bps,
    caller_bps,
    backend,
    as_json,
):
    """Check CIRCUIT, deploy its verifier and open its market.

    CIRCUIT is a manifest (circuit.json, docs/circuits.md), a folder holding one, or a sample
    circuit's name. Everything is checked before any transaction: the manifest, the keys, the
    witness generator, the order of the public signals, the binding, and the sample proved and
    accepted by the verifier's own code (run by eth_call, not deployed)."""
    account = ui.require(account)
    registry = ui.client(account)
    try:
        loaded = Circuit.load(circuit)
    except CircuitError as error:
        ui.fail(str(error))
    terms = MarketTerms(
        parse_ether(min_collateral, "--min-collateral"),
        parse_ether(min_reward, "--min-reward"),
        grace_period,
        requester_bps,
        caller_bps,
    )
    verifier = None
    if verifier_address:
        verifier_address = parse_address(verifier_address, "--verifier")
        if not ape.chain.provider.get_code(verifier_address):
            ui.fail(f"no contract at --verifier {verifier_address}")
        verifier = ape.project.Groth16Verifier.at(verifier_address)
    contract = ape.project.Registry.at(registry.address)
    try:
        prover = backend_from_config({"backend": backend})
        opened = open_market(ape, contract, loaded, account, prover, terms, verifier)
    except (BackendError, MarketError) as error:
        ui.fail(str(error))
    record = registry.deployment
    record.markets[opened.market_id] = MarketRecord(loaded.reference, opened.verifier)
    deployments.save(record, ui.deployments_folder())
    ui.emit(
        as_json,
        {
            "market_id": opened.market_id,
            "circuit": loaded.name,
            "verifier": opened.verifier,
            "verifier_deployed": opened.deployed_verifier,
            "custom": opened.custom,
            "binding": loaded.binding,
            "address_signal": loaded.address_signal,
        },
        lambda: f"market {opened.market_id} opened for circuit {loaded.name}; verifier {opened.verifier} "
        f"({'deployed by the registry' if opened.deployed_verifier else 'reused'}"
        f"{'; custom: provers must review its code hash' if opened.custom else ''})",
    )


@ui.command(
    market,
    click.argument("market_id", type=int),
    click.option("--resume", is_flag=True, help="Resume a paused market instead."),
    name="pause",
    account=True,
)
def market_pause(account, market_id, resume, as_json):
    """Pause MARKET_ID (no new tasks or assignments) or, with --resume, resume it."""
    account = ui.require(account)
    registry = ui.client(account)
    found = ui.market_or_fail(registry, market_id)
    if found.creator != account.address:
        ui.fail(f"only market {market_id}'s creator {found.creator} may pause it, not {account.address}")
    if found.paused != resume:
        ui.fail(f"market {market_id} is already {'paused' if found.paused else 'running'}")
    registry.transact("set_market_paused", market_id, not resume, action=f"pause market {market_id}")
    ui.emit(
        as_json,
        {"market_id": market_id, "paused": not resume},
        f"market {market_id} {'resumed' if resume else 'paused'}",
    )


def _recorded_circuit(reference: str) -> Circuit | None:
    """The recorded circuit, if it loads here (a manifest path on another machine may not)."""
    try:
        return Circuit.load(reference)
    except CircuitError:
        return None


@ui.command(market, click.argument("market_id", type=int), name="show")
def market_show(market_id, as_json):
    """A market's terms and the provers in it."""
    registry = ui.client()
    found = ui.market_or_fail(registry, market_id)
    record = registry.deployment.markets.get(market_id)
    members = {}
    for e in registry.events(["ProverJoined", "ProverLeft"]):
        if e.market_id == market_id:
            members[e.prover] = e.name == "ProverJoined"
    provers = [(p, registry.membership(p, market_id)) for p, joined in members.items() if joined]
    circuit = _recorded_circuit(record.circuit) if record else None
    data = {
        "market_id": market_id,
        "circuit": record.circuit if record else None,
        "proving_system": circuit.proving_system if circuit else None,
        "public_signals": list(circuit.public) if circuit else None,
        "verifier": found.verifier,
        "custom": found.custom,
        "codehash": "0x" + bytes(found.codehash).hex(),
        "creator": found.creator,
        "paused": found.paused,
        "binding": BINDINGS.get(found.binding, found.binding),
        "address_input": found.address_input,
        "grace_period": found.grace_period,
        "requester_bps": found.requester_bps,
        "caller_bps": found.caller_bps,
        "min_collateral": found.min_collateral,
        "min_reward": found.min_reward,
        "provers": [
            {
                "prover": p,
                "capacity": m.capacity,
                "used": m.used,
                "ask": m.ask,
                "proving_time": m.proving_time,
            }
            for p, m in provers
        ],
    }

    def text() -> str:
        lines = [
            f"market {market_id}{' (PAUSED)' if found.paused else ''}: circuit {data['circuit'] or '?'}",
            f"  verifier        {found.verifier}"
            + (f" (custom: join with --trust-verifier {data['codehash']})" if found.custom else ""),
            *(
                [f"  circuit         {circuit.proving_system}, public signals {', '.join(circuit.public)}"]
                if circuit
                else []
            ),
            f"  creator         {found.creator}",
            f"  binding         {data['binding']} (input {found.address_input})",
            f"  minimums        collateral {ui.eth(found.min_collateral)}, reward {ui.eth(found.min_reward)}",
            f"  grace period    {found.grace_period} s",
            f"  slash split     requester {found.requester_bps / 100:g}%, "
            f"caller {found.caller_bps / 100:g}%, rest burnt",
            "",
        ]
        if not provers:
            return "\n".join([*lines, "no provers in this market"])
        rows = [(p, f"{m.used}/{m.capacity}", ui.eth(m.ask), f"{m.proving_time} s") for p, m in provers]
        return "\n".join(lines) + ui.table(["prover", "used/capacity", "ask", "proving time"], rows)

    ui.emit(as_json, data, text)


# ------------------------------------------------------------------ mechanisms


@cli.group()
def mechanism():
    """Register and retire mechanisms, and choose the frontends that assign for them."""


@ui.command(
    mechanism,
    click.argument("name"),
    click.option("--frontend", "frontends", multiple=True, help="A frontend's address (repeat for more)."),
    name="register",
    account=True,
)
def mechanism_register(account, name, frontends, as_json):
    """Register mechanism NAME with the frontends allowed to assign for it."""
    account = ui.require(account)
    registry = ui.client(account)
    if not 0 < len(name) <= MAX_NAME:
        ui.fail(f"mechanism name must be 1 to {MAX_NAME} characters, got {len(name)}")
    addresses = [parse_address(f, "--frontend") for f in frontends]
    if len(addresses) > MAX_FRONTENDS:
        ui.fail(
            f"at most {MAX_FRONTENDS} frontends in one call, got {len(addresses)}; "
            "add more with `mechanism frontend`"
        )
    _, events = registry.transact("register_mechanism", name, addresses, action=f"register {name}")
    mechanism_id = next(e.mechanism_id for e in events if e.name == "MechanismRegistered")
    ui.emit(
        as_json,
        {"mechanism_id": mechanism_id, "name": name, "frontends": addresses},
        f"mechanism {mechanism_id} '{name}' registered; frontends: {', '.join(addresses) or 'none yet'}",
    )


def _own_mechanism(registry, account, mechanism_id: int) -> bool:
    """Whether the --account's registered mechanism MECHANISM_ID is retired."""
    not_built_in(mechanism_id, "it has no registrant or frontends")
    registrant, retired = registered_mechanism(registry, mechanism_id, lambda last: f"the last id is {last}")
    if registrant != account.address:
        ui.fail(
            f"only mechanism {mechanism_id}'s registrant {registrant} may change it, not {account.address}"
        )
    return retired


@ui.command(mechanism, click.argument("mechanism_id", type=int), name="retire", account=True)
def mechanism_retire(account, mechanism_id, as_json):
    """Retire MECHANISM_ID: no new tasks may name it (posted ones are still served)."""
    account = ui.require(account)
    registry = ui.client(account)
    if _own_mechanism(registry, account, mechanism_id):
        ui.fail(f"mechanism {mechanism_id} is already retired")
    registry.transact("retire_mechanism", mechanism_id, action=f"retire mechanism {mechanism_id}")
    ui.emit(as_json, {"mechanism_id": mechanism_id, "retired": True}, f"mechanism {mechanism_id} retired")


@ui.command(
    mechanism,
    click.argument("mechanism_id", type=int),
    click.argument("frontend"),
    click.option("--remove", is_flag=True, help="Take the frontend's permission away instead."),
    name="frontend",
    account=True,
)
def mechanism_frontend(account, mechanism_id, frontend, remove, as_json):
    """Allow FRONTEND to assign for MECHANISM_ID (or, with --remove, no longer)."""
    account = ui.require(account)
    registry = ui.client(account)
    frontend = parse_address(frontend, "frontend")
    _own_mechanism(registry, account, mechanism_id)
    allowed = registry.call("is_frontend", mechanism_id, frontend)
    if allowed != remove:
        ui.fail(
            f"{frontend} is already {'allowed' if allowed else 'not allowed'} for mechanism {mechanism_id}"
        )
    registry.transact("set_frontend", mechanism_id, frontend, not remove, action="set frontend")
    ui.emit(
        as_json,
        {"mechanism_id": mechanism_id, "frontend": frontend, "allowed": not remove},
        f"{frontend} {'removed from' if remove else 'allowed for'} mechanism {mechanism_id}",
    )


__all__ = ["cli"]
