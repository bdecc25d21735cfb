"""The election mechanism: N distinct provers drawn at random for a task, with randomness
nobody knew when the task was posted, so that anyone can draw again and compare. N is the
task's open slots: its redundancy, less the slots already held (the requester sets it in
the task's terms; it is no parameter of the mechanism).

Everything here is a plain function (no chain inside); frontends/election/process.py
runs it on the keeper runtime and recomputes it for the `verify` command.

The draw
--------
For a task id `T` (32 bytes), a randomness `B` (32 bytes, of the round's block: see
"Randomness") and the set `E` of eligible provers:

    seed      = keccak256(T ‖ B)                        (64 bytes hashed)
    ticket(p) = keccak256(seed ‖ p)                     (p: the prover's 20-byte address)

read as 256-bit big-endian integers. The provers of `E` in increasing ticket order (ties,
which take a keccak collision, by address) are a uniformly random ranking of `E`; the
winners are its first `n`, in rank order. So every n-subset of `E` wins with the same
probability, with no modulo bias to correct (nothing is reduced modulo |E|), and the result
does not depend on the order `E` is given in. A prover's ticket does not depend on who else
is eligible. tests/unit/mechanisms/test_election.py checks it with chi-square tests.

Who is eligible
---------------
`frontends.book.eligible_provers` applied to the registry's state after the randomness
block, at that block's timestamp: the provers the registry would let a frontend assign to
the task at its `max_reward` with no signed Bid. Each of them is in the task's market,
accepts the task's mechanism there, is not on the task already (assigned, proven,
declined, slashed or voided), has free capacity in the market and free stake of at least
the collateral, covers the task's capabilities, proves within its proving window and asks
at most `max_reward` (a prover asking more is left out: the registry takes no price below
the ask, and the frontend pays `max_reward`). The market must be unpaused and the task
inside its assignment window. Everything in it follows from the registry's events up to
that block, so anyone can rebuild it from the chain (provingmarket/chain/mirror.py does).

Rounds: which block, when
-------------------------
A task `T` posted in block `P` is elected in rounds, each at a randomness block `R` (`D` is
the delay of the task's mechanism id, an instance's: the one its registered name publishes,
`election/delay=4`, else the frontend's `--instance ID:delay=D` or `--delay`, 2 blocks by
default, at least 1). Round 0 is at `R = P + D`.
At round `k`'s block `R`, with `S` the registry's state after block `R` and `t` its
timestamp:

- **over** if `t > posted_at + assign_window`, or no slot of `T` is open or assigned in `S`:
  no more rounds;
- **full** if no slot is open and some are assigned: the next round is `X + D`, `X` the
  first block after `R` in which a `Slashed` or `TaskDeclined` of `T` reopened a slot;
- otherwise `E` = the eligible set in `S` at `t`, `n = min(open slots, |E|)` and the winners
  `draw(T, E, randomness(R), n)`: **drawn** if `n > 0`, else **none** (nobody is eligible): the
  next round is `R + D`.

After a **drawn** round the frontend `F` sends every winner at the task's `max_reward`, in
one `assign_batch` transaction, once. The next round is `A + D`, `A` the first block after
`R` with a `TaskAssigned` or `AssignmentSkipped` of `T` from `F` (the block its
transaction was mined in). Until then there is no next round: a frontend that withholds
a draw stalls the task (its requester can cancel) but cannot draw again. So slots the
registry skipped (a winner's capacity went elsewhere meanwhile), slots left over when
fewer provers than slots were eligible, and slots a slash or a decline reopened are each
drawn again from a later block, among the provers eligible then; those already on the task
never are. The rounds depend on nothing but the chain and `D`: with the task's events and
the chain's block headers, anyone can recompute them.

Randomness
----------
`randomness(R)` is block `R`'s `prevrandao` (the header's `mixHash` field after the Merge:
the RANDAO mix of the beacon chain, 32 bytes) where the chain provides it: a header with
`difficulty` 0 and a nonzero `mixHash`. Anywhere else (a proof-of-work header, where
`mixHash` is the miner's own proof-of-work output, or a chain that leaves it zero) it is
block `R`'s hash: the documented fallback. Each round records which it used (`source`:
`prevrandao` or `blockhash`) and the value, and `verify` reads the same header and says
which source it recomputed each round from. Why prefer `prevrandao`: see "What the
randomness resists".

Price: the task's `max_reward`; a task with `decay` set pays it decaying towards
`decay_floor` as its deadline nears, as the registry computes at the proof.

Checking a frontend (`verify`)
------------------------------
A frontend's choices match if, for every drawn round, the provers of `F`'s `TaskAssigned`
and `AssignmentSkipped` events of `T` in block `A` are exactly that round's winners, each
once, every `TaskAssigned` of `F` pays `max_reward`, and `F` sent nothing else for `T`. A
drawn round whose winners have not been sent yet is reported as pending. `D` is the
instance's published parameter: `verify` reads it from the task's mechanism's registered
name, or must be given the frontend's for a name that publishes none.

What the randomness resists, and what it does not
-------------------------------------------------
- **Requester and frontend.** When the requester signs its `post_task`, and when the
  frontend first sees the task, the randomness block does not exist yet. The frontend
  chooses nothing: every item it sends is checked against the draw, a subset or a stray
  item is caught, and withholding stalls without redrawing. A requester (or anyone) can
  compute the winners once block `R` is out, before the frontend's transaction lands
  (about `confirmations + 1` blocks later); a requester who dislikes them can cancel the
  open slots and post again: a re-roll that costs two transactions and `D + confirmations`
  blocks each, and shows on chain (a cancelling `SlotsClosed` before any `TaskAssigned`).
  The registry could close it by refusing to cancel an election task's slots for a while
  after posting; this one does not.
- **Provers.** Eligibility is fixed at block `R`, so nobody can join after seeing the
  randomness. A winner can refuse (decline in the grace period, or leave the market before
  the assignment lands, which the registry skips): that only takes itself out, and its slot
  is drawn again later. No prover can make itself win.
- **Block producers.** The producer of block `R` sets its hash. It can try transaction
  orders, timestamps and extra data, compute each candidate's hash and publish the one it
  likes: a header hash is cheap, so putting a chosen prover among the `N` winners of `m`
  eligible takes about `m / N` tries, a chosen set of winners about `C(m, N)`, and a
  producer who grinds **chooses the winners outright** among the eligible. It (and the
  producer of any block from `P + 1` to `R`) can also include or leave out transactions
  that change who is eligible at `R` (joins, stakes, leaves, other assignments). Without
  grinding, withholding its block (its slot stays empty and the next producer makes block
  `R`) gives it a choice of two outcomes at the cost of the block's reward: a target's
  chance goes from `p` to at most `1 - (1 - p)^2`, about `2p`, and `2^k` outcomes for `k`
  consecutive slots. On a rollup whose single sequencer makes every block, that sequencer
  is the producer of every `R`. The requester, the frontend or a prover can bias the draw
  only by being, or bribing, that producer; the prize is a slot's margin (`max_reward`
  less the cost of proving) per slot.
- **`prevrandao` closes grinding.** The draw uses `prevrandao` where the chain has it
  (see "Randomness"). A proposer's RANDAO reveal is its BLS signature over the epoch: one
  value it cannot vary, so the mix of its block is fixed before it builds the block, and
  no ordering, timestamp or extra data changes it. What is left is the withholding bit
  above: skip the slot (losing its reward) and the mix stays the previous one, one bit of
  choice per slot, `2^k` outcomes for `k` consecutive slots the same party proposes. On
  the block-hash fallback a producer grinds as described; a chain without `prevrandao`
  should use one of the stronger sources below.
- **Stronger sources.** A VRF output on `(T, hash(R))` under a
  key registered before the task was posted and held by nobody who produces blocks (its
  proof checked by `verify`) leaves none to the producer; a threshold beacon (drand) round
  fixed by the posting time leaves none to anyone short of the threshold; a commit-reveal
  among the eligible provers (each commits a secret when it accepts the mechanism, the
  seed is the XOR of the reveals, a missing reveal forfeits collateral) prices the last
  revealer's one-bit choice at its collateral.
- **Reorganisations.** The frontend draws only once block `R` has `--confirmations`
  blocks on it; a reorganisation that replaces `R` before then changes nothing it sent, and
  it draws from the new block. One deeper than `--confirmations` after it sent the
  winners leaves them on chain with the old randomness, so `verify` may then say "does not
  match": choose the confirmations for the chain's finality.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from eth_utils import keccak, to_checksum_address

__all__ = [
    "DEFAULT_DELAY",
    "BLOCKHASH",
    "DRAWN",
    "FULL",
    "NONE",
    "OVER",
    "PREVRANDAO",
    "Draw",
    "Verdict",
    "draw",
    "make_round",
    "next_round_block",
    "randomness",
    "reports",
    "seed",
    "ticket",
    "verify_rounds",
]

DEFAULT_DELAY = 2  # blocks between a round's trigger and its randomness block

DRAWN, NONE, FULL, OVER = "drawn", "none", "full", "over"
REPORTS = ("TaskAssigned", "AssignmentSkipped")  # a frontend's assign_batch, item by item
REOPENERS = ("Slashed", "TaskDeclined")
PREVRANDAO, BLOCKHASH = "prevrandao", "blockhash"  # where a round's randomness came from
ZERO_WORD = bytes(32)


def randomness(header: Mapping[str, Any]) -> tuple[str, str]:
    """A block's randomness for a draw (see "Randomness"): (source, 0x-hex of 32 bytes).
    `header`: the block as `eth_getBlockByNumber` gives it (web3's or the raw JSON; hex
    strings or bytes). `prevrandao` where the header has a post-Merge one (difficulty 0,
    a nonzero `mixHash`/`prevRandao`), else the block's hash."""
    mix = header.get("prevRandao", header.get("mixHash"))
    difficulty = header.get("difficulty", 0)
    if isinstance(difficulty, str):
        difficulty = int(difficulty, 16)
    if mix is not None and not difficulty:
        word = _word(mix)
        if len(word) == 32 and word != ZERO_WORD:
            return PREVRANDAO, "0x" + word.hex()
    return BLOCKHASH, "0x" + _word(header["hash"]).hex()


def _word(value: Any) -> bytes:
    if isinstance(value, str):
        return bytes.fromhex(value.removeprefix("0x"))
    return bytes(value)


def seed(task_id: bytes, randomness: bytes) -> bytes:
    """keccak256(task id ‖ randomness): both 32 bytes."""
    task_id, randomness = bytes(task_id), bytes(randomness)
    if len(task_id) != 32 or len(randomness) != 32:
        raise ValueError(
            f"a task id and a randomness are 32 bytes each, not {len(task_id)} and {len(randomness)}"
        )
    return keccak(task_id + randomness)


def ticket(seed_: bytes, prover: str) -> int:
    """A prover's ticket in a draw: keccak256(seed ‖ 20-byte address), as an integer."""
    return int.from_bytes(keccak(bytes(seed_) + bytes.fromhex(_checksum(prover)[2:])), "big")


def draw(task_id: bytes, eligible: Iterable[str], randomness: bytes, n: int) -> tuple[str, ...]:
    """The first `n` of `eligible` ranked by ticket (all of them if fewer): the winners, in
    rank order, as checksummed addresses. Raises ValueError on a prover given twice."""
    if n < 0:
        raise ValueError(f"cannot draw {n} provers")
    s = seed(task_id, randomness)
    provers = [_checksum(p) for p in eligible]
    if len(set(provers)) != len(provers):
        raise ValueError("a prover appears twice in the eligible set; give each once")
    ranked = sorted(
        provers, key=lambda p: (int.from_bytes(keccak(s + bytes.fromhex(p[2:])), "big"), int(p, 16))
    )
    return tuple(ranked[:n])


@dataclass(frozen=True)
class Draw:
    """One round of a task's election (see the module's description)."""

    task_id: bytes
    round: int
    block: int  # the randomness block
    block_hash: str  # its hash, 0x-hex
    timestamp: int
    kind: str  # drawn, none, full, over
    open_slots: int = 0
    eligible: tuple[str, ...] = ()  # sorted by address value
    winners: tuple[str, ...] = ()  # rank order
    note: str = field(default="", compare=False)
    source: str = BLOCKHASH  # where the randomness came from: PREVRANDAO or BLOCKHASH
    value: str = ""  # the randomness, 0x-hex ("" means the block hash)
    # The task's mechanism (the instance) and the delay it was drawn with (0: not recorded,
    # a round drawn before instances); a record, not part of what the draw is.
    mechanism_id: int = field(default=0, compare=False)
    delay: int = field(default=0, compare=False)

    @property
    def seed_input(self) -> str:
        """The randomness the draw used, 0x-hex."""
        return self.value or self.block_hash

    @property
    def short(self) -> bool:
        """Fewer provers drawn than slots open."""
        return self.kind in (DRAWN, NONE) and len(self.winners) < self.open_slots

    def fields(self) -> dict[str, Any]:
        """For a log line: everything needed to recompute the draw."""
        return {
            "task": "0x" + bytes(self.task_id).hex(),
            "mechanism": self.mechanism_id,
            "delay": self.delay,
            "round": self.round,
            "block": self.block,
            "block_hash": self.block_hash,
            "randomness": self.source,
            "randomness_value": self.seed_input,
            "outcome": self.kind,
            "open_slots": self.open_slots,
            "eligible": list(self.eligible),
            "winners": list(self.winners),
        }


def make_round(
    task_id: bytes,
    round_: int,
    block: int,
    block_hash: str,
    timestamp: int,
    assignable_until: int,
    open_slots: int,
    assigned_slots: int,
    eligible: Sequence[str],
    source: str = BLOCKHASH,
    value: str = "",
) -> Draw:
    """A round at randomness block `block`, from the task's slots and eligible set in the
    state after that block (see "Rounds"), drawn from `value` (0x-hex, from `source`; the
    block hash if not given: `randomness` chooses them from the block's header)."""
    if source not in (PREVRANDAO, BLOCKHASH):
        raise ValueError(f"randomness source {source!r}: expected {PREVRANDAO!r} or {BLOCKHASH!r}")
    common: dict[str, Any] = dict(
        task_id=bytes(task_id),
        round=round_,
        block=block,
        block_hash=block_hash,
        timestamp=timestamp,
        source=source,
        value=value if value and value != block_hash else "",
    )
    if timestamp > assignable_until:
        return Draw(kind=OVER, note="assignment window over", **common)
    if open_slots == 0:
        if assigned_slots == 0:
            return Draw(kind=OVER, note="no slot open or assigned", **common)
        return Draw(kind=FULL, note="every slot held: waits for one to reopen", **common)
    eligible = tuple(sorted((to_checksum_address(p) for p in eligible), key=lambda p: int(p, 16)))
    winners = draw(
        task_id,
        eligible,
        bytes.fromhex((value or block_hash).removeprefix("0x")),
        min(open_slots, len(eligible)),
    )
    return Draw(
        kind=DRAWN if winners else NONE, open_slots=open_slots, eligible=eligible, winners=winners, **common
    )


def reports(events: Iterable[Any], frontend: str | None, after: int) -> list[Any]:
    """`frontend`'s TaskAssigned and AssignmentSkipped events among `events`, of blocks
    after `after`: what its assign_batch transactions did with its items."""
    if frontend is None:
        return []
    me = to_checksum_address(frontend)
    return [e for e in events if e.name in REPORTS and e.block > after and _same(e.args["frontend"], me)]


def next_round_block(
    last: Draw | None, posted_block: int, events: Sequence[Any], frontend: str | None, delay: int
) -> int | None:
    """The randomness block of a task's next round, or None while there is none yet (a
    drawn round waiting for `frontend`'s report, a full task waiting for a slot to reopen)
    or ever (over). `events`: the task's registry events known so far (objects with
    `name`, `block` and `args`, as `provingmarket.chain.client.Event`), any order."""
    if delay < 1:
        raise ValueError(f"delay {delay}: the randomness block must come after its trigger (1 or more)")
    if last is None:
        return posted_block + delay
    if last.kind == OVER:
        return None
    if last.kind == NONE:
        return last.block + delay
    if last.kind == DRAWN:
        reported = reports(events, frontend, last.block)
        return min(e.block for e in reported) + delay if reported else None
    reopened = [e for e in events if e.name in REOPENERS and e.block > last.block and e.args.get("reopened")]
    return min(e.block for e in reopened) + delay if reopened else None


@dataclass
class Verdict:
    """What `verify_rounds` found: `matches` is the answer; `lines` say why, round by round."""

    matches: bool
    checked: int  # items of the frontend compared with a draw
    lines: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def verify_rounds(
    rounds: Sequence[Draw], events: Sequence[Any], frontend: str, max_reward: int, delay: int
) -> Verdict:
    """Compare what `frontend` sent for a task (its TaskAssigned and AssignmentSkipped
    events among `events`) with the task's rounds (see "Checking a frontend")."""
    me = to_checksum_address(frontend)
    mine = sorted(reports(events, me, -1), key=lambda e: (e.block, e.log_index))
    explained: set[tuple[int, int]] = set()
    verdict = Verdict(True, 0)
    for i, d in enumerate(rounds):
        head = f"round {d.round} at block {d.block} ({d.block_hash}, randomness: {_source(d)})"
        if d.kind == NONE and i > 0 and rounds[i - 1].kind == NONE:
            continue  # a run of rounds that found nobody: said once, below
        if d.kind == NONE:
            run = list(itertools.takewhile(lambda r: r.kind == NONE, rounds[i:]))
            if len(run) > 1:
                head = f"rounds {d.round} to {run[-1].round} at blocks {d.block} to {run[-1].block}"
        if d.kind != DRAWN:
            verdict.lines.append(f"{head}: {d.kind}" + (f", {d.note}" if d.note else "") + _eligible(d))
            continue
        verdict.lines.append(f"{head}: {d.open_slots} open, drawn {', '.join(d.winners)}{_eligible(d)}")
        explained |= _check_round(d, mine, max_reward, verdict)
    for e in mine:
        if (e.block, e.log_index) not in explained:
            verdict.checked += 1
            verdict.problems.append(
                f"{e.args['prover']} {'assigned' if e.name == 'TaskAssigned' else 'sent'} in block "
                f"{e.block}, which answers no round (rounds so far: "
                f"{', '.join(str(d.block) for d in rounds) or 'none'}; delay {delay})"
            )
    verdict.matches = not verdict.problems and verdict.checked > 0
    return verdict


def _check_round(d: Draw, mine: Sequence[Any], max_reward: int, verdict: Verdict) -> set[tuple[int, int]]:
    """Compare the frontend's first answer after a drawn round with the draw; returns the
    (block, log index) of the events that answer it."""
    after = [e for e in mine if e.block > d.block]
    if not after:
        verdict.lines.append("  not sent yet (pending)")
        return set()
    block = after[0].block
    sent = [e for e in after if e.block == block]
    verdict.checked += len(sent)
    provers = [to_checksum_address(e.args["prover"]) for e in sent]
    outcome = ", ".join(
        f"{p} {'assigned' if e.name == 'TaskAssigned' else 'skipped (' + e.args.get('reason', '') + ')'}"
        for p, e in zip(provers, sent, strict=True)
    )
    verdict.lines.append(f"  sent in block {block}: {outcome}")
    if sorted(provers) != sorted(d.winners):
        verdict.problems.append(f"round {d.round} (block {d.block}): {_mismatch(provers, d.winners)}")
    for e in sent:
        if e.name == "TaskAssigned" and e.args["price"] != max_reward:
            verdict.problems.append(
                f"round {d.round}: {e.args['prover']} assigned at {e.args['price']} wei, "
                f"not the task's max_reward {max_reward}"
            )
    return {(e.block, e.log_index) for e in sent}


def _mismatch(provers: list[str], winners: Sequence[str]) -> str:
    """How the provers sent differ from the provers drawn."""
    extra = sorted(set(provers) - set(winners))
    missing = sorted(set(winners) - set(provers))
    twice = sorted({p for p in provers if provers.count(p) > 1})
    parts = (
        f"sent but not drawn: {', '.join(extra)}" if extra else "",
        f"drawn but not sent: {', '.join(missing)}" if missing else "",
        f"sent twice: {', '.join(twice)}" if twice else "",
    )
    return "; ".join(part for part in parts if part)


def _source(d: Draw) -> str:
    """`prevrandao 0x…` or `the block hash`: what a round was drawn from."""
    return f"prevrandao {d.value}" if d.source == PREVRANDAO else "the block hash"


def _eligible(d: Draw) -> str:
    if d.kind not in (DRAWN, NONE):
        return ""
    return f"; eligible ({len(d.eligible)}): {', '.join(d.eligible) or 'nobody'}"


def _same(a: str, b: str) -> bool:
    return _checksum(a) == b


@lru_cache(maxsize=65_536)
def _checksum(address: str) -> str:
    """to_checksum_address, remembered: the same provers come back draw after draw."""
    return to_checksum_address(address)
