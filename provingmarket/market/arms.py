"""The router's arms and its answer: a mechanism (or a fallback chain of them) with what it
costs and needs (`Arm`, `chain_arm`), the market as the router sees it (`MarketView`), the
windows it posts with (`Pace`), and a choice (`Choice`) or why none (`Infeasible`).

**Arms beyond single mechanisms.** `Router(arms, chains=[...])` offers each fallback chain
given as a `requester post --chain` text (`chain_arm`) whose links are all among the arms,
as one more arm named by that text; its mechanism_id is the chain's, its assignment window
its links' (fixed: only the proving window shrinks to a time limit), its fee the highest of
its links'. A chain not offered is in `left_out`, with why. The double auction, registered,
is an ordinary arm. `Choice.chain` is the chain text to post with ("" for one mechanism).

**Re-pricing**: when the price limit leaves at least one 25 % step above the reward chosen and
the task can be cancelled, `Choice.reprice` says so (and the reason); `Choice.reprice_policy`
gives `repricing.policy_for`'s policy for the caller to opt in with.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from provingmarket.formats import DUTCH, MAX_LINKS, OPEN_RACE, Link, encode_chain
from provingmarket.market.preferences import Preferences
from provingmarket.market.repricing import Policy, policy_for

HOUR = 3_600


class Infeasible(ValueError):
    """No mechanism can meet the hard limits; `limit` names the one that bars most (or
    the only one), the message says why and what would do."""

    def __init__(self, limit: str, message: str):
        self.limit = limit
        super().__init__(message)


@dataclass(frozen=True)
class Pace:
    """The windows the router posts with, in seconds. The defaults suit a real chain; a
    simulation on a fast local chain gives shorter ones."""

    race_window: int = 10 * 60  # an open race's length
    assign_window: int = 4 * HOUR
    proving_window: int = 2 * HOUR


@dataclass(frozen=True)
class Arm:
    """A mechanism the router can post through."""

    name: str  # as the registry names it ("orderbook") or "open race", "dutch"
    mechanism_id: int
    least_time: int = 0  # seconds it needs before an assignment can be made (a bidding window, a draw)
    fee: int = 0  # the frontend fee per slot it is posted with (0 for the built-in ones)
    # a fallback chain's links in order (its name is then its `--chain` text); () for one mechanism
    links: tuple[Link, ...] = ()

    @property
    def chain(self) -> str:
        """The `requester post --chain` text to post through this arm ("" for one mechanism)."""
        return self.name if self.links else ""


RACE_LINKS = ("race", "open race", "open-race")


def chain_arm(text: str, arms: Sequence[Arm], pace: Pace) -> Arm:
    """The arm posting through the fallback chain `text`, written as for `requester post
    --chain` ("auction:20,orderbook:20,race": each link a mechanism among `arms` by name or
    id, `race` or `dutch`, with its window in seconds; the last may leave it out and lasts
    the pace's race window if it races, else its assignment window). Its frontend fee is
    the highest of its links' (any of them may assign). ValueError saying why it cannot be
    offered: a link no arm here is, or a chain the registry would refuse."""
    parts = [p.strip() for p in text.split(",")]
    if not 1 <= len(parts) <= MAX_LINKS or not all(parts):
        raise ValueError(f"chain {text!r}: give 1 to {MAX_LINKS} links, such as auction:30,orderbook:60,race")
    by_name = {a.name.lower(): a for a in arms if not a.links}
    by_id = {a.mechanism_id: a for a in arms if not a.links}
    links, members = [], []
    for i, part in enumerate(parts):
        name, _, window = (x.strip().lower() for x in part.partition(":"))
        arm = by_name.get("open race" if name in RACE_LINKS else name)
        if arm is None and name.isdigit():
            arm = by_id.get(int(name))
        if arm is None:
            raise ValueError(
                f"chain {text!r}: link {i + 1} ({name}) is not a mechanism the router can post through"
            )
        if not window and i < len(parts) - 1:
            raise ValueError(f"chain {text!r}: link {i + 1} ({name}) needs a window: {name}:SECONDS")
        if window and not window.isdigit():
            raise ValueError(f"chain {text!r}: link {i + 1}'s window {window!r} is not whole seconds")
        seconds = (
            int(window)
            if window
            else pace.race_window
            if arm.mechanism_id == OPEN_RACE
            else pace.assign_window
        )
        links.append(Link(arm.mechanism_id, seconds))
        members.append(arm)
    mechanism_id = encode_chain(links)  # ValueError naming a link the registry would refuse
    return Arm(
        ",".join(p.replace(" ", "") for p in parts),
        mechanism_id,
        fee=max(a.fee for a in members),
        links=tuple(links),
    )


@dataclass(frozen=True)
class MarketView:
    """What the router needs of a market: its least reward and collateral, and the
    provers in it (their declared proving time and the mechanisms each accepts)."""

    market_id: int
    min_reward: int
    min_collateral: int
    provers: tuple[tuple[int, frozenset[int]], ...]  # (proving_time, accepted mechanism ids)

    def could(self, arm: Arm, proving_window: int) -> int:
        """The provers that could take a task through `arm` (through any link of a chain)."""
        ids = {link.mechanism for link in arm.links} or {arm.mechanism_id}
        built_in = bool(ids & {OPEN_RACE, DUTCH})
        return sum(
            1 for time, accepts in self.provers if time <= proving_window and (built_in or ids & accepts)
        )


@dataclass(frozen=True)
class Choice:
    arm: Arm
    terms: dict[str, int | bool]  # TaskTerms fields: mechanism_id, redundancy, windows, rewards, …
    reason: str
    estimates: dict[str, tuple[float, int]]  # arm → (mean utility, tasks) for the profile
    level: float  # the reward offered, in multiples of the market's least
    variant: str = ""  # the terms learnt on: the level offered and the redundancy ("2x1")
    reprice: str = ""  # why the caller should opt in to re-pricing ("": no need); see `reprice_policy`

    @property
    def chain(self) -> str:
        """The `requester post --chain` text to post with ("" for one mechanism); the terms'
        mechanism_id is the chain's already."""
        return self.arm.chain

    def reprice_policy(self, prefs: Preferences, now: int) -> Policy | None:
        """The re-pricing to opt in to for this task, posted at `now` (chain time), if the
        router advises it (`reprice`), else None."""
        return policy_for(prefs, self.terms, now) if self.reprice else None

    def describe(self) -> str:
        t = self.terms
        windows = (
            f"a {t['proving_window']} s race"
            if t["mechanism_id"] == OPEN_RACE
            else f"{t['assign_window']} s to assign, {t['proving_window']} s to prove"
        )
        return (
            f"{self.arm.name}: {t['redundancy']} proof{'s' if t['redundancy'] > 1 else ''}, "
            f"up to {self.level:g}x the least reward{' decaying' if t['decay'] else ''}, {windows}"
        )
