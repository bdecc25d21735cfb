"""A process's start made again when no RPC endpoint answered a call (each reset, 5xx or
429, or none answering at all), with a log line per try; any other failure at once."""

from __future__ import annotations

import logging

import pytest
import requests

from provingmarket.chain.client import NoNodeAnswers
from provingmarket.chain.identity import WrongChain
from provingmarket.runtime.process import starting


def flaky(errors: list[BaseException], value: str = "started"):
    calls = []

    def step() -> str:
        calls.append(1)
        if errors:
            raise errors.pop(0)
        return value

    return step, calls


def test_starting__no_endpoint_answered_then_one_did__started_with_a_line_per_try(caplog):
    caplog.set_level(logging.WARNING)
    step, calls = flaky([requests.ConnectionError("reset"), NoNodeAnswers("no node answers at x")])
    assert starting(step, "orderbook", attempts=3) == "started"
    assert len(calls) == 3
    lines = [r.getMessage() for r in caplog.records if "orderbook.start_rpc_error" in r.getMessage()]
    assert len(lines) == 2 and '"attempt": 1' in lines[0] and '"attempt": 2' in lines[1]


def test_starting__never_answered__the_last_error_after_every_try():
    step, calls = flaky([NoNodeAnswers("no node answers at x")] * 2)
    with pytest.raises(NoNodeAnswers, match="no node answers"):
        starting(step, "agent", attempts=2)
    assert len(calls) == 2


@pytest.mark.parametrize(
    "error",
    [ValueError("--poll: not a number"), WrongChain("chain 1 is not chain 2"), PermissionError("data dir")],
)
def test_starting__any_other_failure__raised_at_once(error):
    step, calls = flaky([error])
    with pytest.raises(type(error)):
        starting(step, "agent", attempts=4)
    assert len(calls) == 1
