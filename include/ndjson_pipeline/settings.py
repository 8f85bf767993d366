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
from typing import Any

from ndjson_pipeline.conversion import ConversionOptions, JobArguments, LogFormat, LogLevel, LogOptions, OptionError
from ndjson_pipeline.layout import LakeLayout
from ndjson_pipeline.manifest import ManifestRef
from ndjson_pipeline.resources import ResourceNames, default_names, landing_prefix, landing_retention_days

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
    # Batching thresholds: a day is ready at N files or B bytes, or when its oldest file waited W. A Glue run is
    # billed at least a minute: at 500K files a day a run fills up on bytes in under a minute; at 100K W decides.
    min_batch_files: int = 300
    min_batch_bytes: int = 1024 * _MiB
    max_wait_seconds: int = 120
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
    # Waiting for work: how often the trigger polls, and how long one sensor waits before the next run takes over.
    # The wait outlasts max_wait_seconds plus a poll, so a file the run registered becomes ready within the run.
    sensor_poll_seconds: int = 20
    sensor_timeout_seconds: int = 240
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
            if f.type == "int" and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
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
        self._check_consistency()

    def _check_consistency(self) -> None:
        """Rules between settings: each names the settings involved and the value that would work."""
        if self.sensor_timeout_seconds <= self.max_wait_seconds + self.sensor_poll_seconds:
            raise SettingsError(
                f"setting 'sensor_timeout_seconds' ({self.sensor_timeout_seconds}) must exceed 'max_wait_seconds' "
                f"({self.max_wait_seconds}) + 'sensor_poll_seconds' ({self.sensor_poll_seconds}): otherwise the "
                "sensor gives up before a file it waits on is old enough, and a lone file waits for a later run"
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

    def job_arguments(self, ref: ManifestRef, layout: LakeLayout | None = None) -> JobArguments:
        """The conversion run's arguments for one manifest, the same for Glue and for the local runner.

        ``layout``: where the run reads its manifest and writes (a reprocess's rebuild layout); the lake's by default.
        """
        return JobArguments(
            manifest_id=ref.manifest_id,
            day=ref.day,
            layout=layout or self.layout,
            schema_uri=self.dataset_schema_uri,
            options=self.conversion,
            logs=self.logs,
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
