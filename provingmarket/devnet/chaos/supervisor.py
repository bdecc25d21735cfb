"""What the chaos run starts, kills and starts again: a table of entries, each a process
(its command line, the log event that says it is up again) or a server (an object with
`start()` and `kill()`, as provingmarket/devnet/services.py's PostgresServer and
RedisServer), with its restart policy. The supervisor starts each, SIGKILLs one when the
schedule says, starts it again after the kill's pause, and records every outage: when it
went down, when it was up again (the process logged its `ready` event, or the server's
`start()` returned), and a process that exited without being killed.

Every process and server is started in a session of its own and stopped by its pid;
`left_behind()` names any of those sessions a process still runs in (a child a killed
process left), asking those groups only."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

STOP_WITHIN = 30.0  # seconds a process may take to stop after SIGTERM before it is killed


class Server(Protocol):
    """A server the supervisor can crash and bring back (services.PostgresServer, RedisServer)."""

    def start(self) -> None: ...

    def kill(self) -> None: ...

    def close(self) -> None: ...

    @property
    def pid(self) -> int | None: ...


@dataclass
class Entry:
    """One row of the table: a process kind (`argv`, `env`, `ready`) or a `server`."""

    name: str
    kind: str  # its row in the report: agent, orderbook, auction, ..., broker, database, worker
    argv: list[str] | None = None
    env: dict[str, str] = field(default_factory=dict)
    ready: str = ""  # the log event (a JSON line's "event") that says it is up
    server: Server | None = None
    cwd: Path | None = None  # a process's working directory
    restart: bool = True  # started again after a kill's pause (else it stays down)
    weight: float = 1.0  # its share of the schedule's kills (0: never killed)
    first: bool = False  # the entries after it start once it is ready

    def __post_init__(self) -> None:
        if (self.argv is None) == (self.server is None):
            raise ValueError(f"{self.name}: an entry is a process (argv) or a server, not both or neither")
        if self.argv is not None and not self.ready:
            raise ValueError(f"{self.name}: a process entry needs the log event that says it is up")


@dataclass
class Outage:
    """A process or server down: killed by the schedule, or exited on its own."""

    name: str
    kind: str
    cause: str  # "kill" or "exit N"
    pid: int | None
    at: float  # wall-clock seconds (time.time(), as block timestamps)
    restart_at: float = 0.0  # monotonic time its restart is due
    up_at: float | None = None  # wall-clock time it was up again
    since: float = 0.0  # monotonic time it went down
    started: float = 0.0  # wall-clock time the process that went down had been started

    @property
    def recovery(self) -> float | None:
        return None if self.up_at is None else self.up_at - self.at


@dataclass
class _Running:
    entry: Entry
    process: subprocess.Popen | None = None
    log: Path | None = None
    offset: int = 0  # where in its log this start's lines begin
    waiting: Outage | None = None  # restarted, not yet up: the outage its readiness ends
    started: float = 0.0  # wall-clock time of its latest start


class Supervisor:
    """Starts the entries (`start`), kills them (`kill`), restarts them (`tick`, called
    often), stops everything (`stop`). Logs go to `logs/<name>.log`, appended across
    restarts."""

    def __init__(self, entries: list[Entry], logs: Path):
        names = [e.name for e in entries]
        if len(set(names)) != len(names):
            raise ValueError(f"entry names must differ: {names}")
        self.entries = {e.name: e for e in entries}
        self.logs = logs
        self.running: dict[str, _Running] = {e.name: _Running(e) for e in entries}
        self.outages: list[Outage] = []
        self.sessions: set[int] = set()  # every pid started: each leads its own session
        self.down: dict[str, Outage] = {}  # name → the outage it is in until restarted

    # -------------------------------------------------------------- starting

    def start_all(self, ready_within: float = 120.0) -> None:
        """Start every entry in the table's order; after one marked `first`, wait until it
        is ready before starting the next (the indexer: the frontends read its mirror)."""
        for name in self.entries:
            self._start(name)
            if self.entries[name].first:
                deadline = time.monotonic() + ready_within
                process = self.running[name].process
                while not self.ready(name):
                    if time.monotonic() > deadline or (process is not None and process.poll() is not None):
                        return  # the caller's readiness wait names it
                    time.sleep(0.1)

    def _start(self, name: str) -> None:
        state = self.running[name]
        entry = state.entry
        if entry.server is not None:
            entry.server.start()  # returns once it answers
            if state.waiting is not None:
                state.waiting.up_at = time.time()
                state.waiting = None
            if entry.server.pid is not None:
                self.sessions.add(entry.server.pid)
            return
        assert entry.argv is not None
        log = self.logs / f"{name}.log"
        state.log = log
        state.started = time.time()
        state.offset = log.stat().st_size if log.exists() else 0
        with open(log, "a") as handle:  # the child holds its own copy
            state.process = subprocess.Popen(
                entry.argv,
                env=dict(os.environ, **entry.env),
                cwd=entry.cwd,
                stdout=handle,
                stderr=handle,
                start_new_session=True,
            )
        self.sessions.add(state.process.pid)

    def ready(self, name: str) -> bool:
        """Whether `name` has logged its ready event since its latest start (a server: it
        is running)."""
        state = self.running[name]
        if state.entry.server is not None:
            return name not in self.down
        return self._logged(state, state.entry.ready) is not None

    def _logged(self, state: _Running, event: str) -> float | None:
        """When (wall clock, from the line's `ts` if it has one) the latest start logged
        `event`; None if it has not yet."""
        if state.log is None or not state.log.exists():
            return None
        with open(state.log, "rb") as handle:
            handle.seek(state.offset)
            for raw in handle:
                found = _event(raw)
                if found is not None and found.get("event") == event:
                    ts = found.get("ts")
                    return float(ts) if isinstance(ts, (int, float)) else time.time()
        return None

    def pid(self, name: str) -> int | None:
        state = self.running[name]
        if state.entry.server is not None:
            return state.entry.server.pid
        return state.process.pid if state.process is not None else None

    def alive(self, name: str) -> bool:
        state = self.running[name]
        if state.entry.server is not None:
            return name not in self.down
        return state.process is not None and state.process.poll() is None

    # -------------------------------------------------------------- faults

    def kill(self, name: str, pause: float) -> Outage | None:
        """SIGKILL `name` by its pid (a server: its `kill()`), to be started again `pause`
        seconds later; None (nothing done) if it is down, or restarted and not yet up."""
        state = self.running[name]
        if name in self.down or not self.alive(name) or state.waiting is not None:
            return None
        pid = self.pid(name)
        outage = Outage(name, state.entry.kind, "kill", pid, time.time(), time.monotonic() + pause)
        outage.since = time.monotonic()
        if state.entry.server is not None:
            state.entry.server.kill()
        else:
            assert state.process is not None
            os.kill(state.process.pid, signal.SIGKILL)
            state.process.wait(10)  # reaped: its pid is gone
        self.outages.append(outage)
        self.down[name] = outage
        return outage

    def tick(self, pause_after_exit: float = 1.0) -> None:
        """Restart what is due, note what became ready, and take a process that exited on
        its own as an outage (restarted after `pause_after_exit`)."""
        now = time.monotonic()
        for name, state in self.running.items():
            if state.waiting is not None and state.entry.server is None:
                up = self._logged(state, state.entry.ready)
                if up is not None:  # up again: every outage it was in ends (a restart may exit first)
                    for o in self.outages:
                        if o.name == name and o.up_at is None:
                            o.up_at = max(up, o.at)
                    state.waiting = None
            outage = self.down.get(name)
            if outage is None and state.process is not None and state.process.poll() is not None:
                outage = Outage(
                    name, state.entry.kind, f"exit {state.process.returncode}", state.process.pid,
                    time.time(), now + pause_after_exit, since=now, started=state.started,
                )  # fmt: skip
                self.outages.append(outage)
                self.down[name] = outage
            if outage is not None and state.entry.restart and now >= outage.restart_at:
                del self.down[name]
                state.waiting = outage
                self._start(name)

    def exited_on_their_own(self) -> list[Outage]:
        return [o for o in self.outages if o.cause != "kill"]

    # -------------------------------------------------------------- stopping

    def stop(self) -> list[str]:
        """Stop every process (SIGTERM to all, then wait; SIGKILL after STOP_WITHIN) and
        close every server; each process that did not exit 0, as `name (pid N) exited with
        CODE`."""
        unclean = []
        processes = [(n, s.process) for n, s in self.running.items() if s.process is not None]
        for _, process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_WITHIN
        for name, process in processes:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
            if process.returncode != 0 and name not in self.down:
                unclean.append(f"{name} (pid {process.pid}) exited with {process.returncode}")
        for state in self.running.values():
            if state.entry.server is not None:
                state.entry.server.close()
        return unclean

    def left_behind(self) -> list[int]:
        """The sessions this supervisor started (each process's and server's own, shared by
        anything they started) with a process still in them, by their leaders' pids: only
        its own groups are asked (signal 0), no other process is looked at."""
        return sorted(sid for sid in self.sessions if group_running(sid))

    def reap(self, groups: list[int]) -> None:
        """SIGKILL every process still in `groups` (left behind), by group."""
        for group in groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, signal.SIGKILL)


def running(pid: int) -> bool:
    """Whether the process `pid` (one this program started) still exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's: not ours any more (the pid was reused)
        return False
    return True


def group_running(group: int) -> bool:
    """Whether a process is still in process group `group` (one this program started)."""
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # a member runs as another user (the database server's, as root)
    return True


def _event(raw: bytes) -> dict | None:
    if not raw.startswith(b"{"):
        return None
    try:
        found = json.loads(raw)
    except ValueError:
        return None
    return found if isinstance(found, dict) else None
