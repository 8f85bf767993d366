"""Every DAG parses, follows the house rules, and touches neither AWS nor Variables at import."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tools.local_stack import REPO_ROOT

DAG_FILES = sorted((REPO_ROOT / "dags").glob("*.py"))
CONVERTING_DAG_IDS = {"ndjson_ingest", "ndjson_end_of_day"}
DAG_IDS = {*CONVERTING_DAG_IDS, "ndjson_intake", "ndjson_maintenance", "ndjson_reprocess", "ndjson_db_cleanup"}


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO_ROOT / "dags"))


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) == DAG_IDS


@pytest.mark.parametrize("dag_id", sorted(DAG_IDS))
def test_dag_conventions(dagbag, dag_id):
    dag = dagbag.dags[dag_id]
    assert "ndjson-pipeline" in dag.tags
    assert dag.max_active_runs >= 1
    for task in dag.tasks:
        assert task.owner == "data-platform", task.task_id
        assert task.retries >= 2, task.task_id


def test_conversion_is_mapped_deferrable_and_labelled(dagbag):
    from ndjson_pipeline_airflow.operators import ManifestGlueJobOperator

    for dag_id in CONVERTING_DAG_IDS:
        convert = dagbag.dags[dag_id].get_task("convert_manifest.convert")
        assert isinstance(convert, ManifestGlueJobOperator)
        assert convert.get_closest_mapped_task_group() is not None
        assert convert.deferrable is True
        assert convert.map_index_template == "{{ manifest_id }}"


def test_the_parquet_asset_is_named_and_located_only_at_run_time(dagbag):
    from ndjson_pipeline_airflow.tasks import PARQUET_ASSET

    for dag_id in CONVERTING_DAG_IDS:
        assert dagbag.dags[dag_id].get_task("convert_manifest.finalise").outlets == [PARQUET_ASSET]
    # No bucket in the name: the lake's location is a setting, carried by each event's extra.
    assert PARQUET_ASSET.uri == PARQUET_ASSET.name == "ndjson_pipeline_parquet"


def test_conversion_concurrency_matches_the_glue_jobs_max_concurrent_runs(dagbag):
    from ndjson_pipeline.resources import glue_job_spec

    converts = [dagbag.dags[d].get_task("convert_manifest.convert") for d in sorted(CONVERTING_DAG_IDS)]
    slots = [convert.max_active_tis_per_dag for convert in converts]
    assert all(s >= 1 for s in slots)
    assert sum(slots) == int(glue_job_spec()["max_concurrent_runs"])


def test_end_of_day_takes_a_validated_day_param(dagbag):
    from airflow.sdk.exceptions import ParamValidationError

    param = dagbag.dags["ndjson_end_of_day"].params.get_param("day")
    assert param.resolve(None) is None
    assert param.resolve("2026-11-24") == "2026-11-24"
    for bad in (20261124, "24/11/2026", "2026-11-24T00:00"):
        with pytest.raises(ParamValidationError):
            param.resolve(bad)


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda p: p.name)
def test_import_is_fast_and_offline_and_loads_nothing_tasks_need_at_run_time(dag_file: Path, tmp_path):
    """Import each DAG file in a fresh interpreter with AWS and the Variable store made unreachable.

    Airflow's authoring interface (``dag``, ``task``, the base operator and sensor)
    is loaded first, as the DAG processor has it loaded; the DAG file must not
    pull in boto3, the Amazon provider's hooks or triggers, pyarrow or the
    pipeline's ledger (tasks import them when they run),
    and its own cost stays far under the ceiling (``make bench-dag-parse`` prints
    the real figures against Airflow's tutorial DAG).
    """
    probe = textwrap.dedent(
        f"""
        import importlib.util, json, sys, time
        import airflow.sdk
        from airflow.sdk import BaseOperator, BaseSensorOperator, Variable, dag, task  # loaded in a DAG processor

        def refuse(*args, **kwargs):
            raise RuntimeError("Variable access at import time")
        Variable.get = staticmethod(refuse)
        spec = importlib.util.spec_from_file_location("dag_under_test", {str(dag_file)!r})
        module = importlib.util.module_from_spec(spec)
        started = time.perf_counter()
        spec.loader.exec_module(module)
        heavy = sorted(
            m for m in sys.modules
            if m.split(".")[0] in ("boto3", "botocore", "aiobotocore", "pyarrow", "pyspark")
            or m.startswith(("airflow.providers.amazon.aws.hooks", "airflow.providers.amazon.aws.triggers"))
            or m.startswith(("ndjson_pipeline.ledger", "ndjson_pipeline.steps", "ndjson_pipeline_airflow.hooks"))
        )
        print(json.dumps({{"seconds": time.perf_counter() - started, "heavy": heavy[:10]}}))
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "include"), str(REPO_ROOT / "plugins")])}
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    assert figures["heavy"] == []
    assert figures["seconds"] < 0.5, figures


def test_every_task_returns_one_xcom(dagbag):
    # A dict return would otherwise be split into one XCom per key (rows for nobody to read, and a UI that shows no
    # report as a whole); stated rather than inferred, it also spares the parse an evaluation of each return type.
    split = [
        f"{dag_id}.{task.task_id}"
        for dag_id, dag in dagbag.dags.items()
        for task in dag.tasks
        if getattr(task, "multiple_outputs", False)
    ]
    assert split == []


def test_maintenance_is_manual_with_validated_params_and_a_dry_run_by_default(dagbag):
    from airflow.sdk.definitions.timetables.simple import NullTimetable
    from airflow.sdk.exceptions import ParamValidationError

    dag = dagbag.dags["ndjson_maintenance"]
    assert isinstance(dag.timetable, NullTimetable)
    params = dag.params
    assert params.get_param("dry_run").resolve(params["dry_run"]) is True
    assert params.get_param("action").resolve("replay_quarantined") == "replay_quarantined"
    assert params.get_param("manifest_id").resolve(None) is None
    assert params.get_param("manifest_id").resolve("20261124-0123456789abcdef0123") == "20261124-0123456789abcdef0123"
    for name, bad in (("action", "delete_day"), ("day", "24/11/2026"), ("manifest_id", "m1"), ("dry_run", "no")):
        with pytest.raises(ParamValidationError):
            params.get_param(name).resolve(bad)
    assert dag.get_task("maintain").multiple_outputs is False


def test_reprocess_is_manual_validated_dry_run_by_default_and_maps_rebuilds_by_manifest(dagbag):
    from airflow.sdk.definitions.timetables.simple import NullTimetable
    from airflow.sdk.exceptions import ParamValidationError

    from ndjson_pipeline_airflow.operators import RebuildGlueJobOperator

    dag = dagbag.dags["ndjson_reprocess"]
    assert isinstance(dag.timetable, NullTimetable)
    assert dag.max_active_runs == 1
    params = dag.params
    assert params.get_param("dry_run").resolve(params["dry_run"]) is True
    assert params.get_param("last_day").resolve(None) is None
    assert params.get_param("action").resolve(params["action"]) == "reprocess"
    assert params.get_param("action").resolve("compact") == "compact"
    for name, bad in (("day", "24/11/2026"), ("last_day", "2026-11"), ("dry_run", "no"), ("action", "merge")):
        with pytest.raises(ParamValidationError):
            params.get_param(name).resolve(bad)
    rebuild = dag.get_task("rebuild")
    assert rebuild.operator_class is RebuildGlueJobOperator
    assert (rebuild.partial_kwargs["deferrable"], rebuild.map_index_template) == (True, "{{ manifest_id }}")
    # A day swaps once each of its rebuilds ended, whatever became of another day's.
    assert dag.get_task("swap_days").trigger_rule == "all_done"


def test_a_failed_sweep_never_stops_the_conversions(dagbag):
    ingest = dagbag.dags["ndjson_ingest"]
    assert ingest.get_task("wait_for_pending_work").trigger_rule == "all_done"
    assert dagbag.dags["ndjson_end_of_day"].get_task("plan_manifests").trigger_rule == "all_done"


def test_intake_never_waits_for_a_conversion(dagbag):
    """Intake is a DAG of its own: the ingest DAG's conversions, however long, never hold up the queue."""
    intake, ingest = dagbag.dags["ndjson_intake"], dagbag.dags["ndjson_ingest"]
    assert [t.task_id for t in intake.tasks] == ["intake"]
    assert "intake" not in ingest.task_ids
    assert intake.max_active_runs == 1


def test_the_capacity_model_is_the_dags_shape(dagbag):
    """The figures of benchmarks/capacity_benchmark.py are those of these DAGs, not of a design on paper."""
    from datetime import datetime

    from croniter import croniter

    from benchmarks.capacity_model import Design

    design, ingest, intake = Design(), dagbag.dags["ndjson_ingest"], dagbag.dags["ndjson_intake"]

    def every_seconds(dag) -> float:
        times = croniter(dag.timetable.expression, datetime(2026, 12, 1))
        first = times.get_next(datetime)
        return (times.get_next(datetime) - first).total_seconds()

    assert design.separate_intake
    assert design.intake_interval_seconds == every_seconds(intake)
    assert design.schedule_seconds == every_seconds(ingest)
    assert design.max_active_runs == ingest.max_active_runs
    assert design.conversion_slots == ingest.get_task("convert_manifest.convert").max_active_tis_per_dag


def test_the_conversion_carries_the_sagas_callbacks(dagbag):
    from ndjson_pipeline_airflow.callbacks import alert_conversion_failed, stop_run_before_retry

    for dag_id in CONVERTING_DAG_IDS:
        convert = dagbag.dags[dag_id].get_task("convert_manifest.convert")
        assert list(convert.on_retry_callback) == [stop_run_before_retry]
        assert list(convert.on_failure_callback) == [alert_conversion_failed]


def test_the_metadata_cleanup_runs_daily_alone_and_purges_unless_asked_for_a_dry_run(dagbag):
    from datetime import datetime

    from airflow.sdk.exceptions import ParamValidationError
    from croniter import croniter

    dag = dagbag.dags["ndjson_db_cleanup"]
    times = croniter(dag.timetable.expression, datetime(2026, 12, 1))
    first = times.get_next(datetime)
    assert (times.get_next(datetime) - first).total_seconds() == 24 * 3600
    assert (dag.max_active_runs, dag.catchup) == (1, False)
    assert [t.task_id for t in dag.tasks] == ["purge_metadata_database"]
    params = dag.params
    assert params.get_param("dry_run").resolve(params["dry_run"]) is False
    with pytest.raises(ParamValidationError):
        params.get_param("dry_run").resolve("no")
