"""Prometheus metrics for keepers and agents (prometheus-client, one registry per
process), served with the process's health at http://127.0.0.1:<port>/:

- `/metrics`: the text exposition format;
- `/healthz`: 200 while the process's loop runs (provingmarket/runtime/health.py);
- `/readyz`: 200 when synced near the head and a round completed recently, else 503
  with a JSON body naming the condition that fails.

    metrics = Metrics("orderbook")
    metrics.counter("assignments_sent_total", "Assignments sent", mechanism="3")
    metrics.gauge("tasks_open", "Open tasks", 12)
    metrics.observe("round_seconds", "Time a round takes", 0.042)
    port = metrics.serve(0)          # 0: any free port; returns the port bound

Names get the namespace as prefix (`orderbook_tasks_open`); a counter's name ends in
`_total` (added if missing). A metric's label names are fixed by its first use.
"""

from __future__ import annotations

import errno
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from provingmarket.chain.client import ClientError
from provingmarket.runtime.health import Health


def resident_kib() -> int:
    """This process's own resident memory, KiB (Linux: the kernel's status of this process)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in this process's status (not Linux?)")


# Seconds, from a keeper's round (milliseconds) to a slow proof or a transaction mined
# on a 12-second chain after a few replacements (tens of minutes).
SECONDS_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600)

# `<name>_created` series double every counter for what a restart already tells.
prometheus_client.disable_created_metrics()


class PortInUse(ClientError):
    """The port asked for is taken: one line naming it and the option that sets it."""

    def __init__(self, port: int, option: str, what: str):
        super().__init__(
            f"port {port} ({what}) is already in use: stop what holds it, or give another "
            f"port with {option} (0 picks a free one)"
        )
        self.port = port


def bind_error(error: OSError, port: int, option: str, what: str) -> Exception:
    """`error` from binding `port`, as PortInUse if the port is taken."""
    if error.errno == errno.EADDRINUSE:
        return PortInUse(port, option, what)
    return ClientError(f"cannot serve {what} on port {port} ({option}): {error.strerror or error}")


def listen(
    port: int, host: str = "127.0.0.1", option: str = "--port", what: str = "the API"
) -> socket.socket:
    """A TCP socket bound to `host`:`port` (0 picks a free port), for a server to start on
    later; a port in use is one line naming it and `option` (PortInUse)."""
    # IPPROTO_TCP named: asyncio sets TCP_NODELAY only on sockets that say so, and
    # without it every answer waits out the client's delayed ACK (40 ms).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise bind_error(error, port, option, what) from None
    return sock


class Metrics:
    def __init__(self, namespace: str, health: Health | None = None):
        self.namespace = namespace
        self.registry = CollectorRegistry(auto_describe=True)
        self.health = health or Health()
        self._metrics: dict[str, tuple[Counter | Gauge | Histogram, tuple[str, ...]]] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.registry.register(_HealthCollector(namespace, self.health))

    def _metric(self, kind: type, name: str, help_text: str, labels: dict[str, object]) -> Any:
        """The metric `name` (its child for `labels`), made on first use."""
        names = tuple(sorted(labels))
        with self._lock:
            found = self._metrics.get(name)
            if found is None:
                extra: dict[str, Any] = {"buckets": SECONDS_BUCKETS} if kind is Histogram else {}
                metric = kind(
                    name.removesuffix("_total") if kind is Counter else name,
                    help_text,
                    names,
                    namespace=self.namespace,
                    registry=self.registry,
                    **extra,
                )
                found = self._metrics[name] = (metric, names)
        metric, known = found
        if not isinstance(metric, kind) or known != names:
            raise ValueError(f"metric {name} was first used as {type(metric).__name__}{list(known)}")
        return metric.labels(**{k: str(v) for k, v in labels.items()}) if names else metric

    def counter(self, name: str, help_text: str, amount: float = 1, **labels: object) -> None:
        self._metric(Counter, name, help_text, labels).inc(amount)

    def gauge(self, name: str, help_text: str, value: float, **labels: object) -> None:
        self._metric(Gauge, name, help_text, labels).set(value)

    def observe(self, name: str, help_text: str, value: float, **labels: object) -> None:
        """One observation of a histogram (seconds: SECONDS_BUCKETS)."""
        self._metric(Histogram, name, help_text, labels).observe(value)

    def value(self, name: str, **labels: object) -> float:
        """A counter's or gauge's value (a histogram's: its count); 0 if never set."""
        found = self._metrics.get(name)
        if found is None:
            return 0
        metric = found[0]
        full = f"{self.namespace}_{name.removesuffix('_total')}"
        sample = {Counter: f"{full}_total", Gauge: full, Histogram: f"{full}_count"}[type(metric)]
        got = self.registry.get_sample_value(sample, {k: str(v) for k, v in labels.items()})
        return got or 0

    def render(self) -> str:
        return generate_latest(self.registry).decode()

    def serve(self, port: int, host: str = "127.0.0.1", option: str = "--metrics-port") -> int:
        """Serve /metrics, /healthz and /readyz from a daemon thread; returns the port
        bound. A port in use raises PortInUse naming `option`."""
        metrics = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # http.server calls it by this name
                path = self.path.split("?")[0]
                if path == "/metrics":
                    self._answer(200, metrics.render().encode(), CONTENT_TYPE_LATEST)
                elif path in ("/healthz", "/readyz"):
                    ok, body = metrics.health.alive() if path == "/healthz" else metrics.health.ready()
                    self._answer(200 if ok else 503, json.dumps(body).encode(), "application/json")
                else:
                    self.send_error(404, "served here: /metrics, /healthz, /readyz")

            def _answer(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):  # scrapes and probes are not worth a log line
                pass

        try:
            self._server = ThreadingHTTPServer((host, port), Handler)
        except OSError as error:
            raise bind_error(error, port, option, "metrics and health") from None
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="metrics", daemon=True).start()
        return self._server.server_address[1]

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class _HealthCollector:
    """/readyz as metrics, read at each scrape: `<ns>_ready` (1 or 0) and
    `<ns>_last_round_age_seconds`."""

    def __init__(self, namespace: str, health: Health):
        self.namespace = namespace
        self.health = health

    def describe(self):
        return []

    def collect(self):
        ok, body = self.health.ready()
        yield GaugeMetricFamily(f"{self.namespace}_ready", "1 while /readyz answers 200", value=int(ok))
        age = body["last_round_age_s"]
        if age is not None:
            yield GaugeMetricFamily(
                f"{self.namespace}_last_round_age_seconds",
                "Seconds since the last completed round",
                value=age,
            )
