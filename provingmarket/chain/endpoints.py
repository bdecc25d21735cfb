"""Several JSON-RPC endpoints of one chain, used as one: a web3 provider that fails over.

    provider = FailoverProvider(parse_urls(["http://a:8545,http://b:8545"]))
    provider.check_chains(chain_id)        # every endpoint answering is that chain, else EndpointError
    web3 = Web3(provider)

Each call goes to the first endpoint in the order given that is not backing off. A call
that fails because the endpoint did not answer (connection refused or reset, a timeout, an
HTTP 5xx or 429 from a gateway) is sent to the next endpoint at once, and the endpoint
left backs off: tried again BACKOFF seconds later, doubling to MAX_BACKOFF while it keeps
failing. An answer that is a JSON-RPC error (a revert, "nonce too low", a bad argument) is
an answer: returned as it is, no failover. When the endpoint in use changes, one log line
says which one was left and which one is used (`rpc.failover`; `rpc.endpoint_back` when
an earlier one answers again). When every endpoint fails the last error is raised: the
process's loop waits and tries again (runtime.run_forever).

Same chain: `check_chains` asks each endpoint its chain id at start; one that is another
chain stops the process with one line (`EndpointError`), one that does not answer is
checked when it is first used (a wrong one is then never used again, and says so).

What failover does not change: a transaction is the same signed bytes whichever endpoint
carries it (the outbox signs once, stores, then broadcasts: provingmarket/chain/outbox.py),
so sending it again through the next endpoint after a connection error can never make a
second transaction: both carry one nonce, at most one is mined.

URLs in log lines show the scheme, host and port only: a provider's key in the path or
credentials in the URL never reach a log.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast
from urllib.parse import urlsplit

import requests
from web3 import HTTPProvider
from web3.providers.base import JSONBaseProvider
from web3.types import RPCEndpoint, RPCResponse

log = logging.getLogger("provingmarket.chain.endpoints")

BACKOFF = 5.0  # seconds an endpoint that failed rests before it is tried again; doubling...
MAX_BACKOFF = 60.0  # ...to this while it keeps failing
TIMEOUT = 30.0  # seconds a call may take on one endpoint (one endpoint: as before)
FAILOVER_TIMEOUT = 10.0  # with several endpoints: a hung one is left sooner


class EndpointError(ValueError):
    """An endpoint that cannot be used: a malformed URL, another chain."""


class Silent(EndpointError):
    """No endpoint answered (each failed to: refused, reset, 5xx or 429, a timeout)."""


def parse_urls(values: str | Iterable[str], schemes: tuple[str, ...] = ("http", "https")) -> list[str]:
    """The URLs given (repeated, comma-separated or both), in order, each once; EndpointError
    for one that is not a URL of `schemes`."""
    given = [values] if isinstance(values, str) else list(values)
    urls: list[str] = []
    for value in given:
        for url in (part.strip() for part in value.split(",")):
            if not url:
                continue
            parts = urlsplit(url)
            if parts.scheme not in schemes or not parts.hostname:
                kinds = " or ".join(f"{s}://" for s in schemes)
                raise EndpointError(
                    f"'{url.rpartition('@')[2][:80]}' is not a {kinds} URL; "
                    f"give one like {schemes[0]}://127.0.0.1:8545"
                )
            if url not in urls:
                urls.append(url)
    return urls


def shown(url: str) -> str:
    """`url` fit for a log line: scheme, host and port (no credentials, no path: a
    provider's API key often is the path)."""
    parts = urlsplit(url)
    if not parts.scheme or not parts.hostname:
        return "(not a URL)"
    port = f":{parts.port}" if parts.port else ""
    rest = "/…" if parts.path.strip("/") or parts.query else ""
    return f"{parts.scheme}://{parts.hostname}{port}{rest}"


def unavailable(error: BaseException) -> bool:
    """The endpoint did not answer (its fault or the network's), as opposed to an answer."""
    if isinstance(error, requests.HTTPError):
        status = error.response.status_code if error.response is not None else 0
        return status >= 500 or status == 429
    return isinstance(error, (requests.ConnectionError, requests.Timeout, ConnectionError, TimeoutError))


class Transport(Protocol):
    """What the provider needs of one endpoint: web3's HTTPProvider (or, in the unit tests
    of the endpoint choice only, a fake one)."""

    def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse: ...

    def make_batch_request(self, batch_requests: list[tuple[RPCEndpoint, Any]]) -> Any: ...


@dataclass
class Endpoint:
    url: str
    transport: Transport
    failures: int = 0  # in a row
    rest_until: float = 0.0  # monotonic time before which it is tried only if all others fail
    checked: bool = False  # its chain id was compared with the expected one
    wrong: str = ""  # why it is never used (another chain)


def http_transport(timeout: float) -> Callable[[str], Transport]:
    def make(url: str) -> Transport:
        # No retries inside one endpoint when there are others: failing over is the retry.
        return HTTPProvider(url, request_kwargs={"timeout": timeout}, exception_retry_configuration=None)

    return make


class FailoverProvider(JSONBaseProvider):
    """A web3 provider over the endpoints at `urls`, the first preferred (module docstring).
    Thread-safe: the agent calls from its proving threads."""

    def __init__(
        self,
        urls: Sequence[str],
        timeout: float | None = None,
        backoff: float = BACKOFF,
        max_backoff: float = MAX_BACKOFF,
        transport: Callable[[str], Transport] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        super().__init__()
        if not urls:
            raise EndpointError("give at least one RPC URL")
        if transport is None:
            if len(urls) == 1:  # one endpoint: exactly the provider it always was
                one = HTTPProvider(urls[0], request_kwargs={"timeout": timeout or TIMEOUT})
                transport = lambda _url: one  # noqa: E731
            else:
                transport = http_transport(timeout or FAILOVER_TIMEOUT)
        self.endpoints = [Endpoint(url, transport(url)) for url in urls]
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.clock = clock
        self.chain_id: int | None = None
        self.source = ""
        self.current = self.endpoints[0]
        self.lock = threading.Lock()

    def __str__(self) -> str:
        return "RPC endpoints " + ", ".join(shown(e.url) for e in self.endpoints)

    @property
    def urls(self) -> list[str]:
        return [e.url for e in self.endpoints]

    # -------------------------------------------------------------- chain

    def check_chains(self, chain_id: int, source: str = "") -> list[str]:
        """Every endpoint that answers must be chain `chain_id` (EndpointError naming the
        first that is not, and `source`, where the chain id comes from); returns the URLs
        that did not answer (checked when first used)."""
        self.chain_id = chain_id
        self.source = source
        silent = []
        for endpoint in self.endpoints:
            try:
                self._check(endpoint)
            except Exception as error:
                if not unavailable(error):
                    raise
                silent.append(endpoint.url)
            if endpoint.wrong:
                raise EndpointError(endpoint.wrong)
        if len(silent) == len(self.endpoints):
            raise Silent(f"no node answers at {', '.join(shown(u) for u in silent)}")
        for url in silent:
            _emit(logging.WARNING, "rpc.endpoint_silent", endpoint=shown(url), checked="when first used")
        return silent

    def _check(self, endpoint: Endpoint) -> None:
        if endpoint.checked or self.chain_id is None:
            return
        answer = endpoint.transport.make_request(RPCEndpoint("eth_chainId"), [])
        found = int(str(answer["result"]), 16) if "result" in answer else None
        endpoint.checked = True
        if found != self.chain_id:
            endpoint.wrong = (
                f"RPC endpoint {shown(endpoint.url)} is chain {found}, not chain {self.chain_id}"
                f"{f' ({self.source} chain)' if self.source else ''}: give endpoints of that chain only"
            )

    # -------------------------------------------------------------- choice

    def order(self) -> list[Endpoint]:
        """The endpoints to try, in turn: those not resting in the order given, then the
        resting ones, soonest due first (all failing is no reason not to try)."""
        now = self.clock()
        usable = [e for e in self.endpoints if not e.wrong]
        ready = [e for e in usable if e.rest_until <= now]
        resting = sorted((e for e in usable if e.rest_until > now), key=lambda e: e.rest_until)
        return ready + resting

    def _failed(self, endpoint: Endpoint) -> None:
        with self.lock:
            endpoint.failures += 1
            delay = min(self.backoff * 2 ** (endpoint.failures - 1), self.max_backoff)
            endpoint.rest_until = self.clock() + delay

    def _answered(self, endpoint: Endpoint, error: BaseException | None) -> None:
        with self.lock:
            endpoint.failures = 0
            endpoint.rest_until = 0.0
            left, self.current = self.current, endpoint
        if left is endpoint:
            return
        back = self.endpoints.index(endpoint) < self.endpoints.index(left)
        _emit(
            logging.INFO if back else logging.WARNING,
            "rpc.endpoint_back" if back else "rpc.failover",
            left=shown(left.url),
            using=shown(endpoint.url),
            **({"error": f"{type(error).__name__}: {error}"[:200]} if error is not None else {}),
        )

    def _call(self, send: Callable[[Transport], Any]) -> Any:
        error: BaseException | None = None
        tried = self.order()
        if not tried:
            raise EndpointError(next(e.wrong for e in self.endpoints if e.wrong))
        for endpoint in tried:
            try:
                if not endpoint.checked:
                    self._check(endpoint)
                    if endpoint.wrong:
                        _emit(
                            logging.ERROR,
                            "rpc.wrong_chain",
                            endpoint=shown(endpoint.url),
                            error=endpoint.wrong,
                        )
                        continue
                answer = send(endpoint.transport)
            except Exception as failure:
                if not unavailable(failure):
                    raise
                self._failed(endpoint)
                error = failure
                continue
            self._answered(endpoint, error if endpoint is not self.current else None)
            return answer
        assert error is not None or all(e.wrong for e in tried)
        if error is None:
            raise EndpointError("every RPC endpoint is another chain than the deployment record")
        raise error

    # -------------------------------------------------------------- web3

    def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        return cast(RPCResponse, self._call(lambda t: t.make_request(method, params)))

    def make_batch_request(self, batch_requests: list[tuple[RPCEndpoint, Any]]) -> Any:
        return self._call(lambda t: t.make_batch_request(batch_requests))

    def is_connected(self, show_traceback: bool = False) -> bool:
        try:
            return "result" in self.make_request(RPCEndpoint("web3_clientVersion"), [])
        except Exception:
            if show_traceback:
                raise
            return False


def _emit(level: int, kind: str, **fields: Any) -> None:
    log.log(level, json.dumps({"event": kind, **fields}, default=str))
