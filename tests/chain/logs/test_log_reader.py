"""The paged log reader (provingmarket/chain/logs.py) on anvil, through a proxy with a
public provider's limits (provingmarket/devnet/rpc_proxy.py: 2,000 blocks a query, a
cap on logs an answer, calls failing at random): every log of a history wider than the
limit arrives once and in order, whatever the provider's error messages; the limit learnt
is kept for the next read; a provider that keeps failing, or a block with more logs than
it returns, ends the read with an error saying so."""

from __future__ import annotations

import pytest
import requests
from web3 import Web3

from provingmarket.chain.logs import LogReader, LogsError
from provingmarket.devnet.rpc_proxy import STYLES, RpcProxy

# EVM code logging one topic, its calldata's first word: PUSH1 0 CALLDATALOAD PUSH1 0
# PUSH1 0 LOG1 STOP.
EMITTER_CODE = "0x60003560006000a100"
EMITTER = Web3.to_checksum_address("0x" + "e1" * 20)
GAP = 700  # empty blocks between groups of logs (anvil mines about 1,000 a second)
GROUPS = 4


def mine(web3: Web3, blocks: int) -> None:
    web3.provider.make_request("anvil_mine", [hex(blocks)])  # type: ignore[arg-type]


def emit(web3: Web3, *topics: int) -> None:
    """One block holding a log per topic, in this order."""
    web3.provider.make_request("evm_setAutomine", [False])  # type: ignore[arg-type]
    try:
        for topic in topics:
            web3.eth.send_transaction(
                {"from": web3.eth.accounts[0], "to": EMITTER, "data": Web3.to_hex(topic.to_bytes(32, "big"))}
            )
        mine(web3, 1)
    finally:
        web3.provider.make_request("evm_setAutomine", [True])  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def history(chain):
    """GROUPS groups of logs GAP blocks apart (a block of three logs, then two blocks of
    one), over more than 2,000 blocks: (first block, last block, every log as anvil
    returns it to one query)."""
    web3 = chain.provider.web3
    web3.provider.make_request("anvil_setCode", [EMITTER, EMITTER_CODE])
    first = web3.eth.block_number + 1
    topic = 0
    for group in range(GROUPS):
        if group:
            mine(web3, GAP)
        emit(web3, topic, topic + 1, topic + 2)
        emit(web3, topic + 3)
        emit(web3, topic + 4)
        topic += 5
    last = web3.eth.block_number
    logs = web3.eth.get_logs({"address": EMITTER, "fromBlock": first, "toBlock": last})
    assert last - first + 1 > 2_000 and len(logs) == 5 * GROUPS
    return first, last, logs


def seen(logs) -> list[tuple[int, int, int]]:
    """(block, log index, topic) of each log."""
    return [(e["blockNumber"], e["logIndex"], int.from_bytes(e["topics"][0], "big")) for e in logs]


def through(proxy: RpcProxy) -> Web3:
    """A connection to the proxy without web3's own retries: the reader's are tested."""
    return Web3(Web3.HTTPProvider(proxy.uri, exception_retry_configuration=None))


@pytest.mark.parametrize("style", STYLES)
def test_read__history_wider_than_the_providers_limits__every_log_once_in_order(chain, history, style):
    first, last, expected = history
    limits = {"max_blocks": 2_000, "max_logs": 4, "style": style}
    with RpcProxy(chain.provider.uri, **limits, failure_rate=0.25, seed=3) as proxy:
        reader = LogReader(through(proxy), attempts=8, backoff=0)
        logs = reader.logs(EMITTER, first, last)
        learnt = reader.page

        assert seen(logs) == seen(expected)
        assert [t for _, _, t in seen(logs)] == list(range(5 * GROUPS))
        assert proxy.stats["refused.range"] + proxy.stats["refused.size"] > 0
        assert sum(n for k, n in proxy.stats.items() if k.startswith("failed.")) > 0
        assert learnt is not None and learnt <= 2_000

        # Narrowed by topic and over part of the range: the same logs as the node's own.
        middle = expected[7]["blockNumber"]
        topic = expected[7]["topics"][0]
        assert seen(reader.logs(EMITTER, middle, last, [topic])) == seen(expected[7:8])


def test_read__limit_learnt__kept_for_the_next_read(chain, history):
    first, last, expected = history
    with RpcProxy(chain.provider.uri, max_blocks=2_000, style="quicknode") as proxy:
        reader = LogReader(through(proxy))
        assert seen(reader.logs(EMITTER, first, last)) == seen(expected)
        refused = proxy.stats["refused.range"]
        assert refused >= 1 and reader.ceiling == 2_000

        assert seen(reader.logs(EMITTER, first, last)) == seen(expected)
        assert proxy.stats["refused.range"] == refused
        assert proxy.stats["calls.eth_getLogs"] - refused == 2 * -(-(last - first + 1) // 2_000)


def test_read__provider_keeps_failing__error_names_the_blocks_after_bounded_attempts(chain, history):
    first, last, _ = history
    waits: list[float] = []
    with RpcProxy(chain.provider.uri, failure_rate=1.0) as proxy:
        reader = LogReader(through(proxy), max_blocks=500, attempts=3, backoff=0.01, sleep=waits.append)
        with pytest.raises(LogsError, match=rf"blocks {first}-{first + 499} failed 3 times"):
            reader.logs(EMITTER, first, last)
        assert (
            proxy.stats["calls.eth_getLogs"] + proxy.stats["failed.http_503"] + proxy.stats["failed.http_429"]
            == 3
        )
        assert len(waits) == 2


def test_read__one_block_over_the_log_cap__error_says_to_use_another_provider(chain, history):
    first, last, _ = history
    with (
        RpcProxy(chain.provider.uri, max_logs=2, style="infura") as proxy,
        pytest.raises(LogsError, match=rf"refuses the logs of block {first} alone"),
    ):
        LogReader(through(proxy)).logs(EMITTER, first, last)


def test_proxy__batch_request__each_call_answered_as_it_would_be_alone(chain, history):
    first, last, _ = history
    too_wide = {"address": EMITTER, "fromBlock": hex(first), "toBlock": hex(last)}
    batch = [
        {"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []},
        {"jsonrpc": "2.0", "id": 2, "method": "eth_getLogs", "params": [too_wide]},
    ]
    with RpcProxy(chain.provider.uri) as proxy:
        answers = requests.post(proxy.uri, json=batch, timeout=30).json()

    assert [a["id"] for a in answers] == [1, 2]
    assert int(answers[0]["result"], 16) == chain.provider.web3.eth.block_number
    assert answers[1]["error"]["message"] == "exceed maximum block range: 2000"
