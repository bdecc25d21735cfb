"""Proving jobs through a task queue: the prover agent decides what to take and when, and
hands each proof to workers on any number of machines through Dramatiq on Redis
(`python -m provingmarket.proving.worker`); what travels and what a kill does:
docs/agent.md, "Proving on other machines".

Why Dramatiq on Redis: at-least-once delivery with the message acknowledged only after
the job ran, the Redis broker's heartbeats giving a dead worker's unacknowledged
messages back to the queue, per-message time limits, and a small pinned library
(dramatiq 2.2.1, redis 8.1.0). Celery's Redis transport gives an unacknowledged message
back only after a visibility timeout (an hour by default, and it must exceed the longest
proof), and Ray is a cluster of its own, heavy on two cores.

What the queue alone does not give, the keys beside it do (namespace `provingmarket`):

- `job:<id>:lease`: the worker proving the job, set if nobody holds it (so two copies of
  one job are never proven at once) and renewed while it proves; it expires a few seconds
  after its worker died, which is how the agent learns of the kill;
- `job:<id>:result`: the proof (or the error), pushed before the lease is let go;
- `job:<id>:closed`: set by the agent once it stopped waiting for the job (a result
  taken, or the attempt given up): a copy delivered again later is not started, and a
  late result is never read.

A job carries its deadline: `start_by` (no worker starts it after, in the workers'
clock: keep the machines' clocks synchronised; a worker that takes it later says so at
once), `finish_by` (when the agent stops waiting) and the chain's deadline; its message's
time limit, the time from sending to `finish_by`, bounds the proof. The agent re-sends a job whose
message the broker no longer holds (a broker restart that lost it) when no worker has
it, and tells a lost worker from a slow one by the lease.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.message import Message

from provingmarket.errors import ProvingMarketError

log = logging.getLogger("provingmarket.proving.queue")

NAMESPACE = "provingmarket"
ACTOR = "prove"
DEFAULT_QUEUE = "proving"
KEPT = 3_600  # seconds results and closed marks are kept (a redelivery comes within minutes)
LEASE = 10.0  # seconds a worker's hold on a job lasts without renewal (renewed every LEASE / 4)
RESEND_CHECK = 3.0  # seconds between the agent's looks for a message the broker lost
HEARTBEAT_TIMEOUT = 15.0  # seconds without a heartbeat before Dramatiq counts a worker dead
# In a million broker commands, how many also look for dead workers (Dramatiq's default is
# 1,000); the look lists the namespace's keys, so not every command.
MAINTENANCE_CHANCE = 5_000


class QueueError(ProvingMarketError, RuntimeError):
    """The queue could not be used; the message says what to check."""


class JobFailed(QueueError):
    """One attempt at a job came to nothing: the worker's error, a worker lost mid-proof,
    or no worker in time. The agent counts it as a failed attempt."""


def check_url(url: str, option: str = "--queue") -> str:
    """A Redis URL, checked for its form (ClientError-like one line if not)."""
    url = url.strip()
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise QueueError(f"{option} {url!r} is not a Redis URL; give e.g. redis://127.0.0.1:6379/0")
    return url


def make_broker(url: str, heartbeat_timeout: float = HEARTBEAT_TIMEOUT, middleware=None) -> RedisBroker:
    return RedisBroker(
        url=url,
        namespace=NAMESPACE,
        middleware=middleware if middleware is not None else [],
        heartbeat_timeout=int(heartbeat_timeout * 1000),
        maintenance_chance=MAINTENANCE_CHANCE,
    )


def job_key(job_id: str, what: str) -> str:
    return f"{NAMESPACE}:job:{job_id}:{what}"


@dataclass(frozen=True)
class Job:
    """One proof to make: what travels in a message."""

    job_id: str
    work: str  # the agent's key for the work (prove:<task>:<slot>, race:<task>), for logs
    circuit: str  # the circuit's reference: a sample's name or its manifest's path
    circuit_name: str  # the manifest's name: a worker's --circuits DIR/<name>
    inputs: dict[str, Any]  # the task's inputs, numbers as decimal strings
    prover: str  # the address the proof is bound to
    deadline: int  # the chain's deadline (timestamp), for logs
    start_by: float  # Unix time: no worker starts the job after it
    finish_by: float  # Unix time: a proof after it is worth nothing

    @staticmethod
    def new(**fields: Any) -> Job:
        return Job(job_id=uuid.uuid4().hex, **fields)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_json(data: object) -> Job:
        """A job from a message's argument; QueueError naming the field if malformed."""
        if not isinstance(data, dict):
            raise QueueError(f"a job is a JSON object, not {type(data).__name__}")
        text = ("job_id", "work", "circuit", "circuit_name", "prover")
        for name in text:
            if not isinstance(data.get(name), str) or not data[name]:
                raise QueueError(f"job field {name} must be a non-empty string, not {data.get(name)!r}")
        if not isinstance(data.get("inputs"), dict):
            raise QueueError(f"job field inputs must be an object, not {data.get('inputs')!r}")
        for name in ("deadline", "start_by", "finish_by"):
            value = data.get(name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise QueueError(f"job field {name} must be a number, not {value!r}")
        unknown = sorted(set(data) - set(Job.__dataclass_fields__))
        if unknown:
            raise QueueError(f"job has unknown field(s) {', '.join(unknown)}")
        return Job(**data)


@dataclass(frozen=True)
class Result:
    """What a worker pushes for a job: the proof, or why there is none."""

    job_id: str
    worker: str
    ok: bool
    proof: str = ""  # hex
    public_inputs: list[str] = field(default_factory=list)  # decimal
    seconds: float = 0.0  # the proving itself, wall time
    cpu_seconds: float = 0.0  # the CPU time it took (the worker's thread and the commands it ran)
    backend: str = ""
    error: str = ""

    @staticmethod
    def parse(text: bytes | str) -> Result:
        try:
            data = json.loads(text)
            return Result(**data)
        except (ValueError, TypeError) as error:
            raise JobFailed(f"a worker's result is malformed ({error})") from None


def emit(kind: str, level: int = logging.INFO, **fields: Any) -> None:
    """One JSON log line (the processes' format, provingmarket/runtime/process.py)."""
    log.log(level, json.dumps({"event": kind, **fields}, default=str))


@dataclass
class _Waiting:
    """What the agent knows of a job it waits for."""

    message_id: str | None = None  # the broker's id of the message sent; None: (re-)send
    holder: str | None = None  # the worker seen holding the lease
    checked: float = field(default_factory=time.monotonic)  # the last look for a lost message
    down_since: float | None = None  # the broker stopped answering


class JobQueue:
    """The agent's side: send jobs, wait for their results."""

    def __init__(self, url: str, queue_name: str = DEFAULT_QUEUE):
        self.url = check_url(url)
        self.queue_name = queue_name
        self.broker = make_broker(url)
        self.redis = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)

    def send(self, job: Job) -> str:
        """Enqueue the job; returns the broker's id of the message (to see it is still held)."""
        limit_ms = max(1, int((job.finish_by - time.time()) * 1000))
        message = Message(
            queue_name=self.queue_name,
            actor_name=ACTOR,
            args=(job.to_json(),),
            kwargs={},
            options={"time_limit": limit_ms},
        )
        sent = self.broker.enqueue(message)
        return str(sent.options["redis_message_id"])

    def _held(self, message_id: str) -> bool:
        return bool(self.redis.hexists(f"{NAMESPACE}:{self.queue_name}.msgs", message_id))

    def run(self, job: Job, on_event: Callable[..., None] | None = None) -> Result:
        """Send the job and wait for its result, until `job.finish_by`. Raises JobFailed for
        a worker's error, a worker lost mid-proof (its lease expired with no result) and no
        result in time; re-sends the job when the broker lost its message (a restart) and
        no worker holds it. The job is closed whatever the outcome."""
        said = on_event or (lambda *a, **k: None)
        try:
            return self._run(job, said)
        finally:
            self._close(job)

    def _run(self, job: Job, said: Callable[..., None]) -> Result:
        wait = _Waiting()
        while True:
            if time.time() > job.finish_by:
                where = f"worker {wait.holder} had it" if wait.holder else "no worker started it"
                raise JobFailed(f"no proof by the deadline ({where})")
            try:
                result = self._look(job, wait, said)
            except (redis.ConnectionError, redis.TimeoutError) as error:
                if wait.down_since is None:
                    wait.down_since = time.monotonic()
                    said("agent.queue_down", logging.WARNING, job=job.job_id, error=str(error)[:200])
                time.sleep(1.0)
                continue
            if result is not None:
                return result

    def _look(self, job: Job, wait: _Waiting, said: Callable[..., None]) -> Result | None:
        """One look (about a second): the job sent if it is not held, its result if there
        is one; JobFailed once its worker is seen gone."""
        if wait.message_id is None:
            wait.message_id = self.send(job)
            said("agent.job_sent", job=job.job_id, queue=self.queue_name)
        popped = self.redis.blpop([job_key(job.job_id, "result")], timeout=1)
        if popped is not None:
            return self._result(job, popped[1])
        lease = self.redis.get(job_key(job.job_id, "lease"))
        if wait.down_since is not None:
            said("agent.queue_back", job=job.job_id, down_s=round(time.monotonic() - wait.down_since, 1))
            wait.down_since = None
        if lease is not None:
            wait.holder = lease.decode() if isinstance(lease, bytes) else str(lease)
            return None
        if wait.holder is not None:  # held, and let go: the result is pushed before
            popped = self.redis.lpop(job_key(job.job_id, "result"))
            if popped is not None:
                return self._result(job, popped)
            raise JobFailed(f"worker {wait.holder} stopped mid-proof (its lease expired with no result)")
        if time.monotonic() - wait.checked >= RESEND_CHECK:
            wait.checked = time.monotonic()
            if not self._held(wait.message_id):  # neither queued nor with a worker: lost
                said("agent.job_resent", logging.WARNING, job=job.job_id, reason="the broker lost it")
                wait.message_id = None
        return None

    def _result(self, job: Job, text: Any) -> Result:
        result = Result.parse(text)
        if not result.ok:
            raise JobFailed(f"worker {result.worker}: {result.error}")
        return result

    def _close(self, job: Job) -> None:
        with contextlib.suppress(redis.RedisError):  # down: a late copy may be proven, never used
            self.redis.set(job_key(job.job_id, "closed"), "1", ex=KEPT)

    def close(self) -> None:
        self.broker.close()
        self.redis.close()


def inputs_json(inputs: Mapping[str, object]) -> dict[str, Any]:
    """Input signals as a job carries them: numbers as decimal strings, arrays as lists."""

    def decimal(value: object) -> object:
        if isinstance(value, dict):
            return {k: decimal(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [decimal(v) for v in value]
        return str(value)

    return {k: decimal(v) for k, v in inputs.items()}
