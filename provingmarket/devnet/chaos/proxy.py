"""A loopback JSON-RPC proxy that fails calls as a flaky provider or network does: the
chaos run puts two of them in front of its anvil and gives every process both
(`--rpc A/NAME,B/NAME`), so each call can fail over to the other.

A share `rate` of the requests, drawn from a seeded generator, gets one of FAULTS:

- `reset`: the connection is reset before the node sees the call;
- `http_503`, `http_429`: a gateway's refusal (the node never sees the call);
- `slow`: the node answers, the answer comes `slow` seconds late (under the callers'
  timeout: slow, not dead);
- `lost`: the node gets and runs the call, then the connection is reset: the caller never
  hears (a transaction received, its sender not told).

Each caller names itself by the URL's path (`/agent-1`): a fault is *recovered* when that
caller next gets an answer through either proxy, and the time from the fault to that answer
is its time to recover. A caller can also be *cut off* (`Ledger.cut`): every call it makes
through either proxy is reset for that many seconds, as when its network goes away; the cut
is recovered at its first answer afterwards. The draws are seeded; which call a draw lands on depends on the
callers' timing, so two runs inject the same kinds at the same rate, not on the same calls.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from provingmarket.devnet.rpc_proxy import ConnectionDropped, RpcProxy

FAULTS = ("reset", "http_503", "http_429", "slow", "lost")
NO_LIMIT = 10**12  # no provider limit on log queries: only the faults


@dataclass
class RpcFault:
    kind: str
    caller: str
    at: float  # the clock's time it was injected
    recovered_after: float | None = None  # seconds until the caller's next answer


@dataclass
class Cut:
    caller: str
    at: float  # the clock's time it began
    until: float
    up_at: float | None = None  # the caller's first answer after it


class Ledger:
    """The faults of every proxy, and when each caller next got an answer; shared by the
    proxies, so an answer through either recovers a caller's faults."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.faults: list[RpcFault] = []
        self.cuts: list[Cut] = []
        self._pending: dict[str, list[RpcFault]] = {}
        self._lock = threading.Lock()

    def cut(self, caller: str, seconds: float) -> Cut:
        """Cut `caller` off every proxy for `seconds`."""
        now = self.clock()
        cut = Cut(caller, now, now + seconds)
        with self._lock:
            self.cuts.append(cut)
        return cut

    def cut_off(self, caller: str) -> bool:
        now = self.clock()
        return any(c.caller == caller and c.at <= now < c.until for c in self.cuts)

    def fault(self, kind: str, caller: str) -> RpcFault:
        fault = RpcFault(kind, caller, self.clock())
        with self._lock:
            self.faults.append(fault)
            self._pending.setdefault(caller, []).append(fault)
        return fault

    def answered(self, caller: str) -> None:
        with self._lock:
            pending = self._pending.pop(caller, [])
        now = self.clock()
        for fault in pending:
            fault.recovered_after = now - fault.at
        for cut in self.cuts:
            if cut.caller == caller and cut.up_at is None and now >= cut.until:
                cut.up_at = now


class FaultProxy(RpcProxy):
    """A JSON-RPC proxy to `upstream` injecting FAULTS (module doc) into a share `rate` of
    the requests, recorded in `ledger`. `enabled` turns the faults off and on."""

    def __init__(
        self,
        upstream: str,
        ledger: Ledger,
        rate: float,
        seed: int,
        kinds: Sequence[str] = FAULTS,
        slow: tuple[float, float] = (0.5, 2.0),
    ):
        super().__init__(upstream, max_blocks=NO_LIMIT, max_logs=NO_LIMIT, seed=seed)
        unknown = set(kinds) - set(FAULTS)
        if unknown:
            raise ValueError(f"fault kinds {sorted(unknown)}: each must be one of {', '.join(FAULTS)}")
        if not 0 <= rate <= 1:
            raise ValueError(f"fault rate {rate}: a share between 0 and 1")
        self.ledger = ledger
        self.rate = rate
        self.kinds = tuple(kinds)
        self.slow = slow
        self.enabled = True
        self._draws = random.Random(seed)

    def url(self, caller: str) -> str:
        """This proxy's URL for `caller` (its name in the ledger)."""
        return f"{self.uri}/{caller}"

    def _draw(self) -> tuple[str, float] | None:
        with self._lock:
            if not self.enabled or self._draws.random() >= self.rate:
                return None
            return self._draws.choice(self.kinds), self._draws.uniform(*self.slow)

    def serve(self, path: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        caller = path.strip("/") or "-"
        if self.ledger.cut_off(caller):
            raise ConnectionDropped
        drawn = self._draw()
        if drawn is None:
            answer = self.handle(body)
            self.ledger.answered(caller)
            return answer
        kind, delay = drawn
        self.ledger.fault(kind, caller)
        if kind == "reset":
            raise ConnectionDropped
        if kind == "http_503":
            return 503, {}, b'{"error":"service temporarily unavailable"}'
        if kind == "http_429":
            return 429, {"Retry-After": "1"}, b'{"error":"too many requests"}'
        answer = self.handle(body)  # slow and lost: the node runs the call
        if kind == "lost":
            raise ConnectionDropped
        time.sleep(delay)
        self.ledger.answered(caller)
        return answer
