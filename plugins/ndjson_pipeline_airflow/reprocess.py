"""The reprocess DAG's tasks: plan the days' rebuilds (or compactions), run each, swap each day in.

The ``action`` param says which: ``reprocess`` converts each SUCCEEDED manifest of the day again from its raw
files; ``compact`` merges the day's small Parquet files. Both swap the day in through the catalog the same way.
"""

from __future__ import annotations

import json
import logging
from datetime import date, timedelta
from typing import Any

from airflow.sdk import get_current_context, task
from airflow.sdk.exceptions import AirflowFailException

from ndjson_pipeline.clock import utcnow
from ndjson_pipeline_airflow import dag_run_name
from ndjson_pipeline_airflow.usage import records_usage

# The DAG file imports this module: what a task uses beyond Airflow's authoring interface is imported when it runs.

log = logging.getLogger(__name__)

MAX_DAYS = 31  # a range is one run's work; longer ones are split into several runs


def _requested_by() -> str:
    return dag_run_name(get_current_context())


def requested_days(first: str, last: str | None) -> list[str]:
    """The days from ``first`` to ``last`` (inclusive, newest first); an error names the param at fault."""
    try:
        start = date.fromisoformat(first)
        end = date.fromisoformat(last) if last else start
    except ValueError as exc:
        raise AirflowFailException(f"params 'day' and 'last_day' must be dates YYYY-MM-DD: {exc}") from exc
    if end < start:
        raise AirflowFailException(f"param 'last_day' {end} is before 'day' {start}")
    if end > utcnow().date():
        raise AirflowFailException(f"param 'last_day' {end} is in the future")
    count = (end - start).days + 1
    if count > MAX_DAYS:
        raise AirflowFailException(f"{count} days asked; one run reprocesses at most {MAX_DAYS} (split the range)")
    return [(end - timedelta(days=n)).isoformat() for n in range(count)]


def _first_day_param() -> str:
    return str(get_current_context()["params"]["day"])


def _compacting() -> bool:
    return get_current_context()["params"].get("action") == "compact"


@task(multiple_outputs=False)
@records_usage(_first_day_param)
def plan_rebuilds() -> list[dict[str, Any]]:
    """The manifests to run (the rebuilds are mapped over them); each day's plan is the ``plans`` XCom.

    A dry run returns no manifest, so nothing is rebuilt or swapped; its ``plans`` say what a real run would do.
    """
    from ndjson_pipeline.steps import PipelineError
    from ndjson_pipeline.steps.compacting import plan_compaction
    from ndjson_pipeline.steps.reprocessing import plan_reprocess
    from ndjson_pipeline_airflow.hooks.ledger import LedgerHook
    from ndjson_pipeline_airflow.hooks.storage import StorageHook
    from ndjson_pipeline_airflow.settings_loader import load_settings

    context = get_current_context()
    params = context["params"]
    settings = load_settings()
    dry_run = bool(params["dry_run"])
    ledger, storage = LedgerHook().get_ledger(settings), StorageHook().get_storage()
    plan = plan_compaction if _compacting() else plan_reprocess
    try:
        plans = [
            plan(ledger, storage, settings, day, requested_by=_requested_by(), dry_run=dry_run)
            for day in requested_days(params["day"], params.get("last_day") or None)
        ]
    except PipelineError as exc:
        raise AirflowFailException(str(exc)) from exc
    summaries = [plan.summary() for plan in plans]
    log.info(
        "%s%s: %s",
        "dry run: " if dry_run else "",
        params.get("action") or "reprocess",
        json.dumps(summaries, indent=2),
        extra={"dry_run": dry_run, "reprocess_plans": summaries},
    )
    context["ti"].xcom_push(key="plans", value=summaries)
    return [] if dry_run else [ref.as_dict() for plan in plans for ref in plan.manifests]


# One XCom: the records of every day swapped, in one place in the UI.
@task(trigger_rule="all_done", multiple_outputs=False)
@records_usage(lambda rebuilds: str(rebuilds[0]["day"]) if rebuilds else _first_day_param())
def swap_days(rebuilds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Swap each day's rebuilt (``steps.reprocessing.swap_day``) or compacted (``steps.compacting.swap_compaction``)
    Parquet in, newest day first.

    Runs whatever became of the rebuilds: a day whose rebuilds all have results
    is swapped, one that lacks some is left as it was and fails the task once
    the others are done (clear its failed rebuilds, then this task).
    """
    from ndjson_pipeline.steps import PipelineError
    from ndjson_pipeline.steps.compacting import compaction_record, swap_compaction
    from ndjson_pipeline.steps.reprocessing import RebuildRef, swap_day, swap_record
    from ndjson_pipeline_airflow.hooks.catalog import CatalogHook
    from ndjson_pipeline_airflow.hooks.ledger import LedgerHook
    from ndjson_pipeline_airflow.hooks.storage import StorageHook
    from ndjson_pipeline_airflow.settings_loader import load_settings
    from ndjson_pipeline_airflow.usage import record_conversion

    context = get_current_context()
    settings = load_settings()
    ledger, storage, catalog = (
        LedgerHook().get_ledger(settings),
        StorageHook().get_storage(),
        CatalogHook().get_catalog(settings),
    )
    requested_by = _requested_by()
    triggered_by = getattr(context.get("dag_run"), "triggering_user_name", None)
    records, refused = [], {}
    for day in sorted({str(ref["day"]) for ref in rebuilds}, reverse=True):
        swapped = compaction_record if _compacting() else swap_record
        if swapped(storage, settings, day, requested_by) is None:  # a retry: the layout is gone
            for ref in (RebuildRef.from_dict(r) for r in rebuilds if r["day"] == day):
                record_conversion(settings, ref.manifest, ref)
        try:
            if _compacting():
                record: Any = swap_compaction(
                    storage, settings, catalog, day, requested_by=requested_by, triggered_by=triggered_by
                )
            else:
                record = swap_day(
                    ledger, storage, settings, catalog, day, requested_by=requested_by, triggered_by=triggered_by
                )
        except PipelineError as exc:
            log.error("day %s not swapped: %s", day, exc, extra={"day": day})
            refused[day] = str(exc)
            continue
        records.append(record.as_dict())
    if refused:
        raise AirflowFailException(f"{len(refused)} days not swapped (the others are): {refused}")
    return records
