"""Proving: each piece of work taken up in a worker thread, at most the membership's
declared capacity at once per market, earliest deadline first (the main loop offers
work in that order); a failed backend retried with backoff while the deadline allows;
a proof kept in the row before it is submitted. With `--queue` the thread hands the
proof to the task queue's workers (provingmarket/proving/queue.py) and waits for it: a
worker lost mid-proof is a failed attempt like a backend's. docs/agent.md says more."""

from __future__ import annotations

import concurrent.futures
import json
import logging
import threading
import time
import traceback
from collections.abc import Mapping
from typing import Any

from provingmarket.agent.backends import Backends
from provingmarket.agent.context import Context, Service
from provingmarket.agent.monitor import Monitor
from provingmarket.agent.store import GAVE_UP, PROVED, PROVING, QUEUED, Work, decline_key
from provingmarket.agent.submitter import Submitter
from provingmarket.chain.client import ClientError, TaskState, chain_time
from provingmarket.chain.tasks import task_inputs
from provingmarket.proving.backends import BackendError, ProofResult, ProvingBackend
from provingmarket.proving.circuits import Circuit, CircuitError
from provingmarket.proving.queue import Job, JobFailed, JobQueue, inputs_json
from provingmarket.runtime import process as runtime

log = logging.getLogger("provingmarket.agent.agent")

MIN_WORKERS = 8
SHUTDOWN_GRACE = 30.0  # seconds running proofs get to finish after SIGTERM
# With --queue: the metric each of the queue's log lines counts.
JOB_COUNTERS = {
    "agent.job_sent": ("jobs_sent_total", "Proving jobs sent to the task queue"),
    "agent.job_resent": ("jobs_resent_total", "Jobs sent again: the broker had lost them"),
    "agent.queue_down": ("queue_down_total", "Times the task queue's broker stopped answering"),
}


class Workers(Service):
    """The proving threads and what they hold: the keys being worked on and the proofs
    running per market (both under `lock`)."""

    def __init__(self, context: Context, backends: Backends, monitor: Monitor, submitter: Submitter):
        super().__init__(context)
        self.backends = backends
        self.monitor = monitor
        self.submitter = submitter
        self.pool: concurrent.futures.ThreadPoolExecutor | None = None
        self.futures: set[concurrent.futures.Future] = set()
        self.lock = threading.Lock()  # busy, running
        self.busy: set[str] = set()  # keys a worker holds
        self.running: dict[int, int] = {}  # market -> proofs being made or sent
        self.warm: set[tuple[int, int]] = set()  # (market, backend) whose first proof ran
        self.warm_lock = threading.Lock()
        settings = context.settings
        self.queue = JobQueue(settings.queue, settings.queue_name) if settings.queue else None

    def start(self, capacity: int) -> None:
        """The thread pool, sized for the capacity of every membership."""
        self.pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=max(MIN_WORKERS, capacity), thread_name_prefix="prove"
        )

    def count_rpc_error(self) -> None:
        self.metrics.counter("rpc_errors_total", "Calls to the node that failed (rounds and workers)")

    def busy_keys(self) -> set[str]:
        with self.lock:
            return set(self.busy)

    def gauge(self) -> None:
        with self.lock:
            self.metrics.gauge("proving_now", "Proofs being made or sent", sum(self.running.values()))

    def finish(self) -> tuple[int, int]:
        """Let running proofs finish and be submitted (at most SHUTDOWN_GRACE seconds);
        returns how many were running and how many still are."""
        with self.lock:
            pending = [f for f in self.futures if not f.done()]
        if pending:
            concurrent.futures.wait(pending, timeout=SHUTDOWN_GRACE)
        unfinished = sum(1 for f in pending if not f.done())
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
        if self.queue is not None and not unfinished:
            self.queue.close()
        return len(pending), unfinished

    # -------------------------------------------------------------- taking work up

    def take(self, work: Work, now: int, in_flight: set[str], memberships: Mapping[int, Any]) -> None:
        """Decide what to do with one piece of work this round: submit a kept proof, give
        it up, or start proving it if its market has a unit of capacity free."""
        if self._held(work, in_flight):
            return
        row, first = self.monitor.notice(work, now)
        if work.market_id in self.monitor.frozen_now:
            return  # nothing can be proven there: voided instead (agent.voided)
        if row is not None and row["state"] == PROVED:
            self._submit_kept(work, row)
            return
        if row is not None and row["state"] not in (QUEUED, PROVING):  # no row: a race not entered yet
            return
        needs = self.store.expected(work.market_id, memberships) + self.settings.margin
        if self._dropped(work, row, first, now, needs) or self.stop.stopped:  # stopping: no new work
            return
        membership = memberships.get(work.market_id)
        self._start(work, row, needs, membership.capacity if membership is not None else 1)

    def _held(self, work: Work, in_flight: set[str]) -> bool:
        """Whether the work is in hand already: a worker holds it, or a transaction for
        it (its proof, or its decline) is in flight."""
        with self.lock:
            held = work.key in self.busy
        # declined: the row may not say so if the process died right after
        declined = not work.race and decline_key(work.task_id, work.assignment.slot) in in_flight
        return held or work.key in in_flight or declined

    def _start(self, work: Work, row: dict | None, needs: float, capacity: int) -> None:
        """Prove the work in a worker if its market has fewer than `capacity` proofs running."""
        if self.pool is None:
            raise RuntimeError("Workers.start makes the pool before work is taken up")
        with self.lock:
            if self.running.get(work.market_id, 0) >= capacity:
                return
            self.running[work.market_id] = self.running.get(work.market_id, 0) + 1
            self.busy.add(work.key)
        if row is None:
            self.store.insert(work, PROVING)
        else:
            self.store.update(work.key, state=PROVING)
        future = self.pool.submit(self._work, work, needs)
        with self.lock:
            self.futures = {f for f in self.futures if not f.done()} | {future}

    def _dropped(self, work: Work, row: dict | None, first: bool, now: int, needs: float) -> bool:
        """Whether the work is not to be proven (given up, declined, or failed by the
        simulated hardware): said so, and True."""
        if not work.race:
            why = self.monitor.to_decline(work, first)
            if why is not None:
                self.submitter.give_up(work, now, needs, why)
                return True
        hardware = self.settings.simulate
        if hardware.fails(self.me, work.task_id, 0 if work.race else work.assignment.slot):
            # Simulated hardware that crashed on this work: nothing is sent, not even a
            # decline, so an assignment is slashed after its deadline.
            if row is None:
                self.store.insert(work, GAVE_UP)
            self.store.update(work.key, state=GAVE_UP, error="simulated hardware failure")
            self.metrics.counter("simulated_failures_total", "Work the simulated hardware failed on")
            runtime.emit(log, "simulated.failure", logging.WARNING, **work.fields(), seed=hardware.seed)
            return True
        if row is not None and row["attempts"] > self.settings.retries:
            reason = f"the backend failed {row['attempts']} times: {row['error']}"
            self.submitter.give_up(work, now, needs, reason)
            return True
        if now + needs > work.deadline:
            if row is not None:  # a race not entered yet is simply not entered
                self.submitter.give_up(work, now, needs, "not enough time left to prove")
            return True
        return False

    def _submit_kept(self, work: Work, row: dict) -> None:
        """A proof kept from before (a restart, or a node that failed at submit)."""
        if row["proof"] is None:
            self.store.update(work.key, state=QUEUED)
            return
        public = [int(v) for v in json.loads(row["public_inputs"])]
        with self.lock:
            if work.key in self.busy:
                return
            self.busy.add(work.key)
        try:
            self.submitter.submit(work, bytes(row["proof"]), public)
        finally:
            with self.lock:
                self.busy.discard(work.key)

    # -------------------------------------------------------------- proving (in a worker)

    def _work(self, work: Work, needs: float) -> None:
        try:
            result = self._prove_with_retries(work, needs)
            if result is not None:
                self.submitter.submit(work, result[0], result[1])
        except runtime.RPC_ERRORS as error:
            # The node failed mid-way; the row says where it got to (proving or
            # proved) and the main loop takes it up again.
            self.count_rpc_error()
            runtime.emit(
                log,
                "agent.rpc_error",
                logging.WARNING,
                **work.fields(),
                error=f"{type(error).__name__}: {error}",
            )
        except Exception as error:  # a bug: log it, leave the row for the main loop
            runtime.emit(
                log,
                "agent.error",
                logging.ERROR,
                **work.fields(),
                error=f"{type(error).__name__}: {error}"[:300],
                trace=traceback.format_exc(limit=8),
            )
        finally:
            with self.lock:
                self.busy.discard(work.key)
                self.running[work.market_id] -= 1

    def _prove_with_retries(self, work: Work, needs: float) -> tuple[bytes, list[int]] | None:
        """Prove, retrying a failed backend with backoff while the deadline allows;
        None when it gave up (said so) or is stopping."""
        try:
            circuit = self.monitor.circuit(work.market_id)
            backend = self.backends.for_market(work.market_id)
            state = TaskState(work.task_id, work.terms, work.prover_input, work.input_uri, 0, 0, 0, 0)
            inputs = task_inputs(state, circuit)
        except (ClientError, CircuitError, BackendError) as error:
            self._unprovable(work, needs, error)
            return None
        attempt = (self.store.get(work.key) or {}).get("attempts", 0)
        while True:
            attempt += 1
            self.store.update(work.key, attempts=attempt)
            runtime.emit(
                log,
                "agent.proving",
                **work.fields(),
                attempt=attempt,
                expected_s=round(needs - self.settings.margin, 3),
            )
            started = time.monotonic()
            try:
                if self.queue is not None:
                    result = self._run_remote(self.queue, circuit, inputs, work, needs)
                else:
                    result = self._run_backend(backend, circuit, inputs, work.market_id)
                time.sleep(self.settings.simulate.prove_seconds)  # slower hardware (simulations)
            except (ClientError, CircuitError) as error:  # inputs the circuit refuses: no retry helps
                self._unprovable(work, needs, error)
                return None
            except Exception as error:
                if self._retry(work, needs, attempt, error):
                    continue
                return None
            return self._kept(work, result, time.monotonic() - started)

    def _unprovable(self, work: Work, needs: float, error: Exception) -> None:
        """Inputs the circuit (or the backend's configuration) refuses: given up."""
        self.metrics.counter("proving_failures_total", "Failed proving attempts", reason="inputs")
        self.store.update(work.key, error=str(error))
        self.submitter.give_up(work, chain_time(self.web3), needs, str(error))

    def _retry(self, work: Work, needs: float, attempt: int, error: Exception) -> bool:
        """A failed attempt: True once the backoff is waited out and another attempt fits
        before the deadline; else given up (or stopping: left for the next start)."""
        reason = "backend" if isinstance(error, BackendError) else type(error).__name__
        message = f"{error}" if isinstance(error, BackendError) else f"{type(error).__name__}: {error}"
        self.metrics.counter("proving_failures_total", "Failed proving attempts", reason=reason)
        self.store.update(work.key, error=message[:1000])
        delay = float(2 ** (attempt - 1))
        now = chain_time(self.web3)
        retry = attempt <= self.settings.retries and now + delay + needs <= work.deadline
        runtime.emit(
            log,
            "agent.proving_failed",
            logging.WARNING,
            **work.fields(),
            attempt=attempt,
            error=message[:500],
            retry_in=delay if retry else None,
        )
        if not retry:
            why = (
                f"the backend failed {attempt} times"
                if attempt > self.settings.retries
                else "no time left for another attempt"
            )
            self.submitter.give_up(work, now, needs, f"{why}: {message[:300]}")
            return False
        if self.stop.wait(delay):  # stopping: leave it for the next start
            self.store.update(work.key, state=QUEUED)
            return False
        return True

    def _kept(self, work: Work, result: Any, seconds: float) -> tuple[bytes, list[int]]:
        """A proof made: written to the row (state proved) before it is said or sent."""
        average = self.store.measured(work.market_id, seconds)
        self.store.update(
            work.key,
            state=PROVED,
            proof=result.proof,
            public_inputs=json.dumps([str(v) for v in result.public_inputs]),
            seconds=seconds,
            error=None,
        )
        self.metrics.gauge(
            "last_proving_seconds",
            "Wall time of the last proof",
            round(seconds, 6),
            market=work.market_id,
        )
        self.metrics.observe("proof_seconds", "Wall time of a proof", seconds, market=work.market_id)
        runtime.emit(
            log,
            "agent.proved",
            **work.fields(),
            ms=round(seconds * 1000),
            backend=result.backend,
            expected_s=round(average, 3),
        )
        return result.proof, result.public_inputs

    def _run_backend(
        self, backend: ProvingBackend, circuit: Circuit, inputs: Mapping[str, object], market_id: int
    ):
        """A backend's first proof of a circuit loads its keys: one thread at a time."""
        mark = (market_id, id(backend))
        if mark in self.warm:
            return backend.prove(circuit, inputs, self.me)
        with self.warm_lock:
            result = backend.prove(circuit, inputs, self.me)
            self.warm.add(mark)
            return result

    def _run_remote(
        self, queue: JobQueue, circuit: Circuit, inputs: Mapping[str, object], work: Work, needs: float
    ) -> ProofResult:
        """One attempt through the task queue: the job carries the deadline (less the
        margin) as the workers' clock reads it; the proof that comes back is checked
        (the task's public inputs, the market's verifier) before it is kept."""
        left = work.deadline - chain_time(self.web3)
        finish_by = time.time() + left - self.settings.margin
        job = Job.new(
            work=work.key,
            circuit=circuit.reference,
            circuit_name=circuit.name,
            inputs=inputs_json(inputs),
            prover=self.me,
            deadline=work.deadline,
            start_by=finish_by - (needs - self.settings.margin),
            finish_by=finish_by,
        )

        def said(kind: str, level: int = logging.INFO, **fields: Any) -> None:
            runtime.emit(log, kind, level, **work.fields(), **fields)
            if kind in JOB_COUNTERS:
                self.metrics.counter(*JOB_COUNTERS[kind])

        result = queue.run(job, said)
        proof = bytes.fromhex(result.proof)
        public = [int(v) for v in result.public_inputs]
        if public != circuit.public_inputs(inputs, self.me):
            raise JobFailed(f"worker {result.worker} proved other public inputs than the task's")
        if not self.backends.check_for(work.market_id)(proof, public):
            raise JobFailed(f"worker {result.worker} returned a proof the market's verifier rejects")
        return ProofResult(proof, public, result.seconds, f"{result.backend}@{result.worker}")
