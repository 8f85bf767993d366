"""The declared schema: a Spark StructType read as Arrow types, and the schema of the output."""

from __future__ import annotations

import json

import pyarrow as pa
from pyspark.sql import types as T

from ndjson_pipeline.conversion import (
    SORT_BY_AUTO,
    SORT_BY_NONE,
    ConversionOptions,
    JobArguments,
    Partitioning,
    ReadMode,
)
from ndjson_pipeline.dataset_schema import (
    EPOCH_UNITS,
    LINEAGE_COLUMNS,
    RESCUED_COLUMN,
    TIMESTAMP_FORMAT,
    DeclaredSchema,
    SchemaError,
    output_fields,
)
from ndjson_pipeline.layout import PARTITION_COLUMN

RESERVED_COLUMNS = {RESCUED_COLUMN, *LINEAGE_COLUMNS, PARTITION_COLUMN}

_ARROW_TYPES = {
    T.StringType: pa.string(),
    T.LongType: pa.int64(),
    T.IntegerType: pa.int32(),
    T.ShortType: pa.int16(),
    T.ByteType: pa.int8(),
    # Arrow reads a value beyond float32's range as inf: bulk hands such rows to the rules, which refuse it.
    T.FloatType: pa.float32(),
    T.DoubleType: pa.float64(),
    T.BooleanType: pa.bool_(),
    # Parquet INT64 TIMESTAMP(MICROS) adjusted to UTC: what Spark, Athena and the Glue type ``timestamp`` read.
    T.TimestampType: pa.timestamp("us", tz="UTC"),
    T.DateType: pa.date32(),
}


class JobArgumentError(ValueError):
    """A job argument disagrees with the manifest or the schema it points at; the message names it."""


def parse_schema(text: str, args: JobArguments) -> T.StructType:
    """The declared schema: the JSON of ``StructType.jsonValue()``, checked against the options."""
    try:
        schema = T.StructType.fromJson(json.loads(text))
    except (ValueError, KeyError, TypeError) as exc:
        raise JobArgumentError(f"--schema_uri {args.schema_uri} is not a Spark StructType JSON: {exc!r}") from exc
    clash = sorted(RESERVED_COLUMNS & set(schema.fieldNames()))
    if clash:
        raise JobArgumentError(f"--schema_uri {args.schema_uri} declares reserved column(s) {clash}")
    try:
        arrow_type(schema)
    except TypeError as exc:
        raise JobArgumentError(f"--schema_uri {args.schema_uri}: {exc}") from None
    options = args.options
    if options.partitioning == Partitioning.EVENT_TIME:
        field_type = _field_type(schema, options.event_time_field)
        if field_type is None:
            raise JobArgumentError(f"--event_time_field {options.event_time_field!r} is not in the declared schema")
        if not isinstance(field_type, T.StringType | T.TimestampType):
            raise JobArgumentError(
                f"--event_time_field {options.event_time_field!r} must be a string or a timestamp, "
                f"not {field_type.simpleString()}"
            )
        if isinstance(field_type, T.TimestampType) and options.event_time_format.lower() != "iso8601":
            raise JobArgumentError(
                f"--event_time_format {options.event_time_format!r} is for string event times; "
                f"{options.event_time_field!r} is a timestamp (its field metadata says how it is written)"
            )
    if options.sort_by not in (SORT_BY_AUTO, SORT_BY_NONE):
        sort_type = _field_type(schema, options.sort_by)
        if sort_type is None:
            raise JobArgumentError(f"--sort_by {options.sort_by!r} is not in the declared schema")
        if isinstance(sort_type, (T.StructType, T.ArrayType, T.MapType)):
            kind = sort_type.simpleString()
            raise JobArgumentError(f"--sort_by {options.sort_by!r} must be a scalar field, not {kind}")
    return schema


def arrow_type(spark_type: T.DataType, path: str = "") -> pa.DataType:
    """The Arrow type a declared Spark type is read as; TypeError names a field whose type is not supported."""
    if isinstance(spark_type, T.StructType):
        return pa.struct([_arrow_field(f, path) for f in spark_type.fields])
    if isinstance(spark_type, T.ArrayType):
        return pa.list_(arrow_type(spark_type.elementType, path))
    if isinstance(spark_type, T.MapType):
        if not isinstance(spark_type.keyType, T.StringType):
            raise TypeError(
                f"field {path.rstrip('.')!r} is a map with {spark_type.keyType.simpleString()} keys; "
                "JSON object keys are strings: declare map<string,...>"
            )
        return pa.map_(pa.string(), arrow_type(spark_type.valueType, path))
    if isinstance(spark_type, T.DecimalType):
        return pa.decimal128(spark_type.precision, spark_type.scale)
    for kind, arrow in _ARROW_TYPES.items():
        if isinstance(spark_type, kind):
            return arrow
    supported = "struct, array, map<string,...>, decimal(p,s), " + ", ".join(
        kind().simpleString() for kind in _ARROW_TYPES
    )
    raise TypeError(f"field {path.rstrip('.')!r} has type {spark_type.simpleString()}; supported: {supported}")


def _arrow_field(declared: T.StructField, path: str) -> pa.Field:
    """A struct member as Arrow reads it; a timestamp field's epoch unit (docs/schema-evolution.md) rides along."""
    arrow = arrow_type(declared.dataType, f"{path}{declared.name}.")
    time_format = (declared.metadata or {}).get(TIMESTAMP_FORMAT)
    if time_format is None:
        return pa.field(declared.name, arrow, nullable=True)
    if time_format not in EPOCH_UNITS or not _holds_timestamps(declared.dataType):
        raise TypeError(
            f"field {path}{declared.name!r} has metadata {TIMESTAMP_FORMAT}={time_format!r}; it is for timestamp "
            f"fields (or arrays and maps of them) and must be one of {sorted(EPOCH_UNITS)}"
        )
    return pa.field(declared.name, arrow, nullable=True, metadata={TIMESTAMP_FORMAT: time_format})


def _holds_timestamps(spark_type: T.DataType) -> bool:
    if isinstance(spark_type, T.ArrayType):
        return _holds_timestamps(spark_type.elementType)
    if isinstance(spark_type, T.MapType):
        return _holds_timestamps(spark_type.valueType)
    return isinstance(spark_type, T.TimestampType)


def arrow_schema(schema: T.StructType) -> pa.Schema:
    """The declared fields as Arrow reads them."""
    return pa.schema(list(arrow_type(schema)))


def output_schema(schema: T.StructType, options: ConversionOptions) -> T.StructType:
    """What the Parquet files hold: the declared fields, then ``_rescued_data`` and the lineage columns."""
    declared = schema.jsonValue()["fields"]
    fields = output_fields(declared, rescue=options.read_mode == ReadMode.RESCUE, lineage=options.lineage)
    return T.StructType.fromJson({"type": "struct", "fields": fields})


def schema_version(text: str, args: JobArguments) -> int:
    """The version the declared schema says it is (recorded in every result)."""
    try:
        return DeclaredSchema.from_json(text, args.schema_uri).version
    except SchemaError as exc:
        raise JobArgumentError(f"--schema_uri {exc}") from exc


def _field_type(schema: T.StructType, dotted: str) -> T.DataType | None:
    current: T.DataType = schema
    for part in dotted.split("."):
        if not isinstance(current, T.StructType) or part not in current.fieldNames():
            return None
        current = current[part].dataType
    return current
