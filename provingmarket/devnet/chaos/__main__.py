"""`python -m provingmarket.devnet.chaos [--tasks N] [--kills K] [--cuts C] [--seed S]
[--workers W] [--database] [--folder DIR]`: one chaos run (run.py); prints the report; exit
status 1 if an invariant fails, 2 if the run could not go on."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from provingmarket.devnet.chaos.run import ChaosConfig, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m provingmarket.devnet.chaos", description=__doc__)
    parser.add_argument("--tasks", type=int, default=500, help="tasks posted (default 500)")
    parser.add_argument("--kills", type=int, default=50, help="SIGKILLs of frontends and agents (default 50)")
    parser.add_argument(
        "--cuts", type=int, default=10, help="processes cut off the RPC for 3 to 8 s (default 10)"
    )
    parser.add_argument("--seed", type=int, default=1, help="seeds the workload, the kills and the faults")
    parser.add_argument("--agents", type=int, default=4, help="prover agents (default 4)")
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        help="proving workers behind a Redis broker the agents hand their proofs to (default 0: "
        "agents prove themselves); workers and the broker are killed too",
    )
    parser.add_argument(
        "--database",
        action="store_true",
        help="the mirror (one indexer writing, every frontend reading) and the auction's bids on a "
        "PostgreSQL server; the indexer and the server are killed too",
    )
    parser.add_argument(
        "--post-seconds", type=float, default=300.0, help="the tasks are posted over this long (default 300)"
    )
    parser.add_argument("--rpc-fault-rate", type=float, default=0.02, help="share of RPC requests failed")
    parser.add_argument(
        "--folder", type=Path, default=None, help="logs and report (default: a new temp folder)"
    )
    options = parser.parse_args(argv)
    try:
        config = ChaosConfig(
            tasks=options.tasks,
            kills=options.kills,
            cuts=options.cuts,
            seed=options.seed,
            agents=options.agents,
            workers=options.workers,
            database=options.database,
            post_seconds=options.post_seconds,
            rpc_fault_rate=options.rpc_fault_rate,
        ).check()
    except ValueError as error:
        parser.error(str(error))
    folder = options.folder or Path(tempfile.mkdtemp(prefix="chaos-"))
    if folder.exists() and any(folder.iterdir()):
        parser.error(
            f"--folder {folder} is not empty: give a new or empty folder (each run starts a fresh chain)"
        )
    print(f"chaos: logs and report in {folder}", flush=True)
    try:
        result = run(config, folder, say=lambda text: print(text, flush=True))
    except RuntimeError as error:  # ChaosFailed, or a chain or process that could not start
        print(f"chaos: {error}", file=sys.stderr)
        return 2
    print(result.text)
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
