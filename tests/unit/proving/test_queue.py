"""The task queue's job and the worker's command line, without a broker: a message that is
not a job is named field by field, and what is wrong before a worker or an agent starts
is one line."""

from __future__ import annotations

import time

import pytest

from provingmarket.agent.settings import settings_from_options
from provingmarket.chain.client import ClientError
from provingmarket.proving import worker
from provingmarket.proving.queue import Job, JobFailed, QueueError, Result


def a_job(**overrides) -> dict:
    job = Job.new(
        work="prove:0x01:0",
        circuit="square",
        circuit_name="square",
        inputs={"x": "3"},
        prover="0x" + "11" * 20,
        deadline=1_000,
        start_by=time.time() + 10,
        finish_by=time.time() + 20,
    ).to_json()
    return {**job, **overrides}


def test_job__round_trips_through_json():
    data = a_job()
    assert Job.from_json(data).to_json() == data


@pytest.mark.parametrize(
    ("data", "named"),
    [
        ("not a job", "a job is a JSON object, not str"),
        (a_job(job_id=""), "job field job_id must be a non-empty string"),
        (a_job(inputs=[1, 2]), "job field inputs must be an object"),
        (a_job(start_by="soon"), "job field start_by must be a number, not 'soon'"),
        (a_job(deadline=True), "job field deadline must be a number"),
        (a_job(extra=1), "job has unknown field(s) extra"),
    ],
)
def test_job__malformed__refused_naming_the_field(data, named):
    with pytest.raises(QueueError) as raised:
        Job.from_json(data)
    assert named in str(raised.value)


def test_result__malformed__is_a_failed_attempt():
    with pytest.raises(JobFailed, match="malformed"):
        Result.parse(b"{not json")
    with pytest.raises(JobFailed, match="malformed"):
        Result.parse(b'{"job_id": "x"}')  # fields missing


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"queue": "http://127.0.0.1:6379"}, "--queue 'http://127.0.0.1:6379' is not a Redis URL"),
        ({"queue": "redis://127.0.0.1:6379/0", "queue_name": "a b"}, "--queue-name 'a b'"),
    ],
)
def test_agent_settings__bad_queue__says_which_option(options, expected):
    with pytest.raises(ClientError) as raised:
        settings_from_options(**options)
    assert expected in str(raised.value)


def test_agent_settings__queue__kept():
    settings = settings_from_options(queue=" redis://127.0.0.1:6379/0 ", queue_name="fleet-1")
    assert (settings.queue, settings.queue_name) == ("redis://127.0.0.1:6379/0", "fleet-1")
    assert settings_from_options().queue is None


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--queue", "http://127.0.0.1:6379"], "is not a Redis URL"),
        (["--queue", "redis://127.0.0.1:1/0"], "the broker does not answer"),
        (["--queue", "redis://127.0.0.1:1/0", "--processes", "0"], "--processes 0: give 1 or more"),
        (["--queue", "redis://127.0.0.1:1/0", "--backend", "/nowhere.json"], "--backend /nowhere.json"),
        ([], "Missing option '--queue'"),
    ],
)
def test_worker__bad_input__one_line_error_and_exit_code_1(argv, expected, capsys, monkeypatch):
    monkeypatch.delenv("PROVINGMARKET_WORKER_QUEUE", raising=False)
    with pytest.raises(SystemExit) as exited:
        worker.main(argv)
    assert exited.value.code == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], lines
