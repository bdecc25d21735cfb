"""A node with a public provider's limits, for tests: `RpcProxy` forwards JSON-RPC on a
free loopback port to a development node (anvil) and, like the providers people use,

- refuses an `eth_getLogs` over more than `max_blocks` blocks (2,000) or answering more
  than `max_logs` logs (10,000), with the error message of the provider `style` names
  (`STYLES`: alchemy, infura, quicknode, geth), suggesting a range where that one does;
- fails a share `failure_rate` of the calls to `fail_methods` (eth_getLogs by default),
  drawn from a seeded generator, as HTTP 503, HTTP 429, a JSON-RPC rate limit or a
  JSON-RPC timeout, in turn.

Batch requests are answered element by element (an HTTP failure fails the whole batch).
It serves from a thread of this process: `with RpcProxy(upstream) as proxy: ...proxy.uri`.
A subclass may answer by the URL's path or reset the connection instead of answering
(`serve`, raising `ConnectionDropped`): the chaos run's fault proxy (chaos/proxy.py).
`stats` counts what it did (calls per method, refusals, failures)."""

from __future__ import annotations

import contextlib
import json
import random
import socket
import struct
import threading
import urllib.request
from collections import Counter
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MAX_BLOCKS = 2_000
MAX_LOGS = 10_000
FAILURES = ("http_503", "http_429", "rpc_rate_limit", "rpc_timeout")
RATE_LIMITED = "Your app has exceeded its compute units per second capacity"  # Alchemy's 429


class ConnectionDropped(Exception):
    """Raised by `RpcProxy.serve` to reset the caller's connection instead of answering."""


def range_message(style: str, frm: int, to: int, max_blocks: int) -> tuple[int, str]:
    """(code, message) of a refused block range, as the provider says it."""
    if style == "alchemy":
        return -32602, (
            "Log response size exceeded. You can make eth_getLogs requests with up to a "
            f"{max_blocks // 1000}K block range and no limit on the response size, or you can request "
            "any block range with a cap of 10K logs in the response. Based on your parameters, this "
            f"block range should work: [{hex(frm)}, {hex(frm + max_blocks - 1)}]"
        )
    if style == "quicknode":
        return -32614, f"eth_getLogs is limited to a {max_blocks:,} range"
    if style == "infura":
        return -32005, (
            "query returned more than 10000 results. "
            f"Try with this block range [{hex(frm)}, {hex(frm + max_blocks - 1)}]."
        )
    return -32000, f"exceed maximum block range: {max_blocks}"


def size_message(style: str, frm: int, last: int, max_logs: int) -> tuple[int, str]:
    """(code, message) of an answer with too many logs; `last` the last block that fits."""
    if style == "alchemy":
        return -32602, (
            "Log response size exceeded. You can make eth_getLogs requests with up to a 2K block "
            f"range and no limit on the response size, or you can request any block range with a "
            f"cap of {max_logs // 1000 or max_logs}K logs in the response. Based on your parameters, "
            f"this block range should work: [{hex(frm)}, {hex(last)}]"
        )
    if style == "infura":
        return -32005, (
            f"query returned more than {max_logs} results. "
            f"Try with this block range [{hex(frm)}, {hex(last)}]."
        )
    if style == "quicknode":
        return -32614, "response size exceeded"
    return -32000, f"query returned more than {max_logs} results"


STYLES = ("alchemy", "infura", "quicknode", "geth")


class RpcProxy:
    """A JSON-RPC proxy to `upstream` with a provider's log limits and failures (see the
    module's doc). `start()` (or `with`) serves it; `stop()` ends it."""

    def __init__(
        self,
        upstream: str,
        max_blocks: int = MAX_BLOCKS,
        max_logs: int = MAX_LOGS,
        style: str = "geth",
        failure_rate: float = 0.0,
        seed: int = 0,
        fail_methods: Iterable[str] = ("eth_getLogs",),
    ):
        if style not in STYLES:
            raise ValueError(f"style {style!r}: one of {', '.join(STYLES)}")
        self.upstream = upstream
        self.max_blocks = max_blocks
        self.max_logs = max_logs
        self.style = style
        self.failure_rate = failure_rate
        self.fail_methods = set(fail_methods)
        self.stats: Counter[str] = Counter()
        self._random = random.Random(seed)
        self._next_failure = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.uri = ""

    # -------------------------------------------------------------- serving

    def start(self) -> RpcProxy:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    status, headers, answer = proxy.serve(self.path, body)
                except ConnectionDropped:  # reset: the caller sees its connection die
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.close_connection = True
                    return
                with contextlib.suppress(ConnectionError):  # the caller gave up or was killed
                    self.send_response(status)
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass  # quiet: tests read `stats`

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.uri = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="rpc-proxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def __enter__(self) -> RpcProxy:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -------------------------------------------------------------- answering

    def serve(self, path: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        """(HTTP status, headers, body) for a request to `path` (the URL's path: a subclass
        may tell its callers apart by it), or ConnectionDropped to reset the connection."""
        del path
        return self.handle(body)

    def handle(self, body: bytes) -> tuple[int, dict[str, str], bytes]:
        """(HTTP status, headers, body) for a request body."""
        try:
            request = json.loads(body)
        except json.JSONDecodeError:
            return 400, {}, b'{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse error"}}'
        calls = request if isinstance(request, list) else [request]
        failure = self._failure(calls)
        if failure == "http_503":
            return 503, {}, b'{"error":"service temporarily unavailable"}'
        if failure == "http_429":
            return 429, {"Retry-After": "0"}, b'{"error":"too many requests"}'
        answers = [self._answer(call, failure) for call in calls]
        return 200, {}, json.dumps(answers if isinstance(request, list) else answers[0]).encode()

    def _failure(self, calls: list) -> str | None:
        """The failure this request gets, if any (drawn for requests calling a method that
        fails)."""
        if not any(isinstance(c, dict) and c.get("method") in self.fail_methods for c in calls):
            return None
        with self._lock:
            if self._random.random() >= self.failure_rate:
                return None
            failure = FAILURES[self._next_failure % len(FAILURES)]
            self._next_failure += 1
            self.stats[f"failed.{failure}"] += 1
            return failure

    def _answer(self, call: dict, failure: str | None) -> dict:
        method, call_id = call.get("method"), call.get("id")
        with self._lock:
            self.stats[f"calls.{method}"] += 1
        if failure is not None and method in self.fail_methods:
            if failure == "rpc_rate_limit":
                error = {"code": 429, "message": RATE_LIMITED}
            else:
                error = {"code": -32000, "message": "request timed out"}
            return {"jsonrpc": "2.0", "id": call_id, "error": error}
        if method == "eth_getLogs":
            refused = self._refuse_logs(call)
            if refused is not None:
                return refused
        return self._forward(call)

    def _refuse_logs(self, call: dict) -> dict | None:
        """A provider's refusal of this log query, or None to forward it."""
        params = dict((call.get("params") or [{}])[0])
        if "blockHash" in params:
            return None
        frm = self._block(params.get("fromBlock", "latest"))
        to = self._block(params.get("toBlock", "latest"))
        if to - frm + 1 > self.max_blocks:
            code, message = range_message(self.style, frm, to, self.max_blocks)
            return self._refusal(call, "refused.range", code, message)
        answer = self._forward(call)
        logs = answer.get("result")
        if isinstance(logs, list) and len(logs) > self.max_logs:
            last = int(logs[self.max_logs]["blockNumber"], 16) - 1  # before the first log over
            code, message = size_message(self.style, frm, max(frm, last), self.max_logs)
            return self._refusal(call, "refused.size", code, message)
        return answer

    def _refusal(self, call: dict, stat: str, code: int, message: str) -> dict:
        with self._lock:
            self.stats[stat] += 1
        return {"jsonrpc": "2.0", "id": call.get("id"), "error": {"code": code, "message": message}}

    def _block(self, tag: Any) -> int:
        if isinstance(tag, int):
            return tag
        if tag in ("latest", "pending", "safe", "finalized"):
            return int(self._forward({"jsonrpc": "2.0", "id": 0, "method": "eth_blockNumber"})["result"], 16)
        if tag == "earliest":
            return 0
        return int(tag, 16)

    def _forward(self, call: dict) -> dict:
        request = urllib.request.Request(
            self.upstream, json.dumps(call).encode(), {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())
