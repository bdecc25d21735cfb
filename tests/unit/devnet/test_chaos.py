"""The chaos harness's parts without a chain: the seeded kill schedule, the fault proxy
(each fault as a caller sees it, and failover across two proxies), the supervisor's table
(a process killed and started again, one that exits on its own, a child left behind, a
server entry: the broker hook), and the checks that decide the verdict (a slot paid twice,
a slash while the prover's agent was up)."""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import redis
import requests
from web3 import Web3

from provingmarket.chain.client import Event
from provingmarket.chain.endpoints import FailoverProvider
from provingmarket.devnet.chaos import Entry, FaultProxy, Ledger, Supervisor, kill_schedule
from provingmarket.devnet.chaos.report import paid_twice, unexplained_slashes
from provingmarket.devnet.chaos.supervisor import Outage
from provingmarket.devnet.services import RedisServer

# ------------------------------------------------------------------ the schedule


def test_kill_schedule__same_seed_same_schedule__in_order_within_bounds_each_target_rested():
    targets = {"orderbook": 1.0, "auction": 1.0, "agent-1": 2.0, "agent-2": 2.0}
    schedule = kill_schedule(7, targets, 20, 5.0, 200.0, pause=(0.5, 3.0), rest=15.0)
    assert schedule == kill_schedule(7, targets, 20, 5.0, 200.0, pause=(0.5, 3.0), rest=15.0)
    assert schedule != kill_schedule(8, targets, 20, 5.0, 200.0, pause=(0.5, 3.0), rest=15.0)
    assert len(schedule) == 20
    assert [k.at for k in schedule] == sorted(k.at for k in schedule)
    assert all(5.0 <= k.at <= 200.0 and 0.5 <= k.pause <= 3.0 for k in schedule)
    assert {k.target for k in schedule} <= set(targets)
    for name in targets:
        times = [k.at for k in schedule if k.target == name]
        assert all(b - a >= 15.0 - 1e-6 for a, b in zip(times, times[1:], strict=False)), (name, times)


def test_kill_schedule__more_kills_than_rest_allows__later_kills_wait_until_a_target_has_rested():
    schedule = kill_schedule(1, {"a": 1.0, "b": 1.0}, 6, 0.0, 10.0, rest=15.0)
    assert len(schedule) == 6
    for name in ("a", "b"):
        times = [k.at for k in schedule if k.target == name]
        assert all(b - a >= 15.0 - 1e-6 for a, b in zip(times, times[1:], strict=False)), (name, times)
    assert schedule[-1].at > 10.0  # past the end: there was no room before it


def test_kill_schedule__impossible_arguments__refused_with_what_is_wrong():
    with pytest.raises(ValueError, match="at least one target"):
        kill_schedule(1, {}, 3, 0.0, 10.0)
    with pytest.raises(ValueError, match="end >= start"):
        kill_schedule(1, {"a": 1.0}, 3, 10.0, 0.0)


# ------------------------------------------------------------------ the fault proxy


class Node:
    """A JSON-RPC node stand-in on a free loopback port: answers every call with its
    chain id (1337) and counts the calls it got."""

    def __init__(self) -> None:
        node = self
        self.calls = 0

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                call = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                node.calls += 1
                body = json.dumps({"jsonrpc": "2.0", "id": call["id"], "result": "0x539"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def node_stand_in():
    made = Node()
    yield made
    made.close()


def call(url: str) -> requests.Response:
    return requests.post(
        url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}, timeout=5
    )


@pytest.mark.parametrize(
    ("kind", "reached", "seen"),
    [
        ("reset", 0, "connection reset"),
        ("lost", 1, "connection reset"),  # the node ran it; the caller never hears
        ("http_503", 0, 503),
        ("http_429", 0, 429),
        ("slow", 1, 200),
    ],
)
def test_fault_proxy__each_fault__as_the_caller_sees_it_and_whether_the_node_got_the_call(
    node_stand_in, kind, reached, seen
):
    ledger = Ledger()
    proxy = FaultProxy(node_stand_in.url, ledger, rate=1.0, seed=3, kinds=[kind], slow=(0.3, 0.3)).start()
    try:
        started = time.monotonic()
        if seen == "connection reset":
            with pytest.raises(requests.ConnectionError):
                call(proxy.url("agent-1"))
        else:
            assert call(proxy.url("agent-1")).status_code == seen
        took = time.monotonic() - started
        assert node_stand_in.calls == reached
        [fault] = ledger.faults
        assert (fault.kind, fault.caller) == (kind, "agent-1")
        if kind == "slow":
            assert took >= 0.3 and fault.recovered_after is not None and fault.recovered_after >= 0.3
        else:
            assert fault.recovered_after is None  # the caller has had no answer since
            proxy.enabled = False
            call(proxy.url("orderbook"))  # another caller's answer recovers nothing of agent-1's
            assert fault.recovered_after is None
            assert call(proxy.url("agent-1")).status_code == 200
            assert fault.recovered_after is not None and fault.recovered_after < 5
    finally:
        proxy.stop()


def test_fault_proxy__a_caller_cut_off__every_call_reset_until_the_cut_ends__then_recovered(node_stand_in):
    ledger = Ledger()
    first = FaultProxy(node_stand_in.url, ledger, rate=0.0, seed=1).start()
    second = FaultProxy(node_stand_in.url, ledger, rate=0.0, seed=2).start()
    try:
        cut = ledger.cut("agent-1", 0.5)
        for proxy in (first, second):
            with pytest.raises(requests.ConnectionError):
                call(proxy.url("agent-1"))
        assert call(first.url("agent-2")).status_code == 200  # the others still get through
        assert node_stand_in.calls == 1 and cut.up_at is None
        time.sleep(0.5)
        assert call(second.url("agent-1")).status_code == 200
        assert cut.up_at is not None and cut.up_at - cut.at >= 0.5
    finally:
        first.stop()
        second.stop()


def test_two_fault_proxies__the_first_failing_every_call__calls_answered_through_the_second(node_stand_in):
    ledger = Ledger()
    first = FaultProxy(node_stand_in.url, ledger, rate=1.0, seed=1, kinds=["reset", "http_503"]).start()
    second = FaultProxy(node_stand_in.url, ledger, rate=0.0, seed=2).start()
    try:
        web3 = Web3(FailoverProvider([first.url("keeper"), second.url("keeper")], backoff=0.0))
        assert [web3.eth.chain_id for _ in range(5)] == [1337] * 5
        assert ledger.faults and all(f.recovered_after is not None for f in ledger.faults)
    finally:
        first.stop()
        second.stop()


def test_fault_proxy__a_rate_outside_zero_to_one_or_an_unknown_kind__refused(node_stand_in):
    with pytest.raises(ValueError, match="between 0 and 1"):
        FaultProxy(node_stand_in.url, Ledger(), rate=1.5, seed=1)
    with pytest.raises(ValueError, match="each must be one of"):
        FaultProxy(node_stand_in.url, Ledger(), rate=0.1, seed=1, kinds=["meteor"])


# ------------------------------------------------------------------ the supervisor

READY = (
    "import json, signal, sys, time; signal.signal(signal.SIGTERM, lambda *_: sys.exit(0)); "
    'print(json.dumps({"event": "toy.start", "ts": time.time()}), flush=True)'
)


def toy(name: str, body: str = "time.sleep(60)", ready: str = "toy.start") -> Entry:
    return Entry(name, "toy", argv=[sys.executable, "-c", f"{READY}; {body}"], ready=ready)


def until(predicate, timeout: float = 20.0, tick=None) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("not within the time given")
        if tick is not None:
            tick()
        time.sleep(0.05)


def alive(pid: int) -> bool:
    from provingmarket.devnet.chaos.supervisor import running

    return running(pid)


def test_supervisor__killed_process__restarted_after_its_pause__its_outage_timed_nothing_left(tmp_path):
    supervisor = Supervisor([toy("a"), toy("b")], tmp_path)
    supervisor.start_all()
    until(lambda: supervisor.ready("a") and supervisor.ready("b"))
    first = supervisor.pid("a")
    assert first is not None
    outage = supervisor.kill("a", pause=0.3)
    assert outage is not None and not alive(first)
    assert supervisor.kill("a", pause=0.3) is None  # down already: nothing to kill
    until(lambda: outage.up_at is not None, tick=supervisor.tick)
    assert supervisor.pid("a") != first and supervisor.alive("a")
    assert outage.recovery is not None and 0.3 <= outage.recovery < 15
    assert supervisor.exited_on_their_own() == []
    assert supervisor.stop() == []
    assert supervisor.left_behind() == []


def test_supervisor__restarted_but_not_yet_up__not_killed_again_until_up(tmp_path):
    slow = Entry(
        "slow", "toy", argv=[sys.executable, "-c", f"import time; time.sleep(1.0); {READY}; time.sleep(60)"],
        ready="toy.start",
    )  # fmt: skip
    supervisor = Supervisor([slow], tmp_path)
    supervisor.start_all()
    until(lambda: supervisor.ready("slow"))
    first = supervisor.kill("slow", pause=0.0)
    assert first is not None
    until(lambda: "slow" not in supervisor.down, tick=supervisor.tick)  # started again, not yet up
    assert supervisor.kill("slow", pause=0.0) is None
    until(lambda: first.up_at is not None, tick=supervisor.tick)
    assert supervisor.kill("slow", pause=0.0) is not None
    supervisor.stop()
    assert supervisor.left_behind() == []


def test_supervisor__a_process_exiting_on_its_own__an_outage_named_by_its_code__restarted(tmp_path):
    supervisor = Supervisor([toy("quits", "time.sleep(0.2); raise SystemExit(3)")], tmp_path)
    supervisor.start_all()
    until(lambda: len(supervisor.outages) >= 2, tick=lambda: supervisor.tick(pause_after_exit=0.1))
    assert [o.cause for o in supervisor.outages[:2]] == ["exit 3", "exit 3"]
    assert supervisor.outages[0].up_at is not None  # it came back, then quit again
    supervisor.stop()
    assert supervisor.left_behind() == []


def test_supervisor__a_child_of_a_killed_process__found_left_behind_and_reaped(tmp_path):
    # Ready once the sleep is started (ready at the start could be killed before it starts one).
    body = (
        "import subprocess; subprocess.Popen(['sleep', '60']); "
        'print(json.dumps({"event": "toy.child"}), flush=True); time.sleep(60)'
    )
    supervisor = Supervisor([toy("parent", body, ready="toy.child")], tmp_path)
    supervisor.start_all()
    until(lambda: supervisor.ready("parent"))
    pid = supervisor.pid("parent")
    assert pid is not None
    assert supervisor.left_behind() == [pid]  # its session, the parent and its sleep in it
    supervisor.kill("parent", pause=3600)  # not restarted within the test
    assert not alive(pid)
    assert supervisor.left_behind() == [pid]  # the sleep is still in the parent's session
    supervisor.reap([pid])
    until(lambda: supervisor.left_behind() == [])
    supervisor.stop()


def test_supervisor__entry_is_a_process_or_a_server__names_differ():
    with pytest.raises(ValueError, match="a process .argv. or a server"):
        Entry("x", "toy")
    with pytest.raises(ValueError, match="needs the log event"):
        Entry("x", "toy", argv=["true"])
    with pytest.raises(ValueError, match="names must differ"):
        Supervisor([toy("x"), toy("x")], None)  # type: ignore[arg-type]


def test_supervisor__broker_server_entry__killed_then_started_again_on_its_port(tmp_path):
    """The hook the broker and the database fill: a server in the table, killed and
    started again by the supervisor like a process."""
    server = RedisServer()
    supervisor = Supervisor([Entry("broker", "broker", server=server)], tmp_path)
    try:
        supervisor.start_all()
        client = redis.Redis.from_url(server.url)
        client.set("k", "v")
        outage = supervisor.kill("broker", pause=0.2)
        assert outage is not None and not server.alive()
        until(lambda: outage.up_at is not None, tick=supervisor.tick)
        assert redis.Redis.from_url(server.url).ping()
        assert outage.recovery is not None and outage.recovery < 10
    finally:
        supervisor.stop()
    assert supervisor.left_behind() == []


def test_an_exit_after_a_start_while_cut_off_or_a_server_down__a_start_refused__told_apart_from_a_crash(
    tmp_path,
):
    from provingmarket.devnet.chaos.run import _refused_start

    ledger = Ledger(clock=lambda: 100.0)
    ledger.cut("agent-1", 5.0)  # 100 to 105
    supervisor = Supervisor([Entry("database", "database", server=RedisServer())], tmp_path)
    supervisor.outages.append(Outage("database", "database", "kill", 1, 200.0, up_at=203.0))

    def exit_at(name: str, started: float, at: float, code: int = 1) -> Outage:
        return Outage(name, "agent", f"exit {code}", 1, at, started=started)

    assert _refused_start(exit_at("agent-1", 101.0, 103.0), supervisor, ledger)
    # started during the cut, its imports outlasting it: still a start refused
    assert _refused_start(exit_at("agent-1", 104.0, 107.5), supervisor, ledger)
    assert not _refused_start(exit_at("agent-1", 106.0, 110.0), supervisor, ledger)  # after: a crash
    assert not _refused_start(exit_at("agent-2", 101.0, 103.0), supervisor, ledger)  # another was cut
    # started while the database was down, for any process
    assert _refused_start(exit_at("auction", 202.0, 204.2), supervisor, ledger)
    assert not _refused_start(exit_at("auction", 204.0, 206.0), supervisor, ledger)
    assert not _refused_start(exit_at("agent-1", 101.0, 103.0, code=2), supervisor, ledger)  # not a refusal


# ------------------------------------------------------------------ the verdict's checks

TASK = bytes.fromhex("11" * 32)
TASK_HEX = "0x" + TASK.hex()
PROVER = "0x" + "ab" * 20


def event(name: str, block: int, **args) -> Event:
    return Event(name, {"task_id": TASK, "prover": PROVER, **args}, block, "0x", 0)


def test_paid_twice__a_slot_proven_twice_or_a_prover_paid_twice__named():
    once = [event("TaskProven", 5, slot=0)]
    assert paid_twice(once, {TASK_HEX}) == []
    assert paid_twice(once * 2, {TASK_HEX}) == [TASK_HEX]
    assert paid_twice([event("TaskProven", 5, slot=0), event("TaskProven", 6, slot=1)], {TASK_HEX}) == [
        TASK_HEX
    ]
    assert paid_twice(once * 2, set()) == []  # not one of the run's tasks


def test_unexplained_slashes__only_a_slash_while_the_agent_was_down_is_explained():
    events = [event("TaskAssigned", 10, deadline=1_030), event("Slashed", 40)]
    times = {10: 1_000, 40: 1_040}
    agents = {PROVER: "agent-1"}

    def outage(name: str, at: float, up_at: float | None) -> Outage:
        return Outage(name, "agent", "kill", 1, at, up_at=up_at)

    def check(outages):
        return unexplained_slashes(events, {TASK_HEX}, agents, outages, times.__getitem__)

    assert check([outage("agent-1", 1_010, 1_050)]) == []  # down while it held the task
    assert check([outage("agent-1", 990, None)]) == []  # down before, never back
    assert len(check([])) == 1  # up throughout: the harness's fault
    assert len(check([outage("agent-2", 1_010, 1_050)])) == 1  # another agent was down
    assert len(check([outage("agent-1", 900, 950)])) == 1  # back before it was assigned


# ------------------------------------------------------------------ the command


def test_command__an_invariant_failed__exit_1__the_report_printed(monkeypatch, tmp_path, capsys):
    from provingmarket.devnet.chaos import __main__ as command
    from provingmarket.devnet.chaos.report import Invariant
    from provingmarket.devnet.chaos.run import Result

    def failing(config, folder, say):
        assert (config.tasks, config.kills, config.seed) == (7, 2, 5)
        return Result("the report", [Invariant("no task paid twice", False, "0x11")], [], {}, 1.0)

    monkeypatch.setattr(command, "run", failing)
    assert command.main(["--tasks", "7", "--kills", "2", "--seed", "5", "--folder", str(tmp_path / "r")]) == 1
    assert "the report" in capsys.readouterr().out


def test_command__a_folder_in_use_or_no_tasks__refused_in_one_line(tmp_path, capsys):
    from provingmarket.devnet.chaos.__main__ import main

    (tmp_path / "old.log").write_text("a former run")
    with pytest.raises(SystemExit) as exited:
        main(["--folder", str(tmp_path)])
    assert exited.value.code == 2
    assert "is not empty: give a new or empty folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--tasks", "0", "--folder", str(tmp_path / "new")])
    assert "--tasks 0: at least 1" in capsys.readouterr().err
