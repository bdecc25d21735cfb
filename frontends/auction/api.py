"""The auction frontend's HTTP API (FastAPI; its OpenAPI description at /openapi.json).

    GET  /auctions               open auctions and their terms (bids: a count only)
    GET  /auctions/{task_id}     one auction (the latest round, or ?round=N); its result once closed
    POST /bids                   submit a signed bid: 202 and a bid id, or 4xx and the reason
    GET  /bids/{bid_id}          a bid's status: sealed, won (and the price), lost, invalid, replaced
    GET  /health                 the chain, registry and block the frontend's view is at

Bids are sealed: nothing about a bid (prover, price) is served before its auction closes,
except to whoever holds its id (unguessable: 128 random bits), and an auction's listing
shows only how many bids it has. Amounts are wei as decimal strings; on input an
integer is accepted too.

A bid is checked on arrival against everything that can be known then, each failure a
4xx with {"detail": reason}: its form (422; malformed JSON 422, undecodable 400, a body
over `max_body` 413), the auction (404 unknown task, 409 closed), the signature (422
wrong length, v not 27 or 28, high s: the registry's rules; 401 signed by someone other
than `prover`), the signed terms (422 min_price above the task's max_reward, 422 expiry
before the close plus `expiry_margin`, 409 nonce revoked, 422 nonce ahead), the prover
(409 not in the market, mechanism not accepted, on the task already, no free capacity,
not enough free stake, lacking capabilities, too slow), a replayed signature (409), and
floods (429 with Retry-After: per client address, per prover address, and at most
`bids_per_prover` bids per prover per auction). The frontend's view of the chain comes
from the keeper's last round (`Board`); until there is one, bids get 503. Anything
unexpected is logged with its trace and answered 503 with no detail.

The endpoints run on the server's event loop (signature recovery and one SQLite write
are each a fraction of a millisecond; no thread hop), with a connection of their own.
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, NoReturn

from eth_utils import to_checksum_address
from fastapi import FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from frontends.auction.mechanism import Eligibility, Refusal
from frontends.auction.store import CLOSED, AuctionRow, AuctionStore, BidRow
from frontends.book import OpenTask
from provingmarket import rules
from provingmarket.formats import bid_digest, recover_address
from provingmarket.runtime.metrics import Metrics
from provingmarket.runtime.process import emit

log = logging.getLogger("frontends.auction.api")

UINT256_MAX = 2**256 - 1
SECP256K1_HALF_N = rules.SECP256K1_HALF_N  # the registry's low-s bound on a Bid's signature
TASK_ID = r"^0x[0-9a-fA-F]{64}$"
BID_ID = r"^[0-9a-f]{32}$"

# What each refusal answers: the request's own content is wrong (422), the state of the
# market or the auction refuses it (409), the signer is not the prover (401).
STATUS = {
    "bad_signature": 422,
    "bad_signature_v": 422,
    "malleable_signature": 422,
    "wrong_signer": 401,
    "price_above_maximum": 422,
    "expired": 422,
    "nonce_ahead": 422,
    "revoked": 409,
    "closed": 409,
    "replayed": 409,
    "unknown_task": 404,
    "too_many": 429,
    "rate_limited": 429,
    "starting": 503,
}


# ------------------------------------------------------------------ the view it works from


@dataclass(frozen=True)
class OpenAuction:
    task: OpenTask
    auction: AuctionRow


@dataclass(frozen=True)
class Board:
    """What the keeper's last round saw, published for the API thread (replaced whole,
    never changed: reading it needs no lock)."""

    now: int  # chain time (the pending block's timestamp) when the round started
    wall: float  # time.monotonic() then
    block: int  # the mirror's cursor
    chain_id: int
    registry: str
    frontend: str
    mechanisms: tuple[int, ...]
    rules: Eligibility = field(repr=False)
    auctions: dict[str, OpenAuction] = field(repr=False)  # open ones, by task id (0x lowercase)

    def chain_now(self) -> int:
        """The chain's time now, as far as the round's clock and the seconds since tell."""
        return self.now + int(time.monotonic() - self.wall)


@dataclass(frozen=True)
class ApiSettings:
    expiry_margin: int = 30  # seconds a bid must outlive its auction's close (mining the assignment)
    bids_per_prover: int = 5  # bids a prover may make in one auction (its latest stands)
    prover_rate: float = 5.0  # bids per second per prover address (token bucket) …
    prover_burst: int = 20  # … and the burst it allows
    client_rate: float = 200.0  # bids per second per client IP address; 0: no limit
    client_burst: int = 400
    max_body: int = 4_096  # bytes a request body may hold


class RateLimiter:
    """Token buckets by key (`rate` per second, up to `burst`), for at most `keys` keys
    (the least recently used are forgotten: a flood of fresh keys cannot grow it)."""

    def __init__(self, rate: float, burst: int, keys: int = 100_000):
        self.rate = rate
        self.burst = float(burst)
        self.keys = keys
        self.buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str) -> float:
        """0 if `key` may go now (a token taken), else the seconds until it may."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic()
        tokens, at = self.buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        if tokens >= 1:
            self.buckets[key] = (tokens - 1, now)
            wait = 0.0
        else:
            self.buckets[key] = (tokens, now)
            wait = (1 - tokens) / self.rate
        while len(self.buckets) > self.keys:
            self.buckets.popitem(last=False)
        return wait


def recover_bidder(
    chain_id: int,
    registry: str,
    task_id: bytes,
    min_price: int,
    expiry: int,
    nonce: int,
    signature: bytes,
) -> str:
    """The address that signed this Bid, by the registry's rules (`rules.signer_of`, the
    registry's `bids.check`): 65 bytes (r, s, v), v 27 or 28, s in the lower half of the
    curve's order, the EIP-712 digest of the registry's domain. Raises `Refusal` for a
    signature the registry refuses, saying what to fix.

    A well-formed signature is recovered on the fast path (`formats.bid_digest`,
    `formats.recover_address`: a fifth of eth_account's time, the same library underneath); anything else
    takes `rules.signer_of` itself, which names the rule broken."""
    if (
        len(signature) == rules.SIGNATURE_SIZE
        and signature[64] in (27, 28)
        and int.from_bytes(signature[32:64], "big") <= SECP256K1_HALF_N
    ):
        signer = recover_address(bid_digest(chain_id, registry, task_id, min_price, expiry, nonce), signature)
        if signer is not None:
            return signer
    reason, signer = rules.signer_of(
        chain_id, registry, task_id, rules.Bid(min_price, expiry, nonce, signature)
    )
    if reason == rules.INVALID_SIGNATURE_V:
        return _refuse(
            "bad_signature_v", f"the signature's v is {signature[64]}; the registry takes 27 or 28"
        )
    if reason == rules.MALLEABLE_SIGNATURE:
        return _refuse(
            "malleable_signature",
            "the signature's s is in the upper half of the curve's order; the registry takes the "
            "low-s form (as eth_account signs)",
        )
    if reason and len(signature) != rules.SIGNATURE_SIZE:
        return _refuse("bad_signature", f"the signature has {len(signature)} bytes; the registry takes 65")
    if reason:
        return _refuse("bad_signature", "the signature does not recover to any address")
    return signer


def _refuse(code: str, reason: str) -> NoReturn:
    raise Refusal(code, reason)


# ------------------------------------------------------------------ messages


def _uint(value: int | str) -> int:
    number = int(value)
    if not 0 <= number <= UINT256_MAX:
        raise ValueError("must be between 0 and 2**256 - 1")
    return number


def _address(value: str) -> str:
    digits = value[2:]
    if digits != digits.lower() and digits != digits.upper() and to_checksum_address(value) != value:
        raise ValueError(f"{value} has a bad checksum (its mixed case does not match EIP-55)")
    return to_checksum_address(value)


Uint = Annotated[
    Annotated[int, Field(strict=True, ge=0)] | Annotated[str, Field(pattern=r"^[0-9]{1,78}$")],
    AfterValidator(_uint),
    Field(description="A uint256 (0 to 2**256 - 1): a decimal string, or an integer"),
]
Address = Annotated[str, Field(pattern=r"^0x[0-9a-fA-F]{40}$"), AfterValidator(_address)]
TaskId = Annotated[str, Field(pattern=TASK_ID, description="0x and 64 hex digits")]
Wei = Annotated[str, Field(pattern=r"^[0-9]+$", description="wei, as a decimal string")]


class BidIn(BaseModel):
    """A prover's Bid and its EIP-712 signature in the registry's domain (see /health for
    the chain id and registry)."""

    model_config = ConfigDict(extra="forbid")

    task_id: TaskId
    prover: Address
    min_price: Uint
    expiry: Uint
    nonce: Uint
    signature: Annotated[str, Field(pattern=r"^0x[0-9a-fA-F]{130}$", description="65 bytes: r, s, v")]


class BidAccepted(BaseModel):
    bid_id: str
    status: Literal["sealed"]
    task_id: str
    round: int
    closes_at: int


class BidOut(BaseModel):
    bid_id: str
    task_id: str
    round: int
    prover: str
    min_price: Wei
    expiry: Wei
    nonce: Wei
    status: Literal["sealed", "won", "lost", "invalid", "replaced"]
    price: Wei | None = Field(description="what it is paid, when it won")
    reason: str | None = Field(description="why it lost, was replaced or is invalid")
    received_at: float
    closes_at: int
    assigned_block: int | None = Field(description="the block its assignment was seen in, when it won")


class AuctionOut(BaseModel):
    task_id: str
    round: int
    market_id: int
    mechanism_id: int
    max_reward: Wei
    collateral: Wei
    proving_window: int
    capabilities: Wei
    redundancy: int
    open_slots: int
    assignable_until: int
    opened_at: int
    closes_at: int
    min_expiry: int = Field(description="the least expiry a bid may carry")
    bids: int = Field(description="how many bids it holds (sealed: a count only)")


class Winner(BaseModel):
    prover: str
    price: Wei


class Result(BaseModel):
    winners: list[Winner]
    price: Wei | None
    bids: int
    note: str


class AuctionDetail(AuctionOut):
    state: Literal["open", "closed"]
    result: Result | None = Field(description="once closed")


class Health(BaseModel):
    status: Literal["ok", "starting"]
    chain_id: int | None
    registry: str | None
    frontend: str | None
    mechanisms: list[int]
    block: int | None
    chain_time: int | None
    open_auctions: int


class Problem(BaseModel):
    detail: str


def _responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    said = {
        400: "The body could not be read",
        401: "The signature is not the prover's",
        404: "Not found",
        409: "The auction's or the prover's state refuses it",
        413: "The body is too large",
        422: "Malformed or invalid input",
        429: "Too many bids (see Retry-After)",
        503: "Not ready, or an unexpected error (logged)",
    }
    return {code: {"model": Problem, "description": said[code]} for code in codes}


# ------------------------------------------------------------------ the app


class Guard:
    """Outermost of the app's own middleware: bodies over `max_body` get 413 before they
    are read whole, and anything unexpected becomes a logged 503 with no trace for the
    client."""

    def __init__(self, app, max_body: int, metrics: Metrics):
        self.app = app
        self.max_body = max_body
        self.metrics = metrics

    def declared_too_big(self, scope) -> bool:
        """Whether the request's Content-Length is above the limit (or not a number)."""
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    return int(value) > self.max_body
                except ValueError:
                    return True
        return False

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.declared_too_big(scope):
            await _problem(413, f"the body may hold at most {self.max_body} bytes")(scope, receive, send)
            return
        watch = _Watch(receive, send, self.max_body)
        try:
            await self.app(scope, watch.receive, watch.send)
        except _TooLarge:
            if not watch.started:
                await _problem(413, f"the body may hold at most {self.max_body} bytes")(scope, receive, send)
        except Exception as error:
            self.failed(scope, error)
            if not watch.started:
                await _problem(503, "the frontend could not answer this request; try again")(
                    scope, receive, send
                )

    def failed(self, scope, error: Exception) -> None:
        """Log and count a request that failed unexpectedly."""
        emit(
            log,
            "auction.api_error",
            logging.ERROR,
            path=scope.get("path"),
            error=f"{type(error).__name__}: {error}"[:300],
            trace=traceback.format_exc(limit=8),
        )
        self.metrics.counter("api_errors_total", "Requests that failed unexpectedly")


class _TooLarge(Exception):
    pass


class _Watch:
    """One request's channels, watched: whether the response has started, and the body's
    size so far (past `limit`, `_TooLarge`)."""

    def __init__(self, receive, send, limit: int):
        self._receive, self._send, self.limit = receive, send, limit
        self.started = False
        self.seen = 0

    async def send(self, message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)

    async def receive(self):
        message = await self._receive()
        self.seen += len(message.get("body", b""))
        if self.seen > self.limit:
            raise _TooLarge
        return message


class FastBids:
    """POST /bids without FastAPI's routing and body machinery (about 0.2 ms of a bid's
    0.7 ms of CPU): a JSON body that validates as `BidIn` goes straight to
    `AuctionApi.submit`, the route's own method; any other (another content type, a body
    that does not validate) goes on to the app with its body as it came, so every refusal
    of its form is FastAPI's own. The route stays declared for the OpenAPI description."""

    def __init__(self, app, api: AuctionApi):
        self.app = app
        self.api = api

    async def __call__(self, scope, receive, send):
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or scope["path"] != "/bids"
            or not _json(scope)
        ):
            await self.app(scope, receive, send)
            return
        chunks = []
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client left
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        try:
            bid = BidIn.model_validate_json(body)
        except ValidationError:
            await self.app(scope, _replay(body, receive), send)
            return
        answer = await self.api.submit(bid, Request(scope))
        await answer(scope, receive, send)


def _json(scope) -> bool:
    """Whether the request says its body is JSON (or says nothing, which FastAPI reads as JSON)."""
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            return value.split(b";", 1)[0].strip().lower() == b"application/json"
    return True


def _replay(body: bytes, receive):
    """A `receive` that gives `body` (read already) first, then what `receive` gives."""
    given = False

    async def again():
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return again


def _problem(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


DESCRIPTION = (
    "Second-price reverse auctions for the tasks of this frontend's mechanism. A bid is the "
    "prover's EIP-712 `Bid(bytes32 task, uint256 minPrice, uint256 expiry, uint256 nonce)` "
    "signature in the registry's domain (name ProvingMarketRegistry, version 1, the chain id and "
    "registry address of /health). At close the N lowest bids win a task's N open slots and "
    "each is paid the (N+1)th lowest bid, or the task's max_reward when there were at most N. "
    "Bids are sealed until close. Amounts are wei as decimal strings."
)

STARTING = {
    "status": "starting",
    "chain_id": None,
    "registry": None,
    "frontend": None,
    "mechanisms": [],
    "block": None,
    "chain_time": None,
    "open_auctions": 0,
}


class AuctionApi:
    """The routes over the keeper's latest `board` and a store connection of their own,
    one method each; the rate limiters and metrics are shared by every request."""

    def __init__(
        self,
        board: Callable[[], Board | None],
        store: AuctionStore,
        settings: ApiSettings | None = None,
        metrics: Metrics | None = None,
        write_lock: AbstractContextManager[Any] | None = None,
    ):
        self.board = board
        self.store = store
        self.settings = settings or ApiSettings()
        self.metrics = metrics or Metrics("auction")
        # Held around each bid's write when processes share the file (workers.WriteLock):
        # they take turns at once, instead of in SQLite's busy waits of 1 ms and more.
        self.write_lock = write_lock or nullcontext()
        self.clients = RateLimiter(self.settings.client_rate, self.settings.client_burst)
        self.provers = RateLimiter(self.settings.prover_rate, self.settings.prover_burst)

    def app(self) -> FastAPI:
        """The FastAPI app serving these routes (behind `Guard`)."""
        app = FastAPI(
            title="Proving market: sealed-bid auction frontend", version="1", description=DESCRIPTION
        )
        app.add_middleware(FastBids, api=self)  # inside Guard: its size limit and 503 apply
        app.add_middleware(Guard, max_body=self.settings.max_body, metrics=self.metrics)
        app.add_exception_handler(RequestValidationError, _invalid)
        app.add_exception_handler(StarletteHTTPException, _http_error)
        app.get("/health", response_model=Health, responses=_responses(503))(self.health)
        app.get("/auctions", response_model=list[AuctionOut], responses=_responses(503))(self.auctions)
        app.get("/auctions/{task_id}", response_model=AuctionDetail, responses=_responses(404, 422, 503))(
            self.auction
        )
        app.post(
            "/bids",
            status_code=202,
            response_model=BidAccepted,
            responses=_responses(400, 401, 404, 409, 413, 422, 429, 503),
        )(self.submit)
        app.get("/bids/{bid_id}", response_model=BidOut, responses=_responses(404, 422, 503))(self.bid_status)
        return app

    # -------------------------------------------------------------- routes

    async def health(self) -> dict[str, Any]:
        """Whether the frontend has a view of the chain yet, and which chain and registry
        bids are signed for."""
        seen = self.board()
        if seen is None:
            return dict(STARTING)
        return {
            "status": "ok",
            "chain_id": seen.chain_id,
            "registry": seen.registry,
            "frontend": seen.frontend,
            "mechanisms": list(seen.mechanisms),
            "block": seen.block,
            "chain_time": seen.chain_now(),
            "open_auctions": len(seen.auctions),
        }

    async def auctions(self) -> list[dict[str, Any]]:
        """Open auctions, soonest to close first: each task's terms and how many bids it
        holds (sealed: no prices, no provers)."""
        seen = self.board()
        now = seen.chain_now() if seen is not None else 0
        return [self.auction_out(row) for row in self.store.open_auctions() if row.closes_at > now]

    async def auction(
        self,
        task_id: Annotated[str, Path(pattern=TASK_ID)],
        round: Annotated[
            int | None, Query(ge=1, le=2**31, description="a round; the latest if absent")
        ] = None,
    ) -> Any:
        """A task's auction (its latest round unless `round` is given): its terms, whether
        it is open, and once closed its result: the winners and the price each is paid."""
        row = self.store.auction(task_id.lower(), round)
        if row is None:
            which = f"round {round} of task {task_id}" if round else f"task {task_id}"
            return _problem(404, f"no auction for {which}")
        out = self.auction_out(row)
        out["state"] = row.state
        out["result"] = self.result(row) if row.state == CLOSED else None
        return out

    async def submit(self, bid: BidIn, request: Request) -> Any:
        """Submit a sealed bid. Accepted (202) means stored and sealed until the auction
        closes; keep the bid id to see its status. A prover's later bid in the same
        auction replaces its earlier one (at most `bids_per_prover` per auction)."""
        client = request.client.host if request.client else "?"
        wait = self.clients.take(client)
        if wait:
            return self.refused("rate_limited", f"too many bids from {client}; slow down", wait)
        seen = self.board()
        if seen is None:
            return self.refused("starting", "the frontend is catching up with the chain; retry shortly", 2)
        task_id = bid.task_id.lower()
        signature = bytes.fromhex(bid.signature[2:])
        try:
            auction = self.check(seen, self.open_auction(seen, task_id), bid, signature)
            wait = self.provers.take(bid.prover)
            if wait:
                return self.refused(
                    "rate_limited", f"too many bids from prover {bid.prover}; slow down", wait
                )
            with self.write_lock:
                row = self.store.add_bid(
                    task_id,
                    auction.round,
                    bid.prover,
                    bid.min_price,
                    bid.expiry,
                    bid.nonce,
                    signature,
                    self.settings.bids_per_prover,
                )
        except Refusal as no:  # the store's refusals too (StoreRefusal)
            return self.refused(no.code, no.reason)
        self.metrics.counter("bids_accepted_total", "Bids accepted (sealed)")
        if log.isEnabledFor(logging.DEBUG):
            emit(
                log,
                "auction.bid",
                logging.DEBUG,
                bid=row.bid_id,
                task=task_id,
                round=auction.round,
                pid=os.getpid(),
            )  # pid: which API process took it (--api-processes)
        accepted = {
            "bid_id": row.bid_id,
            "status": "sealed",
            "task_id": task_id,
            "round": auction.round,
            "closes_at": auction.closes_at,
        }
        return JSONResponse(accepted, status_code=202)

    async def bid_status(self, bid_id: Annotated[str, Path(pattern=BID_ID)]) -> Any:
        """A bid's status (its id is the only way to it): sealed until its auction closes,
        then won (with the price it is paid), lost or invalid (with the reason); replaced
        when the prover bid again in the same auction."""
        row = self.store.bid(bid_id)
        if row is None:
            return _problem(404, f"no bid {bid_id}")
        return bid_out(row, self.store.auction(row.task_id, row.round))

    # -------------------------------------------------------------- a bid's checks

    def open_auction(self, seen: Board, task_id: str) -> OpenAuction:
        """The task's auction if it takes bids now; else raises `Refusal` (unknown task or
        closed)."""
        found = seen.auctions.get(task_id)
        if found is not None and found.auction.closes_at > seen.chain_now():
            return found
        latest = self.store.auction(task_id)
        if latest is None:
            _refuse(
                "unknown_task",
                f"no auction for task {task_id}: not an open task of mechanism "
                f"{'/'.join(map(str, seen.mechanisms))}, or not seen yet",
            )
        _refuse(
            "closed", f"the auction of task {task_id} (round {latest.round}) closed at {latest.closes_at}"
        )

    def check(self, seen: Board, found: OpenAuction, bid: BidIn, signature: bytes) -> AuctionRow:
        """The signature, the signed terms and the prover, by the registry's rules as of the
        board; returns the auction, or raises `Refusal` with the first rule broken."""
        task, auction = found.task, found.auction
        signer = recover_bidder(
            seen.chain_id, seen.registry, task.task_id, bid.min_price, bid.expiry, bid.nonce, signature
        )
        if signer != bid.prover:
            _refuse(
                "wrong_signer",
                f"the signature is {signer}'s, not prover {bid.prover}'s: sign the Bid (task, min_price, "
                f"expiry, nonce) with the prover's own key, in the domain of chain {seen.chain_id} and "
                f"registry {seen.registry}",
            )
        margin = self.settings.expiry_margin
        least = auction.closes_at + margin
        why = seen.rules.terms_refusal(task, bid.prover, bid.min_price, bid.expiry, bid.nonce, least)
        if why is not None and why.code == "expired":
            why = Refusal(
                "expired",
                f"the bid expires at {bid.expiry}; it must last until at least {least}, the auction's "
                f"close ({auction.closes_at}) plus {margin} s for the assignment to be mined",
            )
        why = why or seen.rules.prover_refusal(task, bid.prover)
        if why is not None:
            raise why
        return auction

    # -------------------------------------------------------------- answers

    def refused(self, code: str, reason: str, retry_after: float | None = None) -> JSONResponse:
        """A refusal: counted by rule, its status by `STATUS`, Retry-After when given."""
        self.metrics.counter("bids_refused_total", "Bids refused, by rule", rule=code)
        if log.isEnabledFor(logging.DEBUG):
            emit(log, "auction.bid_refused", logging.DEBUG, rule=code, reason=reason, pid=os.getpid())
        headers = {"Retry-After": str(max(1, math.ceil(retry_after)))} if retry_after is not None else None
        return _problem(STATUS.get(code, 409), reason, headers)

    def auction_out(self, row: AuctionRow) -> dict[str, Any]:
        return {
            "task_id": row.task_id,
            "round": row.round,
            "market_id": row.market_id,
            "mechanism_id": row.mechanism_id,
            "max_reward": str(row.max_reward),
            "collateral": str(row.collateral),
            "proving_window": row.proving_window,
            "capabilities": str(row.capabilities),
            "redundancy": row.redundancy,
            "open_slots": row.open_slots,
            "assignable_until": row.assignable_until,
            "opened_at": row.opened_at,
            "closes_at": row.closes_at,
            "min_expiry": row.closes_at + self.settings.expiry_margin,
            "bids": row.bids,
        }

    def result(self, row: AuctionRow) -> dict[str, Any]:
        """A closed auction's winners (lowest bid first) and the price they are paid."""
        winners = sorted(self.store.winners(row.task_id, row.round), key=lambda b: (b.min_price, b.seq))
        return {
            "winners": [{"prover": w.prover, "price": str(w.price)} for w in winners],
            "price": None if row.price is None else str(row.price),
            "bids": row.bids,
            "note": row.note or "",
        }


def make_app(
    board: Callable[[], Board | None],
    store: AuctionStore,
    settings: ApiSettings | None = None,
    metrics: Metrics | None = None,
    write_lock: AbstractContextManager[Any] | None = None,
) -> FastAPI:
    """The API over the keeper's latest `board` and a store connection of its own (each
    bid's write inside `write_lock` if given)."""
    return AuctionApi(board, store, settings, metrics, write_lock).app()


async def _invalid(request: Request, error: RequestValidationError) -> JSONResponse:
    return _problem(422, _describe(error.errors()))


async def _http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
    return _problem(error.status_code, str(error.detail), getattr(error, "headers", None))


def bid_out(row: BidRow, auction: AuctionRow | None) -> dict[str, Any]:
    return {
        "bid_id": row.bid_id,
        "task_id": row.task_id,
        "round": row.round,
        "prover": row.prover,
        "min_price": str(row.min_price),
        "expiry": str(row.expiry),
        "nonce": str(row.nonce),
        "status": row.status,
        "price": None if row.price is None else str(row.price),
        "reason": row.reason,
        "received_at": row.received_at,
        "closes_at": auction.closes_at if auction else 0,
        "assigned_block": row.assigned_block,
    }


_PRINTABLE = re.compile(r"[^\x20-\x7e]")


def _describe(errors: Any) -> str:
    """Validation errors as one line: where, what was wrong (the input is not echoed)."""
    parts = []
    for error in list(errors)[:5]:
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "body"
        message = _PRINTABLE.sub("?", str(error.get("msg", "invalid")))[:200]
        if error.get("type") == "json_invalid":
            where, message = "body", "the body is not valid JSON"
        parts.append(f"{where}: {message}")
    return "; ".join(parts) or "invalid request"
