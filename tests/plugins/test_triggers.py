"""PendingWorkTrigger: serialisation round trip, its decision against a real (moto) ledger, and its timing.

The trigger watches every day the ledger lists as open, however old; the timing
tests run it on a fake clock, so they keep the real defaults (20 s polls, 120 s
of waiting) without waiting for them.
"""

from __future__ import annotations

import asyncio
import importlib
from datetime import datetime, timedelta

import pytest

from ndjson_pipeline.clock import iso, utcnow
from ndjson_pipeline.ledger import WorkIndex
from ndjson_pipeline.settings import PipelineSettings
from ndjson_pipeline.usage import Usage
from ndjson_pipeline_airflow import triggers
from ndjson_pipeline_airflow.triggers import PendingWorkTrigger
from tests.factories import DAY, register_files
from tools.local_stack import aws_connection_env

OLD_DAY = "2026-10-02"


def _make_trigger(**overrides) -> PendingWorkTrigger:
    kwargs = {
        "work_index": WorkIndex.of("t-ledger").as_dict(),
        "dag_run": "ndjson_ingest/scheduled__2026-11-24T10:00:00+00:00",
        "enough_files": 5,
        "enough_bytes": 10**9,
        "max_wait_seconds": 3600,
        "deadline": iso(utcnow() + timedelta(seconds=3)),
        "poll_seconds": 1,
        "aws_conn_id": "aws_default",
    }
    return PendingWorkTrigger(**{**kwargs, **overrides})


def test_serialisation_round_trip():
    trigger = _make_trigger(enough_files=7)
    classpath, kwargs = trigger.serialize()
    module, name = classpath.rsplit(".", 1)
    rebuilt = getattr(importlib.import_module(module), name)(**kwargs)
    assert rebuilt.serialize() == (classpath, kwargs)
    assert classpath == "ndjson_pipeline_airflow.triggers.PendingWorkTrigger"


def _first_event(trigger: PendingWorkTrigger) -> dict:
    async def first():
        async for event in trigger.run():
            return event.payload
        raise AssertionError("trigger ended without an event")

    return asyncio.run(first())


def _work_index(stack) -> dict:
    return WorkIndex.of(stack.names.ledger_table).as_dict()


@pytest.fixture
def airflow_aws(stack, monkeypatch):
    for name, value in aws_connection_env(stack.endpoint, stack.identities.mwaa).items():  # as the MWAA role
        monkeypatch.setenv(name, value)
    return stack


def test_fires_when_enough_files_are_pending(airflow_aws):
    register_files(airflow_aws, 6)
    payload = _first_event(_make_trigger(work_index=_work_index(airflow_aws)))
    assert payload["status"] == "ready"
    assert payload["days"] == [DAY]
    assert payload["summary"][DAY]["reason"] == "files"
    assert payload["summary"][DAY]["files"] >= 5  # counting stops after the page that reached the threshold


def test_fires_on_waiting_time_and_times_out_when_idle(airflow_aws):
    register_files(airflow_aws, 2)
    idle = _first_event(_make_trigger(work_index=_work_index(airflow_aws)))
    assert idle["status"] == "timeout"
    waited = _first_event(_make_trigger(work_index=_work_index(airflow_aws), max_wait_seconds=0))
    assert waited["status"] == "ready"
    assert waited["summary"][DAY] == {"reason": "wait", "files": 2, "bytes": waited["summary"][DAY]["bytes"]}


def test_watches_every_open_day_however_old(airflow_aws):
    register_files(airflow_aws, 6, prefix="old", day_path=f"incoming/{OLD_DAY.replace('-', '/')}/")
    register_files(airflow_aws, 6)
    payload = _first_event(_make_trigger(work_index=_work_index(airflow_aws)))
    assert payload["status"] == "ready"
    assert payload["days"] == [DAY, OLD_DAY]


class _FakeClock:
    """The trigger's clock and its sleep: sleeping moves the clock instead of waiting."""

    def __init__(self, start: datetime) -> None:
        self.now = start
        self.idle_polls = 0

    def utcnow(self) -> datetime:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.idle_polls = self.idle_polls + 1 if seconds == 0 else 0
        assert self.idle_polls < 10, "the trigger polls again at once, over and over"
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def fake_clock(monkeypatch) -> _FakeClock:
    clock = _FakeClock(utcnow())
    monkeypatch.setattr(triggers, "utcnow", clock.utcnow)
    monkeypatch.setattr(triggers, "sleep", clock.sleep)
    return clock


def _with_defaults(stack, started: datetime, **overrides) -> PendingWorkTrigger:
    """The trigger as the sensor builds it from the default settings, started at ``started``."""
    defaults = PipelineSettings()
    kwargs = {
        "work_index": _work_index(stack),
        "dag_run": "ndjson_ingest/scheduled__2026-11-24T10:00:00+00:00",
        "enough_files": defaults.batching.files,
        "enough_bytes": defaults.batching.bytes,
        "max_wait_seconds": defaults.batching.wait_seconds,
        "deadline": iso(started + timedelta(seconds=defaults.batching.sensor_timeout_seconds)),
        "poll_seconds": defaults.sensor_poll_seconds,
        "aws_conn_id": "aws_default",
        **overrides,
    }
    return PendingWorkTrigger(**kwargs)


def test_a_lone_file_of_an_old_day_fires_once_it_has_waited_not_a_poll_later(airflow_aws, fake_clock):
    before = utcnow()
    register_files(airflow_aws, 1, day_path=f"incoming/{OLD_DAY.replace('-', '/')}/")
    fake_clock.now += timedelta(seconds=7)  # the sensor started a little after the file was registered

    payload = _first_event(_with_defaults(airflow_aws, fake_clock.now))

    assert payload["status"] == "ready"
    assert payload["summary"][OLD_DAY]["reason"] == "wait"
    waited = (fake_clock.now - before).total_seconds()
    wait = PipelineSettings().batching.wait_seconds
    assert wait <= waited < wait + 2


def test_times_out_at_its_deadline_not_a_poll_later(airflow_aws, fake_clock):
    started = fake_clock.now
    deadline = started + timedelta(seconds=100)

    payload = _first_event(_with_defaults(airflow_aws, started, deadline=iso(deadline)))

    assert payload["status"] == "timeout"
    assert deadline <= fake_clock.now < deadline + timedelta(seconds=1)


def test_a_run_another_run_was_woken_for_keeps_polling_at_its_interval_until_its_deadline(airflow_aws, fake_clock):
    """The day stays ready until the woken run's planner claims it: the others poll on, a poll apart, not at once."""
    register_files(airflow_aws, 1)
    fake_clock.now += timedelta(seconds=PipelineSettings().batching.wait_seconds + 1)  # the file has come of age
    woken = _first_event(_with_defaults(airflow_aws, fake_clock.now, dag_run="ndjson_ingest/run-a"))
    assert woken["status"] == "ready"

    started = fake_clock.now
    deadline = started + timedelta(seconds=100)
    other = _first_event(_with_defaults(airflow_aws, started, dag_run="ndjson_ingest/run-b", deadline=iso(deadline)))

    assert other["status"] == "timeout"
    assert deadline <= fake_clock.now < deadline + timedelta(seconds=1)
    tries = Usage.from_dict(other["usage"]).requests["dynamodb.UpdateItem"]  # one refused take a poll
    assert tries == 100 // PipelineSettings().sensor_poll_seconds + 1
