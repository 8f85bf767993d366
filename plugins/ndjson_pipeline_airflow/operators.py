"""The conversion step: one run per manifest (Glue's, or the same script on local Spark), never two at once."""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Sequence
from typing import Any

from airflow.providers.amazon.aws.links.glue import GlueJobRunDetailsLink
from airflow.providers.amazon.aws.operators.glue import GlueJobOperator
from airflow.providers.amazon.aws.triggers.glue import GlueJobCompleteTrigger
from airflow.providers.amazon.aws.utils import validate_execute_complete_event
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields
from airflow.sdk.exceptions import AirflowException, AirflowSkipException

from ndjson_pipeline.manifest import ManifestRef
from ndjson_pipeline.resources import conversion_slots
from ndjson_pipeline.settings import PipelineSettings
from ndjson_pipeline.steps import converting
from ndjson_pipeline.steps.converting import Conversion, ConversionRuns, Outcome
from ndjson_pipeline.steps.reprocessing import RebuildRef
from ndjson_pipeline_airflow.hooks import AWS_CONN_ID
from ndjson_pipeline_airflow.hooks.glue import ManifestGlueJobHook
from ndjson_pipeline_airflow.hooks.ledger import LedgerHook
from ndjson_pipeline_airflow.hooks.storage import StorageHook
from ndjson_pipeline_airflow.runs import conversion_runs
from ndjson_pipeline_airflow.settings_loader import load_settings
from ndjson_pipeline_airflow.usage import task_usage

log = logging.getLogger(__name__)  # not the operator's ``self.log``: the pipeline's log settings apply to this one

# A reprocess's conversions take the end-of-day DAG's share of Glue's concurrent runs: both are occasional, and
# Glue queues what exceeds it (the DAG file sets it on the mapped rebuild: the scheduler reads it from there).
REBUILD_SLOTS = conversion_slots("end_of_day")
# What the job, its arguments and its waiting come from: the pipeline settings, read at run time.
_FROM_SETTINGS = ("job_name", "script_location", "script_args", "waiter_delay", "waiter_max_attempts")


class ManifestGlueJobOperator(GlueJobOperator):
    """Converts one manifest with the Glue job, never with two runs at once.

    ``execute`` runs :func:`~ndjson_pipeline.steps.converting.convert` (the whole
    protocol: redo chain, decision from recorded state, lease, run attachment,
    giving up a run found too late) and maps its outcome to Airflow: skipped,
    done, or deferred to the provider's ``GlueJobCompleteTrigger`` for the run
    converting the manifest. The runs come from :func:`~ndjson_pipeline_airflow.runs.conversion_runs`:
    Glue's, through the provider's public hook (``initialize_job``), or with the
    ``glue_runner`` setting "local" the same script on local Spark.

    Every try and every clear asks the manifest's recorded state which run to wait
    for, so a retry waits for the run an earlier try started and a clear never
    converts twice. The provider's own run tracking stays off: ``durable``
    (apache-airflow-providers-amazon 9.35.0 and later, on by default on Airflow
    3.3) resumes the run id kept in the task state store for the DAG run, task and
    map index, across retries and clears, before anything else is asked. That run
    may convert another manifest (a clear can map the index to another one) or one
    compensated since, and one that succeeded is returned as done: the ledger is
    never asked. This operator replaces ``execute``, so that code never runs, and
    ``durable`` is False so that no inherited path would run it either.

    The job name, its arguments and the waiter come from the pipeline settings at
    run time (``settings.names.glue_job``, ``settings.job_arguments``,
    ``glue_poll_seconds``/``glue_max_wait_seconds``); passing them here is an error.

    :param manifest: a manifest reference (``ManifestRef.as_dict()``) from the batching task.
    :param aws_conn_id: the Airflow AWS connection.

    ``durable`` is accepted where the provider has it (a DAG's ``default_args`` may
    set it) and is always False here: the manifest's recorded state decides instead.
    """

    template_fields: Sequence[str] = aws_template_fields("manifest")

    def __init__(self, *, manifest: dict[str, Any], aws_conn_id: str | None = AWS_CONN_ID, **kwargs: Any) -> None:
        given = sorted(set(_FROM_SETTINGS) & set(kwargs))
        if given:
            raise ValueError(f"ManifestGlueJobOperator takes {given} from the pipeline settings, not as arguments")
        super().__init__(aws_conn_id=aws_conn_id, **kwargs)
        self.manifest = manifest
        # The provider's resume from the task state store stays off whatever was asked (see the class docstring).
        self.durable = False

    @property
    def _connection(self) -> dict[str, Any]:
        """How every hook of this task reaches AWS: the operator's connection, region and client options."""
        return {
            "aws_conn_id": self.aws_conn_id,
            "region_name": self.region_name,
            "verify": self.verify,
            "config": self.botocore_config,
        }

    def _runs(self, settings: PipelineSettings) -> ConversionRuns:
        return conversion_runs(settings, **self._connection)

    def execute(self, context: Any) -> str | None:
        with task_usage(self.manifest["day"]):
            return self._convert(context)

    def _convert(self, context: Any) -> str | None:
        settings = load_settings()
        context["manifest_id"] = self.manifest["manifest_id"]  # labels the mapped task in the UI
        ledger = LedgerHook(**self._connection).get_ledger(settings)
        storage = StorageHook(**self._connection).get_storage()
        ref = ManifestRef.from_dict(self.manifest)
        return self._apply(context, settings, converting.convert(ledger, storage, settings, ref, self._runs(settings)))

    def _apply(self, context: Any, settings: PipelineSettings, conversion: Conversion) -> str | None:
        """Map what the conversion did to the task: skipped, done, or waiting (deferred) for its run."""
        log.info(
            "%s",
            conversion.reason,
            extra={
                "manifest_id": conversion.manifest_id,
                "outcome": str(conversion.outcome),
                "run_id": conversion.run_id,
            },
        )
        if conversion.outcome is Outcome.SKIPPED:
            raise AirflowSkipException(conversion.reason)
        if conversion.outcome is Outcome.DONE or conversion.run_id is None:
            return conversion.run_id
        glue = ManifestGlueJobHook(job_name=settings.names.glue_job, **self._connection)
        GlueJobRunDetailsLink.persist(
            context=context,
            operator=self,
            region_name=glue.conn_region_name,
            aws_partition=glue.conn_partition,
            job_name=urllib.parse.quote(settings.names.glue_job, safe=""),
            job_run_id=conversion.run_id,
        )
        if not self.deferrable:
            glue.job_completion(settings.names.glue_job, conversion.run_id, self.verbose)
            return conversion.run_id
        self.defer(
            trigger=GlueJobCompleteTrigger(
                job_name=settings.names.glue_job,
                run_id=conversion.run_id,
                verbose=self.verbose,
                waiter_delay=settings.glue_poll_seconds,
                waiter_max_attempts=max(1, settings.glue_max_wait_seconds // settings.glue_poll_seconds),
                aws_conn_id=self.aws_conn_id,
                region_name=self.region_name,
                verify=self.verify,
                botocore_config=self.botocore_config,
            ),
            method_name="execute_complete",
        )
        return None  # not reached: defer() raises

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> str:
        manifest_id = self.manifest["manifest_id"]
        context["manifest_id"] = manifest_id  # the label is rendered after resuming, too
        validated = validate_execute_complete_event(event)
        if validated.get("status") != "success" or not validated.get("run_id"):
            raise AirflowException(f"Glue run of manifest {manifest_id} did not succeed: {validated}")
        run_id: str = validated["run_id"]
        return run_id

    def on_kill(self) -> None:
        """Ask for the manifest's run to stop (the finaliser and the sweeper make sure it ends)."""
        settings = load_settings()
        ledger = LedgerHook(**self._connection).get_ledger(settings)
        converting.request_stop(ledger, ManifestRef.from_dict(self.manifest), self._runs(settings))


class RebuildGlueJobOperator(ManifestGlueJobOperator):
    """Converts one manifest again for a reprocess, into the reprocess's rebuild layout, with one run at a time.

    Runs :func:`~ndjson_pipeline.steps.converting.rebuild`: the manifest is
    SUCCEEDED and stays so (no claim, lease or redo); its result in the rebuild
    layout means done; a run of the same rebuild still active (its runs are the
    rebuild layout's, keyed by manifest id and ``--lake_root``) is waited for;
    otherwise one run starts.

    :param manifest: a rebuild reference (``RebuildRef.as_dict()``) from the reprocess's planning task.
    """

    def _runs(self, settings: PipelineSettings) -> ConversionRuns:
        layout = settings.layout.rebuild(RebuildRef.from_dict(self.manifest).rebuild_id)
        return conversion_runs(settings, layout, **self._connection)

    def _convert(self, context: Any) -> str | None:
        settings = load_settings()
        context["manifest_id"] = self.manifest["manifest_id"]
        storage = StorageHook(**self._connection).get_storage()
        ref = RebuildRef.from_dict(self.manifest)
        return self._apply(context, settings, converting.rebuild(storage, settings, ref, self._runs(settings)))

    def on_kill(self) -> None:
        self._runs(load_settings()).request_stop(self.manifest["manifest_id"])
