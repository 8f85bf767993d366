"""The pipeline's Airflow tasks, shared by the ingest and end-of-day DAGs.

Each task reads the settings at run time, builds its clients through the
provider's hooks and calls one plain function of ``ndjson_pipeline``. DAG files
import this module, so it imports only Airflow's authoring interface at module
level: each task imports what it uses when it runs.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import date, timedelta
from functools import partial
from typing import Any

from airflow.sdk import Asset, get_current_context, task, task_group
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from ndjson_pipeline.clock import utc_day, utcnow
from ndjson_pipeline.resources import conversion_slots
from ndjson_pipeline_airflow import dag_run_name
from ndjson_pipeline_airflow.callbacks import alert_conversion_failed, stop_run_before_retry
from ndjson_pipeline_airflow.operators import ManifestGlueJobOperator
from ndjson_pipeline_airflow.usage import first_day, records_usage

log = logging.getLogger(__name__)

# The Parquet dataset as an Asset, so downstream DAGs can be scheduled on fresh data. Where it lives is a
# setting, read at run time only: each event carries the location in its extra (see finalise), the name is fixed.
PARQUET_ASSET = Asset(name="ndjson_pipeline_parquet")


@task(multiple_outputs=False)
@records_usage(lambda: utc_day(utcnow()))
def intake() -> dict[str, Any]:
    """Drain S3 notifications into the ledger (which opens the days that received work); return the counts."""
    from airflow.providers.amazon.aws.hooks.sqs import SqsHook

    from ndjson_pipeline.steps.intake import drain_queue
    from ndjson_pipeline_airflow.hooks import TASK_RECORDER
    from ndjson_pipeline_airflow.hooks.ledger import LedgerHook
    from ndjson_pipeline_airflow.settings_loader import load_settings

    settings = load_settings()
    sqs = TASK_RECORDER.attach(SqsHook().conn)
    queue_url = sqs.get_queue_url(QueueName=settings.names.queue)["QueueUrl"]
    report = drain_queue(sqs, queue_url, LedgerHook().get_ledger(settings), settings)
    log.info(
        "intake: %s", json.dumps(report.as_dict()), extra={"days": sorted(report.days), "intake": report.as_dict()}
    )
    return report.as_dict()


@task(trigger_rule="all_done", multiple_outputs=False)
@records_usage(lambda days=None: first_day(days or []))
def sweep_expired_claims(days: list[str] | None = None) -> dict[str, Any]:
    """Repair claims a finaliser never closed, publish alerts one never sent, close days without work.

    ``days``: the days to sweep; every open day of the ledger when not given.
    Runs whatever became of the tasks before it. A manifest it cannot repair is
    alerted and fails the task once every other one was handled; the next sweep
    tries it again.
    """
    from ndjson_pipeline.steps import sweeping
    from ndjson_pipeline_airflow.hooks.catalog import CatalogHook
    from ndjson_pipeline_airflow.hooks.ledger import LedgerHook
    from ndjson_pipeline_airflow.hooks.storage import StorageHook
    from ndjson_pipeline_airflow.monitoring import alert_failed_files, alert_unrepaired_manifest, publish_metrics
    from ndjson_pipeline_airflow.runs import conversion_runs
    from ndjson_pipeline_airflow.settings_loader import load_settings

    settings = load_settings()
    ledger = LedgerHook().get_ledger(settings)
    days = days if days is not None else ledger.open_days()
    report = sweeping.sweep_expired_claims(
        ledger,
        StorageHook().get_storage(),
        settings,
        days,
        runs=conversion_runs(settings),
        catalog=CatalogHook().get_catalog(settings),
    )
    alerted = sweeping.publish_stranded_alerts(ledger, days, partial(alert_failed_files, settings))
    now = utcnow()
    oldest = max(
        (ledger.pending_summary(day, enough_files=1, enough_bytes=1).oldest_age_seconds(now) for day in days),
        default=0.0,
    )
    publish_metrics(settings, {"OldestPendingAgeSeconds": oldest, "OpenDays": len(days)})
    for manifest_id, reason in report.unrepaired.items():
        alert_unrepaired_manifest(settings, manifest_id, reason)
    summary = {
        "days": {day: str(state) for day, state in report.days.items()},
        "repaired": [r.manifest_id for r in report.repaired],
        "extended": report.extended,
        "unrepaired": report.unrepaired,
        "alerted": sorted(alerted),
        "oldest_pending_s": oldest,
    }
    log.info("sweep: %s", json.dumps(summary), extra={"days": days, "sweep": summary})
    if report.unrepaired:
        # Not retried: the next scheduled sweep is the retry, and the alert is out.
        raise AirflowFailException(f"{len(report.unrepaired)} manifests could not be repaired: {report.unrepaired}")
    return summary


@task(multiple_outputs=False)
@records_usage(lambda days, woken=False: first_day(days))
def plan_manifests(days: list[str], woken: bool = False) -> list[dict[str, Any]]:
    """Claim pending files of ``days`` into manifests; return manifest references for the mapped conversion.

    ``woken``: the ingest run's sensor took the days' wakes: claim batches only and release the wakes
    (``steps.planning.plan_manifests``); otherwise (the end-of-day flush) claim everything pending.
    """
    from ndjson_pipeline.steps import planning
    from ndjson_pipeline_airflow.hooks.ledger import LedgerHook
    from ndjson_pipeline_airflow.hooks.storage import StorageHook
    from ndjson_pipeline_airflow.settings_loader import load_settings

    context = get_current_context()
    settings = load_settings()
    refs = planning.plan_manifests(
        LedgerHook().get_ledger(settings),
        StorageHook().get_storage(),
        settings,
        days,
        owner=dag_run_name(context),
        woken=woken,
    )
    return [ref.as_dict() for ref in refs]


@task(trigger_rule="all_done", map_index_template="{{ manifest_id }}", outlets=[PARQUET_ASSET], multiple_outputs=False)
@records_usage(lambda manifest, dag_kind="ingest": manifest["day"])
def finalise(manifest: dict[str, Any], dag_kind: str = "ingest") -> dict[str, Any]:
    """Record the conversion's outcome in the ledger, or compensate when it failed for good.

    FAILED files are alerted from the ledger's markers, so a retry alerts for
    what an earlier try failed; a compensation that cannot complete is alerted
    and left for the sweeper. ``dag_kind``: the ``RunPurpose`` of the conversion's runs (what they were billed at).
    """
    from ndjson_pipeline.manifest import ManifestRef
    from ndjson_pipeline.settings import RunPurpose
    from ndjson_pipeline.steps import finalising
    from ndjson_pipeline.steps.redoing import manifest_to_finalise
    from ndjson_pipeline_airflow.hooks.catalog import CatalogHook
    from ndjson_pipeline_airflow.hooks.ledger import LedgerHook
    from ndjson_pipeline_airflow.hooks.storage import StorageHook
    from ndjson_pipeline_airflow.monitoring import alert_failed_files, alert_unrepaired_manifest
    from ndjson_pipeline_airflow.runs import conversion_runs
    from ndjson_pipeline_airflow.settings_loader import load_settings
    from ndjson_pipeline_airflow.usage import record_conversion

    context = get_current_context()
    ref = ManifestRef.from_dict(manifest)
    context["manifest_id"] = ref.manifest_id  # type: ignore[typeddict-unknown-key]  # the mapped task's UI label
    settings = load_settings()
    ledger = LedgerHook().get_ledger(settings)
    ref = manifest_to_finalise(ledger, ref)  # a cleared conversion converted the manifest's redo
    try:
        outcome = finalising.finalise_manifest(
            ledger,
            StorageHook().get_storage(),
            settings,
            ref,
            runs=conversion_runs(settings),
            catalog=CatalogHook().get_catalog(settings),
        )
    except Exception as exc:
        record = ledger.get_manifest(ref.manifest_id)
        if record is not None and record.status == "COMPENSATING":  # the compensation began and stopped half way
            alert_unrepaired_manifest(settings, ref.manifest_id, f"{exc.__class__.__name__}: {exc}")
        raise
    record_conversion(settings, ref, purpose=RunPurpose(dag_kind))
    failed = finalising.publish_alerts(ledger, ref.manifest_id, partial(alert_failed_files, settings))
    if failed:
        raise AirflowFailException(
            f"manifest {ref.manifest_id}: {len(failed)} files FAILED after "
            f"{settings.max_attempts} attempts (alert raised): {failed[:5]}"
        )
    if outcome.status != "SUCCEEDED":
        # No new data: skipping keeps this from emitting an asset event.
        raise AirflowSkipException(f"manifest {ref.manifest_id} compensated; its files are pending again")
    context["outlet_events"][PARQUET_ASSET].extra = {
        "uri": settings.layout.dataset_uri + "/",
        "dataset": settings.dataset,
        "table_format": settings.table_format,
        "manifest_id": ref.manifest_id,
        "day": ref.day,
        "rows_out": outcome.rows_out,
    }
    return outcome.as_dict()


@task_group
def convert_manifest(manifest: dict[str, Any], dag_kind: str) -> None:
    """One manifest: the conversion job, then finalise (which also runs, and compensates, if it failed).

    ``dag_kind`` ("ingest" or "end_of_day") says whose share of Glue's concurrent runs the conversions take
    (``resources.conversion_slots``): together the DAGs never start more runs than the Glue job accepts. It is
    also the runs' ``RunPurpose``: the end-of-day flush runs in ``background_execution_class`` (no file's latency
    waits on it), ingest's in STANDARD.

    The saga: the conversion's callbacks are its fast path (before a retry, stop
    the failed run and remove its partial output; on final failure, alert);
    finalise and the sweeper are its guarantee, because callbacks can fire
    twice, early or never (``callbacks``).
    """
    convert = ManifestGlueJobOperator(
        task_id="convert",
        manifest=manifest,
        purpose=dag_kind,
        deferrable=True,
        map_index_template="{{ manifest_id }}",
        max_active_tis_per_dag=conversion_slots(dag_kind),
        on_retry_callback=stop_run_before_retry,
        on_failure_callback=alert_conversion_failed,
    )
    convert >> finalise(manifest, dag_kind)


@task(multiple_outputs=False)
def resolve_day() -> list[str]:
    """The day to close: the ``day`` param, else the day before the run's logical date (or before today)."""
    from ndjson_pipeline.steps.reconcile import DayTooOldError, check_day_can_be_closed
    from ndjson_pipeline_airflow.settings_loader import load_settings

    context = get_current_context()
    requested = context["params"].get("day")
    if requested:
        try:
            day = date.fromisoformat(requested)
        except ValueError as exc:
            raise AirflowFailException(f"param 'day' must be a date YYYY-MM-DD, got {requested!r}") from exc
    else:
        anchor = context.get("logical_date") or utcnow()
        day = anchor.date() - timedelta(days=1)
    if day > utcnow().date():
        raise AirflowFailException(f"param 'day' {day} is in the future")
    try:
        check_day_can_be_closed(day.isoformat(), load_settings())
    except DayTooOldError as exc:
        raise AirflowFailException(str(exc)) from exc
    return [day.isoformat()]


@task(multiple_outputs=False)
@records_usage(first_day)
def reconcile(days: list[str]) -> dict[str, Any]:
    """Register every object of the day's landing listing that the ledger lacks (lost notifications)."""
    from ndjson_pipeline.steps.reconcile import reconcile_day
    from ndjson_pipeline_airflow.hooks.ledger import LedgerHook
    from ndjson_pipeline_airflow.hooks.storage import StorageHook
    from ndjson_pipeline_airflow.monitoring import alert_present_but_superseded
    from ndjson_pipeline_airflow.settings_loader import load_settings

    settings = load_settings()
    ledger = LedgerHook().get_ledger(settings)
    report = reconcile_day(StorageHook().conn, ledger, settings, settings.names.landing_bucket, days[0])
    log.info("reconcile: %s", json.dumps(report.as_dict()), extra={"day": days[0], "reconcile": report.as_dict()})
    if report.present_but_superseded:
        # The flush goes on; the day report then finds the day incomplete and names these files.
        alert_present_but_superseded(settings, days[0], report.present_but_superseded)
    return report.as_dict()


# One XCom (a dict return would be split into one XCom per key): the UI shows the whole report in one place.
@task(trigger_rule="all_done", multiple_outputs=False)
@records_usage(first_day)
def report_day(days: list[str]) -> dict[str, Any]:
    """Check the day is complete (every file terminal, rows reconciled) and write the day report.

    Manifests another run is still converting (an ingest run overlapping this
    one) are waited for, up to the conversion time limit, before judging.
    """
    from ndjson_pipeline.drift import drift_for_logs
    from ndjson_pipeline.steps import reporting
    from ndjson_pipeline_airflow.hooks.ledger import LedgerHook
    from ndjson_pipeline_airflow.hooks.storage import StorageHook
    from ndjson_pipeline_airflow.monitoring import report_rescued_rows
    from ndjson_pipeline_airflow.settings_loader import load_settings

    settings = load_settings()
    ledger = LedgerHook().get_ledger(settings)
    deadline = time.monotonic() + settings.glue_max_wait_seconds
    while (in_flight := ledger.open_manifests(days[0])) and time.monotonic() < deadline:
        log.info(
            "waiting for %d manifests of %s still converting in other runs",
            len(in_flight),
            days[0],
            extra={"day": days[0], "manifests_in_flight": len(in_flight)},
        )
        time.sleep(settings.glue_poll_seconds)
    report = reporting.day_report(ledger, StorageHook().get_storage(), settings, days[0])
    logged = {**report, "drift": drift_for_logs(report["drift"])}  # the report in S3 names the fields
    log.info("day report: %s", json.dumps(logged, indent=2), extra={"day": days[0], "day_report": logged})
    report_rescued_rows(settings, days[0], report["drift"])
    if not report["complete"]:
        raise AirflowFailException(
            f"day {days[0]} is not complete: {report['files_by_state']}; "
            f"not terminal e.g. {report['not_terminal'][:3]}, unreconciled e.g. {report['unreconciled'][:3]}, "
            f"quarantined as superseded but still in S3 (replay them) e.g. {report['present_but_superseded'][:3]}"
        )
    return report
