"""A process's health, as its loop reports it and /healthz and /readyz serve it
(provingmarket/runtime/metrics.py).

    health = Health(max_lag=5, max_age=60)
    health.running(True)                          # the loop started
    health.round_done(head=120, synced=118, trail=2)
    health.ready()   # (True, {...}): synced within 5 blocks, a round within 60 s

- alive (/healthz): the loop runs (between `running(True)` and `running(False)`);
- ready (/readyz): alive, the mirror within `max_lag` blocks of the head (beyond the
  `trail` blocks it keeps back on purpose, `--confirmations`), and a round completed
  within `max_age` seconds. When not ready, the body's `failing` says which.
"""

from __future__ import annotations

import threading
import time
from typing import Any

READY_LAG = 5  # blocks behind the head (beyond --confirmations) a ready process may be
READY_AGE = 60.0  # seconds since the last completed round a ready process may be


class Health:
    def __init__(self, max_lag: int = READY_LAG, max_age: float = READY_AGE):
        self.max_lag = max_lag
        self.max_age = max_age
        self._lock = threading.Lock()
        self._running = False
        self._rounds = 0
        self._head: int | None = None
        self._synced: int | None = None
        self._trail = 0
        self._last_round: float | None = None  # time.monotonic()

    def running(self, running: bool) -> None:
        with self._lock:
            self._running = running

    def round_done(self, head: int, synced: int, trail: int = 0) -> None:
        """A round completed with the mirror at block `synced` and the chain at `head`."""
        with self._lock:
            self._rounds += 1
            self._head, self._synced, self._trail = head, synced, trail
            self._last_round = time.monotonic()

    def alive(self) -> tuple[bool, dict[str, Any]]:
        with self._lock:
            return self._running, {"alive": self._running, "rounds": self._rounds}

    def ready(self) -> tuple[bool, dict[str, Any]]:
        with self._lock:
            failing = []
            if not self._running:
                failing.append("loop: not running")
            age = None if self._last_round is None else round(time.monotonic() - self._last_round, 3)
            lag = None
            if age is None:
                failing.append("round: none completed yet")
            else:
                if age > self.max_age:
                    failing.append(f"round: last completed {age:.0f} s ago (at most {self.max_age:g} s)")
                assert self._head is not None and self._synced is not None
                lag = max(0, self._head - self._trail - self._synced)
                if lag > self.max_lag:
                    failing.append(f"synced: {lag} blocks behind the head (at most {self.max_lag})")
            body = {
                "ready": not failing,
                "failing": failing,
                "head": self._head,
                "synced": self._synced,
                "lag_blocks": lag,
                "last_round_age_s": age,
                "rounds": self._rounds,
            }
            return not failing, body
