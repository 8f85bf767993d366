"""One ready batch wakes one ingest run: the overlapping runs' triggers race for the day's wake on DynamoDB Local.

Each trigger runs in a thread of its own with its own event loop and client, as
the MWAA role, so their conditional writes really race: DynamoDB Local decides
which one wins. The losers must keep waiting (never fire for a batch another run
plans) and nothing may be stranded: the day's next batch wakes one of them, and
a batch whose woken run died wakes another once the wake's lease runs out.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta

import pytest

from ndjson_pipeline.clock import iso, utcnow
from ndjson_pipeline.files import FileState
from ndjson_pipeline.ledger import WorkIndex, wakes
from ndjson_pipeline.usage import Usage
from ndjson_pipeline_airflow.triggers import PendingWorkTrigger
from tests.conftest import make_stack
from tests.factories import file_states, plan, register_files, wait_until
from tools.local_stack import aws_connection_env

BATCH = 5  # a full manifest: the woken planner claims it whole


@pytest.fixture
def runs_stack(aws_endpoint, monkeypatch):
    """A stack whose manifests hold one batch, its triggers running as the MWAA role; the wake settles in 1 s."""
    stack = make_stack(aws_endpoint, max_files_per_manifest=BATCH)
    for name, value in aws_connection_env(stack.endpoint, stack.identities.mwaa).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(wakes, "SETTLE_SECONDS", 1)
    return stack


def _dag_run(n: int) -> str:
    return f"ndjson_ingest/scheduled__2026-11-24T10:0{n}:00+00:00"


@dataclass
class _Waiting:
    """One ingest run's sensor, deferred: its trigger in a thread of its own until it fires or times out."""

    dag_run: str
    trigger: PendingWorkTrigger
    start: threading.Barrier
    payload: dict = field(default_factory=dict)
    fired_at: float | None = None

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self._run, name=self.dag_run)

    def _run(self) -> None:
        async def first_event() -> dict:
            async for event in self.trigger.run():
                return event.payload
            raise AssertionError("the trigger ended without an event")

        self.start.wait()  # every run's first poll at once
        self.payload = asyncio.run(first_event())
        self.fired_at = time.monotonic() if self.payload["status"] == "ready" else None


def _waiting_runs(stack, count: int, seconds: float, first: int = 0) -> list[_Waiting]:
    """``count`` runs' deferred sensors (runs ``first``, ``first`` + 1, ...), polling every second for ``seconds``."""
    settings, start = stack.settings, threading.Barrier(count)
    deadline = iso(utcnow() + timedelta(seconds=seconds))
    runs = [
        _Waiting(
            _dag_run(n),
            PendingWorkTrigger(
                work_index=WorkIndex.of(stack.names.ledger_table).as_dict(),
                dag_run=_dag_run(n),
                enough_files=settings.batching.files,
                enough_bytes=settings.batching.bytes,
                max_wait_seconds=settings.batching.wait_seconds,
                deadline=deadline,
                poll_seconds=1,
                aws_conn_id="aws_default",
            ),
            start,
        )
        for n in range(first, first + count)
    ]
    for run in runs:
        run.thread.start()
    return runs


def _fired(runs: list[_Waiting]) -> list[_Waiting]:
    return sorted((r for r in runs if r.fired_at is not None), key=lambda r: r.fired_at or 0)


def test_each_ready_batch_wakes_one_of_the_waiting_runs_and_the_others_keep_waiting(runs_stack):
    stack = runs_stack
    first_batch = register_files(stack, BATCH)
    runs = _waiting_runs(stack, 4, seconds=20)

    wait_until(lambda: bool(_fired(runs)), "a run woken by the first batch")
    time.sleep(2)  # the others poll again meanwhile: the day is still ready, and its wake still taken
    assert len(_fired(runs)) == 1, f"one batch woke {[r.dag_run for r in _fired(runs)]}"
    (woken,) = _fired(runs)
    assert woken.payload["days"] == ["2026-11-24"]
    (first,) = plan(stack, owner=woken.dag_run, woken=True)  # the woken run's planner, which frees the wake

    second_batch = register_files(stack, BATCH, prefix="g")
    wait_until(lambda: len(_fired(runs)) >= 2, "a run woken by the second batch")
    time.sleep(2)
    assert len(_fired(runs)) == 2, f"the second batch woke {[r.dag_run for r in _fired(runs)[1:]]}"
    second = _fired(runs)[1]
    (later,) = plan(stack, owner=second.dag_run, woken=True)
    for run in runs:
        run.thread.join()

    assert second.dag_run != woken.dag_run
    assert (first.files, later.files) == (BATCH, BATCH)
    assert set(file_states(stack, first_batch + second_batch).values()) == {FileState.CLAIMED}
    rest = [run for run in runs if run not in (woken, second)]
    assert [run.payload["status"] for run in rest] == ["timeout", "timeout"]  # waited on, woken for neither
    for run in rest:  # each saw the batches ready and tried for their wakes: the race was real
        assert Usage.from_dict(run.payload["usage"]).requests["dynamodb.UpdateItem"] >= 2


def test_a_batch_whose_woken_run_died_wakes_another_once_the_wake_lease_runs_out(runs_stack, monkeypatch):
    stack = runs_stack
    monkeypatch.setattr(wakes, "LEASE_SECONDS", 3)
    identities = register_files(stack, BATCH)
    (dead,) = _waiting_runs(stack, 1, seconds=10)
    dead.thread.join()
    assert dead.payload["status"] == "ready"  # its run was woken, then died before its planner ran

    (heir,) = _waiting_runs(stack, 1, seconds=15, first=1)
    heir.thread.join()

    assert heir.payload["status"] == "ready"
    assert heir.fired_at - dead.fired_at >= 2  # not before the dead run's lease ran out
    (ref,) = plan(stack, owner=heir.dag_run, woken=True)
    assert ref.files == BATCH
    assert set(file_states(stack, identities).values()) == {FileState.CLAIMED}


def test_a_run_woken_once_is_woken_again_by_its_own_trigger_run_twice(runs_stack):
    """The triggerer may run a trigger twice at once, or restart it: the wake belongs to the DAG run."""
    stack = runs_stack
    register_files(stack, BATCH)
    (first,) = _waiting_runs(stack, 1, seconds=5)
    first.thread.join()
    again = _Waiting(first.dag_run, first.trigger, threading.Barrier(1))
    again.thread.start()
    again.thread.join()
    assert (first.payload["status"], again.payload["status"]) == ("ready", "ready")
