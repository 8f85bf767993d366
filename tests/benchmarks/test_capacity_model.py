"""The capacity model's timeline of the intake and ingest DAGs: lone files, loads and bursts, in time."""

from __future__ import annotations

import dataclasses

from benchmarks.capacity_model import Design, Scenario, simulate
from ndjson_pipeline.settings import PipelineSettings

LATENCY_TARGET_S = 15 * 60
# One ingest DAG every 5 minutes that drained the queue itself, runs never overlapping, and its settings.
FORMER_DESIGN = Design("former", schedule_seconds=300, max_active_runs=1, conversion_slots=12, separate_intake=False)
FORMER_SETTINGS = PipelineSettings(
    intake_time_budget_seconds=240,
    min_batch_files=200,
    min_batch_bytes=512 * 1024**2,
    max_wait_seconds=300,
    max_files_per_manifest=99,
    max_bytes_per_manifest=1024**3,
    sensor_poll_seconds=30,
    sensor_timeout_seconds=360,
)


def _lone_file(offset_s: float) -> Scenario:
    return Scenario(f"lone file at {offset_s:.0f} s", 0, 1, burst_files=1, burst_start_h=offset_s / 3600, burst_hours=0)


def test_a_lone_file_is_converted_by_the_ingest_dag_within_the_latency_target_whenever_it_lands():
    settings = PipelineSettings()
    worst = 0.0
    for step in range(30):  # arrivals spread over two schedule periods, so every phase of a run is hit
        outcome = simulate(settings, Design(), _lone_file(1800 + step * 20), drain_hours=1)
        assert len(outcome.latencies) == 1
        worst = max(worst, outcome.latencies[0])
    assert worst < LATENCY_TARGET_S


def test_a_sensor_that_gives_up_before_max_wait_leaves_a_lone_file_to_a_later_run():
    """The old defaults (sensor_timeout_seconds 240 < max_wait_seconds 300) in the former DAG shape.

    Every sensor then gave up with the file pending and only a later run, whose sensor found it old enough at once,
    converted it. Now the run that registers a file converts it. (In this design that is not faster in the worst
    case: intake does not run while the sensor waits, so a longer sensor delays the next registration.)
    """
    settings = FORMER_SETTINGS
    too_short = object.__new__(PipelineSettings)
    for f in dataclasses.fields(PipelineSettings):
        object.__setattr__(too_short, f.name, getattr(settings, f.name))
    object.__setattr__(too_short, "sensor_timeout_seconds", 240)
    for step in range(10):
        scenario = _lone_file(1800 + step * 30)
        assert simulate(settings, FORMER_DESIGN, scenario, drain_hours=1).sensor_timeouts == 0
        assert simulate(too_short, FORMER_DESIGN, scenario, drain_hours=1).sensor_timeouts >= 1


def test_the_model_conserves_files_and_fills_manifests_under_load():
    outcome = simulate(PipelineSettings(), Design(), Scenario("100K/day", 100_000, 2))
    summary = outcome.summary()
    assert summary["done"] == summary["arrived"] > 8000
    assert summary["files_per_manifest"] > 50
    assert outcome.percentile(95) < LATENCY_TARGET_S


def test_overlapping_runs_keep_a_burst_within_the_latency_target_where_the_former_shape_fell_behind():
    burst = Scenario("50K in an hour", 100_000, hours=3, burst_files=50_000, burst_start_h=0.5)
    now = simulate(PipelineSettings(), Design(), burst)
    before = simulate(FORMER_SETTINGS, FORMER_DESIGN, burst)
    assert len(now.latencies) == now.arrived
    assert max(now.latencies) < LATENCY_TARGET_S < max(before.latencies)
