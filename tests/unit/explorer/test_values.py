"""How the explorer reads what a person types (task ids, prefixes, addresses, page numbers)
and shows amounts and times: what is not well formed is a NotFound naming it, never an
error page; amounts in ether keep every digit shown exact."""

from __future__ import annotations

import pytest

from explorer.app import duration, eth, short
from explorer.inputs import PAGE_SIZE, NotFound, market_number, page_number, pages, prover_key, task_key

TASK = "0x" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (TASK, TASK),
        (TASK.upper().replace("0X", "0x"), TASK),
        ("  0xAB12 ", "0xab12"),
        ("ab12", "0xab12"),
    ],
)
def test_task_key__ids_and_prefixes_any_case__as_stored(text, key):
    assert task_key(text) == key


@pytest.mark.parametrize("text", ["", "0x", "0xzz", "hello", "0x" + "a" * 65, "1 or 1=1", "0x12%", "ab_"])
def test_task_key__not_hex__not_found_saying_what_an_id_is(text):
    with pytest.raises(NotFound) as missing:
        task_key(text)
    assert "not a task id" in missing.value.what and "64 hex digits" in missing.value.hint


def test_prover_key__any_case__checksummed():
    address = "0x90F79bf6EB2c4f870365E785982E1f101E93b906"
    assert prover_key(address.lower()) == address
    assert prover_key(address.upper().replace("0X", "0x")) == address


@pytest.mark.parametrize("text", ["0x12", "alice", "0x" + "g" * 40, ""])
def test_prover_key__not_an_address__not_found(text):
    with pytest.raises(NotFound) as missing:
        prover_key(text)
    assert "not an address" in missing.value.what


@pytest.mark.parametrize(("text", "page"), [(None, 1), ("", 1), ("1", 1), ("7", 7), (3, 3)])
def test_page_number__given_or_first(text, page):
    assert page_number(text) == page


@pytest.mark.parametrize("text", ["0", "-1", "x", "1.5", str(10**30)])
def test_page_number__not_a_page__not_found(text):
    with pytest.raises(NotFound):
        page_number(text)


def test_pages__last_page_holds_the_rest__past_it_not_found():
    paging = pages(PAGE_SIZE * 2 + 1, 3, "tasks")
    assert (paging["pages"], paging["offset"]) == (3, PAGE_SIZE * 2)
    assert pages(0, 1, "tasks")["pages"] == 1  # an empty list still has its first page
    with pytest.raises(NotFound) as missing:
        pages(PAGE_SIZE * 2 + 1, 4, "tasks")
    assert missing.value.what == "there is no page 4 of tasks" and missing.value.hint == "there are 3"


@pytest.mark.parametrize(
    ("wei", "shown"),
    [
        (0, "0 ETH"),
        (10**18, "1 ETH"),
        (10_400_000_000_000_000, "0.0104 ETH"),
        (1, "1 wei"),
        (123_456_789, "123,456,789 wei"),
        (-5 * 10**17, "-0.5 ETH"),
        (None, "–"),
    ],
)
def test_eth__ether_without_trailing_zeros__dust_in_wei(wei, shown):
    assert eth(wei) == shown


def test_duration_and_short():
    shown = [duration(s) for s in (0, 59, 125, 7300, 3 * 86400)]
    assert shown == ["0 s", "59 s", "2 min 5 s", "2 h 1 min", "3 d 0 h"]
    assert duration(-30) == "-30 s"
    assert short("0x90F79bf6EB2c4f870365E785982E1f101E93b906") == "0x90F79b…b906"


@pytest.mark.parametrize("text", ["x", "-1", "1.0", str(2**63), str(2**256)])
def test_market_number__not_one_the_mirror_can_hold__not_found(text):
    """2**63 and up cannot be a mirrored market (SQLite's integers end there): a 404, not
    an overflow binding it (the fuzz found /tasks?market=9223372036854775808 answering 500)."""
    with pytest.raises(NotFound) as missing:
        market_number(text)
    assert "not a market number" in missing.value.what


def test_market_number__a_number():
    assert market_number("3") == 3 and market_number(str(2**63 - 1)) == 2**63 - 1
