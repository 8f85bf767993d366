"""The one settings object of the pipeline, validated with errors that name the setting at fault.

Settings are read at run time (never at DAG import) from a JSON mapping: the
Airflow Variable ``ndjson_pipeline_settings`` or the environment variable
``NDJSON_PIPELINE_SETTINGS``. Every key is optional; resource names default to
the ones derived from ``resources.json``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any

from ndjson_pipeline.conversion import (
    ConversionOptions,
    JobArguments,
    LogFormat,
    LogLevel,
    LogOptions,
    OptionError,
    RunKind,
)
from ndjson_pipeline.layout import LakeLayout
from ndjson_pipeline.manifest import ManifestRef
from ndjson_pipeline.resources import ResourceNames, default_names, landing_prefix, landing_retention_days
from ndjson_pipeline.usage.glue import ExecutionClass

SETTINGS_VARIABLE = "ndjson_pipeline_settings"
SETTINGS_ENV = "NDJSON_PIPELINE_SETTINGS"
DEFAULT_SUFFIXES = (".ndjson", ".jsonl", ".json", ".ndjson.gz", ".jsonl.gz", ".json.gz")
_MiB = 1024 * 1024
# S3 expires objects asynchronously after their lifecycle date (rounded up to the next midnight UTC); a listing
# can still show them for a while. The ledger keeps terminal records at least this much longer than the raw data.
LIFECYCLE_LAG_DAYS = 7
CAPACITY_SOURCES = ("reported", "computed")
TABLE_FORMATS = ("hive", "iceberg")
METADATA_CLEANUP_RUNNERS = ("mwaa", "local")


class SettingsError(ValueError):
    """A setting is missing, unknown or out of range; the message names it."""


# The most files one manifest, so one Glue run, may hold: the run's driver holds a result per file, the result
# object lists them and the finaliser records them. A claim is one transaction of whole registration groups, so a
# manifest can never hold more than 99 groups either, whatever this says.
MAX_FILES_PER_MANIFEST = 1000
# What a file's end-to-end latency (S3 event to DONE) holds besides its batch's wait, at the 95th percentile of
# make bench-capacity's model with the Glue job of resources.json: up to a minute before intake registers it (the
# intake DAG's schedule), the sensor's and the planner's task starts, Glue's start (10-30 s), a run of a full
# manifest (under a minute on 2 x G.1X), up to glue_poll_seconds before its end is noticed, the finaliser. A batch
# may wait for more files for what the latency budget leaves after this.
PIPELINE_LATENCY_SECONDS = 180


class RunPurpose(StrEnum):
    """Why a conversion run runs. Only ingest's runs are latency-bound: files wait on them within the budget."""

    INGEST = "ingest"  # the ingest DAG's batches
    END_OF_DAY = "end_of_day"  # the end-of-day DAG's flush of a closed day
    REPROCESS = "reprocess"  # a reprocess's rebuild of a day
    COMPACTION = "compaction"  # rewriting a day's small Parquet files


@dataclass(frozen=True)
class Batching:
    """When a day's pending work is a batch, and how long one sensor waits for one: the thresholds in effect.

    :param files: pending files that make a day ready.
    :param bytes: pending bytes that make a day ready.
    :param wait_seconds: age of the oldest pending file (since registration) that makes a day ready.
    :param sensor_timeout_seconds: how long one ingest run's sensor waits for a ready day.
    """

    files: int
    bytes: int
    wait_seconds: int
    sensor_timeout_seconds: int


@dataclass(frozen=True)
class PipelineSettings:
    name_prefix: str = field(default_factory=lambda: default_names().name_prefix)
    dataset: str = "events"
    landing_prefix: str = field(default_factory=landing_prefix)
    # Validation at intake.
    allowed_suffixes: tuple[str, ...] = DEFAULT_SUFFIXES
    max_file_bytes: int = 1024 * _MiB
    # Intake bounds per call.
    intake_max_messages: int = 5000
    # Under the intake DAG's one-minute schedule: a run ends before the next one is due.
    intake_time_budget_seconds: int = 45
    intake_wait_seconds: int = 20
    # The end-to-end latency (S3 event to DONE) batches are sized for, at the 95th percentile: a batch waits for
    # more files as long as the budget allows (see ``batching``), so runs are as few and as large as it allows.
    # 10 minutes keeps the 15-minute target with a third to spare.
    latency_budget_seconds: int = 600
    # Explicit batch thresholds, each overriding what the budget derives (``batching``): a day is ready at N files
    # or B bytes, or when its oldest file waited W; a sensor gives up after T.
    min_batch_files: int | None = None
    min_batch_bytes: int | None = None
    max_wait_seconds: int | None = None
    # One manifest is one Glue run; a registration group never holds more than a manifest may, and a claim takes
    # whole groups (see MAX_FILES_PER_MANIFEST).
    max_files_per_manifest: int = 600
    max_bytes_per_manifest: int = 2048 * _MiB
    max_manifests_per_run: int = 32
    # Ledger. A claim's lease outlasts the conversion's wait (glue_max_wait_seconds) with 5 minutes for a retry to
    # take over; terminal records outlast the landing data (resources.json landing_retention), so a version that
    # can still be listed is still known.
    lease_seconds: int = 3900
    max_attempts: int = 3
    terminal_ttl_days: int = 14
    # Waiting for work: how often the trigger polls, and how long one sensor waits before the next run takes over
    # (derived from the batch wait unless given: it must outlast the wait plus a poll, see ``batching``).
    sensor_poll_seconds: int = 20
    sensor_timeout_seconds: int | None = None
    # The conversion job. ``glue_runner`` "local" runs the same script on local Spark (see local_glue.py).
    glue_runner: str = "aws"
    glue_script_uri: str = ""
    glue_extra_py_files_uri: str = ""
    schema_uri: str = ""
    # How the job converts: the job's own options type, so each option has one name and one default.
    conversion: ConversionOptions = field(default_factory=ConversionOptions)
    glue_poll_seconds: int = 30
    # As long as the Glue job's own timeout (Terraform glue_timeout_minutes, 60).
    glue_max_wait_seconds: int = 3600
    # Glue's execution class for the runs no file waits on (every ``RunPurpose`` but ingest): FLEX costs a third less
    # per DPU-hour and may wait up to 20 minutes for capacity before it starts. Ingest's runs are always STANDARD.
    background_execution_class: ExecutionClass = ExecutionClass.FLEX
    # Where the day report's DynamoDB capacity units come from: "reported" (DynamoDB's ConsumedCapacity, on AWS)
    # or "computed" from item sizes with DynamoDB's rules (emulators report none or constants).
    usage_capacity_source: str = "reported"
    # A reprocess's swap waits this long after pointing a partition at the rebuilt copy before it changes the lake's
    # files, and after pointing it back before removing the copy: longer than a reader's longest query.
    reprocess_grace_seconds: int = 300
    # The dataset's table: "hive" (Parquet folders, a catalog partition per dt) or "iceberg" (an Iceberg table of the
    # Glue Data Catalog, each manifest's files added by one commit in finalise; iceberg_table.py). A new table either
    # way: switching formats does not migrate the data already converted.
    table_format: str = "hive"
    # Alerts: FAILED files are logged at ERROR, counted in CloudWatch and, when set, published to this topic.
    alert_topic_arn: str = ""
    metrics_namespace: str = "NdjsonPipeline"
    # The day report alerts when more than this percentage of the day's rows kept values in _rescued_data: the
    # data carries fields or types the declared schema does not read (the report lists them).
    rescued_rows_alert_percent: float = 1.0
    # Airflow's metadata database: the cleanup DAG purges what is older (the two every-minute DAGs add about 3,000
    # runs a day). "mwaa" runs `airflow db clean` through MWAA's CLI endpoint; "local" on the local stack.
    metadata_retention_days: int = 30
    metadata_cleanup_runner: str = "mwaa"
    # The pipeline's own logs, in the Airflow tasks and in every conversion run (passed as --log_format and
    # --log_level): "text" or "json" (one object a line, the manifest id, day and counts as fields), and the level
    # of its loggers. The job's options type holds the defaults (conversion.LogOptions).
    log_format: LogFormat = LogOptions.log_format
    log_level: LogLevel = LogOptions.log_level

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type == "int | None" and value is None:
                continue  # derived (``batching``)
            if f.type in ("int", "int | None") and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise SettingsError(f"setting {f.name!r} must be a positive integer, got {value!r}")
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]{1,40}[a-z0-9]", self.name_prefix):
            raise SettingsError(
                f"setting 'name_prefix' must be 3-42 lowercase letters, digits or '-': {self.name_prefix!r}"
            )
        if not re.fullmatch(r"[a-z][a-z0-9_]*", self.dataset):
            raise SettingsError(f"setting 'dataset' must be a lowercase identifier: {self.dataset!r}")
        if self.landing_prefix and not self.landing_prefix.endswith("/"):
            raise SettingsError(f"setting 'landing_prefix' must end with '/': {self.landing_prefix!r}")
        if not self.allowed_suffixes or not all(s.startswith(".") for s in self.allowed_suffixes):
            raise SettingsError(
                f"setting 'allowed_suffixes' must be suffixes starting with '.': {self.allowed_suffixes!r}"
            )
        if self.max_files_per_manifest > MAX_FILES_PER_MANIFEST:
            raise SettingsError(
                f"setting 'max_files_per_manifest' must be at most {MAX_FILES_PER_MANIFEST} (one Glue run: its "
                f"driver holds a result per file and its finaliser records them), got {self.max_files_per_manifest}"
            )
        if self.max_manifests_per_run > 256:
            raise SettingsError("setting 'max_manifests_per_run' must be at most 256 (mapped tasks per run)")
        if self.glue_runner not in ("aws", "local"):
            raise SettingsError(f"setting 'glue_runner' must be one of ('aws', 'local'), got {self.glue_runner!r}")
        if not isinstance(self.conversion, ConversionOptions):
            raise SettingsError(f"setting 'conversion' must be a ConversionOptions, got {self.conversion!r}")
        try:
            logs = LogOptions(log_format=self.log_format, log_level=self.log_level)
        except OptionError as exc:
            raise SettingsError(f"setting {exc.option!r} {exc.problem}") from exc
        object.__setattr__(self, "log_format", logs.log_format)
        object.__setattr__(self, "log_level", logs.log_level)
        percent = self.rescued_rows_alert_percent
        if isinstance(percent, bool) or not isinstance(percent, int | float) or not 0 <= percent <= 100:
            raise SettingsError(f"setting 'rescued_rows_alert_percent' must be a number from 0 to 100, got {percent!r}")
        object.__setattr__(self, "rescued_rows_alert_percent", float(percent))
        if self.intake_wait_seconds > 20:
            raise SettingsError("setting 'intake_wait_seconds' must be at most 20 (SQS long-poll limit)")
        if self.metadata_cleanup_runner not in METADATA_CLEANUP_RUNNERS:
            raise SettingsError(
                f"setting 'metadata_cleanup_runner' must be one of {METADATA_CLEANUP_RUNNERS}, "
                f"got {self.metadata_cleanup_runner!r}"
            )
        if self.table_format not in TABLE_FORMATS:
            raise SettingsError(f"setting 'table_format' must be one of {TABLE_FORMATS}, got {self.table_format!r}")
        if self.usage_capacity_source not in CAPACITY_SOURCES:
            raise SettingsError(
                f"setting 'usage_capacity_source' must be one of {CAPACITY_SOURCES}, got {self.usage_capacity_source!r}"
            )
        classes = [c.value for c in ExecutionClass]
        execution_class = self.background_execution_class
        if not isinstance(execution_class, str) or execution_class.upper() not in classes:
            raise SettingsError(
                f"setting 'background_execution_class' must be one of {classes}, got {execution_class!r}"
            )
        object.__setattr__(self, "background_execution_class", ExecutionClass(execution_class.upper()))
        self._check_consistency()

    def _check_consistency(self) -> None:
        """Rules between settings: each names the settings involved and the value that would work."""
        if self.max_wait_seconds is None and self.latency_budget_seconds < PIPELINE_LATENCY_SECONDS + (
            self.sensor_poll_seconds
        ):
            raise SettingsError(
                f"setting 'latency_budget_seconds' ({self.latency_budget_seconds}) must be at least the pipeline's "
                f"own latency ({PIPELINE_LATENCY_SECONDS} s: intake, task starts, Glue's start and a run) + "
                f"'sensor_poll_seconds' ({self.sensor_poll_seconds}), so a batch can wait at least one poll; "
                "or set 'max_wait_seconds' explicitly"
            )
        batching = self.batching
        if batching.sensor_timeout_seconds <= batching.wait_seconds + self.sensor_poll_seconds:
            raise SettingsError(
                f"setting 'sensor_timeout_seconds' ({batching.sensor_timeout_seconds}) must exceed the batch wait "
                f"({batching.wait_seconds}: 'max_wait_seconds', or what 'latency_budget_seconds' leaves) + "
                f"'sensor_poll_seconds' ({self.sensor_poll_seconds}): otherwise the sensor gives up before a file "
                "it waits on is old enough, and a lone file waits for a later run"
            )
        # The trigger's last poll comes up to one poll after the wait's end, and a local run is killed at the
        # wait's end: a lease that outlasts both is never swept from under a conversion still being waited for.
        if self.lease_seconds <= self.glue_max_wait_seconds + self.glue_poll_seconds:
            raise SettingsError(
                f"setting 'lease_seconds' ({self.lease_seconds}) must exceed 'glue_max_wait_seconds' "
                f"({self.glue_max_wait_seconds}) + 'glue_poll_seconds' ({self.glue_poll_seconds}): a claim whose "
                "lease ends while its conversion is still waited for is repaired by the sweeper under the running job"
            )
        if self.glue_max_wait_seconds < self.glue_poll_seconds:
            raise SettingsError(
                f"setting 'glue_max_wait_seconds' ({self.glue_max_wait_seconds}) must be at least "
                f"'glue_poll_seconds' ({self.glue_poll_seconds}): the wait polls at least once"
            )
        if self.intake_wait_seconds > self.intake_time_budget_seconds:
            raise SettingsError(
                f"setting 'intake_wait_seconds' ({self.intake_wait_seconds}) must be at most "
                f"'intake_time_budget_seconds' ({self.intake_time_budget_seconds})"
            )
        if self.max_file_bytes > self.max_bytes_per_manifest:
            raise SettingsError(
                f"setting 'max_file_bytes' ({self.max_file_bytes}) must be at most 'max_bytes_per_manifest' "
                f"({self.max_bytes_per_manifest}): a file intake accepts must fit in one manifest"
            )
        if self.table_format == "iceberg" and not self.conversion.lineage:
            raise SettingsError(
                "setting 'table_format' 'iceberg' needs 'conversion.lineage' true: a commit finds the rows a manifest "
                "committed before by their _manifest_id column, to replace or remove them"
            )
        retention = landing_retention_days()
        if self.metadata_retention_days < retention:
            raise SettingsError(
                f"setting 'metadata_retention_days' ({self.metadata_retention_days}) must be at least the landing "
                f"retention ({retention} days, resources.json landing_retention): an operator can still close, "
                "requeue or reprocess those days, and reads their runs, task logs and records in the UI"
            )
        if self.terminal_ttl_days < retention + LIFECYCLE_LAG_DAYS:
            raise SettingsError(
                f"setting 'terminal_ttl_days' ({self.terminal_ttl_days}) must be at least the landing retention "
                f"({retention} days, resources.json landing_retention) + {LIFECYCLE_LAG_DAYS}: a file version still "
                "listed after its ledger record expired would be registered and converted a second time"
            )

    @property
    def batching(self) -> Batching:
        """The batch thresholds in effect: each explicit setting, else what the latency budget leaves.

        A batch waits for more files for the budget minus the pipeline's own latency
        (``PIPELINE_LATENCY_SECONDS``), and closes early only when it fills a manifest
        (``max_files_per_manifest``/``max_bytes_per_manifest``): waiting longer could not make its run any larger,
        only add a second one. So at any arrival rate a run is as large as the budget allows: a full manifest
        when files arrive fast enough to fill one within the wait, else all that arrived within it. The manifest
        limits still bound each run's memory and time, whatever the rate. A sensor outlasts the wait by two polls.
        """
        wait = self.max_wait_seconds or self.latency_budget_seconds - PIPELINE_LATENCY_SECONDS
        return Batching(
            files=self.min_batch_files or self.max_files_per_manifest,
            bytes=self.min_batch_bytes or self.max_bytes_per_manifest,
            wait_seconds=wait,
            sensor_timeout_seconds=self.sensor_timeout_seconds or wait + 2 * self.sensor_poll_seconds,
        )

    def execution_class(self, purpose: RunPurpose) -> ExecutionClass:
        """Glue's execution class for a run of ``purpose``: ingest's always STANDARD (files wait on it), the others
        ``background_execution_class``."""
        return ExecutionClass.STANDARD if purpose is RunPurpose.INGEST else self.background_execution_class

    @property
    def landing_retention_days(self) -> int:
        """Days raw landing objects are kept (resources.json, which the storage Terraform reads)."""
        return landing_retention_days()

    @property
    def logs(self) -> LogOptions:
        """The log settings as the job's options type: what each side's logging setup and each run get."""
        return LogOptions(log_format=self.log_format, log_level=self.log_level)

    @property
    def names(self) -> ResourceNames:
        return ResourceNames(self.name_prefix)

    @property
    def layout(self) -> LakeLayout:
        return LakeLayout(f"s3://{self.names.lake_bucket}", f"s3://{self.names.quarantine_bucket}", self.dataset)

    @property
    def script_uri(self) -> str:
        return self.glue_script_uri or f"s3://{self.names.assets_bucket}/glue/scripts/ndjson_to_parquet.py"

    @property
    def dataset_schema_uri(self) -> str:
        return self.schema_uri or f"s3://{self.names.assets_bucket}/glue/schemas/{self.dataset}.json"

    def job_arguments(
        self, ref: ManifestRef, layout: LakeLayout | None = None, run_kind: RunKind = RunKind.CONVERT
    ) -> JobArguments:
        """The run's arguments for one manifest, the same for Glue and for the local runner.

        ``layout``: where the run reads its manifest and writes (a reprocess's or a compaction's); the lake's by
        default. ``run_kind``: what the run does with the manifest's files.
        """
        return JobArguments(
            manifest_id=ref.manifest_id,
            day=ref.day,
            layout=layout or self.layout,
            schema_uri=self.dataset_schema_uri,
            options=self.conversion,
            logs=self.logs,
            run_kind=run_kind,
        )

    @classmethod
    def from_mapping(cls, raw: dict[str, Any]) -> PipelineSettings:
        if not isinstance(raw, dict):
            raise SettingsError(f"settings must be a JSON object, got {type(raw).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise SettingsError(f"unknown setting(s) {unknown}; known settings are {sorted(known)}")
        values = dict(raw)
        if "allowed_suffixes" in values:
            values["allowed_suffixes"] = tuple(values["allowed_suffixes"])
        if "conversion" in values:
            if not isinstance(values["conversion"], dict):
                raise SettingsError(f"setting 'conversion' must be a JSON object, got {values['conversion']!r}")
            try:
                values["conversion"] = ConversionOptions.from_mapping(values["conversion"])
            except OptionError as exc:
                raise SettingsError(f"setting 'conversion.{exc.option}' {exc.problem}") from exc
        return cls(**values)

    @classmethod
    def from_json(cls, text: str | None, source: str) -> PipelineSettings:
        if not text:
            return cls()
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SettingsError(f"{source} is not valid JSON: {exc}") from exc
        return cls.from_mapping(raw)

    @classmethod
    def from_env(cls) -> PipelineSettings:
        return cls.from_json(os.environ.get(SETTINGS_ENV), SETTINGS_ENV)

    def replace(self, **changes: Any) -> PipelineSettings:
        return dataclasses.replace(self, **changes)
