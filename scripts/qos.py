"""Quality of service as the chain recorded it (provingmarket/market/qos.py): per mechanism with
the parameters that shape its service, per market and per requester.

    ape run qos --network ethereum:local:node
    ape run qos --by mechanism --market 1 --plots reports/qos --network ...
    ape run qos --from-block 1200 --json --network ...
    ape run qos --database postgresql://host/market --network ...   # the indexer's shared mirror

Each table's times are medians in seconds after posting (p95: the 95th percentile of the
time to the first proof); paid/max is what provers were paid over the maxima of the proofs
delivered; proofs/asked the proofs delivered over the redundancy asked for; could/did the
mean provers that could take part when the task was posted and that did; refunded the
tasks with a slot closed unfilled. Everything is read from the registry's events, from its
deployment block (or `--from-block`: provers who joined before it are not counted).

`--plots DIR` writes SVG bar charts per mechanism (time to the first proof, paid/max,
proofs delivered/asked, provers who could and did take part) and `qos.csv`, one row per
task.
"""

from __future__ import annotations

import csv
from dataclasses import asdict
from pathlib import Path

import click

from provingmarket.cli import client, command, emit, fail, market_or_fail
from provingmarket.market import qos
from provingmarket.market.plots import bar_chart

KEYS = ("mechanism", "market", "requester")
CSV_COLUMNS = (
    "task_id",
    "market_id",
    "mechanism_id",
    "mechanism",
    "arm",
    "requester",
    "posted_at",
    "redundancy",
    "max_reward",
    "frontend_fee",
    "collateral",
    "decay",
    "assign_window",
    "proving_window",
    "assigned_after",
    "first_proof",
    "proof_times",
    "proofs",
    "paid",
    "fees",
    "spent",
    "price_ratio",
    "slashes",
    "could",
    "took_part",
    "refunded",
    "cancelled",
    "settled",
)


def _row(q: qos.TaskQoS) -> dict:
    return {
        "task_id": q.task_id,
        "market_id": q.market_id,
        "mechanism_id": q.mechanism_id,
        "mechanism": q.mechanism,
        "arm": q.arm,
        "requester": q.requester,
        "posted_at": q.posted_at,
        "redundancy": q.redundancy,
        "max_reward": q.terms.max_reward,
        "frontend_fee": q.terms.frontend_fee,
        "collateral": q.terms.collateral,
        "decay": q.terms.decay,
        "assign_window": q.terms.assign_window,
        "proving_window": q.terms.proving_window,
        "assigned_after": "" if q.assigned_after is None else q.assigned_after,
        "first_proof": "" if q.first_proof is None else q.first_proof,
        "proof_times": " ".join(map(str, q.proof_times)),
        "proofs": q.proofs,
        "paid": q.paid,
        "fees": q.fees,
        "spent": q.spent,
        "price_ratio": "" if q.price_ratio is None else f"{q.price_ratio:.6f}",
        "slashes": q.slashes,
        "could": q.could,
        "took_part": q.took_part,
        "refunded": q.refunded,
        "cancelled": q.cancelled,
        "settled": q.settled,
    }


def write_plots(tasks: list[qos.TaskQoS], folder: Path) -> list[Path]:
    """SVG bar charts per mechanism (with its parameters) and qos.csv, one row per task."""
    folder.mkdir(parents=True, exist_ok=True)
    groups = qos.summarize(tasks, "mechanism")
    names = [g.key for g in groups]
    n = f" ({sum(g.tasks for g in groups)} tasks)"
    width = max(720, 210 + 130 * len(names))  # room for each mechanism's label
    # file: (title, {series: value per group}, y label, y format)
    specs = {
        "first-proof.svg": (
            "Time from posting to the first proof, per mechanism",
            {"median": lambda g: g.first_proof, "p95": lambda g: g.first_proof_p95},
            "seconds",
            "{:.0f}",
        ),
        "price.svg": (
            "Paid over the maximum, per mechanism",
            {"paid / max": lambda g: g.price_ratio},
            "paid / max",
            "{:.2f}",
        ),
        "delivery.svg": (
            "Proofs delivered over proofs asked for, per mechanism",
            {"delivered / asked": lambda g: g.delivery},
            "delivered / asked",
            "{:.2f}",
        ),
        "provers.svg": (
            "Provers who could take part and who did, per mechanism (mean per task)",
            {"could": lambda g: g.could, "did": lambda g: g.took_part},
            "provers",
            "{:.1f}",
        ),
    }
    charts = {
        name: bar_chart(
            title + n,
            names,
            {label: [value(g) for g in groups] for label, value in series.items()},
            y_label=y_label,
            width=width,
            y_format=y_format,
        )
        for name, (title, series, y_label, y_format) in specs.items()
    }
    written = []
    for name, svg in charts.items():
        path = folder / name
        path.write_text(svg)
        written.append(path)
    path = folder / "qos.csv"
    with path.open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(_row(q) for q in tasks)
    written.append(path)
    return written


def measured(market_id: int | None, from_block: int | None, database: str | None = None) -> tuple:
    """The registry's client and the QoS of its tasks (of one market, since a block): from
    the node's logs, or with `database` from the shared mirror an indexer writes."""
    if from_block is not None and from_block < 0:
        fail(f"--from-block {from_block} is negative")
    if market_id is not None and market_id < 1:
        fail(f"--market {market_id}: markets are numbered from 1")
    registry = client()
    if market_id is not None:
        market_or_fail(registry, market_id)
    latest = registry.web3.eth.block_number
    if database:
        tasks = from_shared_mirror(registry, database, from_block)
    else:
        tasks = qos.from_chain(registry, from_block) if from_block is None or from_block <= latest else []
    return registry, [q for q in tasks if market_id is None or q.market_id == market_id]


def from_shared_mirror(registry, database: str, from_block: int | None) -> list:
    """The QoS of the events in the shared mirror's journal (with their blocks' times), as
    `qos.from_chain` measures the node's logs; an indexer trailing the chain is said in one
    line on stderr (the tables are as of its cursor)."""
    from provingmarket.chain.database import StoreError
    from provingmarket.chain.mirror import MirrorError, SharedMirror

    try:
        shared = SharedMirror(database, registry)
    except (MirrorError, StoreError) as error:
        fail(f"--database: {error}")
    with shared:
        report = shared.sync()
        if report.stale:
            click.echo(f"warning: {report.stale}; the tables are as of block {shared.cursor}", err=True)
        times = {r[0]: r[1] for r in shared.db.execute("SELECT DISTINCT block, time FROM journal")}
        events = [e for e in shared.timeline() if from_block is None or e.block >= from_block]
    clock = qos.block_clock(registry.web3)
    return qos.measure(events, lambda block: times[block] if block in times else clock(block))


@command(
    click,
    click.option(
        "--by",
        "keys",
        type=click.Choice(KEYS),
        multiple=True,
        help="Group per mechanism, market or requester (repeat for several).  [default: all three]",
    ),
    click.option("--market", "market_id", type=int, metavar="ID", help="Only the tasks of this market."),
    click.option(
        "--from-block",
        type=int,
        metavar="N",
        help="Read the registry's events from this block.  [default: its deployment block]",
    ),
    click.option("--plots", "plots", metavar="DIR", help="Write SVG plots per mechanism and qos.csv here."),
    click.option(
        "--database",
        metavar="URL",
        help="Read the events from the shared mirror an indexer writes (postgresql://...) "
        "instead of the node's logs.",
    ),
)
def cli(keys, market_id, from_block, plots, as_json, database=None):
    """Quality of service per mechanism, market and requester, from the registry's events."""
    keys = tuple(dict.fromkeys(keys)) or KEYS
    registry, tasks = measured(market_id, from_block, database)
    where = f" in market {market_id}" if market_id is not None else ""
    since = f" since block {from_block}" if from_block is not None else ""
    if not tasks:
        emit(
            as_json,
            {"tasks": 0, "groups": {}},
            f"no tasks{where}{since} in the registry at {registry.address}",
        )
        return
    groups = {key: qos.summarize(tasks, key) for key in keys}
    written: list[Path] = []
    if plots:
        try:
            written = write_plots(tasks, Path(plots))
        except OSError as error:
            fail(f"--plots {plots}: cannot write there ({error.strerror or error})")
    data = {
        "tasks": len(tasks),
        "market_id": market_id,
        "from_block": from_block,
        "groups": {
            key: [asdict(g) | {"delivery": g.delivery} for g in found] for key, found in groups.items()
        },
        "written": [str(p) for p in written],
    }

    def text() -> str:
        parts = [f"{len(tasks)} task{'s' if len(tasks) != 1 else ''}{where}{since}"]
        for key, found in groups.items():
            parts += ["", qos.table(found, title=key)]
        parts += [
            "",
            "times: medians in seconds after posting (p95: of the first proof); paid/max: paid over the "
            "maxima of the proofs delivered; could/did: mean provers that could take part and that did; "
            "refunded: tasks with a slot closed unfilled",
        ]
        if written:
            parts.append("written: " + ", ".join(str(p) for p in written))
        return "\n".join(parts)

    emit(as_json, data, text)
