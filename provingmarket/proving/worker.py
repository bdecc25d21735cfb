"""A proving worker: takes proving jobs off the task queue (Dramatiq on Redis, queue.py says
why) and proves them with the project's backends, on any machine that reaches the broker.

    python -m provingmarket.proving.worker --queue redis://HOST:6379/0 [--processes N]
        [--circuits DIR] [--backend auto|groth16py|snarkjs|FILE.json] [--queue-name proving]

Its settings may also come from a TOML file (`--config`, deploy/config/worker.toml) and
the variables PROVINGMARKET_WORKER_<OPTION>, as every long-running process's.

One JSON log line per event on stderr; `worker.ready` once it is consuming (a script
waits for it), `worker.proving`, `worker.proved`, `worker.failed`, `worker.skipped` (a
job past its start-by time, closed by its agent, or held by another worker),
`worker.malformed` (a message that is not a job: logged, acknowledged, never fatal).
SIGTERM (or SIGINT): no new job, the running ones finish (at most --grace seconds),
exit 0. With --processes N it starts N worker processes and stops them on SIGTERM.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import click
import dramatiq
import redis
from dramatiq.middleware import ShutdownNotifications, TimeLimit
from dramatiq.middleware.time_limit import TimeLimitExceeded

from provingmarket.proving.backends import BackendError, ProvingBackend, backend_from_config
from provingmarket.proving.circuits import Circuit, CircuitError
from provingmarket.proving.queue import (
    ACTOR,
    DEFAULT_QUEUE,
    HEARTBEAT_TIMEOUT,
    KEPT,
    LEASE,
    Job,
    QueueError,
    Result,
    check_url,
    emit,
    job_key,
    make_broker,
)
from provingmarket.runtime.config import as_service, config_option
from provingmarket.runtime.process import configure_logging, run_main

PROG = "python -m provingmarket.proving.worker"
PUSH_RETRY = 1.0  # seconds between attempts to push a result while the broker is down
IDLE_POLL = 100  # ms


class ProvingWorker:
    """The actor's work for one process: a job checked, its circuit found, proven, the
    result pushed; the lease held meanwhile."""

    def __init__(
        self, url: str, backend: ProvingBackend, circuits: Path | None, name: str, lease: float = LEASE
    ):
        self.redis = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)
        self.backend = backend
        self.circuits = circuits
        self.name = name
        self.lease = lease
        self.loaded: dict[str, Circuit] = {}

    def handle(self, data: object) -> None:
        """One message's job; never raises (a malformed message is logged and dropped)."""
        try:
            job = Job.from_json(data)
        except QueueError as error:
            emit("worker.malformed", logging.WARNING, worker=self.name, error=str(error)[:300])
            self._push_malformed(data, str(error))
            return
        fields: dict[str, Any] = {"job": job.job_id, "work": job.work, "worker": self.name}
        why = self._skip(job)
        if why is not None:
            emit("worker.skipped", logging.INFO, **fields, reason=why)
            return
        if time.time() > job.start_by:  # held now: its agent is told at once, not left waiting
            late = round(time.time() - job.start_by, 1)
            why = f"not started: past its start-by time by {late} s, no time left before the deadline"
            emit("worker.skipped", logging.INFO, **fields, reason=why)
            self._push(job, Result(job.job_id, self.name, False, error=why))
            self._let_go(job)
            return
        stop = threading.Event()
        renewing = threading.Thread(target=self._renew, args=(job, stop), daemon=True)
        renewing.start()
        try:
            result = self._prove(job, fields)
            self._push(job, result)
        finally:
            stop.set()
            renewing.join()
            self._let_go(job)

    def _skip(self, job: Job) -> str | None:
        """Why the job is not this worker's to take, or None once it holds its lease."""
        # The broker down here: the error ends the message (acknowledged, or lost with the
        # broker), and its agent re-sends the job once it sees the broker holds it no more.
        if self.redis.exists(job_key(job.job_id, "closed"), job_key(job.job_id, "result")):
            return "its agent has its result or gave it up"
        held = self.redis.set(job_key(job.job_id, "lease"), self.name, nx=True, px=int(self.lease * 1000))
        if not held:
            return "another worker is proving it"
        return None

    def _renew(self, job: Job, stop: threading.Event) -> None:
        while not stop.wait(self.lease / 4):
            with contextlib.suppress(redis.RedisError):  # the broker is down: renewed when back
                self.redis.set(job_key(job.job_id, "lease"), self.name, px=int(self.lease * 1000))

    def _let_go(self, job: Job) -> None:
        with contextlib.suppress(redis.RedisError):  # it expires
            self.redis.delete(job_key(job.job_id, "lease"))

    def _circuit(self, job: Job) -> Circuit:
        if job.circuit not in self.loaded:
            where = self.circuits / job.circuit_name if self.circuits is not None else None
            self.loaded[job.circuit] = Circuit.load(
                where if where is not None and where.exists() else job.circuit
            )
        return self.loaded[job.circuit]

    def _prove(self, job: Job, fields: dict[str, Any]) -> Result:
        emit(
            "worker.proving", **fields, circuit=job.circuit_name, left_s=round(job.finish_by - time.time(), 1)
        )
        started, cpu = time.monotonic(), _cpu_seconds()
        try:
            circuit = self._circuit(job)
            values = circuit.check_inputs(job.inputs)
            proof = self.backend.prove(circuit, values, job.prover)
        except TimeLimitExceeded:
            error = "the job's time limit (its deadline) passed mid-proof"
        except (BackendError, CircuitError) as failure:
            error = str(failure)
        except Exception as failure:  # a bug or an odd input: reported, the worker goes on
            error = f"{type(failure).__name__}: {failure}"
        else:
            seconds, cpu = time.monotonic() - started, _cpu_seconds() - cpu
            emit(
                "worker.proved",
                logging.INFO,
                **fields,
                ms=round(seconds * 1000),
                cpu_ms=round(cpu * 1000),
                backend=proof.backend,
            )
            return Result(
                job.job_id,
                self.name,
                True,
                proof=proof.proof.hex(),
                public_inputs=[str(v) for v in proof.public_inputs],
                seconds=seconds,
                cpu_seconds=cpu,
                backend=proof.backend,
            )
        emit("worker.failed", logging.WARNING, **fields, error=error[:500])
        return Result(job.job_id, self.name, False, error=error[:1000])

    def _push(self, job: Job, result: Result) -> None:
        """The result, for the agent; retried while the broker is down, until the job is
        worth nothing (then its agent sees the lease expire and tries again)."""
        text = json.dumps(result.__dict__)
        while True:
            try:
                key = job_key(job.job_id, "result")
                self.redis.rpush(key, text)
                self.redis.expire(key, KEPT)
                return
            except redis.RedisError as error:
                if time.time() > job.finish_by:
                    emit("worker.result_lost", logging.WARNING, job=job.job_id, error=str(error)[:200])
                    return
                time.sleep(PUSH_RETRY)

    def _push_malformed(self, data: object, error: str) -> None:
        job_id = data.get("job_id") if isinstance(data, dict) else None
        if isinstance(job_id, str) and job_id:
            result = Result(job_id, self.name, False, error=f"malformed job: {error}")
            with contextlib.suppress(redis.RedisError):
                self.redis.rpush(job_key(job_id, "result"), json.dumps(result.__dict__))
                self.redis.expire(job_key(job_id, "result"), KEPT)


def _cpu_seconds() -> float:
    """CPU time of this thread and of the finished commands it ran (one proof at a time)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.thread_time() + children.ru_utime + children.ru_stime


def run_worker(
    url: str,
    queue_name: str,
    backend: ProvingBackend,
    circuits: Path | None,
    name: str,
    lease: float,
    heartbeat_timeout: float,
    grace: float,
) -> int:
    """Consume jobs until SIGTERM/SIGINT; the exit code."""
    broker = make_broker(url, heartbeat_timeout, middleware=[TimeLimit(), ShutdownNotifications()])
    dramatiq.set_broker(broker)
    worker_state = ProvingWorker(url, backend, circuits, name, lease)

    def prove(job: object) -> None:
        worker_state.handle(job)

    dramatiq.actor(actor_name=ACTOR, queue_name=queue_name, broker=broker)(prove)
    stop = threading.Event()
    signals: list[str] = []

    def on_signal(signum, _frame) -> None:
        signals.append(signal.Signals(signum).name)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    # An idle consumer looks for a message every IDLE_POLL ms at most: after a proof, the
    # next one starts within that (Dramatiq's default, a second, costs a short proof's time).
    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=IDLE_POLL)
    worker.queue_prefetch = 1  # a second message fetched would wait here while others are idle
    worker.start()
    emit("worker.ready", worker=name, pid=os.getpid(), queue=queue_name, backend=backend.name)
    stop.wait()
    worker.stop(timeout=int(grace * 1000))
    emit("worker.stop", worker=name, signal=signals[0] if signals else None)
    broker.close()
    return 0


def _backend(spec: str) -> ProvingBackend:
    if spec in ("auto", "groth16py", "snarkjs"):
        return backend_from_config({"backend": spec})
    path = Path(spec)
    if not path.is_file():
        raise BackendError(f"--backend {spec}: no such file; give auto, groth16py, snarkjs or a JSON file")
    try:
        config = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError):
        raise BackendError(f"--backend {spec}: not JSON") from None
    if not isinstance(config, dict):
        raise BackendError(f'--backend {spec}: expected a JSON object such as {{"backend": "snarkjs"}}')
    return backend_from_config(config)


@click.command()
@config_option
@click.option("--queue", "url", required=True, help="The broker: redis://HOST:PORT/DB.")
@click.option(
    "--queue-name", default=DEFAULT_QUEUE, show_default=True, help="The queue the agents send jobs to."
)
@click.option(
    "--processes", type=int, default=1, show_default=True, help="Worker processes (one proof at a time each)."
)
@click.option(
    "--circuits",
    type=click.Path(file_okay=False),
    default=None,
    help="Folder of circuit folders (DIR/<name>/circuit.json); default: where the job says, and the samples.",
)
@click.option(
    "--backend",
    default="auto",
    show_default=True,
    help="auto, groth16py, snarkjs, or a JSON backend configuration.",
)
@click.option("--name", default=None, help="The worker's name in logs and leases (default HOST:PID).")
@click.option(
    "--lease",
    type=float,
    default=LEASE,
    show_default=True,
    help="Seconds a hold on a job lasts unrenewed: how soon a killed worker's job is tried again.",
)
@click.option(
    "--heartbeat-timeout",
    type=float,
    default=HEARTBEAT_TIMEOUT,
    show_default=True,
    help="Seconds before Dramatiq gives a silent worker's messages to others.",
)
@click.option(
    "--grace",
    type=float,
    default=30.0,
    show_default=True,
    help="Seconds a running proof gets to finish after SIGTERM.",
)
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    default="INFO",
    show_default=True,
)
def command(
    url: str,
    queue_name: str,
    processes: int,
    circuits: str | None,
    backend: str,
    name: str | None,
    lease: float,
    heartbeat_timeout: float,
    grace: float,
    log_level: str,
) -> int:
    """Prove jobs the prover agents send through the task queue."""
    url = check_url(url)
    if processes < 1:
        raise click.ClickException(f"--processes {processes}: give 1 or more")
    for option, value in (("--lease", lease), ("--heartbeat-timeout", heartbeat_timeout), ("--grace", grace)):
        if not value > 0:
            raise click.ClickException(f"{option} {value}: give a positive number of seconds")
    if circuits is not None and not Path(circuits).is_dir():
        raise click.ClickException(f"--circuits {circuits}: no such folder")
    proving = _backend(backend)
    _reachable(url)
    configure_logging(log_level)
    logging.getLogger("dramatiq").setLevel(logging.WARNING)  # its lines as JSON, warnings up
    if processes > 1:
        return _run_many(
            processes,
            {
                "queue": url,
                "queue_name": queue_name,
                "circuits": circuits,
                "backend": backend,
                "name": name,
                "lease": lease,
                "heartbeat_timeout": heartbeat_timeout,
                "grace": grace,
                "log_level": log_level,
            },
        )
    return run_worker(
        url,
        queue_name,
        proving,
        Path(circuits) if circuits else None,
        name or f"{socket.gethostname()}:{os.getpid()}",
        lease,
        heartbeat_timeout,
        grace,
    )


as_service(command, "PROVINGMARKET_WORKER")


def _reachable(url: str) -> None:
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2).ping()
    except redis.RedisError as error:
        raise QueueError(
            f"--queue {url}: the broker does not answer ({error}); start redis-server or fix the URL"
        ) from None


def _run_many(processes: int, options: dict[str, Any]) -> int:
    """N children, each this command with --processes 1 (named NAME-1 ... NAME-N);
    SIGTERM stops them all, each finishing its proof."""
    name = options.pop("name") or socket.gethostname()
    argv = [sys.executable, "-m", "provingmarket.proving.worker", "--processes", "1"]
    for option, value in options.items():
        if value is not None:
            argv += [f"--{option.replace('_', '-')}", str(value)]
    children = [subprocess.Popen([*argv, "--name", f"{name}-{i}"]) for i in range(1, processes + 1)]
    stop = threading.Event()

    def on_signal(signum, _frame) -> None:
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    emit("worker.children", pids=[c.pid for c in children])
    while not stop.wait(0.5):
        if all(c.poll() is not None for c in children):
            break
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    codes = [child.wait() for child in children]
    return max(codes)


def main(argv: list[str] | None = None) -> None:
    """Run the command; what is wrong before it starts is one line, `error: ...`, exit 1."""
    run_main(command, PROG, argv, (QueueError, BackendError, CircuitError))


if __name__ == "__main__":
    main()
