"""The declared schema: which Spark types the job reads, and what a bad schema or option is told."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest
from pyspark.sql import types as T

from ndjson_job.schema import JobArgumentError, arrow_type, output_schema, parse_schema, schema_version
from ndjson_pipeline.conversion import ConversionOptions, JobArguments
from ndjson_pipeline.layout import LakeLayout
from tests.glue.conftest import SCHEMA_PATH


def _make_args(**options) -> JobArguments:
    layout = LakeLayout("s3://lake", "s3://quarantine", "events")
    return JobArguments("20261124-abc", "2026-11-24", layout, "s3://assets/events.json", ConversionOptions(**options))


def _schema_text(*fields: T.StructField) -> str:
    return json.dumps(T.StructType(list(fields)).jsonValue())


def test_the_events_schema_reads_as_nested_arrow_types():
    schema = parse_schema(SCHEMA_PATH.read_text(), _make_args())
    arrow = arrow_type(schema)
    assert pa.types.is_struct(arrow)
    assert arrow.field("event_id").type == pa.string()


def test_a_schema_type_the_job_cannot_read_is_named():
    schema = T.StructType([T.StructField("when", T.StructType([T.StructField("at", T.BinaryType())]))])
    with pytest.raises(TypeError, match=r"'when\.at' has type binary"):
        arrow_type(schema)
    with pytest.raises(JobArgumentError, match=r"--schema_uri s3://assets/events.json: field 'when\.at'"):
        parse_schema(json.dumps(schema.jsonValue()), _make_args())
    by_number = T.StructType([T.StructField("counts", T.MapType(T.LongType(), T.LongType()))])
    with pytest.raises(TypeError, match=r"'counts' is a map with bigint keys; JSON object keys are strings"):
        arrow_type(by_number)


def test_the_new_types_read_as_the_arrow_types_parquet_stores():
    schema = T.StructType(
        [
            T.StructField("at", T.TimestampType()),
            T.StructField("at_ms", T.TimestampType(), metadata={"timestamp_format": "epoch_millis"}),
            T.StructField("day", T.DateType()),
            T.StructField("amount", T.DecimalType(12, 2)),
            T.StructField("ratio", T.FloatType()),
            T.StructField("labels", T.MapType(T.StringType(), T.ArrayType(T.TimestampType()))),
        ]
    )
    arrow = pa.schema(list(arrow_type(schema)))
    assert arrow.types == [
        pa.timestamp("us", tz="UTC"),
        pa.timestamp("us", tz="UTC"),
        pa.date32(),
        pa.decimal128(12, 2),
        pa.float32(),
        pa.map_(pa.string(), pa.list_(pa.timestamp("us", tz="UTC"))),
    ]
    assert arrow.field("at_ms").metadata == {b"timestamp_format": b"epoch_millis"}


@pytest.mark.parametrize("metadata", [{"timestamp_format": "epoch_nanos"}, {"timestamp_format": "epoch_seconds"}])
def test_a_timestamp_format_is_an_epoch_unit_on_a_timestamp_field(metadata):
    field_type = T.StringType() if metadata["timestamp_format"] == "epoch_seconds" else T.TimestampType()
    text = _schema_text(T.StructField("at", field_type, metadata=metadata))
    with pytest.raises(JobArgumentError, match=r"field 'at' has metadata timestamp_format=.*epoch_millis"):
        parse_schema(text, _make_args())


@pytest.mark.parametrize("column", ["_rescued_data", "_source_uri", "dt"])
def test_a_schema_declaring_a_reserved_column_is_refused(column):
    with pytest.raises(JobArgumentError, match=f"reserved column.*{column}"):
        parse_schema(_schema_text(T.StructField(column, T.StringType())), _make_args())


def test_text_that_is_not_a_struct_type_is_named():
    with pytest.raises(JobArgumentError, match="is not a Spark StructType JSON"):
        parse_schema('{"fields": 3}', _make_args())


def test_event_time_partitioning_needs_a_declared_string_field():
    text = _schema_text(T.StructField("at", T.LongType()))
    with pytest.raises(JobArgumentError, match="--event_time_field 'event_time' is not in the declared schema"):
        parse_schema(text, _make_args(partitioning="event_time"))
    with pytest.raises(JobArgumentError, match="--event_time_field 'at' must be a string or a timestamp, not bigint"):
        parse_schema(text, _make_args(partitioning="event_time", event_time_field="at"))


def test_a_typed_event_time_takes_no_strptime_format():
    text = _schema_text(T.StructField("at", T.TimestampType()))
    assert parse_schema(text, _make_args(partitioning="event_time", event_time_field="at"))
    with pytest.raises(JobArgumentError, match=r"--event_time_format '%d/%m/%Y' is for string event times; 'at'"):
        parse_schema(text, _make_args(partitioning="event_time", event_time_field="at", event_time_format="%d/%m/%Y"))


@pytest.mark.parametrize(("read_mode", "lineage"), [("rescue", True), ("strict", False)])
def test_output_schema_adds_the_rescue_and_lineage_columns_the_options_ask_for(read_mode, lineage):
    declared = T.StructType([T.StructField("event_id", T.StringType(), False)])
    names = output_schema(declared, ConversionOptions(read_mode=read_mode, lineage=lineage)).fieldNames()
    expected = ["event_id"] + (["_rescued_data"] if read_mode == "rescue" else [])
    assert names == expected + (["_source_uri", "_manifest_id"] if lineage else [])


def test_the_version_a_schema_declares_is_read_and_a_bad_one_named():
    document = {**json.loads(_schema_text(T.StructField("a", T.StringType()))), "version": 3}
    assert schema_version(json.dumps(document), _make_args()) == 3
    assert schema_version(_schema_text(T.StructField("a", T.StringType())), _make_args()) == 1  # unversioned: 1
    with pytest.raises(JobArgumentError, match=r"--schema_uri s3://assets/events.json: 'version' must be a positive"):
        schema_version(json.dumps({**document, "version": "three"}), _make_args())
