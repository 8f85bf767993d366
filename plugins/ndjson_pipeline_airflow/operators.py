"""The conversion step: one Glue run per manifest, or the same script on local Spark."""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from airflow.providers.amazon.aws.links.glue import GlueJobRunDetailsLink
from airflow.providers.amazon.aws.operators.glue import GlueJobOperator
from airflow.providers.amazon.aws.triggers.glue import GlueJobCompleteTrigger
from airflow.providers.amazon.aws.utils import validate_execute_complete_event
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields
from airflow.sdk.exceptions import AirflowException, AirflowSkipException

from ndjson_pipeline.conversion import JobArguments
from ndjson_pipeline.layout import LakeLayout
from ndjson_pipeline.ledger import IllegalTransitionError, ManifestState
from ndjson_pipeline.manifest import ManifestRef
from ndjson_pipeline.outputs import discard_output, read_result
from ndjson_pipeline.settings import PipelineSettings
from ndjson_pipeline.steps.converting import ConversionKind, decide_conversion
from ndjson_pipeline.steps.redoing import manifest_to_convert, manifest_to_finalise
from ndjson_pipeline.steps.reprocessing import RebuildRef
from ndjson_pipeline_airflow.hooks import AWS_CONN_ID
from ndjson_pipeline_airflow.hooks.glue import ManifestGlueJobHook
from ndjson_pipeline_airflow.hooks.ledger import LedgerHook
from ndjson_pipeline_airflow.hooks.storage import StorageHook
from ndjson_pipeline_airflow.settings_loader import load_settings
from ndjson_pipeline_airflow.usage import task_usage

# What the job, its arguments and its waiting come from: the pipeline settings, read at run time.
_FROM_SETTINGS = ("job_name", "script_location", "script_args", "waiter_delay", "waiter_max_attempts")


class ManifestGlueJobOperator(GlueJobOperator):
    """Converts one manifest with the Glue job, never with two runs at once.

    ``execute`` asks :func:`~ndjson_pipeline.steps.converting.decide_conversion`,
    from the manifest's ledger record, its result object and the runs carrying
    its id, and applies the answer: skip a closed manifest, succeed when the
    result exists, defer to the provider's ``GlueJobCompleteTrigger`` for a run
    still active, or start one run through the hook's ``initialize_job`` and
    defer to it. The guard uses only the provider's public hook and trigger, so
    a retry of this task waits for the run an earlier try started, whatever the
    provider tracks itself. With the ``glue_runner`` setting "local" the same
    script runs on local Spark with the same arguments.

    A compensation (a finaliser or the other DAG's sweeper) may begin between
    the decision and the run's start: the lease extension before the start and
    the run's attachment to the manifest after it are both conditional on no
    compensation having begun, and a run found too late is stopped and its
    output removed at once. A run of a compensated manifest met later is
    stopped the same way.

    The job name, its arguments and the waiter come from the pipeline settings at
    run time (``settings.names.glue_job``, ``settings.job_arguments``,
    ``glue_poll_seconds``/``glue_max_wait_seconds``); passing them here is an error.

    :param manifest: a manifest reference (``ManifestRef.as_dict()``) from the batching task.
    :param aws_conn_id: the Airflow AWS connection.
    """

    template_fields: Sequence[str] = aws_template_fields("manifest")

    def __init__(self, *, manifest: dict[str, Any], aws_conn_id: str | None = AWS_CONN_ID, **kwargs: Any) -> None:
        given = sorted(set(_FROM_SETTINGS) & set(kwargs))
        if given:
            raise ValueError(f"ManifestGlueJobOperator takes {given} from the pipeline settings, not as arguments")
        super().__init__(aws_conn_id=aws_conn_id, **kwargs)
        self.manifest = manifest

    @property
    def _connection(self) -> dict[str, Any]:
        """How every hook of this task reaches AWS: the operator's connection, region and client options."""
        return {
            "aws_conn_id": self.aws_conn_id,
            "region_name": self.region_name,
            "verify": self.verify,
            "config": self.botocore_config,
        }

    def _glue(self, settings: PipelineSettings) -> ManifestGlueJobHook:
        return ManifestGlueJobHook(
            job_name=settings.names.glue_job, lake_root=settings.layout.lake_root, **self._connection
        )

    def execute(self, context: Any) -> str | None:
        with task_usage(self.manifest["day"]):
            return self._convert(context)

    def _convert(self, context: Any) -> str | None:
        settings = load_settings()
        ref = ManifestRef.from_dict(self.manifest)
        context["manifest_id"] = ref.manifest_id  # labels the mapped task in the UI
        ledger = LedgerHook(**self._connection).get_ledger(settings)
        storage = StorageHook(**self._connection)
        # A cleared conversion of a compensated manifest converts its redo (its files claimed back).
        ref = manifest_to_convert(ledger, storage.get_storage(), settings, ref)
        glue = self._glue(settings)
        record = ledger.get_manifest(ref.manifest_id)
        # Local runs are synchronous: none outlives its task, so none is looked for.
        active_run_id = None if settings.glue_runner == "local" else glue.active_run_of(ref.manifest_id)
        decision = decide_conversion(
            ref.manifest_id,
            record,
            result_exists=read_result(storage.get_storage(), settings, ref) is not None,
            active_run_id=active_run_id,
        )
        self.log.info("%s", decision.reason)
        if decision.kind is ConversionKind.SKIP:
            if active_run_id and record is not None and record.state is not ManifestState.SUCCEEDED:
                self._give_up_run(settings, ref, storage, f"run {active_run_id} converts a manifest given up")
            raise AirflowSkipException(decision.reason)
        if decision.kind is ConversionKind.ALREADY_DONE:
            return None
        try:
            ledger.extend_lease(ref.manifest_id, settings.lease_seconds)
        except IllegalTransitionError as exc:
            raise AirflowSkipException(f"manifest {ref.manifest_id}: {exc}; not converting") from exc

        def adopt(run_id: str) -> None:
            if not ledger.attach_run(ref.manifest_id, run_id):
                self._give_up_run(settings, ref, storage, f"run {run_id} ran while its manifest was being compensated")

        return self._run_and_wait(context, settings, glue, settings.job_arguments(ref), decision.run_id, adopt)

    def _run_and_wait(
        self,
        context: Any,
        settings: PipelineSettings,
        glue: ManifestGlueJobHook,
        arguments: JobArguments,
        run_id: str | None,
        adopt: Callable[[str], None],
    ) -> str | None:
        """Wait for ``run_id``, or start one run of ``arguments`` (``adopt`` is told its id), deferring to the trigger.

        A local run (``glue_runner`` "local") runs the script here, synchronously.
        """
        if settings.glue_runner == "local":
            from ndjson_pipeline.local_glue import run_glue_script_locally  # only local runs need Spark tooling

            self.log.info("converting manifest %s on local Spark: %s", arguments.manifest_id, settings.script_uri)
            run_glue_script_locally(
                settings.script_uri,
                arguments,
                s3_endpoint=StorageHook(**self._connection).endpoint_url,
                timeout_seconds=settings.glue_max_wait_seconds,
            )
            adopt("local")
            return "local"
        extra = {"--extra-py-files": settings.glue_extra_py_files_uri} if settings.glue_extra_py_files_uri else {}
        run_id = run_id or glue.start_run(arguments, extra)
        adopt(run_id)
        GlueJobRunDetailsLink.persist(
            context=context,
            operator=self,
            region_name=glue.conn_region_name,
            aws_partition=glue.conn_partition,
            job_name=urllib.parse.quote(settings.names.glue_job, safe=""),
            job_run_id=run_id,
        )
        if not self.deferrable:
            glue.job_completion(settings.names.glue_job, run_id, self.verbose)
            return run_id
        self.defer(
            trigger=GlueJobCompleteTrigger(
                job_name=settings.names.glue_job,
                run_id=run_id,
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

    def _give_up_run(self, settings: PipelineSettings, ref: ManifestRef, storage: StorageHook, why: str) -> NoReturn:
        """A run of a manifest no longer claimed: stop it, remove whatever it wrote, skip this task."""
        if settings.glue_runner != "local":
            self._glue(settings).stop_runs_of(ref.manifest_id)
        removed = discard_output(storage.get_storage(), settings, ref)
        raise AirflowSkipException(
            f"manifest {ref.manifest_id} was compensated: {why}; run stopped, {removed} output objects removed"
        )

    def on_kill(self) -> None:
        """Ask Glue to stop the manifest's run (the finaliser and the sweeper make sure it ends)."""
        settings = load_settings()
        if settings.glue_runner != "local":
            # A cleared conversion may be running the manifest's redo: stop the run of the manifest it converts.
            ledger = LedgerHook(**self._connection).get_ledger(settings)
            ref = manifest_to_finalise(ledger, ManifestRef.from_dict(self.manifest))
            self._glue(settings).request_stop(ref.manifest_id)


class RebuildGlueJobOperator(ManifestGlueJobOperator):
    """Converts one manifest again for a reprocess, into the reprocess's rebuild layout, with one run at a time.

    The manifest is SUCCEEDED and stays so: no claim, lease or redo is involved.
    Its result in the rebuild layout means done; a run of the same rebuild still
    active (keyed by manifest id and the rebuild's ``--lake_root``) is waited
    for; otherwise one run starts. A retry after a failed run starts another:
    the job replaces whatever an earlier run of the manifest published there.

    :param manifest: a rebuild reference (``RebuildRef.as_dict()``) from the reprocess's planning task.
    """

    def _rebuild(self, settings: PipelineSettings) -> tuple[RebuildRef, LakeLayout]:
        ref = RebuildRef.from_dict(self.manifest)
        return ref, settings.layout.rebuild(ref.rebuild_id)

    def _glue(self, settings: PipelineSettings) -> ManifestGlueJobHook:
        _, layout = self._rebuild(settings)
        return ManifestGlueJobHook(job_name=settings.names.glue_job, lake_root=layout.lake_root, **self._connection)

    def _convert(self, context: Any) -> str | None:
        settings = load_settings()
        ref, layout = self._rebuild(settings)
        manifest_id = ref.manifest.manifest_id
        context["manifest_id"] = manifest_id
        if read_result(StorageHook(**self._connection).get_storage(), settings, ref.manifest, layout) is not None:
            self.log.info("manifest %s is rebuilt already under %s", manifest_id, layout.lake_root)
            return None
        glue = self._glue(settings)
        active_run_id = None if settings.glue_runner == "local" else glue.active_run_of(manifest_id)
        self.log.info("rebuilding manifest %s under %s", manifest_id, layout.lake_root)
        arguments = settings.job_arguments(ref.manifest, layout)
        return self._run_and_wait(context, settings, glue, arguments, active_run_id, lambda _run_id: None)

    def on_kill(self) -> None:
        settings = load_settings()
        if settings.glue_runner != "local":
            self._glue(settings).request_stop(self.manifest["manifest_id"])
