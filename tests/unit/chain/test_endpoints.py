"""The failover provider's choice of endpoint and its back-off, without a network.

The transports here are FAKE (a scripted answer or error per endpoint) and a hand-moved
clock: allowed in these unit tests of the choice only. Failing over between real
endpoints (processes, a proxy killed mid-run) is tests.processes.test_failover."""

from __future__ import annotations

import json
import logging

import pytest
import requests
from web3 import Web3

from provingmarket.chain.endpoints import EndpointError, FailoverProvider, parse_urls, shown

A, B, C = "http://a:8545", "http://b:8545", "http://c:8545"


class FakeTransport:
    """One endpoint: answers with its name and chain id 1, or raises `error` while set."""

    def __init__(self, url: str, chain_id: int = 1):
        self.url = url
        self.chain_id = chain_id
        self.error: BaseException | None = None
        self.calls: list[str] = []

    def make_request(self, method, params):
        self.calls.append(method)
        if self.error is not None:
            raise self.error
        if method == "eth_chainId":
            return {"jsonrpc": "2.0", "id": 1, "result": hex(self.chain_id)}
        if method == "eth_sendRawTransaction":
            return {"jsonrpc": "2.0", "id": 1, "error": {"code": -32000, "message": "nonce too low"}}
        return {"jsonrpc": "2.0", "id": 1, "result": self.url}

    def make_batch_request(self, batch):
        return [self.make_request(m, p) for m, p in batch]


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def provider_over(*urls: str, chains: dict[str, int] | None = None):
    fakes = {u: FakeTransport(u, (chains or {}).get(u, 1)) for u in urls}
    clock = Clock()
    provider = FailoverProvider(
        list(urls), backoff=5, max_backoff=40, transport=fakes.__getitem__, clock=clock
    )
    return provider, fakes, clock


def answer(provider) -> str:
    return provider.make_request("eth_blockNumber", [])["result"]


def events(caplog) -> list[dict]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "provingmarket.chain.endpoints"]


def test_the_first_endpoint_answers_while_it_can():
    provider, fakes, _ = provider_over(A, B)
    assert [answer(provider) for _ in range(3)] == [A, A, A]
    assert fakes[B].calls == []


@pytest.mark.parametrize(
    "error",
    [
        requests.ConnectionError("refused"),
        requests.Timeout("read timed out"),
        ConnectionResetError("reset by peer"),
    ],
)
def test_a_connection_error_or_timeout__the_same_call_goes_to_the_next__one_line_says_so(error, caplog):
    caplog.set_level(logging.INFO)
    provider, fakes, _ = provider_over(A, B, C)
    fakes[A].error = error
    assert answer(provider) == B
    assert answer(provider) == B  # A rests: not tried again at once
    assert fakes[A].calls.count("eth_blockNumber") == 1
    [line] = events(caplog)
    assert line["event"] == "rpc.failover"
    assert (line["left"], line["using"]) == (A, B)


def test_a_json_rpc_error_is_an_answer__no_failover():
    provider, fakes, _ = provider_over(A, B)
    found = provider.make_request("eth_sendRawTransaction", ["0x00"])
    assert found["error"]["message"] == "nonce too low"
    assert fakes[B].calls == []


def test_an_http_5xx_fails_over_a_4xx_does_not():
    provider, fakes, _ = provider_over(A, B)
    bad_gateway = requests.Response()
    bad_gateway.status_code = 502
    fakes[A].error = requests.HTTPError(response=bad_gateway)
    assert answer(provider) == B

    provider, fakes, _ = provider_over(A, B)
    forbidden = requests.Response()
    forbidden.status_code = 403
    fakes[A].error = requests.HTTPError(response=forbidden)
    with pytest.raises(requests.HTTPError):
        answer(provider)
    assert fakes[B].calls == []


def test_the_first_endpoint_is_tried_again_after_its_back_off__which_doubles_while_it_fails(caplog):
    caplog.set_level(logging.INFO)
    provider, fakes, clock = provider_over(A, B)
    fakes[A].error = requests.ConnectionError("refused")
    assert answer(provider) == B  # A rests 5 s
    clock.now += 4.9
    assert answer(provider) == B and fakes[A].calls.count("eth_blockNumber") == 1
    clock.now += 0.2
    assert answer(provider) == B  # tried (still down): now rests 10 s
    assert fakes[A].calls.count("eth_blockNumber") == 2
    clock.now += 9.9
    assert answer(provider) == B and fakes[A].calls.count("eth_blockNumber") == 2
    clock.now += 0.2
    fakes[A].error = None
    assert answer(provider) == A  # back
    assert [(e["event"], e["left"], e["using"]) for e in events(caplog)] == [
        ("rpc.failover", A, B),
        ("rpc.endpoint_back", B, A),
    ]


def test_the_back_off_stops_doubling_at_its_cap():
    provider, fakes, clock = provider_over(A, B)
    fakes[A].error = requests.ConnectionError("refused")
    rests = []
    for _ in range(6):
        answer(provider)
        rests.append(provider.endpoints[0].rest_until - clock.now)
        clock.now = provider.endpoints[0].rest_until
    assert rests == [5, 10, 20, 40, 40, 40]


def test_every_endpoint_down__each_is_tried_once__the_last_error_raised():
    provider, fakes, _ = provider_over(A, B)
    fakes[A].error = requests.ConnectionError("a refused")
    fakes[B].error = requests.ConnectionError("b refused")
    with pytest.raises(requests.ConnectionError, match="b refused"):
        answer(provider)
    # Both resting: still tried (soonest due first) rather than failing untried.
    fakes[B].error = None
    assert answer(provider) == B


def test_chains_checked_at_start__another_chain_is_one_line_naming_it():
    provider, _, _ = provider_over(A, B, chains={B: 5})
    with pytest.raises(EndpointError, match=r"http://b:8545 is chain 5, not chain 1"):
        provider.check_chains(1)


def test_an_endpoint_silent_at_start__checked_when_first_used__never_used_if_another_chain(caplog):
    caplog.set_level(logging.INFO)
    provider, fakes, _ = provider_over(A, B, C, chains={B: 5})
    fakes[B].error = requests.ConnectionError("refused")
    assert provider.check_chains(1) == [B]
    fakes[B].error = None
    fakes[A].error = requests.ConnectionError("refused")
    assert answer(provider) == C  # B answered as chain 5: skipped
    assert "eth_blockNumber" not in fakes[B].calls
    assert [e["event"] for e in events(caplog)] == ["rpc.endpoint_silent", "rpc.wrong_chain", "rpc.failover"]


def test_urls_repeated_or_comma_separated__in_order_once__a_bad_one_named():
    assert parse_urls([f"{A},{B}", C, A]) == [A, B, C]
    assert parse_urls("ws://x:1", ("ws", "wss")) == ["ws://x:1"]
    with pytest.raises(EndpointError, match="'127.0.0.1:8545' is not a http:// or https:// URL"):
        parse_urls(["127.0.0.1:8545"])


def test_a_url_in_a_log_line_shows_no_key_or_credentials():
    assert shown("https://user:secret@mainnet.example.io/v3/KEY123") == "https://mainnet.example.io/…"
    assert shown("http://127.0.0.1:8545") == "http://127.0.0.1:8545"


def test_web3_runs_on_it():
    provider, fakes, _ = provider_over(A, B)
    fakes[A].error = requests.ConnectionError("refused")
    web3 = Web3(provider)
    assert web3.eth.chain_id == 1
    assert web3.is_connected()
