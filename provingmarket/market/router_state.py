"""What a router keeps between runs (`read_state`, `Router.save`): per preference profile
and arm the utilities observed and the terms (`variant`) each was posted with, each
requester's own tasks, the tasks still pending, the change detector's sums, and its recent
choices.

**Its recent choices** are kept with the state (`choices`, the last `RECENT_CHOICES`,
oldest first): for each task recorded, the arm, its terms in a line, the reason given,
the preferences (and the persona whose weights they are, if any), the requester and when;
the explorer's mechanisms page shows them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path

from provingmarket.market.personas import PERSONAS
from provingmarket.market.preferences import Preferences
from provingmarket.market.qos import TaskQoS


@dataclass
class State:
    # profile → arm → utilities of the tasks observed
    seen: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    # requester → arm → [utility, delivered?] of its tasks, oldest first
    mine: dict[str, dict[str, list[list]]] = field(default_factory=dict)
    # task id → what was posted: {"arm", "requester", "preferences"} until it settles
    pending: dict[str, dict] = field(default_factory=dict)
    # requester → arm → its tasks through the arm when it was last moved off it
    moved: dict[str, dict[str, int]] = field(default_factory=dict)
    # the last RECENT_CHOICES tasks recorded, oldest first: {"task_id", "arm", "terms", "reason",
    # "preferences", "persona", "requester", "at"} (see `Router.record`)
    choices: list[dict] = field(default_factory=list)
    # profile → arm → the terms (`variant`) of each utility in `seen`, aligned with it ("" unknown)
    variants: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    # profile → {"arms": arm → [sum below, sum above, tasks since it was 0 below, … above],
    # "observed": tasks observed, "last": the last change detected or None, "alarms": how many}
    change: dict[str, dict] = field(default_factory=dict)
    # task id → the terms (`variant`) it was posted with, while it is pending
    posted_terms: dict[str, str] = field(default_factory=dict)
    # task id → {"bound": the most it can still score, "fed": what the change detector was
    # given for it before it settled (absent: nothing)}, while it is pending and running late
    running: dict[str, dict] = field(default_factory=dict)
    # profile → arm → seconds from posting to the first proof of its delivered tasks, the last USUAL
    first_proofs: dict[str, dict[str, list[int]]] = field(default_factory=dict)


def variant(level: float, redundancy: int) -> str:
    """The key terms are learnt under: the reward offered in multiples of the market's least
    reward, and the redundancy ("2x1": twice the least, one proof)."""
    return f"{round(level, 2):g}x{redundancy}"


def variant_of(q: TaskQoS) -> str:
    """The terms a settled task was posted with, as `variant` keys them."""
    return variant(q.terms.max_reward / max(q.min_reward, 1), q.redundancy)


def describe_variant(key: str) -> str:
    level, redundancy = key.split("x")
    return f"{level}x the least reward, {redundancy} proof{'s' if redundancy != '1' else ''}"


def read_state(path: str | Path) -> State:
    """What a router saved at `path` (a missing file: nothing learnt yet); ValueError saying
    what is wrong with a file that is not a router's state. A file written before the
    choices were logged loads with none; one written before terms were learnt and changes
    detected, with its outcomes' terms unknown and no detector running yet."""
    path = Path(path)
    if not path.exists():
        return State()
    try:
        raw = json.loads(path.read_text())
        state = State(raw["seen"], raw["mine"], raw["pending"])  # the rest came later
        for part in fields(State)[3:]:
            setattr(state, part.name, raw.get(part.name, getattr(state, part.name)))
        objects = [part.name for part in fields(State) if part.name != "choices"]
        if not all(isinstance(getattr(state, name), dict) for name in objects):
            raise TypeError(f"{', '.join(objects[:-1])} and {objects[-1]} must be objects")
        if not isinstance(state.choices, list) or not all(isinstance(c, dict) for c in state.choices):
            raise TypeError("choices must be a list of objects")
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path}: not a router state file ({error}); move it away to start afresh") from None
    return state


def persona_of(prefs: Preferences) -> str | None:
    """The persona (provingmarket/market/personas.py) whose weights these are, or None."""
    for name, persona in PERSONAS.items():
        w = persona.weights
        if prefs.weights == (w.speed, w.cost, w.safety, w.censorship_resistance):
            return name
    return None
