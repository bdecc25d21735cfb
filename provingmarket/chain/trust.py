"""Which markets a prover takes work in: the registry's verifier trust model, from the
prover's side.

A market whose verifier the registry deployed from its Groth16 blueprint is trusted: its
answers cannot change. Any other market is `custom`: its verifier may answer from
storage or from other contracts, so a proof that verifies today may be refused tomorrow
(and the prover slashed). A prover takes part in a custom market only after reviewing
its verifier's code, and says so by naming the code hash it reviewed (`--trust-verifier`
for `ape run prover join` and the agent); the registry records that hash at the market's
creation and freezes the market if the code ever changes (no proofs; live assignments
are voided, not slashed).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable

from provingmarket.chain.client import ClientError, Market

_CODEHASH = re.compile(r"0x[0-9a-fA-F]{64}")


def parse_codehash(value: str, what: str = "--trust-verifier") -> bytes:
    """A verifier's code hash as a person writes it (0x and 64 hex digits)."""
    text = str(value).strip()
    if not _CODEHASH.fullmatch(text):
        raise ClientError(
            f"{what} {value!r} is not a code hash (0x and 64 hex digits): give the keccak256 of the "
            "verifier's runtime code you reviewed, as `ape run prover join` prints it for a custom market"
        )
    return bytes.fromhex(text[2:])


def parse_codehashes(values: Iterable[str], what: str = "--trust-verifier") -> frozenset[bytes]:
    return frozenset(parse_codehash(value, what) for value in values)


def hex32(value: bytes) -> str:
    return "0x" + bytes(value).hex()


def untrusted(market: Market, trusted: Collection[bytes]) -> str | None:
    """Why a prover that reviewed the verifiers of code hashes `trusted` should take no
    work in `market`, or None when it may."""
    codehash = bytes(market.codehash)
    if not market.custom or codehash in trusted:
        return None
    wanted = hex32(codehash)
    if trusted:
        given = ", ".join(sorted(hex32(h) for h in trusted))
        return (
            f"market {market.market_id} is custom and --trust-verifier {given} is not its verifier's "
            f"code hash: verifier {market.verifier} has code hash {wanted}; review the verifier's code, "
            f"then pass --trust-verifier {wanted} to take part"
        )
    return (
        f"market {market.market_id} is custom: its verifier {market.verifier} was not deployed by the "
        f"registry, so what it accepts may change; review the verifier's code, then pass "
        f"--trust-verifier {wanted} (its code hash) to take part"
    )


def frozen(market: Market) -> str | None:
    """Why no work can be done in `market` any more, or None."""
    if not market.frozen:
        return None
    return (
        f"market {market.market_id} is frozen: its verifier {market.verifier}'s code is no longer the "
        f"code hash {hex32(market.codehash)} recorded at its creation; the registry refuses proofs "
        "there and voids live assignments"
    )


__all__ = ["frozen", "parse_codehash", "parse_codehashes", "untrusted"]
