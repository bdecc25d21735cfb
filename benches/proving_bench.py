"""Proofs per second through the task queue (provingmarket/proving/queue.py): the
`squarings-10000` circuit proven by 1, 2 and 4 worker processes
(`python -m provingmarket.proving.worker`) on a Redis server of its own, the jobs sent as
the prover agent sends them and waited for in parallel. Each count first proves one round
of warm-up jobs (a worker's first proof loads the circuit's key), then JOBS jobs timed.

    python -m benches.proving_bench [--jobs 8] [--backend auto]

The machine's cores bound the curve: past one worker per core, workers share the cores
and the proofs per second stay flat; the table says where and why, from the CPU time a
proof takes and os.cpu_count().
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from provingmarket.devnet.services import RedisServer
from provingmarket.proving.circuits import Circuit
from provingmarket.proving.queue import Job, JobQueue, Result, inputs_json

ROOT = Path(__file__).resolve().parent.parent
CIRCUIT = "squarings-10000"
COUNTS = (1, 2, 4)
PROVER = "0x" + "11" * 20
READY_TIMEOUT = 60.0


def start_workers(url: str, queue: str, count: int, backend: str) -> list[subprocess.Popen]:
    """`count` worker processes, returned once each logged worker.ready."""
    argv = [sys.executable, "-m", "provingmarket.proving.worker", "--queue", url, "--queue-name", queue]
    workers = [
        subprocess.Popen(
            [*argv, "--backend", backend],
            cwd=ROOT,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(os.environ, PYTHONPATH=str(ROOT)),
        )
        for _ in range(count)
    ]
    deadline = time.monotonic() + READY_TIMEOUT
    for worker in workers:
        assert worker.stderr is not None
        while '"worker.ready"' not in worker.stderr.readline():
            if worker.poll() is not None or time.monotonic() > deadline:
                stop(workers)
                raise SystemExit(f"a worker did not start (exit code {worker.poll()})")
    for worker in workers:  # the rest of their logs is not read: let it go nowhere
        assert worker.stderr is not None
        worker.stderr.close()
    return workers


def stop(workers: list[subprocess.Popen]) -> None:
    for worker in workers:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
    for worker in workers:
        try:
            worker.wait(40)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(10)


def prove_all(queue: JobQueue, circuit: Circuit, inputs: dict, jobs: int) -> tuple[float, list[Result]]:
    """Send `jobs` jobs at once and wait for every proof; the seconds it took, the results."""
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [
            pool.submit(
                queue.run,
                Job.new(
                    work=f"bench:{i}",
                    circuit=circuit.reference,
                    circuit_name=circuit.name,
                    inputs=inputs,
                    prover=PROVER,
                    deadline=0,
                    start_by=time.time() + 600,
                    finish_by=time.time() + 900,
                ),
            )
            for i in range(jobs)
        ]
        results = [future.result() for future in futures]
    return time.monotonic() - started, results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=8, help="timed jobs per worker count")
    parser.add_argument("--backend", default="auto", help="the workers' --backend")
    args = parser.parse_args()
    circuit = Circuit.load(CIRCUIT)
    inputs = inputs_json(circuit.check_inputs(circuit.sample))
    cores = os.cpu_count() or 1
    rows = []
    with RedisServer(durable=False) as server:
        for count in COUNTS:
            name = f"bench-{count}-{os.getpid()}"
            queue = JobQueue(server.url, name)
            workers = start_workers(server.url, name, count, args.backend)
            try:
                prove_all(queue, circuit, inputs, count)  # warm-up: keys loaded
                seconds, results = prove_all(queue, circuit, inputs, args.jobs)
            finally:
                stop(workers)
                queue.close()
            wall = statistics.mean(r.seconds for r in results)
            cpu = statistics.mean(r.cpu_seconds for r in results)
            rows.append((count, args.jobs, seconds, args.jobs / seconds, wall, cpu))
            print(f"  {count} worker(s): {args.jobs} proofs in {seconds:.1f} s", flush=True)
    base = rows[0][3]
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"\nProofs per second, {CIRCUIT}, backend {args.backend}, through Redis ({cores} cores)")
    heads = ("workers", 8), ("proofs", 7), ("seconds", 8), ("proofs/s", 9), ("speed-up", 9), ("s/proof", 8)
    print(" ".join(f"{head:>{width}}" for head, width in heads), f"{'CPU s':>6}")
    for count, jobs, seconds, rate, wall, cpu in rows:
        print(
            f"{count:>8} {jobs:>7} {seconds:>8.1f} {rate:>9.2f} {rate / base:>8.2f}x {wall:>8.2f} {cpu:>6.2f}"
        )
    cpu = statistics.mean(row[5] for row in rows)
    print(
        f"s/proof: a proof's wall time in its worker; CPU s: the CPU time it took.\n"
        f"Where it flattens: a proof is CPU-bound ({cpu:.2f} s of one core), so {cores} cores prove at "
        f"most {cores / cpu:.1f} proofs/s, reached at {cores} workers (one per core); past that the "
        "workers share the cores, each proof's wall time grows with their number and proofs/s "
        "stays flat. Workers on other machines add their cores.\n"
        f"Load average at the end: {load}: other processes on the machine take cores from the "
        "workers (and more worker processes take a larger share of them)."
    )


if __name__ == "__main__":
    main()
