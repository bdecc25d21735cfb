"""The agent's side of an auction frontend's HTTP API (`--auction URL`): the open
auctions (`GET /auctions`), bids sent (`POST /bids`) with their rows kept in the store,
and a backoff for a frontend that fails. What to bid: picker.py; docs/agent.md."""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from typing import Any, NamedTuple

import requests

from provingmarket.agent.store import BID_ACCEPTED, BID_REFUSED, AgentStore, Bid
from provingmarket.chain.client import format_ether, parse_task_id
from provingmarket.errors import ProvingMarketError
from provingmarket.runtime import process as runtime
from provingmarket.runtime.metrics import Metrics

log = logging.getLogger("provingmarket.agent.agent")

AUCTION_TIMEOUT = (2.0, 5.0)  # seconds to connect to an auction frontend, to read its answer
MAX_AUCTION_BACKOFF = 30.0  # seconds between attempts while an auction frontend is down


class AuctionError(ProvingMarketError, RuntimeError):
    """An auction frontend's answer the agent cannot use."""


@dataclass(frozen=True)
class Auction:
    """One open auction as an auction frontend's `GET /auctions` lists it (the fields the
    agent uses; the task's terms themselves are read from the mirror)."""

    task_id: bytes
    round: int
    market_id: int
    mechanism_id: int
    max_reward: int
    collateral: int
    closes_at: int
    min_expiry: int = 0  # the least expiry the frontend takes, if it says

    @classmethod
    def from_json(cls, entry: Any) -> Auction:
        if not isinstance(entry, dict):
            raise TypeError("not a JSON object")
        return cls(
            parse_task_id(str(entry["task_id"])),
            _integer(entry.get("round", 0)),
            _integer(entry["market_id"]),
            _integer(entry["mechanism_id"]),
            _integer(entry["max_reward"]),
            _integer(entry["collateral"]),
            _integer(entry["closes_at"]),
            _integer(entry.get("min_expiry", 0)),
        )


def _integer(value: Any) -> int:
    """An integer from JSON: a number or a decimal string (wei amounts come as strings)."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"{value!r} is not an integer")
    number = int(value)
    if number < 0:
        raise ValueError(f"{value!r} is negative")
    return number


def _retry_after(response: requests.Response) -> float:
    """Seconds a server asked to wait (Retry-After in seconds), within reason."""
    try:
        seconds = float(response.headers.get("Retry-After", 1))
    except ValueError:
        seconds = 1.0
    return min(max(seconds, 0.5), MAX_AUCTION_BACKOFF) if math.isfinite(seconds) else 1.0


def _detail(response: requests.Response) -> str:
    """What a server said about a refusal: its JSON "detail", else its text."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    if isinstance(body, dict) and "detail" in body:
        detail = body["detail"]
        return (detail if isinstance(detail, str) else json.dumps(detail, default=str))[:300]
    return json.dumps(body, default=str)[:300]


class Posted(NamedTuple):
    """What became of a bid sent: whether it may have reached the frontend (then it may
    win and counts against capacity and stake), and whether the frontend answered well
    (else it is not asked again this round)."""

    reached: bool
    answered: bool


class AuctionClient:
    """Auction frontends as the agent talks to them: one HTTP session, and for each URL
    the failures in a row and when to ask it again."""

    def __init__(self, store: AgentStore, metrics: Metrics):
        self.store = store
        self.metrics = metrics
        self.http = requests.Session()
        self.down: dict[str, tuple[int, float]] = {}  # url -> (failures, retry at)

    def open_auctions(self, url: str) -> list | None:
        """The frontend's open auctions as JSON entries, or None while it is down (waited
        out) or when it failed now (agent.auction_error, then backoff)."""
        down = self.down.get(url)
        if down is not None and time.monotonic() < down[1]:
            return None
        try:
            response = self.http.get(f"{url}/auctions", timeout=AUCTION_TIMEOUT)
            if response.status_code != 200:
                raise AuctionError(f"GET /auctions answered {response.status_code}: {_detail(response)}")
            auctions = response.json()
            if not isinstance(auctions, list):
                raise AuctionError("GET /auctions did not answer a JSON list")
        except (requests.RequestException, ValueError, AuctionError) as error:
            self.failed(url, error)
            return None
        if down is not None:
            del self.down[url]
            if down[0]:  # not after a 429's wait
                runtime.emit(log, "agent.auction_back", url=url, after_failures=down[0])
        return auctions

    def post(self, bid: Bid, body: dict[str, Any], said: dict[str, Any], before: Any) -> Posted:
        """Send a signed bid, its row written first (a restart never sends it twice), and
        keep what the frontend answered: agent.bid (with `said`) or agent.bid_refused.
        `before()` runs just before the POST (the simulated latency)."""
        self.store.bid_sending(bid)
        try:
            before()
            response = self.http.post(f"{bid.url}/bids", json=body, timeout=AUCTION_TIMEOUT)
        except requests.RequestException as error:
            reached = isinstance(error, requests.ReadTimeout)  # it may have got there: sent
            if not reached:
                self.store.bid_unsent(bid)  # it never got there: send it again later
            self.failed(bid.url, error)
            return Posted(reached, False)
        fields = {"url": bid.url, "task": bid.task, "round": bid.round, "market": bid.market_id}
        if 200 <= response.status_code < 300:
            self._accepted(bid, response, fields, said)
            return Posted(True, True)
        if response.status_code == 429:  # too many bids too fast: not a refusal, wait
            self.store.bid_unsent(bid)
            wait = _retry_after(response)
            self.down[bid.url] = (self.down.get(bid.url, (0, 0.0))[0], time.monotonic() + wait)
            self._refused(fields, 429, _detail(response), bid.min_price, retry_in=wait)
            return Posted(False, False)
        if 400 <= response.status_code < 500:
            detail = _detail(response)
            self.store.bid_answered(bid, BID_REFUSED, detail=detail)
            self.metrics.counter("bids_refused_total", "Bids auction frontends refused")
            self._refused(fields, response.status_code, detail, bid.min_price)
            return Posted(False, True)
        self.store.bid_unsent(bid)
        self.failed(bid.url, AuctionError(f"POST /bids answered {response.status_code}: {_detail(response)}"))
        return Posted(False, False)

    def _accepted(
        self, bid: Bid, response: requests.Response, fields: dict[str, Any], said: dict[str, Any]
    ) -> None:
        try:
            answer = response.json()
        except ValueError:
            answer = {}
        answer = answer if isinstance(answer, dict) else {}
        bid_id = answer.get("bid_id")
        self.store.bid_answered(bid, BID_ACCEPTED, bid_id=None if bid_id is None else str(bid_id))
        self.metrics.counter("bids_total", "Bids sent to auction frontends and taken")
        runtime.emit(
            log,
            "agent.bid",
            **fields,
            min_price=bid.min_price,
            min_price_eth=format_ether(bid.min_price),
            floor=said["floor"],
            max_reward=said["max_reward"],
            expiry=bid.expiry,
            nonce=bid.nonce,
            bid_id=bid_id,
            status=answer.get("status"),
            closes_at=answer.get("closes_at", said["closes_at"]),
        )

    @staticmethod
    def _refused(fields: dict[str, Any], status: int, detail: str, min_price: int, **more: Any) -> None:
        runtime.emit(
            log,
            "agent.bid_refused",
            logging.WARNING,
            **fields,
            status=status,
            detail=detail,
            min_price=min_price,
            **more,
        )

    def failed(self, url: str, error: BaseException) -> None:
        """A frontend that failed or did not answer: asked again after a backoff."""
        failures = self.down.get(url, (0, 0.0))[0] + 1
        delay = min(0.5 * 2 ** (failures - 1), MAX_AUCTION_BACKOFF)
        self.down[url] = (failures, time.monotonic() + delay)
        self.metrics.counter("auction_errors_total", "Auction frontends that failed or did not answer")
        runtime.emit(
            log,
            "agent.auction_error",
            logging.WARNING,
            url=url,
            error=f"{type(error).__name__}: {error}"[:300],
            attempt=failures,
            retry_in=delay,
        )

    def close(self) -> None:
        self.http.close()
