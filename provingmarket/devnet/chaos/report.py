"""The chaos run's verdict and tables, from the chain's events, the supervisor's outages and
the proxies' ledger:

- invariants: every task posted was mined and ended proven or refunded; no slot paid twice;
  every slash fell on a prover whose agent was down (killed or cut off, and not yet back)
  while it held that task; no process exited unless killed; no process left behind;
- faults injected and recovered per kind, with the time to recover (a kill: from the SIGKILL
  to the restart's first ready line; a cut-off: from its start to the process's first
  answer after it; for an agent also to its next proof; an RPC fault: to the caller's
  next answer);
- tasks by mechanism and outcome."""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field

from provingmarket.devnet.chaos.proxy import FAULTS, RpcFault
from provingmarket.devnet.chaos.supervisor import Outage
from provingmarket.market.qos import TaskQoS

MARGIN = 2.0  # seconds of slack between wall-clock kill times and block timestamps


@dataclass
class Invariant:
    name: str
    holds: bool
    detail: str = ""


@dataclass
class Row:
    kind: str
    injected: int
    recovered: int
    seconds: list[float] = field(default_factory=list)
    to_proof: list[float] = field(default_factory=list)  # agents: kill → its next proof


def paid_twice(events: list, ours: set[str]) -> list[str]:
    """Tasks of `ours` with a slot paid twice, a prover paid twice, or more proofs paid
    than slots."""
    per_slot: Counter[tuple[str, int]] = Counter()
    per_prover: Counter[tuple[str, str]] = Counter()
    for e in events:
        if e.name == "TaskProven":
            task = "0x" + bytes(e.task_id).hex()
            if task in ours:
                per_slot[(task, e.slot)] += 1
                per_prover[(task, e.prover)] += 1
    return sorted(
        {t for (t, _), n in per_slot.items() if n > 1} | {t for (t, _), n in per_prover.items() if n > 1}
    )


def unexplained_slashes(
    events: list, ours: set[str], agents: dict[str, str], outages: list[Outage], block_time
) -> list[str]:
    """Each slash of a task in `ours` whose prover's agent (`agents`: address → entry name)
    was up the whole time it held the task (from its assignment's block to its deadline),
    as `task prover`: a slash the harness's own faults caused."""
    assigned: dict[tuple[str, str], tuple[int, int]] = {}
    found = []
    for e in events:
        if "task_id" not in e.args:
            continue
        task = "0x" + bytes(e.task_id).hex()
        if task not in ours:
            continue
        if e.name == "TaskAssigned":
            assigned[(task, e.prover)] = (block_time(e.block), e.deadline)
        elif e.name == "Slashed":
            held = assigned.get((task, e.prover))
            name = agents.get(e.prover)
            if held is None or name is None:
                found.append(f"{task} {e.prover} (not an assignment of one of the run's agents)")
                continue
            start, deadline = held[0] - MARGIN, held[1] + MARGIN
            down = any(
                o.name == name and o.at <= deadline and (o.up_at is None or o.up_at >= start) for o in outages
            )
            if not down:
                found.append(f"{task} {e.prover} ({name} was up from its assignment to its deadline)")
    return found


def outage_rows(outages: list[Outage], proofs: dict[str, list[int]], agents: dict[str, str]) -> list[Row]:
    """A row per fault (kill or cut) and kind of entry: how many, how many came back, the
    seconds from the fault to back; for agents also to the prover's next proof (`proofs`:
    address → proof times). Exits are not faults injected: the invariants name them."""
    by_name = {name: address for address, name in agents.items()}
    rows: dict[str, Row] = {}
    for o in outages:
        if o.cause not in ("kill", "cut"):
            continue
        row = rows.setdefault(f"{o.cause} {o.kind}", Row(f"{o.cause} {o.kind}", 0, 0))
        row.injected += 1
        if o.recovery is not None:
            row.recovered += 1
            row.seconds.append(o.recovery)
        address = by_name.get(o.name)
        if address is not None:
            later = [t for t in proofs.get(address, []) if t >= o.at]
            if later:
                row.to_proof.append(min(later) - o.at)
    return [rows[k] for k in sorted(rows)]


def rpc_rows(faults: list[RpcFault]) -> list[Row]:
    rows = []
    for kind in FAULTS:
        mine = [f for f in faults if f.kind == kind]
        if mine:
            seconds = [f.recovered_after for f in mine if f.recovered_after is not None]
            rows.append(Row(f"rpc {kind}", len(mine), len(seconds), seconds))
    return rows


def outcomes(tasks: list[TaskQoS], mechanism_of: dict[str, str]) -> dict[str, Counter[str]]:
    """mechanism → outcome → tasks: proven, refunded, proven+refunded (a redundant task
    partly refunded), slashed (had a slash on the way), open (not settled)."""
    table: dict[str, Counter[str]] = {}
    for q in tasks:
        mechanism = mechanism_of.get(q.task_id)
        if mechanism is None:
            continue
        counts = table.setdefault(mechanism, Counter())
        counts["posted"] += 1
        if not q.settled:
            counts["open"] += 1
        elif q.proofs and q.refunded:
            counts["proven+refunded"] += 1
        elif q.proofs:
            counts["proven"] += 1
        else:
            counts["refunded"] += 1
        if q.slashes:
            counts["slashed on the way"] += 1
    return table


def _seconds(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):.1f} / {max(values):.1f}"


def render(
    rows: list[Row], table: dict[str, Counter[str]], invariants: list[Invariant], preamble: str = ""
) -> str:
    """The report as text: faults, tasks, invariants."""
    lines = [preamble] if preamble else []
    lines += [
        "Faults injected and recovered (seconds to recover: median / max)",
        f"{'fault':<22} {'injected':>8} {'recovered':>9} {'to recover':>14} {'to next proof':>14}",
    ]
    for r in rows:
        proof = _seconds(r.to_proof) if r.kind.endswith(" agent") else ""
        lines.append(f"{r.kind:<22} {r.injected:>8} {r.recovered:>9} {_seconds(r.seconds):>14} {proof:>14}")
    lines.append(f"{'total':<22} {sum(r.injected for r in rows):>8} {sum(r.recovered for r in rows):>9}")
    columns = ["posted", "proven", "refunded", "proven+refunded", "open", "slashed on the way"]
    lines += [
        "",
        "Tasks by mechanism and outcome",
        f"{'mechanism':<16}" + "".join(f"{c:>20}" for c in columns),
    ]
    total: Counter[str] = Counter()
    for mechanism in sorted(table):
        total.update(table[mechanism])
        lines.append(f"{mechanism:<16}" + "".join(f"{table[mechanism][c]:>20}" for c in columns))
    lines.append(f"{'total':<16}" + "".join(f"{total[c]:>20}" for c in columns))
    lines += ["", "Invariants"]
    for i in invariants:
        lines.append(f"  [{'ok' if i.holds else 'FAILED'}] {i.name}" + (f": {i.detail}" if i.detail else ""))
    return "\n".join(lines)
