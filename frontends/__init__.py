"""Frontends: assignment mechanisms and the long-running processes that run them.

- `book.py`: what a mechanism sees of the registry (`Snapshot`) and what it decides
  (`Decision`); who is eligible for a task.
- `keeper.py`: the keeper runtime every frontend shares: follow the registry into a
  mirror, decide, send in batches, settle, slash the overdue, reclaim the unfilled.
- `process.py`: the skeleton of every frontend process: options, connect, metrics, the
  keeper's loop until SIGTERM, an error as one line and exit code 1.
- One package per mechanism (`orderbook`, `auction`, `election`): `mechanism.py`, the
  mechanism as plain functions, and `process.py`, its process
  (`python -m frontends.<mechanism> -h`); the auction also has its HTTP API
  (`api.py`) and its records (`store.py`).

Frontends import `provingmarket` only. The registry rules they respect are in
contracts/Registry.vy and contracts/registry/.
"""
