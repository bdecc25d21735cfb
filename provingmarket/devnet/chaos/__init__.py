"""The whole market under chaos (`make chaos`, `python -m provingmarket.devnet.chaos`): a
seeded workload over every mechanism on an anvil with a nonzero base fee, the real
frontends and prover agents as processes, while a seeded schedule SIGKILLs and restarts
them and the RPC goes through loopback proxies that delay, drop and fail calls. At the end:
every task proven or refunded, none paid twice, no honest prover slashed, no process left
behind, and a table of the faults and the time to recover from each (docs/operations.md,
"Chaos").

- proxy.py: the fault proxy (resets, 503/429, slow answers, answers lost after the node ran
  the call) and the ledger of faults and recoveries
- schedule.py: the seeded kill schedule
- supervisor.py: the table of processes and servers, killed and restarted by pid
- workload.py: the tasks by mechanism, the requester posting in waves, the janitor
- report.py: the invariants and the tables
- run.py: one run, start to end
"""

from provingmarket.devnet.chaos.proxy import FAULTS, FaultProxy, Ledger
from provingmarket.devnet.chaos.run import ChaosConfig, ChaosFailed, Result, run
from provingmarket.devnet.chaos.schedule import Kill, kill_schedule
from provingmarket.devnet.chaos.supervisor import Entry, Supervisor

__all__ = [
    "FAULTS",
    "ChaosConfig",
    "ChaosFailed",
    "Entry",
    "FaultProxy",
    "Kill",
    "Ledger",
    "Result",
    "Supervisor",
    "kill_schedule",
    "run",
]
