"""The simulation's report: per persona and policy, QoS loss, utility, time to proof,
price paid and slashes, each with its standard error, and the transaction fees each role
paid under each policy, for the training seeds, the held-out seeds and the seeds after a
world switch apart; per split, whether the router's loss is within one standard error of
the best single policy's for every persona and below every single policy's overall;
written as a Markdown table, JSON, a CSV of every task and SVG plots. After a switch, a section of its
own: per persona, whether the router is back within one standard error of the new best
single policy once the persona has posted `RECOVERY` tasks in the new world, and a plot of
the loss task by task around the switch."""

from __future__ import annotations

import csv
import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from provingmarket.devnet import ETHER, Spend
from provingmarket.market.plots import bar_chart, line_chart
from provingmarket.market.preferences import qos_loss
from simulation.config import ROUTER
from simulation.world import Outcome

OVERALL = "overall"
SWITCHED = "after the switch"  # the split of the seeds run in the world after a switch
RECOVERY = 20  # a persona's tasks after the switch the router is given to recover in
SMOOTHING = 10  # tasks the plot around the switch averages over (trailing)
COLUMNS = ["split", "seed", "policy", "task", "persona", "mechanism", "utility", "first_proof_s", "proofs",
           "redundancy", "spent_wei", "slashes", "could", "reason"]  # fmt: skip


@dataclass(frozen=True)
class Cell:
    """One persona's tasks under one policy. Every `_se` is a standard error (0 with one task)."""

    tasks: int
    utility: float  # mean
    se: float  # its standard error
    loss: float  # QoS loss: the best policy's mean utility for the persona less this one's
    served: float  # share of tasks that met every hard limit with a proof
    first_proof: float | None  # mean seconds to the first proof, of the proven
    spent: float | None  # mean paid per task, in multiples of the market's least reward (posted ones)
    slashes: int
    loss_se: float = 0.0  # of the task-by-task difference from the best policy on the same arrivals
    served_se: float = 0.0
    first_proof_se: float | None = None
    spent_se: float | None = None
    slashes_se: float = 0.0  # of the total


def _se(values: Sequence[float]) -> float:
    """The standard error of the mean of `values` (0 for fewer than two)."""
    return statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else 0.0


def paired_se(mine: Sequence[Outcome], theirs: Sequence[Outcome]) -> float:
    """The standard error of the mean difference in utility between two policies' tasks, task
    by task on the same arrivals (seed, index) when every task has its pair; else of the
    difference of the two means."""
    other = {(o.seed, o.index): o.utility for o in theirs}
    if len(other) == len(mine) and all((o.seed, o.index) in other for o in mine):
        return _se([o.utility - other[(o.seed, o.index)] for o in mine])
    return (_se([o.utility for o in mine]) ** 2 + _se([o.utility for o in theirs]) ** 2) ** 0.5


def cells(
    outcomes: Sequence[Outcome], personas: Sequence[str], policies: Sequence[str]
) -> dict[str, dict[str, Cell]]:
    """persona (and OVERALL) → policy → Cell. Overall loss is the task-weighted mean of the
    personas' losses; overall utility the mean over every task."""
    table: dict[str, dict[str, Cell]] = {}
    for persona in personas:
        mine = {p: [o for o in outcomes if o.persona == persona and o.policy == p] for p in policies}
        losses = qos_loss({p: [o.utility for o in mine[p]] for p in policies})
        best = min(losses, key=lambda p: losses[p]) if losses else None
        table[persona] = {
            p: _cell(mine[p], losses.get(p, 0.0), 0.0 if p == best else paired_se(mine[p], mine[best or p]))
            for p in policies
            if mine[p]
        }
    total = {p: sum(table[x][p].tasks for x in personas if p in table[x]) for p in policies}
    table[OVERALL] = {}
    for p in policies:
        if not total[p]:
            continue
        everything = [o for o in outcomes if o.policy == p]
        mine_ = [table[x][p] for x in personas if p in table[x]]
        loss = sum(c.loss * c.tasks for c in mine_) / total[p]
        loss_se = sum((c.tasks / total[p] * c.loss_se) ** 2 for c in mine_) ** 0.5
        table[OVERALL][p] = _cell(everything, loss, loss_se)
    return table


def _cell(outcomes: Sequence[Outcome], loss: float, loss_se: float) -> Cell:
    proven = [o.qos.first_proof for o in outcomes if o.qos is not None and o.qos.first_proof is not None]
    posted = [o for o in outcomes if o.qos is not None]
    spent = [o.qos.spent / max(o.qos.min_reward, 1) for o in posted if o.qos is not None]
    served = [1.0 if o.utility > 0 else 0.0 for o in outcomes]
    slashes = [float(o.qos.slashes if o.qos is not None else 0) for o in outcomes]
    return Cell(
        tasks=len(outcomes),
        utility=statistics.fmean(o.utility for o in outcomes),
        se=_se([o.utility for o in outcomes]),
        loss=loss,
        served=statistics.fmean(served),
        first_proof=statistics.fmean(proven) if proven else None,
        spent=statistics.fmean(spent) if spent else None,
        slashes=int(sum(slashes)),
        loss_se=loss_se,
        served_se=_se(served),
        first_proof_se=_se(proven) if proven else None,
        spent_se=_se(spent) if spent else None,
        slashes_se=_se(slashes) * len(slashes),
    )


def markdown(table: dict[str, dict[str, Cell]], policies: Sequence[str]) -> str:
    head = "| persona | " + " | ".join(policies) + " |\n|---|" + "---:|" * len(policies) + "\n"

    def block(title: str, fmt) -> str:
        rows = []
        for persona, row in table.items():
            cells_ = [fmt(row[p]) if p in row else "–" for p in policies]
            rows.append(f"| {persona} | " + " | ".join(cells_) + " |")
        return f"**{title}**\n\n" + head + "\n".join(rows) + "\n"

    def t(c: Cell) -> str:
        return "–" if c.first_proof is None else f"{c.first_proof:.1f} ± {c.first_proof_se or 0:.1f} s"

    def s(c: Cell) -> str:
        return "–" if c.spent is None else f"{c.spent:.2f} ± {c.spent_se or 0:.2f}x"

    return "\n".join(
        [
            block(
                "QoS loss ± its standard error (lower is better; 0 = the best policy for that persona)",
                lambda c: f"{c.loss:.3f} ± {c.loss_se:.3f}",
            ),
            block("Mean utility ± its standard error", lambda c: f"{c.utility:.3f} ± {c.se:.3f}"),
            block(
                "Tasks served within every hard limit ± its standard error",
                lambda c: f"{c.served:.0%} ± {c.served_se:.0%}",
            ),
            block("Mean time from posting to the first proof (of the proven) ± its standard error", t),
            block("Mean paid per task, in multiples of the market's least reward, ± its standard error", s),
            block("Slashes in all ± their standard error", lambda c: f"{c.slashes} ± {c.slashes_se:.1f}"),
        ]
    )


def write(
    folder: Path,
    config_name: str,
    splits: dict[str, list[Outcome]],
    personas: Sequence[str],
    policies: Sequence[str],
    preamble: str,
    fees: dict[str, dict[str, list[tuple[int, dict[str, Spend]]]]] | None = None,
) -> dict:
    """Write report.md, results.json, outcomes.csv and the plots; returns the results.
    `fees`: split → policy → for each of its runs, its tasks and role → the fees it paid."""
    folder.mkdir(parents=True, exist_ok=True)
    results: dict = {"config": config_name, "splits": {}}
    parts = [f"# Simulation report: {config_name}\n", preamble]
    for split, outcomes in splits.items():
        if not outcomes:
            continue
        table = cells(outcomes, personas, policies)
        results["splits"][split] = {
            persona: {p: vars(c) for p, c in row.items()} for persona, row in table.items()
        }
        seeds = sorted({o.seed for o in outcomes})
        parts.append(f"\n## {split} seeds ({', '.join(map(str, seeds))})\n")
        parts.append(markdown(table, policies))
        verdict = _verdict(table, policies, outcomes)
        results["splits"][split]["verdict"] = verdict
        parts.append("\n" + verdict["text"] + "\n")
        spent = (fees or {}).get(split, {})
        if spent:
            totals = {p: _sum_runs(spent[p]) for p in policies if p in spent}
            results["splits"][split]["fees"] = {
                p: {role: vars(one) for role, one in totals[p].items()} for p in totals
            }
            parts.append(fee_table(spent, policies))
        parts += _bar_charts(folder, split, table, personas, policies)
        parts += _router_chart(folder, split, outcomes)
        if split == SWITCHED:
            before = splits.get("held-out") or splits.get("training") or []
            found = recovery(outcomes, personas, policies)
            results["switch"] = found
            parts.append(_recovery_text(found))
            parts += _switch_chart(folder, before, outcomes, personas, policies)
    (folder / "report.md").write_text("\n".join(parts))
    (folder / "results.json").write_text(json.dumps(results, indent=1))
    _write_outcomes(folder / "outcomes.csv", splits)
    return results


def _sum_runs(runs: Sequence[tuple[int, dict[str, Spend]]]) -> dict[str, Spend]:
    """Role → the fees it paid over every run."""
    total: dict[str, Spend] = {}
    for _, roles in runs:
        for role, one in roles.items():
            total.setdefault(role, Spend()).add(one)
    return total


def fee_table(spent: dict[str, list[tuple[int, dict[str, Spend]]]], policies: Sequence[str]) -> str:
    """Markdown: the fees each role paid while each policy ran (every seed of the split), and
    per task with its standard error over the runs (each run's fees over its tasks)."""
    roles = list(spent[next(iter(spent))][0][1])
    lines = [
        "**Transaction fees paid while each policy ran, in ETH (gas used x effective gas price, "
        "from the receipts of the role's accounts; per task: ± the standard error over the runs)**\n",
        "| policy | " + " | ".join(roles) + " | total | gas per task | ETH per task |",
        "|---|" + "---:|" * (len(roles) + 3),
    ]
    for p in policies:
        if p not in spent:
            continue
        runs = spent[p]
        by_role = _sum_runs(runs)
        total = Spend()
        for one in by_role.values():
            total.add(one)
        gas = [sum(r.gas for r in roles_.values()) / max(n, 1) for n, roles_ in runs]
        wei = [sum(r.wei for r in roles_.values()) / max(n, 1) / ETHER for n, roles_ in runs]
        n = max(sum(n for n, _ in runs), 1)
        lines.append(
            f"| {p} | "
            + " | ".join(f"{by_role[role].wei / ETHER:.6f}" for role in roles)
            + f" | {total.wei / ETHER:.6f} | {total.gas / n:,.0f} ± {_se(gas):,.0f} "
            f"| {total.wei / n / ETHER:.6f} ± {_se(wei):.6f} |"
        )
    return "\n".join(lines) + "\n"


def _bar_charts(
    folder: Path,
    split: str,
    table: dict[str, dict[str, Cell]],
    personas: Sequence[str],
    policies: Sequence[str],
) -> list[str]:
    """A bar chart per figure (loss, utility, time, price) by persona and policy, written
    into `folder`; the report's lines showing them."""
    slug = split.replace(" ", "-")
    groups = [*personas, OVERALL]
    lines = []
    for name, title, value, fmt in (
        ("loss", "QoS loss (lower is better)", lambda c: c.loss, "{:.3f}"),
        ("utility", "mean utility", lambda c: c.utility, "{:.2f}"),
        ("time", "mean seconds to the first proof", lambda c: c.first_proof, "{:.0f}"),
        ("price", "mean paid per task (x the least reward)", lambda c: c.spent, "{:.2f}"),
    ):
        series = {p: [value(table[g][p]) if p in table[g] else None for g in groups] for p in policies}
        svg = bar_chart(f"{title}, {split} seeds", groups, series, y_format=fmt)
        (folder / f"{name}-{slug}.svg").write_text(svg)
        lines.append(f"![{title}]({name}-{slug}.svg)\n")
    return lines


def _router_chart(folder: Path, split: str, outcomes: Sequence[Outcome]) -> list[str]:
    """The router's running mean utility task by task, if it ran, written into `folder`;
    the report's line showing it (none without router tasks)."""
    router_tasks = [o for o in outcomes if o.policy == "router"]
    if not router_tasks:
        return []
    slug = split.replace(" ", "-")
    x = list(range(1, len(router_tasks) + 1))
    running, total = [], 0.0
    for i, o in enumerate(router_tasks, 1):
        total += o.utility
        running.append(total / i)
    svg = line_chart(
        f"the router's mean utility as it learns, {split} seeds",
        x,
        {"router (running mean)": running},
        x_label="router task",
        y_label="mean utility",
    )
    (folder / f"router-{slug}.svg").write_text(svg)
    return [f"![router learning](router-{slug}.svg)\n"]


def _write_outcomes(path: Path, splits: dict[str, list[Outcome]]) -> None:
    """Every task of every split as a row of COLUMNS."""
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(COLUMNS)
        for split, outcomes in splits.items():
            for o in outcomes:
                q = o.qos
                measured = (
                    ["", "", "", "", "", ""]
                    if q is None
                    else ["" if q.first_proof is None else q.first_proof, q.proofs, q.redundancy, q.spent,
                          q.slashes, q.could]
                )  # fmt: skip
                out.writerow(
                    [
                        split,
                        o.seed,
                        o.policy,
                        o.index,
                        o.persona,
                        o.mechanism,
                        f"{o.utility:.4f}",
                        *measured,
                        o.reason,
                    ]
                )


def _verdict(table: dict[str, dict[str, Cell]], policies: Sequence[str], outcomes: Sequence[Outcome]) -> dict:
    """As measured, in words and numbers: per persona, whether the router's QoS loss is at
    most the best single policy's within one standard error (of the task-by-task difference
    on the same arrivals); overall, whether it is below every single policy's."""
    singles = [p for p in policies if p != ROUTER]
    overall = table[OVERALL]
    if ROUTER not in overall or not any(p in overall for p in singles):
        return {"text": "(no router run to compare)", "router_beats_every_single": None}
    best_single = min((p for p in singles if p in overall), key=lambda p: overall[p].loss)
    lines, personas = [], {}
    for persona, row in table.items():
        if persona == OVERALL or ROUTER not in row:
            continue
        best = min((p for p in singles if p in row), key=lambda p: row[p].loss)
        gap = row[ROUTER].loss - row[best].loss
        mine = [o for o in outcomes if o.persona == persona]
        se = paired_se([o for o in mine if o.policy == ROUTER], [o for o in mine if o.policy == best])
        within = gap <= se + 1e-9
        personas[persona] = {"best": best, "gap": gap, "se": se, "within_one_se": within}
        lines.append(
            f"- {persona}: router {row[ROUTER].loss:.3f}, best single policy ({best}) {row[best].loss:.3f}: "
            f"the router's loss is {gap:+.3f} ± {se:.3f} from it, "
            + ("within one standard error" if within else "**more than one standard error above it**")
        )
    every = all(f["within_one_se"] for f in personas.values())
    lower = all(overall[ROUTER].loss < overall[p].loss for p in singles if p in overall)
    gap = overall[ROUTER].loss - overall[best_single].loss
    se = paired_se(
        [o for o in outcomes if o.policy == ROUTER], [o for o in outcomes if o.policy == best_single]
    )
    text = (
        f"Overall QoS loss: router {overall[ROUTER].loss:.3f} ± {overall[ROUTER].loss_se:.3f}, best "
        f"single policy ({best_single}) {overall[best_single].loss:.3f} ± "
        f"{overall[best_single].loss_se:.3f} (router less it {gap:+.3f} ± {se:.3f}). As measured: the "
        "router's loss is "
        + ("" if every else "NOT ")
        + "within one standard error of the best single policy's for every persona, and "
        + ("" if lower else "NOT ")
        + "below every single policy's overall.\n\n"
        + "\n".join(lines)
    )
    return {
        "text": text,
        "best_single": best_single,
        "router_beats_every_single": every and lower,
        "within_one_se_every_persona": every,
        "below_every_single_overall": lower,
        "personas": personas,
        "router_loss": overall[ROUTER].loss,
        "best_single_loss": overall[best_single].loss,
    }


def _best_single(outcomes: Sequence[Outcome], persona: str, policies: Sequence[str]) -> str | None:
    """The single policy with the highest mean utility for `persona` among `outcomes`."""
    means = {}
    for p in policies:
        if p == "router":
            continue
        mine = [o.utility for o in outcomes if o.persona == persona and o.policy == p]
        if mine:
            means[p] = statistics.fmean(mine)
    return max(means, key=lambda p: means[p]) if means else None


def recovery(after: Sequence[Outcome], personas: Sequence[str], policies: Sequence[str]) -> dict:
    """Per persona, after a switch: the best single policy in the new world, and the router
    against it over the persona's tasks after its first RECOVERY (paired task by task: every
    policy served the same arrivals), the mean difference in utility, its standard error, and
    whether the router is back within one standard error (None: fewer than two such tasks);
    the same over the first RECOVERY tasks, for comparison."""
    found: dict[str, dict] = {}
    for persona in personas:
        best = _best_single(after, persona, policies)
        router = sorted(
            (o for o in after if o.persona == persona and o.policy == "router"),
            key=lambda o: (o.seed, o.index),
        )
        if best is None or not router:
            continue
        theirs = {(o.seed, o.index): o.utility for o in after if o.persona == persona and o.policy == best}
        diffs = [o.utility - theirs[(o.seed, o.index)] for o in router if (o.seed, o.index) in theirs]

        def summary(part: list[float]) -> dict:
            n = len(part)
            se = statistics.stdev(part) / n**0.5 if n > 1 else None
            gap = statistics.fmean(part) if part else None
            return {"tasks": n, "gap": gap, "se": se}

        late, early = summary(diffs[RECOVERY:]), summary(diffs[:RECOVERY])
        within = None if late["se"] is None else late["gap"] >= -late["se"]
        found[persona] = {"best": best, "after": late, "first": early, "within_one_se": within}
    return found


def _recovery_text(found: dict) -> str:
    lines = [
        f"\n**After the switch: is the router back within one standard error of the new best "
        f"single policy once each persona has posted {RECOVERY} tasks in the new world?** "
        "(utility, router less the best single policy, task by task on the same arrivals)\n",
        f"| persona | best single policy | tasks after the first {RECOVERY} | router − best ± SE "
        f"| within one SE | the first {RECOVERY}: router − best ± SE |",
        "|---|---|---:|---:|---|---:|",
    ]

    def pm(part: dict) -> str:
        if part["gap"] is None:
            return "–"
        return f"{part['gap']:+.3f}" + ("" if part["se"] is None else f" ± {part['se']:.3f}")

    for persona, f in found.items():
        within = {True: "yes", False: "**no**", None: "too few tasks to tell"}[f["within_one_se"]]
        lines.append(
            f"| {persona} | {f['best']} | {f['after']['tasks']} | {pm(f['after'])} | {within} "
            f"| {pm(f['first'])} |"
        )
    return "\n".join(lines) + "\n"


def _moving(values: Sequence[float]) -> list[float]:
    """The trailing mean of each value and the SMOOTHING - 1 before it (fewer at the start)."""
    return [statistics.fmean(values[max(0, i - SMOOTHING + 1) : i + 1]) for i in range(len(values))]


def loss_by_task(
    outcomes: Sequence[Outcome], personas: Sequence[str], policies: Sequence[str]
) -> tuple[list[float], list[float]]:
    """Task by task (the router's, in order), the QoS loss of the router and of the best single
    policy for the task's persona on the same arrival: the best single policy's mean utility for
    the persona over `outcomes` less the task's utility."""
    router, best = [], []
    bests = {p: _best_single(outcomes, p, policies) for p in personas}
    means = {
        p: statistics.fmean(o.utility for o in outcomes if o.persona == p and o.policy == b)
        for p, b in bests.items()
        if b is not None
    }
    utility = {(o.policy, o.seed, o.index): o.utility for o in outcomes}
    for o in sorted((o for o in outcomes if o.policy == "router"), key=lambda o: (o.seed, o.index)):
        if o.persona not in means:
            continue
        router.append(means[o.persona] - o.utility)
        best.append(means[o.persona] - utility.get((bests[o.persona], o.seed, o.index), means[o.persona]))
    return router, best


def _switch_chart(
    folder: Path,
    before: Sequence[Outcome],
    after: Sequence[Outcome],
    personas: Sequence[str],
    policies: Sequence[str],
) -> list[str]:
    """The loss task by task around the switch, the router's and the best single policy's
    (each world's own best per persona), trailing means of SMOOTHING tasks restarted at the
    switch; x = the router's task index, 0 the first after the switch."""
    r0, b0 = loss_by_task(before, personas, policies)
    r1, b1 = loss_by_task(after, personas, policies)
    if not r1:
        return []
    x = list(range(-len(r0), len(r1)))
    svg = line_chart(
        f"QoS loss task by task around the world switch (trailing mean of {SMOOTHING} tasks)",
        x,
        {"router": _moving(r0) + _moving(r1), "best single policy": _moving(b0) + _moving(b1)},
        x_label="router task (0: the first after the switch)",
        y_label="QoS loss",
    )
    (folder / "switch.svg").write_text(svg)
    return ["![loss around the switch](switch.svg)\n"]
