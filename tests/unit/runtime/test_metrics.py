"""The metrics and health server a process serves (/metrics, /healthz, /readyz), over HTTP."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from provingmarket.runtime.health import Health
from provingmarket.runtime.metrics import Metrics, PortInUse


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


@pytest.fixture
def served():
    metrics = Metrics("keeper", Health(max_lag=2, max_age=0.5))
    port = metrics.serve(0)
    yield metrics, port
    metrics.close()


def test_readyz__503_until_a_round_completes_then_200_until_it_is_stale(served):
    metrics, port = served
    metrics.health.running(True)
    status, body = get(port, "/readyz")
    assert status == 503 and json.loads(body)["failing"] == ["round: none completed yet"]
    assert get(port, "/healthz")[0] == 200

    metrics.health.round_done(head=110, synced=105, trail=3)  # 2 behind beyond its confirmations
    status, body = get(port, "/readyz")
    assert status == 200 and json.loads(body)["lag_blocks"] == 2

    metrics.health.round_done(head=111, synced=105, trail=3)
    assert json.loads(get(port, "/readyz")[1])["failing"] == ["synced: 3 blocks behind the head (at most 2)"]

    metrics.health.round_done(head=111, synced=108, trail=3)
    time.sleep(0.6)  # the round's age is the condition under test
    status, body = get(port, "/readyz")
    assert status == 503 and json.loads(body)["failing"][0].startswith("round: last completed")

    metrics.health.running(False)
    assert get(port, "/healthz")[0] == 503


def test_metrics__counters_gauges_and_histograms_as_prometheus_reads_them(served):
    metrics, port = served
    metrics.counter("assignments_sent_total", "Assignments sent", 3, mechanism=3)
    metrics.gauge("tasks_open", "Open tasks", 7)
    for seconds in (0.02, 0.3, 4):
        metrics.observe("round_seconds", "Time a round takes", seconds)
    paid = 10**16 + 1
    metrics.counter("paid_wei_total", "Wei credited", paid)

    status, text = get(port, "/metrics")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("keeper_assignments_sent_total", (("mechanism", "3"),))] == 3
    assert samples[("keeper_tasks_open", ())] == 7
    assert samples[("keeper_round_seconds_count", ())] == 3
    assert samples[("keeper_round_seconds_bucket", (("le", "0.5"),))] == 2
    assert samples[("keeper_paid_wei_total", ())] == float(paid)  # a float, as Prometheus stores it
    assert metrics.value("assignments_sent_total", mechanism=3) == 3
    assert metrics.value("round_seconds") == 3 and metrics.value("never_set") == 0
    assert "# HELP keeper_tasks_open Open tasks" in text
    assert samples[("keeper_ready", ())] == 0  # no round yet: /readyz says 503


def test_serve__port_in_use__names_the_port_and_the_option():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(PortInUse) as raised:
            Metrics("agent").serve(port)
    assert str(raised.value) == (
        f"port {port} (metrics and health) is already in use: stop what holds it, or give "
        "another port with --metrics-port (0 picks a free one)"
    )
