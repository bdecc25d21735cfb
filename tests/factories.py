"""What tests share: the session's constants, task terms and real proofs of the square
circuit, reading what the registry reported, a task's QoS built by hand, the registry's
named reasons, loading a script's click commands, and starting and watching the processes
of the process tests (agents, the orderbook frontend)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from eth_account import Account

from frontends.book import MembershipState
from provingmarket import Assignment, TaskTerms
from provingmarket.devnet import ADDRESS_INPUT, ETHER, PROVER_INPUT, STATEMENT, proof_for
from provingmarket.devnet import task_terms as make_terms
from provingmarket.formats import DUTCH, OPEN_RACE
from provingmarket.market.qos import TaskQoS
from provingmarket.proving.backends import SNARKJS_PROVE

__all__ = ["ADDRESS_INPUT", "ETHER", "PROVER_INPUT", "STATEMENT", "proof_for", "make_terms"]

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
CONTRACTS = ROOT / "contracts"
# The session registry's settings (tests/conftest.py deploys it and its square market).
UNBONDING_DELAY = 3_600  # seconds
GRACE_PERIOD = 60  # seconds
REQUESTER_BPS = 5_000
CALLER_BPS = 1_000
MIN_REWARD, MIN_COLLATERAL = ETHER // 100, ETHER // 10  # the session market's


def advance(chain, seconds: int) -> None:
    """Move the chain's clock forward and mine a block there."""
    chain.mine(1, deltatime=seconds)


def load_script(name: str, module_name: str | None = None):
    """scripts/<name>.py loaded as a module (its click commands and helpers), as `ape run` loads it."""
    spec = importlib.util.spec_from_file_location(
        module_name or f"{name}_script", ROOT / "scripts" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------ the registry


def escrow(terms: TaskTerms) -> int:
    return terms.escrow()


def posted_terms(registry, tx) -> TaskTerms:
    """The terms as the registry recorded them, from the TaskPosted event of `tx`."""
    event = tx.events.filter(registry.TaskPosted)[0]
    return TaskTerms.from_event(event.terms)


def assigned(registry, tx) -> list[tuple[str, Assignment]]:
    """(prover, assignment) for each TaskAssigned event of `tx`."""
    return [(e.prover, Assignment.from_event(e)) for e in tx.events.filter(registry.TaskAssigned)]


def skipped(registry, tx) -> list[str]:
    return [e.reason for e in tx.events.filter(registry.AssignmentSkipped)]


def item(
    terms: TaskTerms,
    prover,
    price: int,
    signature: bytes = b"",
    min_price: int = 0,
    expiry: int = 0,
    nonce: int = 0,
):
    """An assignment item as the registry takes it."""
    return (terms.as_tuple(), str(prover), price, min_price, expiry, nonce, signature)


def assign(registry, keeper, terms: TaskTerms, prover, price: int | None = None) -> Assignment:
    """Assign `terms` to `prover` as the frontend `keeper` (at the task's maximum by
    default); returns the assignment the registry reported."""
    price = terms.max_reward if price is None else price
    [(who, assignment)] = assigned(registry, registry.assign(item(terms, prover, price), sender=keeper))
    assert who == prover.address
    return assignment


def prove(registry, terms: TaskTerms, assignment: Assignment, prover, inputs=STATEMENT, proof=None, **kwargs):
    """Prove as `prover`; by default with the proof made for `prover`'s address."""
    proof = proof_for(STATEMENT, prover.address) if proof is None else proof
    return registry.prove(terms.as_tuple(), assignment.as_tuple(), inputs, proof, sender=prover, **kwargs)


def offchain_terms(**overrides) -> TaskTerms:
    """Task terms as a mechanism or a QoS record sees them, built by hand: market 1 and
    mechanism 3, posted at 1,000 by 0x99..99, a reward of up to 100 wei, 600 s to assign
    and 300 s to prove; `overrides` set any field."""
    values = dict(
        market_id=1,
        requester="0x" + "99" * 20,
        posted_at=1_000,
        inputs_commitment=b"\x01" * 32,
        prover_input_hash=b"\x02" * 32,
        max_reward=100,
        frontend_fee=1,
        assign_window=600,
        proving_window=300,
        collateral=10,
        capabilities=0,
        redundancy=1,
        mechanism_id=3,
        start_price=0,
        ramp=0,
        decay=False,
        decay_floor=0,
        salt=0,
    )
    return TaskTerms(**{**values, **overrides})


def offchain_member(prover: str, **overrides) -> MembershipState:
    """A prover's membership as a mechanism's snapshot holds it: market 1, an ask of 10 wei,
    5 tasks at once and none used, 60 s to prove, mechanism 3 accepted; `overrides` set
    any field."""
    values = dict(
        prover=prover,
        market_id=1,
        ask=10,
        capacity=5,
        used=0,
        proving_time=60,
        capabilities=0,
        mechanisms=frozenset({3}),
    )
    return MembershipState(**{**values, **overrides})


# ------------------------------------------------------------------ QoS


def task_qos(
    proof_times: tuple[int, ...],
    spent: int,
    *,
    least: int,
    could: int,
    redundancy: int | None = None,
    refunded: int | None = None,
    min_reward: int | None = None,
    fees: int = 0,
    collateral: int = 10,
    task_id: str = "0x" + "01" * 32,
) -> TaskQoS:
    """Proofs at `proof_times` seconds after posting, `spent` in all (`fees` of it to the
    frontend), in a market whose least reward is `least`; the redundancy defaults to the
    proofs (at least 1) and the refunded slots to those without a proof."""
    redundancy = redundancy or max(1, len(proof_times))
    terms = offchain_terms(
        max_reward=10 * least, frontend_fee=0, collateral=collateral, redundancy=redundancy
    )
    return TaskQoS(
        task_id=task_id,
        market_id=1,
        mechanism_id=3,
        mechanism="auction",
        requester=terms.requester,
        posted_at=1_000,
        terms=terms,
        min_reward=least if min_reward is None else min_reward,
        assigned_after=0 if proof_times else None,
        proof_times=tuple(proof_times),
        provers=tuple(f"0x{i:040x}" for i in range(len(proof_times))),
        paid=spent - fees,
        fees=fees,
        slashes=0,
        could=could,
        took_part=len(proof_times),
        refunded=redundancy - len(proof_times) if refunded is None else refunded,
        cancelled=False,
    )


# ------------------------------------------------------------------ reasons

MODULES = CONTRACTS / "registry"
CONSTANT = re.compile(r'^([A-Z_]+): constant\(uint256\) = (\d+)  # "([^"]+)"$', re.M)


def named_reasons() -> dict[str, tuple[int, str]]:
    """Each reason's name -> (its constant, its text without the "registry: " prefix)."""
    source = (MODULES / "reasons.vy").read_text()
    return {name: (int(value), text) for name, value, text in CONSTANT.findall(source)}


def returned_by(module: str, function: str) -> set[str]:
    """The reasons ("registry: <text>") `function` of a module returns by name."""
    source = (MODULES / f"{module}.vy").read_text()
    body = re.search(rf"\ndef {function}\(.*?(?=\n@|\Z)", source, re.S)
    assert body, f"no function {function} in {module}.vy"
    texts = named_reasons()
    names = set(re.findall(r"return reasons\.([A-Z_]+)", body.group(0))) - {"OK"}
    return {f"registry: {texts[name][1]}" for name in names}


# ------------------------------------------------------------------ processes

PRICE = ETHER // 20  # what a test's keeper pays an agent for a task


def slow_backend(seconds: int) -> dict:
    """A backend that takes a while (`seconds` of sleep, then snarkjs): long enough to act
    while a proof is being made."""
    return {
        "backend": "command",
        "command": [
            "bash",
            "-c",
            f'sleep {seconds} && exec bash "$0" "$@"',
            str(SNARKJS_PROVE),
            "{wasm}",
            "{zkey}",
            "{inputs}",
            "{proof}",
            "{public}",
        ],
        "timeout": 60,
    }


SLOW_BACKEND = slow_backend(1)


def spawn_agent(
    spawn,
    stack,
    key: str,
    data_dir,
    *options: str,
    rpc: str | None = None,
    name: str = "agent",
    wait: bool = True,
):
    """A prover agent process for `key` on `stack` (its files in `data_dir`, polling every
    0.2 s), once it logged agent.start (unless `wait` is False)."""
    process = spawn(
        "provingmarket.agent",
        "--rpc",
        rpc or stack.rpc,
        "--deployment",
        str(stack.record),
        "--key-env",
        "PROVER_KEY",
        "--data-dir",
        str(data_dir),
        "--poll",
        "0.2",
        *options,
        env={"PROVER_KEY": key},
        name=name,
    )
    if wait:
        process.wait_for("agent.start", timeout=60)
    return process


def spawn_frontend(
    spawn, stack, key, data_dir, *options, mechanism: str, command=(), name: str | None = None
):
    """A mechanism's frontend process (frontends.<mechanism>.process, `command` first) for the
    stack's mechanism, signing with `key` (in <MECHANISM>_KEY), polling every 0.2 s."""
    return spawn(
        f"frontends.{mechanism}.process",
        *command,
        "--rpc",
        stack.rpc,
        "--deployment",
        str(stack.record),
        "--mechanism",
        str(stack.mechanism_id),
        "--data-dir",
        str(data_dir),
        "--poll",
        "0.2",
        *options,
        env={f"{mechanism.upper()}_KEY": key},
        name=name or mechanism,
    )


def start_frontend(spawn, stack, key, data_dir, *extra, name="orderbook"):
    """The orderbook frontend process."""
    return spawn_frontend(spawn, stack, key, data_dir, *extra, mechanism="orderbook", name=name)


def run_agent_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The agent run to completion (a refusal), without the caller's PROVER_KEY."""
    environment = {k: v for k, v in os.environ.items() if k != "PROVER_KEY"}
    return subprocess.run(
        [sys.executable, "-m", "provingmarket.agent", *args],
        cwd=ROOT,
        env=dict(environment, PYTHONPATH=str(ROOT), **(env or {})),
        capture_output=True,
        text=True,
        timeout=60,
    )


def wait_until(predicate, timeout: float = 60, every: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"{what} not met within {timeout}s")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def frontend_account(funded) -> tuple[str, str]:
    """(key, address) of a fresh funded account for a frontend process."""
    key = funded()
    return key, Account.from_key(key).address


def address(key: str) -> str:
    return Account.from_key(key).address


def assign_in(stack, keeper, terms, prover: str, price: int = PRICE) -> Assignment:
    """Assign `terms` in `stack` to `prover` as `keeper`; the assignment reported."""
    tx = stack.registry.assign(item(terms, prover, price), sender=keeper)
    return assigned(stack.registry, tx)[0][1]


def task_id(stack, terms) -> bytes:
    return stack.client.task_id(terms)


def proofs(stack, terms) -> list:
    return stack.client.events(["TaskProven"], task_id=task_id(stack, terms))


def for_task(stack, terms):
    """A log-line filter: lines about this task."""
    tid = "0x" + task_id(stack, terms).hex()
    return lambda line: line.get("task") == tid


def backend_file(tmp_path: Path, config: dict) -> str:
    path = tmp_path / "backend.json"
    path.write_text(json.dumps(config))
    return str(path)


def decisions_by_pair(*processes) -> dict[tuple[str, str], int]:
    """How often the orderbook processes decided each (task, prover)."""
    counted: dict[tuple[str, str], int] = {}
    for process in processes:
        for d in process.events("orderbook.decision"):
            pair = (d["task"], d["prover"])
            counted[pair] = counted.get(pair, 0) + 1
    return counted


# ------------------------------------------------------------------ personas


HOUR = 3_600


def stated(**terms) -> dict:
    """The persona fields of a task's terms, with what no persona sets left at 0."""
    return {"assign_window": 0, "decay": False, "decay_floor": 0, "start_price": 0, "ramp": 0, **terms}


ARBITRAGE = stated(
    mechanism_id=OPEN_RACE,
    redundancy=1,
    proving_window=30,
    max_reward=5 * MIN_REWARD,
    collateral=MIN_COLLATERAL,
    decay=True,
    decay_floor=MIN_REWARD,
)


def rollup(election: int) -> dict:
    return stated(
        mechanism_id=election,
        redundancy=3,
        assign_window=4 * HOUR,
        proving_window=2 * HOUR,
        max_reward=2 * MIN_REWARD,
        collateral=5 * MIN_COLLATERAL,
        decay=True,
        decay_floor=MIN_REWARD,
    )


BATCH_DUTCH = stated(
    mechanism_id=DUTCH,
    redundancy=1,
    assign_window=6 * HOUR,
    proving_window=6 * HOUR,
    max_reward=MIN_REWARD,
    collateral=MIN_COLLATERAL,
    start_price=0,
    ramp=6 * HOUR,
)


def scrape(url: str) -> dict[str, float]:
    """A process's /metrics as Prometheus reads it: each sample's value by its name, with
    its labels if it has any (`name{k="v"}`)."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=10) as answer:
        text = answer.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            samples[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return samples


def schemathesis(
    openapi_url: str, tmp_path: Path, *options: str, examples: int = 40, seconds: int = 40
) -> str:
    """Run the venv's schemathesis (requirements.lock) over the API at `openapi_url`, every
    check but those that need state or auth, seeded and unshrunk; asserts it found nothing
    (no 5xx, every answer as the OpenAPI description says) and returns its summary."""
    run = subprocess.run(
        [
            str(Path(sys.executable).parent / "schemathesis"),
            "run",
            openapi_url,
            "--checks",
            "all",
            "--exclude-checks",
            "positive_data_acceptance,ignored_auth,use_after_free,ensure_resource_availability",
            "--max-examples",
            str(examples),
            "--max-time",
            str(seconds),
            "--seed",
            "1",
            "--no-shrink",
            "--suppress-health-check",
            "all",
            "--request-timeout",
            "10",
            *options,
        ],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,  # its cache and reports stay out of the project
        env={"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "NO_COLOR": "1", "HOME": str(tmp_path)},
    )
    summary = run.stdout[-4_000:]
    assert run.returncode == 0, summary + run.stderr[-2_000:]
    assert "No issues found" in summary or "passed" in summary, summary
    return summary
