"""What the client parses from a person: ether amounts, addresses and task ids, and the
errors saying what is wrong."""

from __future__ import annotations

import pytest

from provingmarket.chain.client import (
    ClientError,
    format_ether,
    parse_address,
    parse_ether,
    parse_task_id,
)
from tests.factories import ETHER


@pytest.mark.parametrize(
    "text, wei",
    [("1", ETHER), ("0.25", ETHER // 4), ("0.000000000000000001", 1), ("12.5", 12 * ETHER + ETHER // 2)],
)
def test_parse_ether__amounts_people_write(text, wei):
    assert parse_ether(text) == wei
    assert parse_ether(format_ether(wei).removesuffix(" ETH")) == wei


@pytest.mark.parametrize(
    "text, says",
    [
        ("-1", "is negative"),
        ("0.0000000000000000001", "more than 18 decimals"),
        ("1e18", "not a number of ETH"),
        ("one", "not a number of ETH"),
        ("", "not a number of ETH"),
    ],
)
def test_parse_ether__bad_amounts__say_what_is_wrong(text, says):
    with pytest.raises(ClientError, match=says):
        parse_ether(text, "--amount")


def test_parse_address_and_task_id():
    checksummed = "0x90F79bf6EB2c4f870365E785982E1f101E93b906"
    assert parse_address(checksummed.lower()) == checksummed
    assert parse_address(checksummed) == checksummed
    with pytest.raises(ClientError, match="bad checksum"):
        parse_address(checksummed.replace("F79", "f79"))
    with pytest.raises(ClientError, match="not an address"):
        parse_address("0x123")
    assert parse_task_id("0x" + "ab" * 32) == b"\xab" * 32
    for bad in ("0x1234", "0x" + "zz" * 32, "nope"):
        with pytest.raises(ClientError, match="not a task id"):
            parse_task_id(bad)
