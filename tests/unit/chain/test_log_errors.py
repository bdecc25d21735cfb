"""How the log reader (provingmarket/chain/logs.py) reads the errors providers return for
eth_getLogs: which ones narrow the page (and to what), which are retried, which end the
read; the proxy's messages (provingmarket/devnet/rpc_proxy.py) read as the real ones."""

from __future__ import annotations

import pytest
import requests
from web3 import Web3
from web3.exceptions import Web3RPCError

from provingmarket.chain.logs import (
    LOG_BLOCKS_ENV,
    OTHER,
    RANGE,
    RATE,
    SIZE,
    TIMEOUT,
    TRANSIENT,
    LogReader,
    LogsError,
    classify,
    parse,
)
from provingmarket.devnet.rpc_proxy import STYLES, range_message, size_message

ALCHEMY = (
    "Log response size exceeded. You can make eth_getLogs requests with up to a 2K block range and "
    "no limit on the response size, or you can request any block range with a cap of 10K logs in "
    "the response. Based on your parameters, this block range should work: [0x1a2b3c, 0x1a3fff]"
)


@pytest.mark.parametrize(
    ("message", "kind", "suggested", "limit"),
    [
        (ALCHEMY, SIZE, (0x1A2B3C, 0x1A3FFF), None),
        (
            "query returned more than 10000 results. Try with this block range [0x10, 0x2f].",
            SIZE,
            (0x10, 0x2F),
            None,
        ),
        ("query returned more than 10000 results", SIZE, None, None),
        ("eth_getLogs is limited to a 10,000 range", RANGE, None, 10_000),
        ("exceed maximum block range: 5000", RANGE, None, 5_000),
        ("query exceeds max block range 3", RANGE, None, 3),
        ("block range is too wide", RANGE, None, None),
        ("range too large", RANGE, None, None),
        ("ranges over 2K blocks are not supported: block range too large", RANGE, None, 2_000),
        ("response size exceeded", SIZE, None, None),
        ("limit exceeded", SIZE, None, None),
        ("Your app has exceeded its compute units per second capacity", RATE, None, None),
        ("rate limit exceeded", RATE, None, None),
        ("request timed out", TIMEOUT, None, None),
        ("header not found", TRANSIENT, None, None),
        ("invalid argument 0: hex string without 0x prefix", OTHER, None, None),
    ],
)
def test_parse__provider_messages__read_as_what_they_mean(message, kind, suggested, limit):
    failure = parse(message)
    assert (failure.kind, failure.suggested, failure.limit) == (kind, suggested, limit)


def test_classify__json_rpc_errors__the_nodes_message_is_read():
    rpc = Web3RPCError(
        "{'code': -32614, 'message': 'eth_getLogs is limited to a 10,000 range'}",
        rpc_response={
            "jsonrpc": "2.0",
            "id": 1,
            "error": {"code": -32614, "message": "eth_getLogs is limited to a 10,000 range"},
        },  # noqa: E501
    )
    assert (classify(rpc).kind, classify(rpc).limit) == (RANGE, 10_000)
    old_style = ValueError({"code": -32005, "message": "query returned more than 10000 results"})
    assert classify(old_style).kind == SIZE


def http_error(status: int, retry_after: str | None = None) -> requests.HTTPError:
    response = requests.Response()
    response.status_code = status
    response.reason = "x"
    if retry_after is not None:
        response.headers["Retry-After"] = retry_after
    return requests.HTTPError(f"{status}", response=response)


def test_classify__http_failures__retried_with_the_wait_the_provider_asks():
    assert (classify(http_error(429, "2")).kind, classify(http_error(429, "2")).retry_after) == (RATE, 2.0)
    assert classify(http_error(503)).kind == TRANSIENT
    assert classify(http_error(502)).kind == TRANSIENT
    assert classify(requests.Timeout("read timed out")).kind == TIMEOUT
    assert classify(requests.ConnectionError("refused")).kind == TRANSIENT


def test_classify__not_a_nodes_answer__raised_as_it_is():
    assert classify(KeyError("blockNumber")) is None
    assert classify(TypeError("bad")) is None


@pytest.mark.parametrize("style", STYLES)
def test_proxy_messages__each_style__narrows_the_page(style):
    _, ranged = range_message(style, 100, 9_000, 2_000)
    _, sized = size_message(style, 100, 150, 10_000)
    assert parse(ranged).kind in (RANGE, SIZE)
    assert parse(sized).kind == SIZE
    if parse(ranged).suggested is not None:
        assert parse(ranged).suggested == (100, 2_099)
    elif parse(ranged).kind == RANGE:
        assert parse(ranged).limit == 2_000


def test_reader__page_from_the_environment__first_and_largest_page(monkeypatch):
    monkeypatch.setenv(LOG_BLOCKS_ENV, "5_000")
    reader = LogReader(Web3())
    assert (reader.page, reader.ceiling) == (5_000, 5_000)
    assert LogReader(Web3(), max_blocks=100).page == 100  # an argument wins
    monkeypatch.setenv(LOG_BLOCKS_ENV, "lots")
    with pytest.raises(LogsError, match=f"{LOG_BLOCKS_ENV}='lots' is not a number of blocks"):
        LogReader(Web3())
