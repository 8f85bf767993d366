"""What Glue bills for a manifest's runs: DPU-seconds, from the runs' own figures or, locally, the job's timings."""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from ndjson_pipeline.usage.prices import PRICES
from ndjson_pipeline.usage.record import Usage

# DPUs per worker of each Glue worker type.
WORKER_DPU = {"G.025X": 0.25, "G.1X": 1.0, "G.2X": 2.0, "G.4X": 4.0, "G.8X": 8.0, "Z.2X": 2.0}
ENDED = frozenset({"SUCCEEDED", "FAILED", "STOPPED", "TIMEOUT", "ERROR"})


def capacity_dpu(worker_type: str | None, workers: int | None, max_capacity: float | None = None) -> float:
    if worker_type and workers:
        return WORKER_DPU[worker_type] * workers
    return float(max_capacity or 0)


def billed_dpu_seconds(run: dict[str, Any], minimum_seconds: int = PRICES.glue_minimum_seconds) -> float:
    """One run as Glue bills it: its reported DPUSeconds (auto-scaling and Flex runs), else its execution
    time, at least the minimum, times its capacity."""
    if run.get("DPUSeconds"):
        return float(run["DPUSeconds"])
    seconds = max(minimum_seconds, int(run.get("ExecutionTime") or 0))
    return seconds * capacity_dpu(run.get("WorkerType"), run.get("NumberOfWorkers"), run.get("MaxCapacity"))


def runs_usage(runs: Iterable[dict[str, Any]], poll_seconds: int) -> Usage:
    """A manifest's ended Glue runs (GetJobRuns entries): their DPU-seconds, and the completion trigger's
    GetJobRun polls (one per ``poll_seconds`` of the run, plus the last), which no client of ours sends."""
    usage = Usage()
    for run in runs:
        if run.get("JobRunState") not in ENDED:
            continue
        usage.glue_runs += 1
        usage.glue_dpu_seconds += billed_dpu_seconds(run)
        started, ended = run.get("StartedOn"), run.get("CompletedOn")
        if isinstance(started, datetime) and isinstance(ended, datetime):
            usage.requests["glue.GetJobRun"] += math.ceil((ended - started).total_seconds() / poll_seconds) + 1
    return usage


def local_run_usage(total_seconds: float, spec: dict[str, Any]) -> Usage:
    """A local run priced as the Glue job ``spec`` (resources.json) would be billed for the same time."""
    seconds = max(PRICES.glue_minimum_seconds, math.ceil(total_seconds))
    dpu = capacity_dpu(spec["worker_type"], int(spec["number_of_workers"]))
    return Usage(glue_runs=1, glue_dpu_seconds=seconds * dpu)
