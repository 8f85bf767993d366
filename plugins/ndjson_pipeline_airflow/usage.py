"""Each task try's AWS usage, written under the day it worked for, for the day report to price.

A task try counts every request of its hooks' clients (``hooks.TASK_RECORDER``)
and writes one record, ``_pipeline/usage/dt=<day>/<dag>.<run>.<task>.<map index>.<try>.json``,
when it ends, failed or not: one PutObject per task try, about 3,200 a day at
100K files ($0.016 a day). Triggers report their polls in their events; the
finaliser records what Glue billed for a manifest's runs. Recording never fails
a task: a record that cannot be written is logged as an error and lost.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from airflow.sdk import get_current_context

from ndjson_pipeline.clock import utc_day, utcnow

if TYPE_CHECKING:
    from ndjson_pipeline.manifest import ManifestRef
    from ndjson_pipeline.settings import PipelineSettings, RunPurpose
    from ndjson_pipeline.steps.reprocessing import RebuildRef
    from ndjson_pipeline.usage import Usage

# DAG files import this module (``records_usage`` decorates tasks): the hooks, boto3 and the usage records are
# imported when a task runs.

log = logging.getLogger(__name__)


def first_day(days: list[str]) -> str:
    """The day a task over ``days`` works for: the first (newest) one, or today."""
    return days[0] if days else utc_day(utcnow())


def _task_try(context: Any) -> str:
    ti = context["ti"]
    return f"{ti.dag_id}.{ti.run_id}.{ti.task_id}.{ti.map_index}.{ti.try_number}"


def write_task_usage(settings: PipelineSettings, day: str, reported: Usage | None = None) -> None:
    """Write what this task try counted (plus ``reported``, e.g. by its trigger) under ``day``."""
    from ndjson_pipeline.usage import Usage, write_usage
    from ndjson_pipeline_airflow.hooks import TASK_RECORDER
    from ndjson_pipeline_airflow.hooks.storage import StorageHook

    usage = TASK_RECORDER.take().add(reported or Usage())
    try:
        write_usage(StorageHook().get_storage(), settings.layout, day, _task_try(get_current_context()), usage)
    except Exception:
        log.exception(
            "could not record the AWS usage of this task try for %s: %s", day, usage.as_dict(), extra={"day": day}
        )


@contextlib.contextmanager
def task_usage(day: str) -> Iterator[None]:
    """Count this task try's requests while the block runs, and write them under ``day`` however it ends."""
    from ndjson_pipeline_airflow.hooks import TASK_RECORDER
    from ndjson_pipeline_airflow.settings_loader import load_settings

    settings = load_settings()
    TASK_RECORDER.computed_capacity = settings.usage_capacity_source == "computed"
    TASK_RECORDER.take()  # a process may have run code before this task
    try:
        yield
    finally:
        write_task_usage(settings, day)


def records_usage(day_of: Callable[..., str]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a task function (under ``@task``) to record its usage under ``day_of(*its arguments)``."""

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def recorded(*args: Any, **kwargs: Any) -> Any:
            with task_usage(day_of(*args, **kwargs)):
                return func(*args, **kwargs)

        return recorded

    return decorate


def record_conversion(
    settings: PipelineSettings, ref: ManifestRef, rebuild: RebuildRef | None = None, purpose: RunPurpose | None = None
) -> None:
    """What Glue billed for the manifest's runs and the Parquet they published, in one record per manifest.

    ``rebuild``: the runs of a reprocess that converted the manifest again, or of a compaction (recorded apart,
    under the day; their purpose is the rebuild's). ``purpose``: why the other runs ran (ingest unless said).

    What the runs were billed comes from the runs themselves (``ConversionRuns.billed``: on AWS GetJobRuns'
    execution class and DPU-seconds; a local run priced from the job's own timing, in the execution class its
    purpose asks for). Written again by a retry with the same content.
    """
    from ndjson_pipeline.outputs import read_result
    from ndjson_pipeline.settings import RunPurpose
    from ndjson_pipeline.usage import write_usage
    from ndjson_pipeline_airflow.hooks.storage import StorageHook
    from ndjson_pipeline_airflow.runs import conversion_runs

    storage = StorageHook().get_storage()
    layout = rebuild.work_layout(settings.layout) if rebuild else settings.layout
    purpose = rebuild.purpose if rebuild else purpose or RunPurpose.INGEST
    result = read_result(storage, settings, ref, layout)
    usage = conversion_runs(settings, layout, purpose).billed(ref.manifest_id, result)
    usage.output_bytes = sum(o.bytes for o in result.output_files) if result else 0
    try:
        # Its PutObject is the finaliser's, counted in the finaliser's record.
        name = f"glue-{ref.manifest_id}" + (f"-{rebuild.kind}-{rebuild.rebuild_id}" if rebuild else "")
        write_usage(storage, settings.layout, ref.day, name, usage, counts_own_write=False)
    except Exception:
        log.exception(
            "could not record the Glue usage of manifest %s: %s",
            ref.manifest_id,
            usage.as_dict(),
            extra={"manifest_id": ref.manifest_id, "day": ref.day},
        )
