"""Prometheus metrics for keepers and agents: counters and gauges with labels, served
as the text exposition format (version 0.0.4) at http://127.0.0.1:<port>/metrics.

    metrics = Metrics("orderbook")
    metrics.counter("assignments_sent_total", "Assignments sent", mechanism="3")
    metrics.gauge("tasks_open", "Open tasks", 12)
    port = metrics.serve(0)          # 0: any free port; returns the port bound
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Metrics:
    def __init__(self, namespace: str):
        self.namespace = namespace
        self._values: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
        self._meta: dict[str, tuple[str, str]] = {}  # name -> (type, help)
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def _key(self, name: str, kind: str, help_text: str, labels: dict[str, object]):
        full = f"{self.namespace}_{name}"
        self._meta.setdefault(full, (kind, help_text))
        return full, tuple(sorted((k, str(v)) for k, v in labels.items()))

    def counter(self, name: str, help_text: str, amount: float = 1, **labels: object) -> None:
        with self._lock:
            full, key = self._key(name, "counter", help_text, labels)
            series = self._values.setdefault(full, {})
            series[key] = series.get(key, 0) + amount

    def gauge(self, name: str, help_text: str, value: float, **labels: object) -> None:
        with self._lock:
            full, key = self._key(name, "gauge", help_text, labels)
            self._values.setdefault(full, {})[key] = value

    def value(self, name: str, **labels: object) -> float:
        key = tuple(sorted((k, str(v)) for k, v in labels.items()))
        with self._lock:
            return self._values.get(f"{self.namespace}_{name}", {}).get(key, 0)

    def render(self) -> str:
        lines = []
        with self._lock:
            for full in sorted(self._values):
                kind, help_text = self._meta[full]
                lines.append(f"# HELP {full} {help_text}")
                lines.append(f"# TYPE {full} {kind}")
                for key, value in sorted(self._values[full].items()):
                    labels = ",".join(f'{k}="{_escape(v)}"' for k, v in key)
                    lines.append(
                        f"{full}{{{labels}}} {_number(value)}" if labels else f"{full} {_number(value)}"
                    )
        return "\n".join(lines) + "\n"

    def serve(self, port: int, host: str = "127.0.0.1") -> int:
        """Serve /metrics from a daemon thread; returns the port bound."""
        metrics = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # http.server calls it by this name
                if self.path.split("?")[0] != "/metrics":
                    self.send_error(404, "only /metrics is served here")
                    return
                body = metrics.render().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):  # scrapes are not worth a log line
                pass

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="metrics", daemon=True).start()
        return self._server.server_address[1]

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))
