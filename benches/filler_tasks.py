"""One made-up task's events after its post (benches/mirror_filler.py): a race's proofs,
or each slot assigned by its mechanism (an assignment skipped now and then) and then
proven, declined, slashed or voided, and the slots left open closed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from eth_utils.crypto import keccak

from benches.filler_market import MECHANISMS, SKIP_REASONS, Market, Membership
from provingmarket.formats import (
    BINDING_ADDRESS_INPUT,
    BINDING_COMMIT_REVEAL,
    DUTCH,
    ZERO_ADDRESS,
    TaskTerms,
)

if TYPE_CHECKING:
    from benches.filler_world import World


class TaskPlan:
    """One task's events after its post, slot by slot, at their blocks."""

    def __init__(
        self,
        world: World,
        tid: bytes,
        terms: TaskTerms,
        market: Market,
        inputs: list[int],
        block: int,
        churn: bool,
    ):
        self.world = world
        self.rng = world.rng
        self.tid = tid
        self.terms = terms
        self.market = market
        self.inputs = inputs
        self.posted = block
        self.churn = churn  # a long timeline: many skips, declines and slashes
        self.window_end = block + world.blocks(terms.assign_window)
        self.taken: set[str] = set()
        self.escrow = terms.max_reward + terms.frontend_fee

    def frontend(self) -> str:
        mechanism = self.terms.mechanism_id
        return self.rng.choice(self.world.frontends[mechanism]) if mechanism in MECHANISMS else ZERO_ADDRESS

    def candidates(self) -> list[Membership]:
        mechanism = self.terms.mechanism_id
        members = self.market.members
        if mechanism in MECHANISMS:
            members = [m for m in members if mechanism in m.accepts]
        return [m for m in members if m.prover not in self.taken]

    def pick(self, block: int, until: int) -> Membership | None:
        """A member with capacity for [block, until], the busiest winning more often."""
        members = self.candidates()
        if not members:
            return None
        weights = [self.world.weight[m.prover] for m in members]
        for member in self.rng.choices(members, weights, k=6):
            if member.prover not in self.taken and member.free_at(block, until):
                return member
        return None

    def proof(self, prover: str) -> tuple[list[int], bytes]:
        inputs = list(self.inputs)
        if self.market.binding == BINDING_ADDRESS_INPUT:
            inputs[self.market.address_input] = int(prover, 16)
        return inputs, self.rng.randbytes(self.market.proof_size)

    def proven(
        self, block: int, prover: str, frontend: str, slot: int, price: int, tx: str | None = None
    ) -> None:
        world = self.world
        if self.market.binding == BINDING_COMMIT_REVEAL:
            digest = keccak(self.tid + prover.encode())
            world.emit(
                max(self.posted + 1, block - 2),
                "ProofCommitted",
                {"task_id": self.tid, "prover": prover, "digest": digest},
            )
        if self.rng.random() < 0.01:
            skipped = {"task_id": self.tid, "prover": prover, "reason": "registry: invalid proof"}
            world.emit(block - 1, "ProofSkipped", skipped)
        public_inputs, proof = self.proof(prover)
        args = {
            "task_id": self.tid,
            "prover": prover,
            "frontend": frontend,
            "slot": slot,
            "paid": price,
            "fee": self.terms.frontend_fee,
            "refund": self.terms.max_reward - price,
            "public_inputs": public_inputs,
            "proof": proof,
        }
        world.emit(block, "TaskProven", args, tx)

    def race(self) -> None:
        """The open race: each slot goes to the first valid proof (no assignment); a slot
        nobody proves in the proving window is closed then."""
        world, rng = self.world, self.rng
        deadline = self.posted + world.blocks(self.terms.proving_window)
        open_slots = 0
        for slot in range(self.terms.redundancy):
            block = self.posted + rng.randint(2, max(3, deadline - self.posted - 1))
            member = self.pick(block, block) if rng.random() < 0.92 else None
            if member is None:
                open_slots += 1
                continue
            self.taken.add(member.prover)
            self.proven(block, member.prover, ZERO_ADDRESS, slot, self.terms.max_reward)
        if open_slots:
            self.close(deadline + 1, open_slots, cancelled=False)

    def cancel(self) -> None:
        self.close(self.posted + self.rng.randint(1, 5), self.terms.redundancy, cancelled=True)

    def close(self, block: int, slots: int, cancelled: bool, tx: str | None = None) -> None:
        closed = {
            "task_id": self.tid,
            "requester": self.terms.requester,
            "slots": slots,
            "refund": slots * self.escrow,
            "cancelled": cancelled,
        }
        self.world.emit(block, "SlotsClosed", closed, tx)

    def assign_all(self, never: bool) -> None:
        """Every slot assigned by the mechanism (after its auction or election, for those),
        taken to its end; slots still open when the assignment window ends are closed."""
        open_slots = 0
        for slot in range(self.terms.redundancy):
            if never or not self.slot(slot):
                open_slots += 1
        if open_slots:
            self.close(self.window_end + 1, open_slots, cancelled=False)

    def slot(self, slot: int) -> bool:
        """A slot's assignments until it is proven or closed; False if it is open when the
        assignment window ends."""
        delay = {DUTCH: (1, 6), 3: (1, 3), 4: (6, 16), 5: (4, 10)}[self.terms.mechanism_id]
        block: int | None = self.posted + self.rng.randint(*delay)
        while block is not None:
            if block >= self.window_end:
                return False
            proving = self.world.blocks(self.terms.proving_window)
            member = self.pick(block, block + proving + 20)
            if member is None:
                block += self.rng.randint(2, 10)
                continue
            block = self.outcome(slot, block, member, *self.assign(slot, block, member))
        return True

    def assign(self, slot: int, block: int, member: Membership) -> tuple[str, int]:
        """The mechanism assigns the slot to `member` (skipping another first, now and
        then); the frontend and price."""
        world, rng, terms = self.world, self.rng, self.terms
        frontend = self.frontend()
        tx = world.tx()
        if rng.random() < (0.5 if self.churn else 0.03):
            others = [m for m in self.candidates() if m is not member]
            if others:
                skip = {
                    "task_id": self.tid,
                    "prover": rng.choice(others).prover,
                    "frontend": frontend,
                    "reason": rng.choice(SKIP_REASONS),
                }
                world.emit(block, "AssignmentSkipped", skip, tx)
        self.taken.add(member.prover)
        price = min(terms.max_reward, member.ask * rng.randint(100, 160) // 100)
        if terms.mechanism_id == DUTCH:
            rise = (terms.max_reward - terms.start_price) * rng.randint(5, 80) // 100
            price = min(terms.max_reward, terms.start_price + rise)
        assigned = {
            "task_id": self.tid,
            "prover": member.prover,
            "frontend": frontend,
            "slot": slot,
            "price": price,
            "deadline": world.time(block) + terms.proving_window,
        }
        world.emit(block, "TaskAssigned", assigned, tx)
        return frontend, price

    def outcome(self, slot: int, block: int, member: Membership, frontend: str, price: int) -> int | None:
        """What becomes of an assignment made at `block`: proven, declined, slashed or
        voided. The block to assign the slot again from, or None if the slot is done."""
        world, rng = self.world, self.rng
        proving = world.blocks(self.terms.proving_window)
        draw = rng.random()
        if self.churn:
            draw = draw * 0.3 + 0.7  # mostly declines and slashes
        ours = {"task_id": self.tid, "prover": member.prover, "slot": slot}
        if draw < 0.86 or (draw >= 0.99 and not self.market.custom):
            end = block + rng.randint(1, max(1, min(proving - 1, world.blocks(member.proving_time) + 3)))
            member.busy.append((block, end))
            self.proven(end, member.prover, frontend, slot, price)
            return None
        if draw < 0.93:  # declined
            end = block + rng.randint(1, 5)
            member.busy.append((block, end))
            return end + rng.randint(1, 4) if self.reopen(end, "TaskDeclined", ours) else None
        if draw < 0.99:  # slashed once the deadline and grace period are past
            end = block + proving + world.blocks(self.market.grace_period) + rng.randint(1, 3)
            member.busy.append((block, end))
            collateral = self.terms.collateral
            to_requester = collateral * self.market.requester_bps // 10_000
            to_caller = collateral * self.market.caller_bps // 10_000
            slashed = {
                **ours,
                "caller": world.keeper,
                "collateral": collateral,
                "to_requester": to_requester,
                "to_caller": to_caller,
                "burnt": collateral - to_requester - to_caller,
            }
            world.slashed[member.prover] += collateral
            return end + rng.randint(1, 4) if self.reopen(end, "Slashed", slashed) else None
        # voided: the custom verifier's code changed under the assignment
        end = block + rng.randint(1, 10)
        member.busy.append((block, end))
        world.emit(end, "AssignmentVoided", ours)
        return None

    def reopen(self, block: int, name: str, args: dict[str, Any]) -> bool:
        """A decline or slash: inside the assignment window the slot opens again (True);
        after it, the slot's escrow is refunded and the slot closed in the same transaction."""
        reopened = block < self.window_end
        args = {**args, "reopened": reopened}
        if reopened:
            self.world.emit(block, name, args)
        else:
            tx = self.world.tx()
            self.close(block, 1, cancelled=False, tx=tx)
            self.world.emit(block, name, args, tx)
        return reopened
