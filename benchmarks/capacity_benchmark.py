"""Capacity and cost per file of the ingest design: latency, backlog, Glue runs and cost at 10K, 100K and 500K
files a day and a burst, and every AWS request and DynamoDB unit a file costs end to end.

Two parts:

1. **Measured over the moto server**: each step of the pipeline runs with its real
   code (the steps, the hooks, the trigger, the Glue job on local Spark) on a day of
   ``--files`` small files, and every request is counted by the same botocore hooks
   the day report uses. DynamoDB's units are computed from item sizes with its
   rules (moto reports constants): ``ndjson_pipeline/usage/capacity.py``. The Glue
   job converts manifests of 300 files of ~3.5 KB with ``target_file_mb`` scaled down
   1000x, so a manifest has the 9 output groups a 1 GB manifest has.
2. **Modelled** (``capacity_model.py``): the DAG's timeline with its real settings
   and the printed assumptions, which says how often each step runs per file at a
   given load; times the measured requests per step, that is the per-file figure.

``--design`` takes a JSON object of ``Design`` fields (and ``--settings`` one of
pipeline settings) to show another design, e.g. the former one: ``--design
'{"separate_intake": false, "schedule_seconds": 300, "max_active_runs": 1,
"conversion_slots": 12}' --settings '{"intake_time_budget_seconds": 240}'``.
Run: ``make bench-capacity``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import replace

from benchmarks.capacity_measure import Measured, measure
from benchmarks.capacity_model import Assumptions, Design, Outcome, Scenario, StepRequests, simulate
from ndjson_pipeline.ledger.schema import table_schema
from ndjson_pipeline.resources import landing_noncurrent_days
from ndjson_pipeline.settings import PipelineSettings
from ndjson_pipeline.usage import Usage
from ndjson_pipeline.usage.capacity import READ_UNIT_BYTES
from ndjson_pipeline.usage.costs import day_cost
from ndjson_pipeline.usage.prices import PRICES
from tools.local_stack import (
    airflow_environment,
    aws_connection_env,
    moto_server,
)

SCENARIOS = (
    Scenario("10K files/day", 10_000, hours=6),
    Scenario("100K files/day", 100_000, hours=6),
    Scenario("500K files/day", 500_000, hours=6),
    Scenario("50K burst in 1 h (on 100K/day)", 100_000, hours=4, burst_files=50_000, burst_start_h=1),
)
PER_MANIFEST = 300  # files per measured manifest: what a run holds at 100K-500K files/day
SEEDS = (1, 2, 3, 4, 5)
LATENCY_TARGET_S = 15 * 60
SCAN_LIMIT = 2_500_000  # files/day: the ceiling scan's last load


# ---------------------------------------------------------------------- part 2: modelled, and combined with part 1


def _times(usage: Usage, times: float) -> Usage:
    return Usage(
        requests=Counter({k: v * times for k, v in usage.requests.items()}),
        read_units=usage.read_units * times,
        write_units=usage.write_units * times,
    )


def per_file_by_step(measured: Measured, counts: Counter, poll_pending: list[int], files: int) -> dict[str, Usage]:
    """What each step costs per file: its measured usage times how often the model ran it, over the files."""
    executions = {
        "intake (task)": ("intake.task", counts["task.intake"]),
        "intake (receives)": ("intake.receive", counts["intake.receive"]),
        "intake (empty receives)": ("intake.empty_receive", counts["intake.empty_receive"]),
        "sweep": ("sweep.task", counts["task.sweep"]),
        "sensor polls": ("sensor.poll", counts["sensor.poll"]),
        "wakes taken": ("wake.take", counts["wake.take"]),
        "wakes released": ("wake.release", counts["wake.release"]),
        "plan (task)": ("plan.task", counts["task.plan"]),
        "claims + manifests": ("claim", counts["claim"]),
        "conversion start": ("conversion.start", counts["task.convert"]),
        "Glue job": ("glue.job", counts["task.convert"]),
        "finalise": ("finalise.task", counts["task.finalise"]),
        "end of day": ("end_of_day", files),
    }
    steps = {name: _times(measured.per_step[step], times) for name, (step, times) in executions.items()}
    for name, (step, _) in executions.items():  # and what scales with the files converted
        if step in measured.per_file:
            steps[name].add(_times(measured.per_file[step], files))
    steps["intake (receives)"].write_units += measured.per_step["file.register"].write_units * files
    steps["Glue polls"] = Usage(requests=Counter({"glue.GetJobRun": counts["glue.poll"]}))
    tasks = counts["task.intake"] + counts["task.sweep"] + counts["task.sensor"] + counts["task.plan"]
    tasks += 2 * counts["task.convert"]  # each conversion and its finaliser
    steps["usage records"] = Usage(requests=Counter({"s3.PutObject": tasks}))
    shards = table_schema().pending_shards
    polls = steps["sensor polls"]
    polls.read_units = 0.0
    for pending in poll_pending:  # a query reads every item of the shard it counts, before projection
        per_shard = math.ceil(pending / shards) * measured.pending_item_bytes
        polls.read_units += shards * 0.5 * max(1, math.ceil(per_shard / READ_UNIT_BYTES))
        polls.read_units += shards * 0.5  # the other day watched (yesterday), empty
    return {name: _times(usage, 1 / files) for name, usage in steps.items()}


def _total(by_step: dict[str, Usage]) -> Usage:
    total = Usage()
    for usage in by_step.values():
        total.add(usage)
    return total


def cost_per_file(by_step: dict[str, Usage], glue_dpu_s: float, settings: PipelineSettings) -> dict:
    """The day report's cost of one file: every step's requests and units, and the Glue DPU-seconds it was billed."""
    return day_cost(
        replace(_total(by_step), glue_dpu_seconds=glue_dpu_s),
        files=1,
        landing_bytes=Assumptions().file_bytes,
        landing_days=settings.landing_retention_days + landing_noncurrent_days(),
    )


def print_per_file(by_step: dict[str, Usage], glue_dpu_s: float, settings: PipelineSettings) -> None:
    total = _total(by_step)
    print(f"  {'step':<24} {'requests':>9} {'WRU':>7} {'RRU':>7}")
    for name, usage in by_step.items():
        print(f"  {name:<24} {sum(usage.requests.values()):9.3f} {usage.write_units:7.3f} {usage.read_units:7.3f}")
    print(f"  {'total':<24} {sum(total.requests.values()):9.3f} {total.write_units:7.3f} {total.read_units:7.3f}")
    print("  by service and operation:")
    for service, ops in sorted(_by_service(total).items()):
        detail = ", ".join(f"{op} {n:.3f}" for op, n in sorted(ops.items()))
        print(f"    {service:<11} {sum(ops.values()):7.3f}  {detail}")
    cost = cost_per_file(by_step, glue_dpu_s, settings)
    parts = ", ".join(f"{k} {v * 1e6:.1f}" for k, v in cost["variable_usd"].items() if v)
    print(f"  variable cost per file: {cost['per_file_usd'] * 1e6:.1f} µ$ ({parts} µ$)")


def _kind(operation: str) -> str:
    service = operation.split(".", 1)[0]
    return "dynamodb_transaction" if operation == "dynamodb.TransactWriteItems" else service


def _kinds(usage: Usage, minus: dict[str, float] | None = None) -> dict[str, float]:
    kinds: Counter = Counter()
    for operation, count in usage.requests.items():
        kinds[_kind(operation)] += count - (minus or {}).get(operation, 0)
    return dict(kinds)


def _at(measured: Measured, step: str, files: int) -> Usage:
    """A split step's usage for one manifest of ``files`` files."""
    usage = _times(measured.per_step[step], 1)
    usage.add(_times(measured.per_file[step], files))
    return usage


def step_requests(measured: Measured) -> StepRequests:
    """The measured requests of each step, by kind, for the model's timeline."""
    step = measured.per_step
    finalise = step["finalise.task"]
    return StepRequests(
        intake_batch=_kinds(step["intake.receive"]),
        sweep=_kinds(step["sweep.task"]),
        claim=_kinds(_at(measured, "claim", PER_MANIFEST)),
        conversion_start=_kinds(_at(measured, "conversion.start", PER_MANIFEST)),
        finalise_fixed=_kinds(finalise),
        finalise_per_file=_kinds(measured.per_file["finalise.task"]),
    )


def ceilings(settings: PipelineSettings, design: Design, assumptions: Assumptions, requests: StepRequests) -> dict:
    """The lowest steady loads (files/day, 4-hour runs, every 50K up from 100K, 3 seeds each) at which the p95
    latency leaves the 15-minute target, or the backlog keeps growing (by a run's claims or more in the second
    half); the ceilings are the loads just below. A scan, not a bisection: past its ceiling the current design is
    not monotonic (intake that hits its message limit ends early, which shortens runs)."""

    def holds(per_day: float) -> dict[str, bool]:
        verdicts = {"latency": 0, "throughput": 0}
        for seed in SEEDS[:3]:
            outcome = simulate(
                settings,
                design,
                Scenario("probe", per_day, hours=4),
                assumptions=assumptions,
                requests=requests,
                drain_hours=0,
                seed=seed,
            )
            backlog = outcome.backlog
            verdicts["latency"] += outcome.percentile(95) <= LATENCY_TARGET_S
            growth = backlog[-1] - backlog[len(backlog) // 2]
            verdicts["throughput"] += growth < settings.max_manifests_per_run * settings.max_files_per_manifest
        return {name: count >= 2 for name, count in verdicts.items()}

    found: dict[str, float] = {}
    step, per_day = 50_000, 100_000
    while len(found) < 2 and per_day <= SCAN_LIMIT:
        for name, ok in holds(per_day).items():
            if not ok and name not in found:
                found[name] = per_day - step
        per_day += step
    return found


def _ceiling(found: dict[str, float], name: str) -> str:
    return f"{found[name]:,.0f}" if name in found else f"beyond the scan's {SCAN_LIMIT:,}"


def _glue_dpu_s_per_file(outcome: Outcome) -> float:
    return outcome.glue_dpu_seconds / max(1, len(outcome.latencies))


def _priced(outcome: Outcome, measured: Measured | None, settings: PipelineSettings) -> dict:
    """The outcome's figures, with what Glue and (when measured) everything else cost per file, in µ$."""
    summary = outcome.summary()
    summary["glue_usd_per_file"] = round(_glue_dpu_s_per_file(outcome) / 3600 * PRICES.glue_dpu_hour * 1e6, 1)
    summary["variable_usd_per_file"] = math.nan
    if measured:
        by_step = per_file_by_step(measured, outcome.counts, outcome.poll_pending, outcome.arrived)
        cost = cost_per_file(by_step, _glue_dpu_s_per_file(outcome), settings)
        summary["variable_usd_per_file"] = round(cost["per_file_usd"] * 1e6, 1)
    return summary


def median_summary(summaries: list[dict]) -> dict:
    """Each figure's median over the seeds (a burst's tail moves with where the runs fall)."""
    return {key: statistics.median(s[key] for s in summaries) for key in summaries[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--files",
        type=int,
        default=PER_MANIFEST + PER_MANIFEST // 3,
        help="files of the measured day (over moto): a full manifest and a smaller one, to tell apart what a step "
        "costs per manifest and per file",
    )
    parser.add_argument("--design", default="{}", help="JSON: Design fields to change (capacity_model.Design)")
    parser.add_argument("--settings", default="{}", help="JSON: pipeline settings to change")
    parser.add_argument("--skip-measure", action="store_true", help="model only, with StepRequests' defaults")
    args = parser.parse_args()
    settings = PipelineSettings.from_mapping(json.loads(args.settings))
    design = replace(Design(), **json.loads(args.design))
    assumptions = Assumptions()
    started = time.monotonic()

    measured = None
    if not args.skip_measure:
        os.environ.update(airflow_environment(tempfile.mkdtemp(prefix="bench-airflow-")))
        with moto_server() as endpoint:
            os.environ.update(aws_connection_env(endpoint))
            bench = settings.replace(
                name_prefix="bench-capacity",
                intake_wait_seconds=1,
                usage_capacity_source="computed",
                max_files_per_manifest=PER_MANIFEST,
                conversion=replace(settings.conversion, target_file_mb=settings.conversion.target_file_mb / 1000),
            )
            measured = measure(endpoint, args.files, bench)
        for note in measured.notes:
            print(f"  note: {note}")

    print(f"\nmodel of the design '{design.name}': {design}")
    print(
        "settings: "
        + ", ".join(
            f"{k}={getattr(settings, k)}"
            for k in (
                "intake_time_budget_seconds",
                "intake_wait_seconds",
                "intake_max_messages",
                "latency_budget_seconds",
                "sensor_poll_seconds",
                "max_files_per_manifest",
                "max_bytes_per_manifest",
                "max_manifests_per_run",
                "glue_poll_seconds",
            )
        )
    )
    print(f"batch thresholds in effect: {settings.batching}")
    print("assumptions:\n  " + "\n  ".join(assumptions.described()))
    requests = step_requests(measured) if measured else StepRequests()
    print(f"step requests in the model's timeline: {requests}")
    columns = [("p50 s", "p50_s"), ("p95 s", "p95_s"), ("max s", "max_s"), ("peak backlog", "peak_backlog")]
    columns += [
        ("files/manifest", "files_per_manifest"),
        ("Glue runs/day", "glue_runs_per_day"),
        ("Glue µ$/file", "glue_usd_per_file"),
        ("all-in µ$/file", "variable_usd_per_file"),
        ("ingest runs/h", "ingest_runs_per_hour"),
        ("empty plans/h", "empty_plans_per_hour"),
        ("task starts/h", "task_starts_per_hour"),
    ]
    print("\n" + f"{'scenario':<34}" + "".join(f"{title:>15}" for title, _ in columns))
    outcomes = {}
    for scenario in SCENARIOS:
        runs = [
            simulate(settings, design, scenario, assumptions=assumptions, requests=requests, seed=seed)
            for seed in SEEDS
        ]
        outcomes[scenario.name] = runs[0]
        summary = median_summary([_priced(outcome, measured, settings) for outcome in runs])
        print(f"{scenario.name:<34}" + "".join(f"{summary[key]:>15g}" for _, key in columns))
    print(
        f"(medians over {len(SEEDS)} seeds of arrivals and Glue start times; Glue runs/day at the scenario's rate "
        "while files arrive; all-in: the variable cost of a file, every request, unit and DPU-second, fixed costs "
        "apart" + ("" if measured else "; not measured: --skip-measure") + ")"
    )
    found = ceilings(settings, design, assumptions, requests)
    print(
        f"ceiling: p95 within {LATENCY_TARGET_S // 60} minutes up to {_ceiling(found, 'latency')} files/day; "
        f"the backlog stops growing up to {_ceiling(found, 'throughput')} files/day"
    )
    if measured:
        for scenario in SCENARIOS[1:3]:
            outcome = outcomes[scenario.name]
            by_step = per_file_by_step(measured, outcome.counts, outcome.poll_pending, outcome.arrived)
            print(f"\nper file at {scenario.name} (requests measured per step x executions modelled):")
            print_per_file(by_step, _glue_dpu_s_per_file(outcome), settings)
    print(f"\nbenchmark took {time.monotonic() - started:.0f}s")


def _by_service(usage: Usage) -> dict[str, dict[str, float]]:
    services: dict[str, dict[str, float]] = {}
    for name, count in usage.requests.items():
        service, op = name.split(".", 1)
        services.setdefault(service, {})[op] = count
    return services


if __name__ == "__main__":
    sys.exit(main())
