"""PendingWorkTrigger: serialisation round trip, and its decision against a real (moto) ledger."""

from __future__ import annotations

import asyncio
import importlib
from datetime import timedelta

import pytest

from ndjson_pipeline.clock import iso, utcnow
from ndjson_pipeline.ledger import WorkIndex
from ndjson_pipeline_airflow.triggers import PendingWorkTrigger
from tests.factories import DAY, register_files
from tools.local_stack import aws_connection_env


def _make_trigger(**overrides) -> PendingWorkTrigger:
    kwargs = {
        "days": [DAY],
        "work_index": WorkIndex.of("t-ledger").as_dict(),
        "enough_files": 5,
        "enough_bytes": 10**9,
        "max_wait_seconds": 3600,
        "deadline": iso(utcnow() + timedelta(seconds=3)),
        "poll_seconds": 1,
        "aws_conn_id": "aws_default",
    }
    return PendingWorkTrigger(**{**kwargs, **overrides})


def test_serialisation_round_trip():
    trigger = _make_trigger(days=["2026-11-24", "2026-11-23"], enough_files=7)
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
