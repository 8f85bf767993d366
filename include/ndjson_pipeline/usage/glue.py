"""What Glue bills for a manifest's runs: DPU-seconds by execution class, from the runs' own figures or, locally,
the job's timings."""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum
from typing import Any

from ndjson_pipeline.usage.prices import PRICES
from ndjson_pipeline.usage.record import Usage

# DPUs per worker of each Glue worker type.
WORKER_DPU = {"G.025X": 0.25, "G.1X": 1.0, "G.2X": 2.0, "G.4X": 4.0, "G.8X": 8.0, "Z.2X": 2.0}
# EXPIRED: a run that waited in Glue's queue past its time to live never ran.
ENDED = frozenset({"SUCCEEDED", "FAILED", "STOPPED", "TIMEOUT", "ERROR", "EXPIRED"})


class ExecutionClass(StrEnum):
    """Glue's execution classes (StartJobRun's ``ExecutionClass``, reported by each run), each billed at its rate.

    FLEX runs on spare capacity (Glue 3.0+ Spark jobs on G.1X or G.2X workers): a third cheaper per DPU-hour,
    billed as STANDARD is (per second, one-minute minimum), but a run may wait up to 20 minutes in WAITING
    before it starts, or fail to start.
    """

    STANDARD = "STANDARD"
    FLEX = "FLEX"


def capacity_dpu(worker_type: str | None, workers: int | None, max_capacity: float | None = None) -> float:
    if worker_type and workers:
        return WORKER_DPU[worker_type] * workers
    return float(max_capacity or 0)


def billed_dpu_seconds(run: dict[str, Any], minimum_seconds: int = PRICES.glue_minimum_seconds) -> float:
    """One run as Glue bills it: its reported DPUSeconds (auto-scaling and Flex runs), else its execution time
    times its capacity; at least the minimum duration at its (largest) capacity. A run that consumed nothing
    (it never started: a Flex run that found no capacity, a queued run that expired) is not billed."""
    capacity = capacity_dpu(run.get("WorkerType"), run.get("NumberOfWorkers"), run.get("MaxCapacity"))
    used = float(run.get("DPUSeconds") or 0) or int(run.get("ExecutionTime") or 0) * capacity
    return max(minimum_seconds * capacity, used) if used else 0.0


def execution_class_of(run: dict[str, Any]) -> ExecutionClass:
    """The class a run was billed at (Glue reports it on every run; STANDARD when it does not say)."""
    return ExecutionClass(str(run.get("ExecutionClass") or ExecutionClass.STANDARD).upper())


def billed_usage(dpu_seconds: float, execution_class: ExecutionClass) -> Usage:
    """One run's billed DPU-seconds, under its execution class."""
    flex = execution_class is ExecutionClass.FLEX
    return Usage(
        glue_runs=1,
        glue_dpu_seconds=dpu_seconds,
        glue_flex_runs=int(flex),
        glue_flex_dpu_seconds=dpu_seconds if flex else 0.0,
    )


def runs_usage(runs: Iterable[dict[str, Any]], poll_seconds: int) -> Usage:
    """A manifest's ended Glue runs (GetJobRuns entries): their DPU-seconds by execution class, and the completion
    trigger's GetJobRun polls (one per ``poll_seconds`` of the run, plus the last), which no client of ours sends."""
    usage = Usage()
    for run in runs:
        if run.get("JobRunState") not in ENDED:
            continue
        usage.add(billed_usage(billed_dpu_seconds(run), execution_class_of(run)))
        started, ended = run.get("StartedOn"), run.get("CompletedOn")
        if isinstance(started, datetime) and isinstance(ended, datetime):
            usage.requests["glue.GetJobRun"] += math.ceil((ended - started).total_seconds() / poll_seconds) + 1
    return usage


def local_run_usage(total_seconds: float, spec: dict[str, Any], execution_class: ExecutionClass) -> Usage:
    """A local run priced as the Glue job ``spec`` (resources.json) would be billed for the same time, in the
    execution class the run was asked for."""
    seconds = max(PRICES.glue_minimum_seconds, math.ceil(total_seconds))
    dpu = capacity_dpu(spec["worker_type"], int(spec["number_of_workers"]))
    return billed_usage(seconds * dpu, execution_class)
