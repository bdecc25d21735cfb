"""The sealed-bid auction (frontends/auction/mechanism.py) over snapshots, with no chain: the second
price, N winners at the (N+1)th price, a single bid paid the maximum, no bids, ties by
the earlier bid, one bid per prover, every registry rule that drops a bid (with the
resources earlier auctions of the round took), revoked nonces and expiry; on random bid
sets, an independent check of the rule. And the API's signature check against the
registry's own digest and rules (v, low s, the signer), its rate limiter, the bid store
(replacement, cap, replay, closed auctions) and its guard turning a bug into a 503."""

from __future__ import annotations

import pytest
from eth_account import Account
from eth_account.messages import _hash_eip191_message, encode_typed_data
from hypothesis import given, settings
from hypothesis import strategies as st

from frontends.auction.api import SECP256K1_HALF_N, RateLimiter, recover_bidder
from frontends.auction.mechanism import SealedBid, clear_auctions
from frontends.book import MarketState, MembershipState, OpenTask, ProverState, Snapshot
from provingmarket import rules
from provingmarket.errors import Refusal
from provingmarket.formats import TaskTerms, bid_digest, bid_typed_data, sign_bid
from tests.factories import offchain_member, offchain_terms

MECHANISM = 5
NOW = 1_000
MAX = 100  # the tasks' max_reward
REQUESTER = "0x" + "99" * 20
A, B, C, D, E = ("0x" + c * 40 for c in "abcde")


def terms(**overrides) -> TaskTerms:
    return offchain_terms(
        **{
            "requester": REQUESTER,
            "posted_at": NOW - 10,
            "max_reward": MAX,
            "mechanism_id": MECHANISM,
            **overrides,
        }
    )


def task(number: int = 1, open_slots: int | None = None, barred=(), **overrides) -> OpenTask:
    t = terms(salt=number, **overrides)
    return OpenTask(number.to_bytes(32, "big"), t, t.redundancy if open_slots is None else open_slots, barred)


def member(prover: str, **overrides) -> MembershipState:
    # asks play no part: a signed bid sets the least price
    return offchain_member(prover, **{"ask": 90, "mechanisms": frozenset({MECHANISM}), **overrides})


def snapshot(tasks, members=None, stakes=None, paused=False, now=NOW) -> Snapshot:
    members = members if members is not None else [member(p) for p in (A, B, C, D, E)]
    provers = {m.prover: 1_000 for m in members}
    provers.update(stakes or {})
    return Snapshot(
        now=now,
        mechanisms={MECHANISM},
        markets=[MarketState(1, paused)],
        provers=[ProverState(p, s) for p, s in provers.items()],
        memberships=members,
        tasks=tasks,
    )


def bid(prover: str, price: int, seq: int, expiry: int = NOW + 3_600, nonce: int = 0) -> SealedBid:
    return SealedBid(f"{prover[2:4]}-{seq}", prover, price, expiry, nonce, bytes([seq % 256]) * 65, seq)


def clear_one(t: OpenTask, bids, snap: Snapshot | None = None, nonces=None, mined_at=None):
    [result] = clear_auctions(snap or snapshot([t]), [(t, bids)], nonces or {}, mined_at)
    return result


def paid(result) -> list[tuple[str, int]]:
    return [(d.prover, d.price) for d in result.decisions]


# ------------------------------------------------------------------ outcomes


def test_one_slot__the_lowest_bid_wins__paid_the_second_lowest():
    t = task()
    result = clear_one(t, [bid(A, 30, 1), bid(B, 10, 2), bid(C, 20, 3)])
    assert paid(result) == [(B, 20)]
    assert result.price == 20
    assert result.won == ("bb-2",) and set(result.lost) == {"cc-3", "aa-1"}
    assert not result.dropped


def test_n_slots__the_n_lowest_win__each_paid_the_n_plus_first_price():
    t = task(redundancy=2)
    result = clear_one(t, [bid(A, 40, 1), bid(B, 10, 2), bid(C, 30, 3), bid(D, 20, 4)])
    assert paid(result) == [(B, 30), (D, 30)]
    assert "3rd lowest price" in result.note


def test_n_slots__open_slots_not_redundancy_set_n():
    t = task(redundancy=3, open_slots=1)  # two slots taken already
    result = clear_one(t, [bid(A, 40, 1), bid(B, 10, 2), bid(C, 30, 3)])
    assert paid(result) == [(B, 30)]


def test_single_bid__wins_at_the_tasks_maximum():
    result = clear_one(task(), [bid(A, 25, 1)])
    assert paid(result) == [(A, MAX)]
    assert "maximum" in result.note


def test_as_many_bids_as_slots__all_win_at_the_maximum():
    result = clear_one(task(redundancy=3), [bid(A, 25, 1), bid(B, 5, 2)])
    assert paid(result) == [(B, MAX), (A, MAX)]


def test_no_bids__no_decision__noted():
    result = clear_one(task(), [])
    assert result.decisions == () and result.price is None
    assert result.note == "no bids"


def test_equal_prices__the_earlier_bid_wins_and_sets_no_lower_price():
    result = clear_one(task(), [bid(A, 10, 2), bid(B, 10, 1), bid(C, 50, 3)])
    assert paid(result) == [(B, 10)]


def test_a_provers_later_bid_replaces_its_earlier_one_and_takes_its_own_time():
    # A bid 10 first, then 50: its 50 stands and is behind B's 50 (B was earlier).
    result = clear_one(task(), [bid(A, 10, 1), bid(B, 50, 2), bid(A, 50, 3), bid(C, 60, 4)])
    assert paid(result) == [(B, 50)]
    assert result.dropped["aa-1"].code == "replaced"
    assert "aa-3" in result.lost


def test_decisions_carry_the_signed_bid_the_registry_checks():
    t = task()
    [d] = clear_one(t, [bid(A, 30, 7, expiry=5_000, nonce=2), bid(B, 40, 8)], nonces={A: 2}).decisions
    assert d.as_item() == (t.terms.as_tuple(), A, 40, 30, 5_000, 2, bytes([7]) * 65)


# ------------------------------------------------------------------ dropped bids


@pytest.mark.parametrize(
    "members, stakes, barred, code",
    [
        ([member(B)], {}, (), "not_in_market"),
        ([member(A, mechanisms={MECHANISM + 1}), member(B)], {}, (), "mechanism_not_accepted"),
        ([member(A, capacity=2, used=2), member(B)], {}, (), "at_capacity"),
        ([member(A), member(B)], {A: 9}, (), "not_enough_stake"),
        ([member(A, capabilities=0b01), member(B, capabilities=0b11)], {}, (), "lacks_capabilities"),
        ([member(A, proving_time=301), member(B)], {}, (), "too_slow"),
        ([member(A), member(B)], {}, (A,), "barred"),
    ],
)
def test_ineligible_bidder__dropped_with_the_reason__the_price_comes_from_eligible_bids(
    members, stakes, barred, code
):
    t = task(barred=barred, capabilities=0b10 if code == "lacks_capabilities" else 0)
    result = clear_one(t, [bid(A, 5, 1), bid(B, 10, 2)], snapshot([t], members, stakes))
    assert paid(result) == [(B, MAX)]  # A's lower bid neither wins nor sets B's price
    assert result.dropped["aa-1"].code == code


def test_bid_above_the_maximum__dropped():
    result = clear_one(task(), [bid(A, MAX + 1, 1), bid(B, 10, 2)])
    assert paid(result) == [(B, MAX)]
    assert result.dropped["aa-1"].code == "price_above_maximum"


def test_revoked_nonce__dropped__the_current_one_counts():
    nonces = {A: 1, B: 1}
    result = clear_one(task(), [bid(A, 5, 1, nonce=0), bid(B, 10, 2, nonce=1), bid(C, 20, 3)], nonces=nonces)
    assert paid(result) == [(B, 20)]
    assert result.dropped["aa-1"].code == "revoked"
    assert "nonce is now 1" in result.dropped["aa-1"].reason


def test_expired_before_the_assignment_is_mined__dropped():
    bids = [bid(A, 5, 1, expiry=NOW + 3), bid(B, 10, 2, expiry=NOW + 4), bid(C, 20, 3)]
    result = clear_one(task(), bids, mined_at=NOW + 4)
    assert paid(result) == [(B, 20)]
    assert result.dropped["aa-1"].code == "expired"


def test_task_window_over_or_market_paused__every_bid_dropped():
    t = task(posted_at=NOW - 600, assign_window=600)
    late = clear_one(t, [bid(A, 5, 1)], mined_at=NOW + 1)
    assert late.decisions == () and late.dropped["aa-1"].code == "task_expired"
    paused = clear_one(task(), [bid(A, 5, 1)], snapshot([task()], paused=True))
    assert paused.decisions == () and paused.dropped["aa-1"].code == "market_paused"


def test_all_bids_ineligible__no_decision():
    result = clear_one(task(), [bid(A, 5, 1, nonce=3)])
    assert result.decisions == () and result.note == "no eligible bids (1 dropped)"


def test_auctions_of_one_round__a_winner_uses_capacity_and_stake_later_auctions_see():
    first, second, third = task(1), task(2), task(3, collateral=600)
    snap = snapshot([first, second, third], [member(A, capacity=2), member(B), member(C)], stakes={A: 1_000})
    results = clear_auctions(
        snap,
        [
            (first, [bid(A, 5, 1), bid(B, 10, 2)]),
            (second, [bid(A, 5, 3), bid(C, 10, 4)]),
            (third, [bid(A, 5, 5), bid(B, 10, 6)]),
        ],
        {},
    )
    assert [paid(r) for r in results] == [[(A, 10)], [(A, 10)], [(B, MAX)]]
    # A's capacity of 2 went to the first two; and its stake (1,000 - 2 x 10) covers no 600
    assert results[2].dropped["aa-5"].code == "at_capacity"


def test_a_prover_short_of_stake_after_an_earlier_win__dropped_from_the_next():
    first, second = task(1, collateral=600), task(2, collateral=600)
    snap = snapshot([first, second], stakes={A: 1_000})
    results = clear_auctions(snap, [(first, [bid(A, 5, 1)]), (second, [bid(A, 5, 2), bid(B, 7, 3)])], {})
    assert paid(results[1]) == [(B, MAX)]
    assert results[1].dropped["aa-2"].code == "not_enough_stake"


# ------------------------------------------------------------------ the rule, on random bid sets

PROVERS = ["0x" + f"{i:040x}" for i in range(1, 9)]


@settings(max_examples=200, deadline=None)
@given(
    slots=st.integers(1, 4),
    offers=st.lists(st.tuples(st.sampled_from(PROVERS), st.integers(0, 120)), max_size=12),
)
def test_random_bids__winners_are_the_lowest_distinct_latest_bids_paid_a_uniform_price(slots, offers):
    t = task(redundancy=slots)
    bids = [bid(p, price, seq) for seq, (p, price) in enumerate(offers, 1)]
    result = clear_one(t, bids, snapshot([t], [member(p) for p in PROVERS]))

    latest = {}
    for b in bids:
        latest[b.prover] = b
    eligible = sorted((b for b in latest.values() if b.min_price <= MAX), key=lambda b: (b.min_price, b.seq))
    expected_price = eligible[slots].min_price if len(eligible) > slots else MAX
    assert [d.prover for d in result.decisions] == [b.prover for b in eligible[:slots]]
    assert len({d.prover for d in result.decisions}) == len(result.decisions)
    for d in result.decisions:
        assert d.price == expected_price and d.min_price <= d.price <= MAX
    assert len(result.won) + len(result.lost) + len(result.dropped) == len(bids)


# ------------------------------------------------------------------ the signature check

KEY = "0x" + "42" * 32
SIGNER = Account.from_key(KEY).address
REGISTRY = "0x" + "12" * 20
TASK = b"\x07" * 32
N = SECP256K1_HALF_N * 2 + 1  # the curve's order


def test_signature__recovers_the_prover_with_the_registrys_digest():
    signature = sign_bid(KEY, 1337, REGISTRY, TASK, 10, 2_000, 0)
    assert recover_bidder(1337, REGISTRY, TASK, 10, 2_000, 0, signature) == SIGNER
    # any other term, chain or registry recovers someone else
    assert recover_bidder(1337, REGISTRY, TASK, 11, 2_000, 0, signature) != SIGNER
    assert recover_bidder(1, REGISTRY, TASK, 10, 2_000, 0, signature) != SIGNER


def test_signature__high_s_and_bad_v_refused_like_the_registry():
    signature = sign_bid(KEY, 1337, REGISTRY, TASK, 10, 2_000, 0)
    r, s, v = signature[:32], int.from_bytes(signature[32:64], "big"), signature[64]
    flipped = r + (N - s).to_bytes(32, "big") + bytes([55 - v])  # the same signer, high s
    with pytest.raises(Refusal) as refused:
        recover_bidder(1337, REGISTRY, TASK, 10, 2_000, 0, flipped)
    assert refused.value.code == "malleable_signature"
    with pytest.raises(Refusal) as refused:
        recover_bidder(1337, REGISTRY, TASK, 10, 2_000, 0, signature[:64] + bytes([v - 27]))
    assert refused.value.code == "bad_signature_v"
    with pytest.raises(Refusal) as refused:
        recover_bidder(1337, REGISTRY, TASK, 10, 2_000, 0, b"\x00" * 64 + b"\x1b")
    assert refused.value.code == "bad_signature"


UINT = st.integers(0, 2**256 - 1)


@settings(max_examples=60, deadline=None)
@given(
    key=st.binary(min_size=32, max_size=32).filter(lambda k: 0 < int.from_bytes(k, "big") < N),
    task_id=st.binary(min_size=32, max_size=32),
    terms=st.tuples(UINT, UINT, UINT),
    chain_id=st.integers(1, 2**64),
    forged=st.one_of(st.none(), st.binary(min_size=64, max_size=64)),
)
def test_signature__the_fast_digest_and_recovery_agree_with_the_registrys_rules(
    key, task_id, terms, chain_id, forged
):
    """`recover_bidder`'s own EIP-712 digest and recovery name the same signer as
    `rules.signer_of` (eth_account's generic encoder), or refuse what it refuses."""
    signature = sign_bid(key, chain_id, REGISTRY, task_id, *terms)
    if forged is not None:  # random r and s: a low s may recover someone, or no one
        signature = forged + signature[64:]
    reason, signer = rules.signer_of(chain_id, REGISTRY, task_id, rules.Bid(*terms, signature))
    if reason:
        with pytest.raises(Refusal):
            recover_bidder(chain_id, REGISTRY, task_id, *terms, signature)
    else:
        assert recover_bidder(chain_id, REGISTRY, task_id, *terms, signature) == signer
    assert bid_digest(chain_id, REGISTRY, task_id, *terms) == _hash_eip191_message(
        encode_typed_data(full_message=bid_typed_data(chain_id, REGISTRY, task_id, *terms))
    )


def test_rate_limiter__a_burst_then_the_rate():
    limiter = RateLimiter(rate=1, burst=3)
    assert [limiter.take("x") for _ in range(3)] == [0, 0, 0]
    assert limiter.take("x") > 0
    assert limiter.take("y") == 0  # by key
    assert RateLimiter(rate=0, burst=1).take("x") == 0  # no limit


# ------------------------------------------------------------------ the store and the API's guard


def test_store__a_provers_later_bid_replaces_its_earlier__capped__none_once_closed(tmp_path):
    from frontends.auction.store import AuctionStore, StoreRefusal

    store = AuctionStore(str(tmp_path / "a.sqlite"))
    t = task()
    row = store.open_auction(t, 1, NOW, NOW + 10)
    first = store.add_bid(row.task_id, 1, A, 10, 5_000, 0, b"\x01" * 65, cap=2)
    second = store.add_bid(row.task_id, 1, A, 20, 5_000, 0, b"\x02" * 65, cap=2)
    assert store.bid(first.bid_id).status == "replaced" and second.status == "sealed"
    assert store.auction(row.task_id).bids == 1  # one bidder's latest
    with pytest.raises(StoreRefusal) as refused:
        store.add_bid(row.task_id, 1, A, 30, 5_000, 0, b"\x03" * 65, cap=2)
    assert refused.value.code == "too_many"
    with pytest.raises(StoreRefusal) as refused:
        store.add_bid(row.task_id, 1, B, 30, 5_000, 0, b"\x02" * 65, cap=2)
    assert refused.value.code == "replayed"

    [result] = clear_auctions(
        snapshot([t]), [(t, [b.sealed() for b in store.sealed_bids(row.task_id, 1)])], {}
    )
    with store.transaction():
        store.record(row, result, NOW + 10, 7)
    assert store.bid(second.bid_id).status == "won" and store.bid(second.bid_id).price == MAX
    with pytest.raises(StoreRefusal) as refused:
        store.add_bid(row.task_id, 1, B, 30, 5_000, 0, b"\x04" * 65, cap=2)
    assert refused.value.code == "closed"
    # a second connection (the API's) reads the same
    assert AuctionStore(str(tmp_path / "a.sqlite")).auction(row.task_id).state == "closed"


def test_api__an_unexpected_error__answers_503_with_no_trace_and_logs_it(caplog):
    import asyncio

    from frontends.auction.api import make_app
    from frontends.auction.store import AuctionStore

    store = AuctionStore(":memory:")

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    store.bid = broken
    app = make_app(lambda: None, store)
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    path = "/bids/" + "0" * 32
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "headers": [], "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
    }  # fmt: skip
    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 503
    assert b"disk on fire" not in sent[1]["body"] and b"Traceback" not in sent[1]["body"]
    assert "disk on fire" in caplog.text
