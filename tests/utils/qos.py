"""A task's measured QoS built by hand (provingmarket.market.qos.TaskQoS), for tests of the
utility and the router: what matters is when the proofs came, what was spent and how
many provers could take part; the rest is a fixed auction task in market 1."""

from __future__ import annotations

from provingmarket.formats import TaskTerms
from provingmarket.market.qos import TaskQoS


def task_qos(
    proof_times: tuple[int, ...],
    spent: int,
    *,
    least: int,
    could: int,
    redundancy: int | None = None,
    refunded: int | None = None,
    min_reward: int | None = None,
    fees: int = 0,
    collateral: int = 10,
    task_id: str = "0x" + "01" * 32,
) -> TaskQoS:
    """Proofs at `proof_times` seconds after posting, `spent` in all (`fees` of it to the
    frontend), in a market whose least reward is `least`; the redundancy defaults to the
    proofs (at least 1) and the refunded slots to those without a proof."""
    redundancy = redundancy or max(1, len(proof_times))
    terms = TaskTerms(
        market_id=1,
        requester="0x" + "99" * 20,
        posted_at=1_000,
        inputs_commitment=b"\x01" * 32,
        prover_input_hash=b"\x02" * 32,
        max_reward=10 * least,
        frontend_fee=0,
        assign_window=600,
        proving_window=300,
        collateral=collateral,
        capabilities=0,
        redundancy=redundancy,
        mechanism_id=3,
        start_price=0,
        ramp=0,
        decay=False,
        decay_floor=0,
    )
    return TaskQoS(
        task_id=task_id,
        market_id=1,
        mechanism_id=3,
        mechanism="auction",
        requester=terms.requester,
        posted_at=1_000,
        terms=terms,
        min_reward=least if min_reward is None else min_reward,
        assigned_after=0 if proof_times else None,
        proof_times=tuple(proof_times),
        provers=tuple(f"0x{i:040x}" for i in range(len(proof_times))),
        paid=spent - fees,
        fees=fees,
        slashes=0,
        could=could,
        took_part=len(proof_times),
        refunded=redundancy - len(proof_times) if refunded is None else refunded,
        cancelled=False,
    )
