"""The prover agent with `--queue`: proofs made by worker processes
(`python -m provingmarket.proving.worker`) on a real Redis server, through Dramatiq, each
worker on the test's own queue name. A prover checks the chain: each task proven once,
by its account, and paid; a worker killed mid-proof costs a retry on another worker, or
a decline in time when no retry fits; never a second proof."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
import uuid
from pathlib import Path

import pytest
from dramatiq.message import Message

from provingmarket.chain.client import KeySigner, RegistryClient
from provingmarket.proving.circuits import Circuit
from provingmarket.proving.queue import ACTOR, Job, JobFailed, JobQueue, inputs_json, make_broker
from tests.factories import (
    ETHER,
    PRICE,
    ROOT,
    address,
    advance,
    assign_in,
    for_task,
    proofs,
    scrape,
    slow_backend,
    spawn_agent,
    task_id,
    wait_until,
)
from tests.processes.conftest import Process

WORKERS = 3
# snarkjs after a pause: long enough to kill a worker mid-proof
PAUSED_SNARKJS = slow_backend(2)


class Fleet:
    """The module's worker processes, shared by its tests (a worker's start is seconds of
    CPU): each test gets WORKERS of them alive, and reads their lines since it began."""

    def __init__(self, folder: Path, url: str, queue: str, backend: str):
        argv = [sys.executable, "-m", "provingmarket.proving.worker", "--queue", url, "--queue-name", queue]
        argv += ["--backend", backend, "--lease", "2"]
        env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
        self.workers = [Process(argv, env, folder / f"worker-{i}.log") for i in range(WORKERS)]
        self.seen: dict[int, int] = {}

    def ready(self) -> Fleet:
        """Every worker up (a killed one started again), and the lines read so far marked."""
        for worker in self.workers:
            if not worker.alive():
                worker.start()
        for worker in self.workers:
            worker.wait_for("worker.ready", count=worker.starts, timeout=60)
        self.seen = {id(w): len(w.lines) for w in self.workers}
        return self

    def events(self, worker: Process, kind: str) -> list[dict]:
        return [line for line in worker.lines[self.seen[id(worker)] :] if line.get("event") == kind]

    def proving(self) -> Process | None:
        """A worker that started a job during this test."""
        return next((w for w in self.workers if self.events(w, "worker.proving")), None)

    def proved(self) -> dict[str, str]:
        """job -> the worker that reported it proved, during this test."""
        return {line["job"]: line["worker"] for w in self.workers for line in self.events(w, "worker.proved")}

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop(timeout=10)


@pytest.fixture(scope="module")
def queue_name() -> str:
    """A queue of this module's own on the session's Redis server."""
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
def worker_fleet(tmp_path_factory, redis_server, queue_name):
    folder = tmp_path_factory.mktemp("workers")
    backend = folder / "backend.json"
    backend.write_text(json.dumps(PAUSED_SNARKJS))
    fleet = Fleet(folder, redis_server.url, queue_name, str(backend))
    yield fleet
    fleet.stop()


@pytest.fixture
def fleet(worker_fleet) -> Fleet:
    return worker_fleet.ready()


@pytest.fixture
def queued_prover(funded, chain, spawn, tmp_path, redis_server, queue_name):
    """queued_prover(stack, capacity, proving_time, queue, *options) -> (address, agent): a staked
    and joined prover whose agent proves through the module's queue (or `queue`)."""

    def make(stack, capacity: int = 1, proving_time: int = 1, queue: str | None = None, *options: str):
        key = funded()
        client = RegistryClient(
            chain.provider.web3, stack.registry.address, KeySigner(key), stack.client.from_block
        )
        client.transact("stake", value=5 * ETHER)
        client.transact(
            "join_market", stack.market_id, capacity, ETHER // 100, proving_time, 0, [stack.mechanism_id]
        )
        agent = spawn_agent(
            spawn,
            stack,
            key,
            tmp_path / "agent",
            "--queue",
            redis_server.url,
            "--queue-name",
            queue or queue_name,
            *options,
        )
        return address(key), agent

    return make


def send_malformed(url: str, queue_name: str) -> None:
    """Three messages that are not jobs: bytes that are no message, no job, a job's id with
    fields missing."""
    broker = make_broker(url)
    broker.do_enqueue(queue_name, "garbage", b"\x00 not a message")
    for args in (("not a job",), ({"job_id": "x1", "inputs": 3},)):
        broker.enqueue(Message(queue_name=queue_name, actor_name=ACTOR, args=args, kwargs={}, options={}))
    broker.close()


def test_agent_queue__tasks_proven_by_the_workers__each_once_and_paid(
    make_stack, keeper, post, queued_prover, fleet, redis_server, queue_name
):
    send_malformed(redis_server.url, queue_name)
    stack = make_stack([keeper.address])
    me, agent = queued_prover(stack, capacity=WORKERS)
    tasks = [post(stack) for _ in range(WORKERS)]
    for terms in tasks:
        assign_in(stack, keeper, terms, me)

    for terms in tasks:
        agent.wait_for("agent.paid", where=for_task(stack, terms))
        assert [(e.prover, e.paid) for e in proofs(stack, terms)] == [(me, PRICE)]
    assert stack.client.balance(me) == WORKERS * PRICE
    made = fleet.proved()
    assert len(made) == WORKERS  # one proof per task, every one by a worker
    kept = agent.events("agent.proved")
    assert sorted(line["backend"].split("@")[1] for line in kept) == sorted(made.values())
    # the messages that were not jobs: said and dropped, every worker still up
    assert sum(len(fleet.events(w, "worker.malformed")) for w in fleet.workers) == 2
    assert all(w.alive() for w in fleet.workers)


def test_agent_queue__worker_killed_mid_proof__retried_on_another_and_proven_once(
    make_stack, keeper, post, queued_prover, fleet
):
    stack = make_stack([keeper.address])
    me, agent = queued_prover(stack)
    terms = post(stack)
    assign_in(stack, keeper, terms, me)

    victim = wait_until(fleet.proving, timeout=30, what="worker.proving")
    victim.kill()
    paid = agent.wait_for("agent.paid", where=for_task(stack, terms), timeout=60)[0]

    assert [e.prover for e in proofs(stack, terms)] == [me] and paid["paid"] == PRICE
    [failed] = agent.events("agent.proving_failed")
    assert "stopped mid-proof" in failed["error"] and failed["retry_in"] is not None
    [(_, prover)] = fleet.proved().items()
    assert prover != fleet.events(victim, "worker.proving")[0]["worker"]
    assert len(agent.events("agent.submitted")) == 1


def test_agent_queue__worker_killed_with_no_time_to_retry__declined_in_time(
    make_stack, keeper, post, queued_prover, fleet, chain
):
    stack = make_stack([keeper.address], grace_period=22)
    # 10 s of declared proving and 2 of margin in a 25 s window: the first attempt starts
    # at ease; once its worker is killed the chain's clock is moved 14 s on (time passing on
    # a busy machine), so when the agent finds the worker gone (its lease, 2 s) fewer than
    # the 13 s a second attempt needs (backoff, proving, margin) are left, and the 22 s grace
    # period still runs
    me, agent = queued_prover(stack, 1, 10)
    terms = post(stack, proving_window=25)
    assign_in(stack, keeper, terms, me)

    victim = wait_until(fleet.proving, timeout=30, what="worker.proving")
    victim.kill()
    advance(chain, 14)
    declined = agent.wait_for("agent.declined", where=for_task(stack, terms), timeout=30)[0]

    assert "stopped mid-proof" in declined["reason"]
    wait_until(
        lambda: stack.client.events(["TaskDeclined"], task_id=task_id(stack, terms)),
        timeout=20,
        what="TaskDeclined",
    )
    assert [e.prover for e in stack.client.events(["TaskDeclined"], task_id=task_id(stack, terms))] == [me]
    assert not proofs(stack, terms) and not fleet.proved()
    advance(chain, 30)  # past the deadline: a declined slot is not slashed
    assert not stack.client.events(["Slashed"], task_id=task_id(stack, terms))


def test_agent_queue__broker_killed_mid_proof_and_restarted__task_still_proven_once(
    make_stack, keeper, post, queued_prover, fleet, redis_server
):
    stack = make_stack([keeper.address])
    me, agent = queued_prover(stack)
    terms = post(stack)
    assign_in(stack, keeper, terms, me)

    wait_until(fleet.proving, timeout=30, what="worker.proving")
    redis_server.kill()  # as a crash would: the queue, the lease and the job are in its append-only file
    try:
        agent.wait_for("agent.queue_down", where=for_task(stack, terms), timeout=20)
    finally:
        redis_server.start()
    paid = agent.wait_for("agent.paid", where=for_task(stack, terms), timeout=60)[0]

    assert [e.prover for e in proofs(stack, terms)] == [me] and paid["paid"] == PRICE
    assert agent.events("agent.queue_back") and not agent.events("agent.proving_failed")
    assert len(fleet.proved()) == 1 and all(w.alive() for w in fleet.workers)


def test_worker__job_past_its_start_by__not_started_and_its_agent_told(fleet, redis_server, queue_name):
    circuit = Circuit.load("square")
    job = Job.new(
        work="prove:0x01:0",
        circuit=circuit.reference,
        circuit_name=circuit.name,
        inputs=inputs_json(circuit.check_inputs(circuit.sample)),
        prover="0x" + "11" * 20,
        deadline=0,
        start_by=time.time() - 1,  # the deadline, less the proving time, has passed
        finish_by=time.time() + 30,
    )
    queue = JobQueue(redis_server.url, queue_name)
    try:
        with pytest.raises(JobFailed, match="not started: past its start-by time"):
            queue.run(job)
    finally:
        queue.close()
    assert not any(fleet.events(w, "worker.proving") for w in fleet.workers)


def test_agent_queue__broker_restarted_without_its_data__job_sent_again_and_proven(
    make_stack, keeper, post, queued_prover, spawn, redis_server
):
    stack = make_stack([keeper.address])
    idle = f"idle-{uuid.uuid4().hex[:12]}"  # nobody consumes it until the broker lost the job
    me, agent = queued_prover(stack, 1, 1, idle, "--metrics-port", "0")
    terms = post(stack)
    assign_in(stack, keeper, terms, me)
    agent.wait_for("agent.job_sent", where=for_task(stack, terms))

    redis_server.kill()
    shutil.rmtree(Path(redis_server.home) / "appendonlydir", ignore_errors=True)  # its data gone
    redis_server.start()
    agent.wait_for("agent.job_resent", where=for_task(stack, terms), timeout=30)
    worker = spawn("provingmarket.proving.worker", "--queue", redis_server.url, "--queue-name", idle)
    paid = agent.wait_for("agent.paid", where=for_task(stack, terms), timeout=60)[0]

    assert [e.prover for e in proofs(stack, terms)] == [me] and paid["paid"] == PRICE
    assert len(worker.events("worker.proved")) == 1 and not agent.events("agent.proving_failed")
    metrics = scrape(f"http://127.0.0.1:{agent.events('agent.start')[0]['metrics_port']}/metrics")
    assert metrics["agent_jobs_resent_total"] == 1 and metrics["agent_jobs_sent_total"] == 2
