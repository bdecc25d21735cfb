"""New heads over WebSocket: what wakes a keeper's or an agent's round as soon as a block
arrives, with polling as the fallback.

    heads = HeadFollower(["ws://127.0.0.1:8545"], web3, chain_id, name="orderbook")
    heads.start()
    while not stop.stopped:
        round_()
        heads.wait(stop, poll)      # "head", "timeout" or "stop"
    heads.close()

A thread holds an `eth_subscribe` "newHeads" subscription on the first WebSocket URL that
answers as the expected chain. `wait` returns as soon as a head arrives that the last
`wait` did not report, and after `timeout` seconds at the latest (a round runs at least
every --poll seconds whatever the subscription does). Several heads during one round wake
the next round once: rounds run at most once per head, never back to back for nothing.

The subscription only wakes the round. What the round reads (the registry's events) it
reads as before, with eth_getLogs over HTTP, confirmed and reorg-aware (the mirror,
provingmarket/chain/mirror): a head missed or announced twice costs nothing but a round.

Fallback. Subscription lost (the endpoint gone, the connection dropped, another chain): one
log line (`<name>.heads_lost`), and while it is down `wait` asks the HTTP endpoints for the
block number every `head_poll` seconds and wakes the round when it moved, so a round still
follows a block within about `head_poll`; the thread reconnects (each URL in turn, backing
off 0.5 s doubling to 30 s) and says so (`<name>.heads`). A subscription that goes silent
without closing is caught by the WebSocket's own keepalive pings (20 s).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any, Protocol

from web3 import Web3

from provingmarket.chain.endpoints import shown

log = logging.getLogger("provingmarket.chain.heads")

HEAD_POLL = 1.0  # seconds between block-number checks while the subscription is down
RECONNECT = 0.5  # first pause before subscribing again; doubling...
MAX_RECONNECT = 30.0  # ...to this
OPEN_TIMEOUT = 5.0  # seconds to open a WebSocket and subscribe
SLICE = 0.2  # seconds: how often a wait looks at the stop flag


class Stop(Protocol):
    @property
    def stopped(self) -> bool: ...


class HeadFollower:
    """Wakes a loop on new heads (module docstring). `web3`: the process's HTTP connection,
    asked for the block number while the subscription is down."""

    def __init__(
        self,
        urls: Sequence[str],
        web3: Web3,
        chain_id: int | None,
        name: str,
        head_poll: float = HEAD_POLL,
    ):
        self.urls = list(urls)
        self.web3 = web3
        self.chain_id = chain_id
        self.name = name
        self.head_poll = head_poll
        self.arrived = threading.Event()  # a head came that no wait reported yet
        self.subscribed = threading.Event()
        self.closed = threading.Event()
        self.head: int | None = None  # the newest head number known (subscription or polling)
        self.wrong: set[str] = set()  # URLs of another chain: never used again
        self.heads_total = 0
        self.thread = threading.Thread(target=self._follow, name=f"{name}-heads", daemon=True)

    def start(self) -> HeadFollower:
        self.thread.start()
        return self

    def close(self) -> None:
        self.closed.set()
        self.thread.join(timeout=5)

    # -------------------------------------------------------------- waiting

    def wait(self, stop: Stop, timeout: float) -> str:
        """Until a new head ("head"), `timeout` seconds ("timeout") or `stop` ("stop")."""
        deadline = time.monotonic() + timeout
        next_check = 0.0
        while not stop.stopped:
            now = time.monotonic()
            if now >= deadline:
                return "timeout"
            if self.arrived.is_set():
                self.arrived.clear()
                return "head"
            if not self.subscribed.is_set() and now >= next_check:
                next_check = now + self.head_poll
                if self._head_moved():
                    return "head"
            self.arrived.wait(min(SLICE, max(0.0, deadline - now)))
        return "stop"

    def _head_moved(self) -> bool:
        """Polling for heads: the block number over HTTP moved past the newest known."""
        try:
            number = self.web3.eth.block_number
        except Exception:  # the node is down too: the round's own error handling says so
            return False
        moved = self.head is not None and number > self.head
        if self.head is None or number > self.head:
            self.head = number
        return moved

    # -------------------------------------------------------------- the thread

    def _follow(self) -> None:
        from websockets.sync.client import connect

        pause, turn, lost = RECONNECT, 0, False
        while not self.closed.is_set():
            usable = [u for u in self.urls if u not in self.wrong]
            if not usable:
                self._say(
                    "heads_off",
                    logging.ERROR,
                    reason="no WebSocket URL of this chain; rounds follow by polling",
                )
                return
            url = usable[turn % len(usable)]
            turn += 1
            try:
                with connect(url, open_timeout=OPEN_TIMEOUT, close_timeout=1) as socket:
                    self._subscribe(socket, url)
                    pause = RECONNECT
                    self.subscribed.set()
                    self._say("heads", ws=shown(url), resumed=lost)
                    lost = False
                    self._receive(socket)
            except Exception as error:
                if self.closed.is_set():
                    break
                was = self.subscribed.is_set()
                self.subscribed.clear()
                if was or not lost:
                    self._say(
                        "heads_lost",
                        logging.WARNING,
                        ws=shown(url),
                        error=f"{type(error).__name__}: {error}"[:200],
                        polling_every=self.head_poll,
                    )
                lost = True
                self.closed.wait(pause)
                pause = min(pause * 2, MAX_RECONNECT)
        self.subscribed.clear()

    def _subscribe(self, socket: Any, url: str) -> None:
        if self.chain_id is not None:
            found = int(_request(socket, 1, "eth_chainId", []), 16)
            if found != self.chain_id:
                self.wrong.add(url)
                raise ConnectionError(f"{shown(url)} is chain {found}, not chain {self.chain_id}: not used")
        _request(socket, 2, "eth_subscribe", ["newHeads"])

    def _receive(self, socket: Any) -> None:
        while not self.closed.is_set():
            try:
                message = socket.recv(timeout=SLICE)
            except TimeoutError:
                continue
            note = json.loads(message)
            if note.get("method") != "eth_subscription":
                continue
            number = int(note["params"]["result"]["number"], 16)
            self.heads_total += 1
            if self.head is None or number > self.head:
                self.head = number
            self.arrived.set()

    def _say(self, kind: str, level: int = logging.INFO, **fields: Any) -> None:
        log.log(level, json.dumps({"event": f"{self.name}.{kind}", **fields}, default=str))


def _request(socket: Any, request_id: int, method: str, params: list) -> Any:
    """One JSON-RPC call over the socket, before any notification can arrive."""
    socket.send(json.dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}))
    answer = json.loads(socket.recv(timeout=OPEN_TIMEOUT))
    if "error" in answer:
        raise ConnectionError(f"{method}: {answer['error'].get('message', answer['error'])}")
    return answer["result"]


def follow_heads(client: Any, name: str) -> HeadFollower | None:
    """The follower for a client connected with WebSocket URLs (RegistryClient.ws_urls),
    started; None when it has none (rounds follow by polling alone)."""
    urls = tuple(getattr(client, "ws_urls", ()))
    if not urls:
        return None
    deployment = getattr(client, "deployment", None)
    chain_id = deployment.chain_id if deployment is not None else None
    return HeadFollower(urls, client.web3, chain_id, name).start()
