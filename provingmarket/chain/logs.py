"""Reading logs from any node: `LogReader` pages `eth_getLogs` over a block range and
adapts to the limits public providers put on it.

Providers cap a log query at a block range (2,000, 5,000, 10,000 blocks), at a number of
results (10,000 logs) or both, each with its own error message, and they fail some calls
with rate limits (HTTP 429), overloads (5xx) and timeouts. The reader:

- **Starts with the whole range** (one call, as a node without limits answers it), or with
  `max_blocks` blocks when given (`PROVINGMARKET_LOG_BLOCKS` in the environment: for a
  provider that times out on wide queries rather than refusing them).
- **Narrows on a refusal.** A range or size refusal reads the range again in smaller
  pages: the range the provider suggests when its message has one ("this block range
  should work: [0x.., 0x..]"), the limit it names ("maximum block range: 5000"), or else
  half. A block-range limit is remembered as a ceiling the pages never exceed again; a
  size limit depends on how many logs the blocks hold, so it is not.
- **Grows back slowly:** after `GROW_AFTER` pages in a row succeed, the page doubles (up
  to the ceiling), so a dense stretch of history does not slow the rest down.
- **Retries transient failures** (HTTP 429 and 5xx, JSON-RPC rate limits, connection
  errors, timeouts; a timeout also halves the page) up to `attempts` times a page with
  exponential backoff (or the `Retry-After` the provider asks for), then raises
  `LogsError` naming the blocks and the last error. Any other error raises at once.
- **Yields each log once, oldest first:** pages are consecutive and disjoint, a page's
  logs are yielded only once its call succeeded, sorted by (block, log index), and logs
  outside the page asked for are dropped.

One reader per node connection keeps what it learnt (`RegistryClient.logs`, which the
mirror shares). Lines on the `provingmarket.chain.logs` logger are JSON objects:
`logs.narrowed` (INFO) when a page shrinks, `logs.retry` (WARNING) per transient failure.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import requests
from web3 import Web3
from web3.exceptions import Web3RPCError

from provingmarket.errors import ProvingMarketError

log = logging.getLogger("provingmarket.chain.logs")

LOG_BLOCKS_ENV = "PROVINGMARKET_LOG_BLOCKS"  # the first (and largest) page, in blocks
ATTEMPTS = 5  # calls per page before a transient failure is given up
BACKOFF = 0.5  # seconds before the first retry; doubles each time
MAX_WAIT = 30.0  # seconds: the longest wait, whatever the provider's Retry-After says
GROW_AFTER = 3  # pages in a row that succeed before the page doubles

RANGE = "range"  # the node refuses the number of blocks: a fixed limit
SIZE = "size"  # the node refuses the number of logs (or bytes): depends on the blocks
RATE = "rate"  # rate limited: wait, then the same call again
TIMEOUT = "timeout"  # the call took too long: wait, then a smaller page
TRANSIENT = "transient"  # the node or the network failed this time: wait, then again
OTHER = "other"  # anything else: not retried

_SUGGESTED = re.compile(r"\[\s*(0x[0-9a-f]+|\d+)\s*,\s*(0x[0-9a-f]+|\d+)\s*\]", re.IGNORECASE)
_NUMBER = re.compile(r"(?<![\w.,])(\d{1,3}(?:,\d{3})+|\d+)(k)?\b", re.IGNORECASE)
# Checked in this order: a rate limit's message may also say "limit exceeded", and
# Alchemy's size refusal also names a block range.
_PATTERNS = (
    (
        RATE,
        re.compile(
            r"rate.?limit|too many requests|request rate|capacity|compute units|throughput|"
            r"daily request|quota|credits",
            re.IGNORECASE,
        ),
    ),
    (
        SIZE,
        re.compile(
            r"response size|more than \d[\d,]* (results|logs)|too many (results|logs)|"
            r"results? (limit|exceeded)|logs? (limit|exceeded)|response (is )?too (big|large)",
            re.IGNORECASE,
        ),
    ),
    (
        RANGE,
        re.compile(
            r"block range|range (is )?too (large|wide|big)|too wide|limited to .*range|"
            r"range limit|max(imum)? range|exceeds? .*range|range .*exceed|blocks? limit",
            re.IGNORECASE,
        ),
    ),
    (TIMEOUT, re.compile(r"time ?out|timed out|deadline exceeded", re.IGNORECASE)),
    (SIZE, re.compile(r"limit exceeded|exceeds? (the )?limit|too large|too big", re.IGNORECASE)),
    (
        TRANSIENT,
        re.compile(
            r"header not found|unavailable|try again|temporar|internal error|bad gateway|"
            r"upstream|overloaded|busy",
            re.IGNORECASE,
        ),
    ),
)


class LogsError(ProvingMarketError, RuntimeError):
    """The node did not give the logs asked for: the message names the blocks and why."""


@dataclass(frozen=True)
class Failure:
    """What a failed eth_getLogs call says: its kind (RANGE, SIZE, RATE, TIMEOUT,
    TRANSIENT, OTHER), the message, and any block range the provider suggests, block
    limit it names and seconds it asks to wait."""

    kind: str
    message: str
    suggested: tuple[int, int] | None = None
    limit: int | None = None
    retry_after: float | None = None


def classify(error: BaseException) -> Failure | None:
    """What a failed call says, or None for an error that is not the node's answer (a bug
    in the caller, an interrupt): that one is raised as it is."""
    if isinstance(error, requests.HTTPError) and error.response is not None:
        status = error.response.status_code
        retry_after = _seconds(error.response.headers.get("Retry-After"))
        message = f"HTTP {status} {error.response.reason or ''}".strip()
        if status == 429:
            return Failure(RATE, message, retry_after=retry_after)
        if status >= 500 or status == 408:
            return Failure(TRANSIENT, message, retry_after=retry_after)
        return parse(f"{message}: {error.response.text[:300]}")
    if isinstance(error, (requests.Timeout, TimeoutError)):
        return Failure(TIMEOUT, str(error) or "timed out")
    if isinstance(error, (requests.ConnectionError, ConnectionError)):
        return Failure(TRANSIENT, str(error) or type(error).__name__)
    message = rpc_message(error)
    return None if message is None else parse(message)


def rpc_message(error: BaseException) -> str | None:
    """The node's message in a JSON-RPC error (web3 raises `Web3RPCError`, older code and
    some providers a ValueError holding the error object), or None for other errors."""
    if isinstance(error, Web3RPCError):
        response = error.rpc_response or {}
        found = response.get("error")
        if isinstance(found, dict) and found.get("message"):
            return str(found["message"])
        return error.message
    if isinstance(error, ValueError):
        found = error.args[0] if error.args else ""
        if isinstance(found, dict):
            return str(found.get("message", found))
        return str(found)
    return None


def parse(message: str) -> Failure:
    """What a node's error message says (see `Failure`)."""
    kind = next((kind for kind, pattern in _PATTERNS if pattern.search(message)), OTHER)
    suggested = None
    if (found := _SUGGESTED.search(message)) is not None:
        low, high = (int(x, 0) for x in found.groups())
        suggested = (low, high) if low <= high else None
    limit = None
    if kind == RANGE and (number := _NUMBER.search(message)) is not None:
        limit = int(number.group(1).replace(",", "")) * (1000 if number.group(2) else 1)
        limit = limit if limit > 0 else None
    return Failure(kind, message, suggested, limit)


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None  # an HTTP date: the backoff decides


class LogReader:
    """Paged eth_getLogs over one node (see the module's doc). `max_blocks` None starts
    with the whole range; `sleep` is how it waits (tests pass their own)."""

    def __init__(
        self,
        web3: Web3,
        max_blocks: int | None = None,
        attempts: int = ATTEMPTS,
        backoff: float = BACKOFF,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if max_blocks is None and os.environ.get(LOG_BLOCKS_ENV):
            max_blocks = _env_blocks()
        if (max_blocks is not None and max_blocks < 1) or attempts < 1 or backoff < 0:
            raise ValueError("max_blocks >= 1 (or None), attempts >= 1 and backoff >= 0")
        self.web3 = web3
        self.max_blocks = max_blocks
        self.attempts = attempts
        self.backoff = backoff
        self.sleep = sleep
        self.page: int | None = max_blocks  # blocks per call now; None: the whole range
        self.ceiling: int | None = max_blocks  # the most blocks a call may ask for
        self._streak = 0  # pages in a row that succeeded
        self.calls = 0  # eth_getLogs calls made, failed ones included

    def read(
        self,
        address: str | Sequence[str],
        from_block: int,
        to_block: int,
        topics: Sequence[Any] | None = None,
    ) -> Iterator[Any]:
        """The logs of `address` matching `topics` in blocks [from_block, to_block], oldest
        first, each once. Raises LogsError when the node will not give them."""
        start = from_block
        while start <= to_block:
            size = to_block - start + 1 if self.page is None else min(self.page, to_block - start + 1)
            end = start + size - 1
            logs = self._page(address, topics, start, end)
            if logs is None:
                continue  # the page was narrowed: read from the same block again
            self._grow(size)
            page = sorted(
                (e for e in logs if start <= e["blockNumber"] <= end),
                key=lambda e: (e["blockNumber"], e["logIndex"]),
            )
            start = end + 1
            yield from page

    def logs(
        self,
        address: str | Sequence[str],
        from_block: int,
        to_block: int,
        topics: Sequence[Any] | None = None,
    ) -> list[Any]:
        """`read` as a list."""
        return list(self.read(address, from_block, to_block, topics))

    # -------------------------------------------------------------- one page

    def _page(self, address: Any, topics: Sequence[Any] | None, start: int, end: int) -> list | None:
        """The page's logs; None if the node refused it as too large (the page is then
        smaller). Transient failures are retried here."""
        query: dict[str, Any] = {"address": address, "fromBlock": start, "toBlock": end}
        if topics:
            query["topics"] = list(topics)
        last: Failure | None = None
        for attempt in range(self.attempts):
            self.calls += 1
            try:
                return list(self.web3.eth.get_logs(query))  # type: ignore[arg-type]
            except Exception as error:
                failure = classify(error)
                if failure is None:
                    raise
            if failure.kind in (RANGE, SIZE) or (failure.kind == TIMEOUT and end > start):
                if end == start:
                    raise LogsError(
                        f"the node refuses the logs of block {start} alone ({failure.message}); "
                        "use an RPC provider that returns more logs per call"
                    )
                self._narrow(failure, start, end)
                return None
            if failure.kind == OTHER:
                raise LogsError(f"eth_getLogs for blocks {start}-{end} failed: {failure.message}")
            last = failure
            if attempt + 1 < self.attempts:
                wait = self.backoff * 2**attempt if failure.retry_after is None else failure.retry_after
                wait = min(wait, MAX_WAIT)
                _emit(
                    logging.WARNING,
                    "logs.retry",
                    from_block=start,
                    to_block=end,
                    attempt=attempt + 1,
                    wait_s=round(wait, 3),
                    reason=failure.message[:200],
                )
                self.sleep(wait)
        assert last is not None
        raise LogsError(
            f"eth_getLogs for blocks {start}-{end} failed {self.attempts} times, last: {last.message}; "
            "the node is overloaded or unreachable: try again later or use another RPC URL"
        )

    def _narrow(self, failure: Failure, start: int, end: int) -> None:
        size = end - start + 1
        smaller = size // 2
        if failure.suggested is not None and failure.suggested[1] - failure.suggested[0] + 1 < size:
            smaller = failure.suggested[1] - failure.suggested[0] + 1
        elif failure.limit is not None and failure.limit < size:
            smaller = failure.limit
        smaller = max(1, smaller)
        if failure.kind == RANGE:
            # A block limit holds for every range: never ask for more again (the limit
            # the node named, or less than what it refused).
            known = failure.limit if failure.limit is not None and failure.limit < size else size - 1
            self.ceiling = known if self.ceiling is None else min(self.ceiling, known)
        self.page = smaller
        self._streak = 0
        _emit(
            logging.INFO,
            "logs.narrowed",
            from_block=start,
            to_block=end,
            page_blocks=smaller,
            ceiling=self.ceiling,
            reason=failure.message[:200],
        )

    def _grow(self, size: int) -> None:
        if self.page is None or size < self.page:
            return  # the whole range, or the last page of one: nothing learnt
        self._streak += 1
        if self._streak >= GROW_AFTER:
            self._streak = 0
            self.page = self.page * 2 if self.ceiling is None else min(self.ceiling, self.page * 2)


def _env_blocks() -> int:
    value = os.environ.get(LOG_BLOCKS_ENV, "")
    try:
        blocks = int(value.replace("_", ""))
    except ValueError:
        blocks = 0
    if blocks < 1:
        raise LogsError(f"{LOG_BLOCKS_ENV}={value!r} is not a number of blocks: set a whole number >= 1")
    return blocks


def _emit(level: int, kind: str, **fields: Any) -> None:
    log.log(level, json.dumps({"event": kind, **fields}, default=str))
