"""The operator's commands: deploy the registry, register mechanisms and their frontends,
open and pause markets, show a market.

    ape run operator deploy --network ethereum:local:foundry --account TEST::0
    ape run operator market create square --network ... --account TEST::0
    ape run operator market show 1 --network ...
    ape run operator mechanism register orderbook --frontend 0x... --network ... --account ...
    ape run operator mechanism register auction --param window=30 --frontend 0x... ...  # auction/window=30

Every command checks first what the registry would refuse and says it in one line (exit
code 1, nothing sent); `--json` prints JSON instead of a table.
"""

from __future__ import annotations

import ape
import click
from web3 import Web3

from provingmarket import cli as ui  # the commands' shared helpers
from provingmarket import deployments
from provingmarket.chain import mechanisms as registered
from provingmarket.chain.checks import not_built_in, registered_mechanism
from provingmarket.chain.client import parse_address, parse_ether
from provingmarket.chain.identity import ChainIdentity, WrongChain
from provingmarket.chain.markets import MarketError, MarketTerms, deploy_registry, open_market
from provingmarket.deployments import Deployment, DeploymentError, MarketRecord
from provingmarket.formats import MAX_FRONTENDS, MAX_NAME
from provingmarket.proving.backends import BackendError, backend_from_config
from provingmarket.proving.circuits import Circuit, CircuitError
from provingmarket.rules import BPS, slash_split

BINDINGS = {0: "none", 1: "address input", 2: "commit-reveal"}


@click.group(context_settings=ui.CONTEXT)
def cli():
    """Deploy and run the registry: markets and mechanisms."""


# ------------------------------------------------------------------ deploy


@ui.command(
    cli,
    click.option("--unbonding-delay", default=3_600, show_default=True, help="Seconds unstaked ETH waits."),
    click.option(
        "--replace",
        is_flag=True,
        help="Deploy even if a live registry is recorded for this network (the old record kept as .bak).",
    ),
    account=True,
)
def deploy(account, unbonding_delay, replace, as_json):
    """Deploy the registry and record it for this network.

    Only on a chain that outlives the command (ethereum:local:node for `make chain`, a
    testnet's node, a URL): on the throwaway chain ape starts when --network names none,
    nothing is deployed or recorded. A record of a registry that is still live on this
    chain is replaced only with --replace; a replaced record is kept beside the new one as
    <name>.json.<time>.bak."""
    account = ui.require(account)
    network, folder, choice = ui.network_name(), ui.deployments_folder(), ui.network_choice()
    if unbonding_delay < 0:
        ui.fail(f"--unbonding-delay {unbonding_delay} is negative")
    if ui.throwaway():
        ui.fail(
            f"--network {choice} is a throwaway chain ape starts for this command and stops after it: "
            "nothing deployed, nothing recorded; name a chain that stays up "
            "(`make chain`, then --network ethereum:local:node; or a testnet's node)"
        )
    web3 = ape.chain.provider.web3
    path = deployments.path_for(network, folder)
    try:
        existing = deployments.load(network, folder)
    except DeploymentError:
        existing = None
    if existing is not None and not replace and _live(existing, web3):
        ui.fail(
            f"a registry is already recorded for {network} at {existing.registry} ({path}); "
            "pass --replace to deploy a new one (its record replaces the old, which is kept as a .bak)"
        )
    registry = deploy_registry(ape, account, unbonding_delay)
    receipt = web3.eth.get_transaction_receipt(registry.txn_hash)
    identity = ChainIdentity.read(web3, registry.address, receipt["blockNumber"])
    record = Deployment(
        network=network,
        chain_id=identity.chain_id,
        registry=registry.address,
        block=receipt["blockNumber"],
        unbonding_delay=unbonding_delay,
        genesis_hash=identity.genesis_hash,
        deploy_tx=Web3.to_hex(receipt["transactionHash"]),
        block_hash=identity.deploy_block_hash,
        abi_hash=deployments.abi_hash(),
    )
    backups = set(path.parent.glob(path.name + ".*.bak"))
    path = deployments.save(record, folder, backup=True)
    kept = sorted(set(path.parent.glob(path.name + ".*.bak")) - backups)
    ui.emit(
        as_json,
        {
            "registry": record.registry,
            "block": record.block,
            "block_hash": record.block_hash,
            "deploy_tx": record.deploy_tx,
            "chain_id": record.chain_id,
            "genesis_hash": record.genesis_hash,
            "record": str(path),
            "backup": str(kept[-1]) if kept else None,
        },
        lambda: f"registry deployed at {record.registry} (block {record.block}, chain {record.chain_id}, "
        f"tx {record.deploy_tx})\nrecorded in {path}"
        + (f"\nthe previous record is kept as {kept[-1]}" if kept else ""),
    )


def _live(record: Deployment, web3) -> bool:
    """Whether the recorded registry is on this node's chain (its identity) and has code."""
    try:
        record.identity().verify(web3)
    except WrongChain:
        return False
    return bool(web3.eth.get_code(record.registry))


# ------------------------------------------------------------------ markets


@cli.group(context_settings=ui.CONTEXT)
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


@ui.command(
    market,
    click.argument("market_id", type=int),
    click.option(
        "--collateral",
        help="Show the slash split for a task with this collateral, ETH [default: the minimum].",
    ),
    click.option(
        "--max-reward", help="... and this maximum reward, ETH (the requester's cap) [default: the minimum]."
    ),
    name="show",
)
def market_show(market_id, collateral, max_reward, as_json):
    """A market's terms, how a slash splits a task's collateral, and the provers in it."""
    registry = ui.client()
    found = ui.market_or_fail(registry, market_id)
    example_collateral = (
        parse_ether(collateral, "--collateral") if collateral is not None else found.min_collateral
    )
    example_reward = parse_ether(max_reward, "--max-reward") if max_reward is not None else found.min_reward
    split = slash_split(example_collateral, example_reward, found.requester_bps, found.caller_bps)
    capped = example_collateral * found.requester_bps // BPS > example_reward
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
        # What `slash` does with a task's collateral (rules.slash_split): the requester's
        # share is capped at the task's max reward; the caller's is burnt when the caller
        # is the requester or the prover; the rest is burnt.
        "slash": {
            "requester_bps": found.requester_bps,
            "requester_cap": "max_reward",
            "caller_bps": found.caller_bps,
            "caller_unpaid_when": ["requester", "prover"],
            "rest": "burnt",
            "example": {
                "collateral": example_collateral,
                "max_reward": example_reward,
                "to_requester": split.to_requester,
                "to_caller": split.to_caller,
                "burnt": split.burnt,
            },
        },
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
            f"  slash split     of the task's collateral: requester {found.requester_bps / 100:g}% "
            "but at most the task's max reward, "
            f"caller {found.caller_bps / 100:g}% (burnt if the caller is the requester or the prover), "
            "the rest burnt",
            f"                  e.g. collateral {ui.eth(example_collateral)}, max reward "
            f"{ui.eth(example_reward)}: requester {ui.eth(split.to_requester)}"
            f"{' (its cap)' if capped else ''}"
            f", caller {ui.eth(split.to_caller)}, burnt {ui.eth(split.burnt)}",
            "",
        ]
        if not provers:
            return "\n".join([*lines, "no provers in this market"])
        rows = [(p, f"{m.used}/{m.capacity}", ui.eth(m.ask), f"{m.proving_time} s") for p, m in provers]
        return "\n".join(lines) + ui.table(["prover", "used/capacity", "ask", "proving time"], rows)

    ui.emit(as_json, data, text)


# ------------------------------------------------------------------ mechanisms


@cli.group(context_settings=ui.CONTEXT)
def mechanism():
    """Register and retire mechanisms, and choose the frontends that assign for them."""


@ui.command(
    mechanism,
    click.argument("name"),
    click.option("--frontend", "frontends", multiple=True, help="A frontend's address (repeat for more)."),
    click.option(
        "--param",
        "params",
        multiple=True,
        metavar="KEY=VALUE[,KEY=VALUE]",
        help="An instance's parameter, published in its name: NAME/KEY=VALUE (repeatable).",
    ),
    name="register",
    account=True,
)
def mechanism_register(account, name, frontends, params, as_json):
    """Register mechanism NAME with the frontends allowed to assign for it; with --param,
    an instance of NAME whose name publishes its parameters (auction/window=30)."""
    account = ui.require(account)
    name = _instance(name, params)
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


def _instance(name: str, params: tuple[str, ...]) -> str:
    """NAME, or the instance of kind NAME with `params`, checked (one line if not)."""
    try:
        if not params:
            registered.parse_instance(name)  # a name written as an instance reads back as one
            return name
        if "/" in name:
            ui.fail(f"'{name}' has its parameters already; give the kind alone with --param, or no --param")
        values: dict[str, int] = {}
        for text in params:
            for key, value in registered.parse_parameters(text, name).items():
                if key in values:
                    ui.fail(f"--param {key} given twice")
                values[key] = value
        return registered.instance_name(name, values)
    except registered.InstanceError as error:
        ui.fail(f"mechanism name: {error}")


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


def _mechanism_markets(info) -> str:
    return ", ".join(f"{m} ({n} prover{'s' if n != 1 else ''})" for m, n in sorted(info.markets.items()))


@ui.command(mechanism, name="list")
def mechanism_list(as_json):
    """Every mechanism the registry knows: id, name, kind, registrant, frontends, markets."""
    found = registered.mechanisms(ui.client())
    rows = [
        (
            m.mechanism_id,
            m.name + (" (retired)" if m.retired else ""),
            m.kind,
            m.registrant or "-",
            len(m.frontends),
            ", ".join(str(i) for i in sorted(m.markets)) or "-",
        )
        for m in found
    ]
    ui.emit(
        as_json,
        [m.to_dict() for m in found],
        lambda: ui.table(["id", "name", "kind", "registrant", "frontends", "markets"], rows),
    )


@ui.command(mechanism, click.argument("mechanism_id", type=int), name="show")
def mechanism_show(mechanism_id, as_json):
    """What the registry knows of MECHANISM_ID: its kind, registrant, whether it is retired,
    the frontends allowed to assign for it and the markets where provers accept it. The
    registry keeps no parameters for a mechanism (a task's terms and a frontend's
    configuration carry them), but its name may publish an instance's (auction/window=30)."""
    m = registered.mechanism(ui.client(), mechanism_id)
    nobody = "- (provers take slots themselves)" if m.kind == "built in" else "none allowed now"
    lines = [
        f"mechanism {m.mechanism_id} '{m.name}'{' (RETIRED: no new tasks may name it)' if m.retired else ''}",
        f"  kind          {m.kind}",
        f"  registrant    {m.registrant or '- (built in: nobody manages it)'}",
        f"  frontends     {', '.join(m.frontends) or nobody}",
        f"  markets       {_mechanism_markets(m) or 'no prover accepts it yet'}",
        "  parameters    "
        + (
            ", ".join(f"{k}={v}" for k, v in m.params.items()) + " (published in its name)"
            if m.params
            else "none in the registry (a task's terms, or the frontend's configuration)"
        ),
    ]
    ui.emit(as_json, m.to_dict(), "\n".join(lines))


__all__ = ["cli"]
