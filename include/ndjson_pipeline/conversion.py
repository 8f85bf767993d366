"""The conversion job's contract: its options and its arguments, typed, in one place.

A field's name is its Glue argument name (``read_mode`` is ``--read_mode``) and
its default is the only default there is: the pipeline settings embed
``ConversionOptions`` and take their ``log_format`` and ``log_level`` defaults
from ``LogOptions``, the Airflow side writes ``JobArguments.to_glue_args()`` and
the job reads them back with ``JobArguments.from_argv()``. Shipped to Glue with
the job, so it imports nothing but the standard library and the layout.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any, ClassVar, Self, get_type_hints

from ndjson_pipeline.layout import LakeLayout, LayoutError


class ReadMode(StrEnum):
    RESCUE = "rescue"  # unknown fields and type mismatches kept in _rescued_data
    STRICT = "strict"  # such lines quarantined


class Compression(StrEnum):
    SNAPPY = "snappy"
    ZSTD = "zstd"
    GZIP = "gzip"
    NONE = "none"


class RunKind(StrEnum):
    """Why a run of the job exists: what it reads, and whether anyone waits for it."""

    CONVERT = "convert"  # a manifest of landing files into the lake (latency-bound: files wait for it)
    REBUILD = "rebuild"  # the same, again, into a reprocess's layout (an operator's action)
    COMPACT = "compact"  # a manifest of a day's small Parquet files into target-sized ones, in a compaction's layout


class Partitioning(StrEnum):
    ARRIVAL = "arrival"  # dt = the manifest's landing day
    EVENT_TIME = "event_time"  # dt = the UTC day of each row's event time


class LogFormat(StrEnum):
    TEXT = "text"  # time, level, logger and message on one line
    JSON = "json"  # one JSON object a line: the message and the record's fields (manifest id, day, counts)


class LogLevel(StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"

    @property
    def number(self) -> int:
        """The ``logging`` module's number for the level."""
        return logging.getLevelNamesMapping()[self.name]


class OptionError(ValueError):
    """An option or argument has a value it cannot take; ``option`` names it, ``problem`` says why."""

    def __init__(self, option: str, problem: str) -> None:
        super().__init__(f"{option} {problem}")
        self.option = option
        self.problem = problem


_DOTTED_PATH = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_MINIMUM = {"target_file_mb": 0.01, "row_group_mb": 0.01, "max_raw_chars": 1, "max_decompressed_mb": 1}
# sort_by's words: the event-time field when the declared schema has it, or no sort at all.
SORT_BY_AUTO = "auto"
SORT_BY_NONE = "none"


@dataclass(frozen=True)
class _JobOptions:
    """Options whose field names are job arguments: values given as text (as Glue passes them) are converted to
    the field's type and checked here, and a bad one raises ``OptionError`` naming the option."""

    def __post_init__(self) -> None:
        for name, kind in get_type_hints(type(self)).items():
            object.__setattr__(self, name, _coerce(name, kind, getattr(self, name)))

    def to_glue_args(self) -> dict[str, str]:
        return {f"--{f.name}": _text(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_glue_args(cls, args: Mapping[str, str]) -> Self:
        """Options from parsed job arguments (names without ``--``); absent or empty ones take their default."""
        given: dict[str, Any] = {f.name: args[f.name] for f in fields(cls) if args.get(f.name, "") != ""}
        return cls(**given)


@dataclass(frozen=True)
class ConversionOptions(_JobOptions):
    """How the job turns lines into rows and rows into files."""

    read_mode: ReadMode = ReadMode.RESCUE
    compression: Compression = Compression.SNAPPY
    partitioning: Partitioning = Partitioning.ARRIVAL
    # Dotted path of a timestamp field (dt = its UTC day) or a string field; used when partitioning is event_time.
    event_time_field: str = "event_time"
    # For a string event time: "iso8601" (as datetime.fromisoformat; no offset means UTC) or a strptime format.
    event_time_format: str = "iso8601"
    # Parquet bytes per output file: a group (one Spark task) gets about this much output, one file per dt.
    target_file_mb: float = 128.0
    # Dotted path of the field rows are sorted by within each file, nulls last (readers skip row groups by its
    # statistics); "auto": event_time_field when the declared schema has it; "none": no sort.
    sort_by: str = SORT_BY_AUTO
    # Parquet bytes per row group of a sorted file: the unit a reader skips; several per file.
    row_group_mb: float = 16.0
    # Add the _source_uri and _manifest_id columns.
    lineage: bool = True
    # Raw text kept per quarantined line.
    max_raw_chars: int = 10_000
    # Decoded (gunzipped) text per file; a file with more is quarantined as too large.
    max_decompressed_mb: int = 10_240

    def __post_init__(self) -> None:
        super().__post_init__()
        if not _DOTTED_PATH.fullmatch(self.event_time_field):
            raise OptionError("event_time_field", f"must be a dotted field path, not {self.event_time_field!r}")
        if self.sort_by not in (SORT_BY_AUTO, SORT_BY_NONE) and not _DOTTED_PATH.fullmatch(self.sort_by):
            raise OptionError("sort_by", f"must be a dotted field path, 'auto' or 'none', not {self.sort_by!r}")
        if not self.event_time_format.strip():
            raise OptionError("event_time_format", "must be 'iso8601' or a strptime format, not empty")

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> ConversionOptions:
        """Options from a settings mapping: unknown names are an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise OptionError(unknown[0], f"is not a conversion option; known options are {sorted(known)}")
        return cls(**raw)


@dataclass(frozen=True)
class LogOptions(_JobOptions):
    """How the pipeline logs, in the Airflow tasks and in the job (driver and Spark tasks) alike.

    The settings ``log_format`` and ``log_level`` take these defaults; each side sets its loggers up from them in
    one place (``ndjson_pipeline_airflow.logs``, ``ndjson_job.logs``).
    """

    log_format: LogFormat = LogFormat.TEXT
    # The level of the pipeline's own loggers (ndjson_pipeline, ndjson_pipeline_airflow, ndjson_job); Airflow's,
    # Spark's and boto's keep theirs.
    log_level: LogLevel = LogLevel.INFO


@dataclass(frozen=True)
class JobArguments:
    """Everything one conversion run is told: which manifest, where the lake is, and how to convert."""

    REQUIRED: ClassVar[tuple[str, ...]] = (
        "manifest_id",
        "day",
        "lake_root",
        "quarantine_root",
        "dataset",
        "schema_uri",
    )

    manifest_id: str
    day: str
    layout: LakeLayout
    schema_uri: str
    options: ConversionOptions = field(default_factory=ConversionOptions)
    logs: LogOptions = field(default_factory=LogOptions)
    run_kind: RunKind = RunKind.CONVERT

    def __post_init__(self) -> None:
        if not _DAY.fullmatch(self.day):
            raise OptionError("day", f"must be YYYY-MM-DD, not {self.day!r}")

    @property
    def manifest_uri(self) -> str:
        return self.layout.manifest_uri(self.day, self.manifest_id)

    @property
    def result_uri(self) -> str:
        return self.layout.result_uri(self.day, self.manifest_id)

    def to_glue_args(self) -> dict[str, str]:
        return {
            "--manifest_id": self.manifest_id,
            "--day": self.day,
            "--lake_root": self.layout.lake_root,
            "--quarantine_root": self.layout.quarantine_root,
            "--dataset": self.layout.dataset,
            "--schema_uri": self.schema_uri,
            "--run_kind": str(self.run_kind),
            **self.options.to_glue_args(),
            **self.logs.to_glue_args(),
        }

    @classmethod
    def from_glue_args(cls, args: Mapping[str, str]) -> JobArguments:
        """Arguments from ``name -> value`` (names without ``--``); names Glue adds itself are ignored.

        Errors name the argument as given on the command line (``--read_mode``).
        """
        missing = [f"--{name}" for name in cls.REQUIRED if not args.get(name)]
        if missing:
            raise OptionError(", ".join(missing), "missing: required job argument(s)")
        try:
            layout = LakeLayout(args["lake_root"], args["quarantine_root"], args["dataset"])
        except LayoutError as exc:
            raise OptionError(f"--{exc.root}", exc.problem) from exc
        try:
            return cls(
                manifest_id=args["manifest_id"],
                day=args["day"],
                layout=layout,
                schema_uri=args["schema_uri"],
                options=ConversionOptions.from_glue_args(args),
                logs=LogOptions.from_glue_args(args),
                run_kind=_coerce("run_kind", RunKind, args.get("run_kind") or RunKind.CONVERT),
            )
        except OptionError as exc:
            raise OptionError(f"--{exc.option}", exc.problem) from exc

    @classmethod
    def from_argv(cls, argv: list[str]) -> JobArguments:
        return cls.from_glue_args(parse_glue_argv(argv))


def parse_glue_argv(argv: list[str]) -> dict[str, str]:
    """Glue-style ``--name value`` or ``--name=value`` pairs; a name with no value is a flag ("true").

    Every name is kept, including the ones Glue adds (``--JOB_NAME``, ``--TempDir``, ...).
    """
    args: dict[str, str] = {}
    i = 0
    while i < len(argv):
        token = argv[i]
        if token.startswith("--"):
            name, eq, value = token[2:].partition("=")
            if eq:
                i += 1
            elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                value, i = argv[i + 1], i + 2
            else:
                value, i = "true", i + 1
            args[name] = value
        else:
            i += 1
    return args


def _coerce(name: str, kind: type, value: Any) -> Any:
    """``value`` as the field's declared type, from itself or from its text."""
    if issubclass(kind, StrEnum):
        text = str(value).strip().lower()
        if text not in {member.value for member in kind}:
            raise OptionError(name, f"must be one of {[m.value for m in kind]}, not {value!r}")
        return kind(text)
    if kind is bool:
        if isinstance(value, bool):
            return value
        if str(value).strip().lower() in ("true", "false"):
            return str(value).strip().lower() == "true"
        raise OptionError(name, f"must be true or false, not {value!r}")
    if kind in (int, float):
        try:
            number = kind(value)
        except (TypeError, ValueError):
            raise OptionError(name, f"must be a number, not {value!r}") from None
        if isinstance(value, bool) or not number >= _MINIMUM[name]:
            raise OptionError(name, f"must be at least {_MINIMUM[name]}, not {value!r}")
        return number
    if not isinstance(value, str):
        raise OptionError(name, f"must be text, not {value!r}")
    return value.strip()


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
