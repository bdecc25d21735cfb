"""The explorer's "Mechanisms and routing" page: every mechanism with its frontends and the
QoS its tasks got, per requester persona; the router's recent choices with the reasons it
gave; the simulation's last report.

**QoS** is provingmarket/market/qos.py's, from the mirror's journal (every registry event with
its block's timestamp): `qos.Tally` is fed the journal's new rows each time the mirror's
cursor moves (only what changed is measured again; a reorg that dropped rows read already
starts it afresh), and the aggregates are `qos.summarize`'s, computed once per cursor.

**A task's persona** (provingmarket/market/personas.py) is known, in this order, by:

1. the router's record of it (`--router-state` files, and the simulation's beside its
   report): the preferences it was posted with, named after the persona whose weights
   they are, else "weights S,C,Sa,CR";
2. its requester: one whose recorded tasks all carry one persona's weights is that persona
   for its other tasks too;
3. its terms: equal, in every term a persona sets, to a persona's fixed plan in its market
   (`requester post --persona NAME` without `--auto`);
4. otherwise it is "unattributed" (a requester that chose its own terms).

The page says how many tasks each way attributed.
"""

from __future__ import annotations

import base64
import contextlib
import html
import json
import re
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from explorer.app import inline_svg
from provingmarket.chain.client import Event
from provingmarket.chain.mechanisms import published
from provingmarket.chain.mirror.schema import loads
from provingmarket.formats import BUILT_IN_MECHANISMS, TaskTerms
from provingmarket.market.personas import BUILT_IN_ROLES, PERSONA_FIELDS, PERSONAS, plan_terms
from provingmarket.market.plots import bar_chart
from provingmarket.market.preferences import Preferences
from provingmarket.market.qos import GroupQoS, Tally, TaskQoS, summarize
from provingmarket.market.router import persona_of, read_state

UNATTRIBUTED = "unattributed"
# How a task's persona was known (see the module's docstring), in that order.
BY_ROUTER, BY_REQUESTER, BY_TERMS, BY_NOTHING = "router record", "requester", "plan terms", "none"
SIM_ROUTER_STATE = "router-state.json"  # what the simulation saves beside its report
# The events QoS is measured from: the journal's others are not read.
QOS_EVENTS = (
    "MarketCreated",
    "MechanismRegistered",
    "Staked",
    "Unstaked",
    "Slashed",
    "ProverJoined",
    "ProverUpdated",
    "ProverLeft",
    "MechanismAccepted",
    "TaskPosted",
    "TaskAssigned",
    "TaskProven",
    "SlotsClosed",
    "AssignmentVoided",
)
_TERM_FIELDS = tuple(f for f in PERSONA_FIELDS if f != "mechanism_id")


# ------------------------------------------------------------------ following the journal


@dataclass
class _Follow:
    """What was read of one mirror file's journal: up to (block, log_index), whose block
    hash was `block_hash`; and the figures last computed, at `key`."""

    tally: Tally = field(default_factory=Tally)
    block: int = -1
    log_index: int = -1
    block_hash: str | None = None
    key: tuple | None = None
    figures: dict | None = None
    qos: dict[str, TaskQoS] = field(default_factory=dict)
    plans: dict[tuple, str] = field(default_factory=dict)
    by_terms: dict[str, str | None] = field(default_factory=dict)  # task id → its plan's persona
    per_mechanism: _Groups = field(default_factory=lambda: _Groups())
    per_persona: _Groups = field(default_factory=lambda: _Groups())


_FOLLOWED: dict[str, _Follow] = {}
_LOCK = threading.Lock()


def _mirror_path(db) -> str:
    if getattr(db, "where", None):  # a shared mirror on Postgres: its URL and schema
        return db.where
    row = db.execute("PRAGMA database_list").fetchone()
    return str(row[2]) or f"memory:{id(db)}"


def _catch_up(db, follow: _Follow, cursor: int) -> _Follow:
    """Feed the tally the journal's rows after what was read, up to block `cursor`; from the
    start again if a reorg dropped the last row read."""
    if follow.block_hash is not None:
        row = db.execute(
            "SELECT block_hash FROM journal WHERE block = ? AND log_index = ?",
            (follow.block, follow.log_index),
        ).fetchone()
        if row is None or row[0] != follow.block_hash or follow.block > cursor:
            follow = _Follow()
    marks = ",".join("?" * len(QOS_EVENTS))
    rows = db.execute(
        f"SELECT block, log_index, block_hash, tx, name, args, time FROM journal "
        f"WHERE (block, log_index) > (?, ?) AND block <= ? AND name IN ({marks}) ORDER BY block, log_index",
        (follow.block, follow.log_index, cursor, *QOS_EVENTS),
    ).fetchall()
    if rows:
        times = {r[0]: r[6] for r in rows}
        follow.tally.feed(
            (Event(r[4], loads(r[5]), r[0], r[3], r[1]) for r in rows), lambda number: times[number]
        )
        follow.block, follow.log_index, follow.block_hash = rows[-1][0], rows[-1][1], rows[-1][2]
    return follow


# ------------------------------------------------------------------ personas


@dataclass(frozen=True)
class RouterLog:
    """One router state file: its recent choices (newest first), tasks still pending, or
    why it could not be read."""

    path: str
    stamp: tuple[int, int] = (0, 0)  # the file's mtime and size when read
    choices: tuple[dict, ...] = ()
    pending: dict[str, dict] = field(default_factory=dict)
    error: str | None = None


_ROUTER_FILES: dict[str, tuple[tuple[int, int], RouterLog]] = {}


def read_router(path: Path) -> RouterLog:
    """The router state file at `path` (read again only when it changes)."""
    try:
        stat = path.stat()
    except OSError:
        return RouterLog(str(path), error=f"no router state file at {path} (nothing routed there yet)")
    stamp = (stat.st_mtime_ns, stat.st_size)
    cached = _ROUTER_FILES.get(str(path))
    if cached is not None and cached[0] == stamp:
        return cached[1]
    try:
        state = read_state(path)
        log = RouterLog(str(path), stamp, tuple(reversed(state.choices)), dict(state.pending))
    except (OSError, ValueError) as error:
        log = RouterLog(str(path), stamp, error=str(error))
    _ROUTER_FILES[str(path)] = (stamp, log)
    return log


def persona_label(preferences: dict | None, named: str | None = None) -> str:
    """The persona a router record's preferences are, else its weights."""
    if named:
        return named
    try:
        prefs = Preferences(**(preferences or {}))
    except (TypeError, ValueError):
        return UNATTRIBUTED
    return persona_of(prefs) or "weights " + ",".join(f"{w:g}" for w in prefs.weights)


def _recorded(logs: Sequence[RouterLog]) -> dict[str, str]:
    """task id → persona, from the routers' records (pending and logged choices)."""
    found: dict[str, str] = {}
    for log in logs:
        for tid, posted in log.pending.items():
            found[tid.lower()] = persona_label(posted.get("preferences"))
        for choice in log.choices:
            found[str(choice.get("task_id", "")).lower()] = persona_label(
                choice.get("preferences"), choice.get("persona")
            )
    return found


def _plans(markets: dict[int, tuple[int, int]], registered: Iterable[int]) -> dict[tuple, str]:
    """(market, mechanism id, *terms a persona sets) → the persona whose fixed plan they are."""
    registered = list(registered)
    found: dict[tuple, str] = {}
    for name, persona in PERSONAS.items():
        for plan in persona.plans:
            ids = [BUILT_IN_ROLES[plan.mechanism]] if plan.mechanism in BUILT_IN_ROLES else registered
            for market_id, (min_reward, min_collateral) in markets.items():
                for mechanism_id in ids:
                    terms = plan_terms(plan, mechanism_id, min_reward, min_collateral)
                    found.setdefault((market_id, mechanism_id, *(terms[f] for f in _TERM_FIELDS)), name)
    return found


def _terms_key(t: TaskTerms) -> tuple:
    return (t.market_id, t.mechanism_id, *(getattr(t, f) for f in _TERM_FIELDS))


def attribute(
    tasks: Sequence[TaskQoS], recorded: dict[str, str], by_terms: Callable[[TaskQoS], str | None]
) -> dict[str, tuple[str, str]]:
    """task id → (persona, how it was known): see the module's docstring. `by_terms` gives
    the persona whose fixed plan a task's terms are, if any."""
    by_requester: dict[str, set[str]] = {}
    for q in tasks:
        if q.task_id in recorded:
            by_requester.setdefault(q.requester.lower(), set()).add(recorded[q.task_id])
    found: dict[str, tuple[str, str]] = {}
    for q in tasks:
        personas = by_requester.get(q.requester.lower(), ())
        if q.task_id in recorded:
            found[q.task_id] = (recorded[q.task_id], BY_ROUTER)
        elif len(personas) == 1:
            found[q.task_id] = (next(iter(personas)), BY_REQUESTER)
        elif (planned := by_terms(q)) is not None:
            found[q.task_id] = (planned, BY_TERMS)
        else:
            found[q.task_id] = (UNATTRIBUTED, BY_NOTHING)
    return found


class _Groups:
    """QoS per key, summarised again only for the groups whose tasks changed."""

    def __init__(self) -> None:
        self.keys: dict[str, Hashable] = {}  # task id → its group
        self.groups: dict[Hashable, GroupQoS] = {}

    def update(
        self, tasks: Sequence[TaskQoS], changed: set[str], key_of: Callable[[TaskQoS], Hashable]
    ) -> dict[Hashable, GroupQoS]:
        members: dict[Hashable, list[TaskQoS]] = {}
        dirty: set[Hashable] = set()
        for q in tasks:
            key = key_of(q)
            members.setdefault(key, []).append(q)
            old = self.keys.get(q.task_id)
            if old != key or q.task_id in changed:
                dirty.update((key, old) if old is not None else (key,))
                self.keys[q.task_id] = key
        for key in dirty:
            if key in members:
                self.groups[key] = summarize(members[key], lambda _: "")[0]
            else:
                self.groups.pop(key, None)
        return self.groups


# ------------------------------------------------------------------ figures


def group_row(g: GroupQoS) -> dict[str, Any]:
    """A group's QoS as the page shows it (None where no task had a value)."""
    return {
        "tasks": g.tasks,
        "proven": g.proven,
        "delivered": g.delivered,
        "first_proof": g.first_proof,  # median seconds from posting
        "first_proof_p95": g.first_proof_p95,
        "price_ratio": g.price_ratio,  # paid over the maxima of the proofs delivered
        "delivery": g.delivery if g.proofs_asked else None,  # proofs over proofs asked
        "proofs": g.proofs,
        "proofs_asked": g.proofs_asked,
        "took_part": g.took_part,  # mean distinct provers assigned or proving
        "could": g.could,
        "slashes": g.slashes,
        "spent": str(g.spent),  # wei, as text (JSON numbers lose precision past 2**53)
    }


def _mechanisms(db, names: dict[int, str]) -> list[dict[str, Any]]:
    """The built-in mechanisms, then the registered ones by id."""
    frontends: dict[int, list[str]] = {}
    for r in db.execute("SELECT mechanism_id, frontend FROM frontends ORDER BY frontend"):
        frontends.setdefault(r[0], []).append(r[1])
    found = [
        {"id": i, "name": n, "built_in": True, "registrant": None, "retired": False, "frontends": []}
        for i, n in BUILT_IN_MECHANISMS.items()
    ]
    for r in db.execute(
        "SELECT mechanism_id, registrant, name, retired FROM mechanisms ORDER BY mechanism_id"
    ):
        found.append(
            {
                "id": r[0],
                "name": r[2],
                "built_in": False,
                "registrant": r[1],
                "retired": bool(r[3]),
                "frontends": frontends.get(r[0], []),
            }
        )
    for m in found:
        names.setdefault(m["id"], m["name"])
        m["params"] = None if m["built_in"] else published(m["name"])  # an instance's: auction/window=30
    return found


PLOTS = (
    ("first_proof", "Median seconds from posting to the first proof", "{:.0f}", lambda r: r["first_proof"]),
    (
        "price_ratio",
        "Price paid over the maximum (%)",
        "{:.0f}",
        lambda r: None if r["price_ratio"] is None else 100 * r["price_ratio"],
    ),
    (
        "delivery",
        "Proofs delivered over proofs asked (%)",
        "{:.0f}",
        lambda r: None if r["delivery"] is None else 100 * r["delivery"],
    ),
    ("took_part", "Distinct provers per task (mean)", "{:.1f}", lambda r: r["took_part"]),
    ("slashes", "Slashes", "{:.0f}", lambda r: r["slashes"]),
)


def _figures(db, follow: _Follow, logs: Sequence[RouterLog]) -> dict[str, Any]:
    tasks = follow.tally.tasks()
    changed = {q.task_id for q in tasks if follow.qos.get(q.task_id) is not q}
    follow.qos = {q.task_id: q for q in tasks}
    names = dict(follow.tally.names)
    mechanisms = _mechanisms(db, names)
    markets = {
        r[0]: (int(r[1]), int(r[2]))
        for r in db.execute("SELECT market_id, min_reward, min_collateral FROM markets")
    }
    plans = _plans(markets, [m["id"] for m in mechanisms if not m["built_in"]])
    if plans != follow.plans:  # a market or mechanism came: every task's terms are matched again
        follow.plans, follow.by_terms = plans, {}

    def by_terms(q: TaskQoS) -> str | None:
        if q.task_id not in follow.by_terms:
            follow.by_terms[q.task_id] = plans.get(_terms_key(q.terms))
        return follow.by_terms[q.task_id]

    personas = attribute(tasks, _recorded(logs), by_terms)
    by_mechanism = {
        int(k): group_row(g)  # type: ignore[arg-type]
        for k, g in follow.per_mechanism.update(tasks, changed, lambda q: q.mechanism_id).items()
    }
    for m in mechanisms:
        m["qos"] = by_mechanism.get(m["id"])
    for mechanism_id in sorted(set(by_mechanism) - {m["id"] for m in mechanisms}):  # posted, never registered
        mechanisms.append(
            {
                "id": mechanism_id,
                "name": names.get(mechanism_id, f"mechanism {mechanism_id}"),
                "built_in": False,
                "registrant": None,
                "retired": False,
                "frontends": [],
                "qos": by_mechanism[mechanism_id],
            }
        )
    rows = []
    per_persona = follow.per_persona.update(
        tasks, changed, lambda q: (personas[q.task_id][0], q.mechanism_id)
    )
    for (persona, mechanism_id), g in per_persona.items():  # type: ignore[misc]
        rows.append(
            {
                "persona": persona,
                "mechanism_id": mechanism_id,
                "mechanism": names[mechanism_id],
                **group_row(g),
            }
        )
    order = {name: i for i, name in enumerate(PERSONAS)}
    rows.sort(
        key=lambda r: (
            order.get(r["persona"], len(order)),
            r["persona"] == UNATTRIBUTED,
            r["persona"],
            r["mechanism_id"],
        )
    )
    persona_names = list(dict.fromkeys(r["persona"] for r in rows))
    mechanism_names = list(dict.fromkeys(names[i] for i in sorted({r["mechanism_id"] for r in rows})))
    plots = {}
    for key, title, fmt, value in PLOTS:
        series = {
            m: [
                next((value(r) for r in rows if r["persona"] == p and r["mechanism"] == m), None)
                for p in persona_names
            ]
            for m in mechanism_names
        }
        plots[key] = (
            title,
            bar_chart(title + ", per persona and mechanism", persona_names, series, y_format=fmt),
        )
    counts = {how: 0 for how in (BY_ROUTER, BY_REQUESTER, BY_TERMS, BY_NOTHING)}
    for _, how in personas.values():
        counts[how] += 1
    return {
        "tasks": len(tasks),
        "mechanisms": mechanisms,
        "personas": rows,
        "attribution": counts,
        "plots": plots,
    }


# ------------------------------------------------------------------ the simulation's report


_SIM: dict[str, tuple[tuple, dict]] = {}
_SVG_TITLE = re.compile(r'class="title"[^>]*>([^<]*)<')


def sim_report(folder: Path | None) -> dict[str, Any]:
    """The simulation's report in `folder` (simulation/report.py): its headline table per
    split (QoS loss and mean utility per persona and policy), the verdict, and its plots
    (as data: URIs, so an <img> shows them and nothing in them runs); or why there is none."""
    if folder is None:
        return {
            "found": False,
            "message": "No simulation report was given: start the explorer with --sim-report DIR "
            "(`make sim` writes reports/sim-full).",
        }
    results = folder / "results.json"
    try:
        stat = results.stat()
    except OSError:
        return {
            "found": False,
            "folder": str(folder),
            "message": f"No simulation report in {folder}: it has no results.json (run `make sim`, "
            "or give the folder the simulation wrote with --sim-report DIR).",
        }
    svgs = sorted(folder.glob("*.svg"))
    stamp = (stat.st_mtime_ns, stat.st_size, tuple((p.name, p.stat().st_mtime_ns) for p in svgs))
    cached = _SIM.get(str(folder))
    if cached is not None and cached[0] == stamp:
        return cached[1]
    try:
        raw = json.loads(results.read_text())
        splits = [_split(name, table) for name, table in raw["splits"].items()]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        return {
            "found": False,
            "folder": str(folder),
            "message": f"The simulation report in {folder} cannot be read ({type(error).__name__}: {error}); "
            "run the simulation again to write it afresh.",
        }
    plots = []
    for path in svgs:
        text = path.read_text(errors="replace")
        title = _SVG_TITLE.search(text)
        plots.append(
            {
                "name": path.name,
                "title": html.unescape(title.group(1)) if title else path.stem,
                "uri": "data:image/svg+xml;base64," + base64.b64encode(text.encode()).decode(),
            }
        )
    found = {
        "found": True,
        "folder": str(folder),
        "config": str(raw.get("config", "")),
        "written": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(stat.st_mtime)),
        "splits": splits,
        "plots": plots,
    }
    _SIM[str(folder)] = (stamp, found)
    return found


def _split(name: str, table: dict) -> dict[str, Any]:
    personas = [p for p in table if p not in ("verdict", "fees")]
    policies = list(dict.fromkeys(policy for p in personas for policy in table[p]))
    return {
        "name": name,
        "policies": policies,
        "rows": [
            {
                "persona": p,
                "cells": {
                    policy: {
                        "loss": float(cell["loss"]),
                        "utility": float(cell["utility"]),
                        "se": float(cell["se"]),
                        "served": float(cell["served"]),
                        "tasks": int(cell["tasks"]),
                    }
                    for policy, cell in table[p].items()
                },
            }
            for p in personas
        ],
        "verdict": str(table.get("verdict", {}).get("text", "")),
    }


def default_sim_report(root: Path) -> Path | None:
    """The newest report the simulation wrote under `root`/reports (sim-<config>), if any."""
    found = [p.parent for p in (root / "reports").glob("sim-*/results.json")]
    return max(found, key=lambda p: (p / "results.json").stat().st_mtime) if found else None


# ------------------------------------------------------------------ the page


def mechanisms_page(
    db, cursor: int, router_states: Sequence[Path] = (), sim_report_dir: Path | None = None
) -> dict[str, Any]:
    """Everything the page shows, for the mirror `db` (read-only) at `cursor` (its last
    applied block): mechanisms with QoS, QoS per persona and mechanism, plots (SVG text),
    the routers' recent choices and the simulation's report. The QoS figures are computed
    once per cursor (and router state files' contents) and the journal read incrementally."""
    states = list(router_states)
    if sim_report_dir is not None and (sim_report_dir / SIM_ROUTER_STATE).exists():
        states.append(sim_report_dir / SIM_ROUTER_STATE)
    logs = [read_router(Path(p)) for p in states]
    path = _mirror_path(db)
    with _LOCK:
        follow = _catch_up(db, _FOLLOWED.get(path) or _Follow(), cursor)
        _FOLLOWED[path] = follow
        key = (cursor, follow.block, follow.log_index, tuple((log.path, log.stamp) for log in logs))
        if follow.key != key or follow.figures is None:
            follow.figures, follow.key = _figures(db, follow, logs), key
        figures, qos = follow.figures, follow.qos
    routers = []
    for log in logs:
        choices = []
        for c in log.choices:
            tid = str(c.get("task_id", "")).lower()
            q = qos.get(tid)
            choices.append(
                {
                    "task_id": tid,
                    "at": c.get("at"),
                    "when": _when(c.get("at")),
                    "arm": str(c.get("arm", "")),
                    "terms": str(c.get("terms", "")),
                    "reason": str(c.get("reason", "")),
                    "persona": persona_label(c.get("preferences"), c.get("persona")),
                    "requester": str(c.get("requester", "")),
                    "in_mirror": q is not None,
                    "proofs": None if q is None else q.proofs,
                    "redundancy": None if q is None else q.redundancy,
                    "first_proof": None if q is None else q.first_proof,
                }
            )
        routers.append(
            {"path": log.path, "error": log.error, "pending": len(log.pending), "choices": choices}
        )
    return {
        "cursor": cursor,
        "tasks": figures["tasks"],
        "mechanisms": figures["mechanisms"],
        "personas": figures["personas"],
        "attribution": figures["attribution"],
        "plots": figures["plots"],
        "routers": routers,
        "sim": sim_report(sim_report_dir),
    }


def mechanisms_api(data: dict[str, Any]) -> dict[str, Any]:
    """The page's data as JSON: without the plots' SVG text and data URIs."""
    sim = dict(data["sim"])
    if "plots" in sim:
        sim["plots"] = [{"name": p["name"], "title": p["title"]} for p in sim["plots"]]
    return {k: v for k, v in data.items() if k != "plots"} | {
        "sim": sim,
        "plots": sorted(data["plots"]),  # names; the SVGs are on the HTML page
    }


def _when(at: Any) -> str:
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(int(at)))
    except (TypeError, ValueError, OverflowError, OSError):
        return "-"


def page(explorer, request=None) -> dict[str, Any]:
    """The page's data for the explorer app (explorer/app.py `extra_pages`): read in one
    transaction of the explorer's read-only connection, with the mirror's status and the
    plots as inline SVG (titled for screen readers)."""

    def build(db) -> dict[str, Any]:
        status = explorer.status(db)
        data = mechanisms_page(db, status["cursor"], explorer.router_states, explorer.sim_report)
        data["plots"] = {k: inline_svg(svg, title) for k, (title, svg) in data["plots"].items()}
        return {**data, "status": status}

    return explorer.read(build)


def warm(explorer) -> None:
    """Compute the page's figures once (a few seconds at 10,000 tasks), so that the first
    visitor does not wait: call it in a thread when the explorer starts."""
    with contextlib.suppress(Exception):  # no mirror yet: the first visit computes them
        page(explorer)


__all__ = [
    "page",
    "warm",
    "UNATTRIBUTED",
    "RouterLog",
    "attribute",
    "default_sim_report",
    "mechanisms_api",
    "mechanisms_page",
    "persona_label",
    "read_router",
    "sim_report",
]
