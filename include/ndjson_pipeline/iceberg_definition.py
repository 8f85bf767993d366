"""The dataset's Iceberg table as declared: its schema with field ids, its partitioning and its properties.

The table's schema is the job's output schema with field ids, plus the ``dt``
column, an identity partition filled from each file's partition (the files do
not hold it), unless the event time is a typed timestamp and the job partitions
by it: then the table is partitioned by ``day(<event time>)``. The files carry
no field ids: the table's name mapping maps their columns to ids, so columns
evolve by id; new fields of a newer schema version are added by the commit that
first brings them.

Terraform declares the same table on AWS (``tools.catalog`` renders it); the
local stack creates it with ``create_table``. Commits to it are ``iceberg_table``'s.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pyiceberg.exceptions import NoSuchTableError
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema, assign_fresh_schema_ids
from pyiceberg.transforms import DayTransform, IdentityTransform
from pyiceberg.types import (
    BinaryType,
    BooleanType,
    DateType,
    DecimalType,
    DoubleType,
    FloatType,
    IcebergType,
    IntegerType,
    ListType,
    LongType,
    MapType,
    NestedField,
    StringType,
    StructType,
    TimestampType,
    TimestamptzType,
)

from ndjson_pipeline.conversion import Compression, ConversionOptions, Partitioning, ReadMode
from ndjson_pipeline.dataset_schema import LINEAGE_COLUMNS, DeclaredSchema, SchemaError, output_fields, type_kind
from ndjson_pipeline.layout import PARTITION_COLUMN, LakeLayout

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog

MANIFEST_COLUMN = LINEAGE_COLUMNS[1]  # _manifest_id: which manifest wrote a row
FORMAT_VERSION = "2"
SCHEMA_VERSION_PROPERTY = "ndjson_pipeline.schema_version"
_PARQUET_CODEC = {
    Compression.SNAPPY: "snappy",
    Compression.ZSTD: "zstd",
    Compression.GZIP: "gzip",
    Compression.NONE: "uncompressed",
}
_PRIMITIVES: dict[str, IcebergType] = {
    "string": StringType(),
    "long": LongType(),
    "integer": IntegerType(),
    # Arrow writes Spark's short and byte as int16/int8, which Iceberg reads as int.
    "short": IntegerType(),
    "byte": IntegerType(),
    "double": DoubleType(),
    "float": FloatType(),
    "boolean": BooleanType(),
    "date": DateType(),
    "binary": BinaryType(),
    # Spark's timestamp is an instant (Arrow writes it adjusted to UTC); timestamp_ntz is a wall-clock time.
    "timestamp": TimestamptzType(),
    "timestamp_ntz": TimestampType(),
}


def iceberg_type(spark_type: Any, next_id: Callable[[], int]) -> IcebergType:
    """The Iceberg type of a Spark type JSON; nested fields take ids from ``next_id`` (reassigned on creation)."""
    kind = type_kind(spark_type)
    if kind == "struct":
        return StructType(*_fields(spark_type["fields"], next_id))
    if kind == "array":
        element_id = next_id()
        return ListType(element_id, iceberg_type(spark_type["elementType"], next_id), element_required=False)
    if kind == "map":
        key_id, value_id = next_id(), next_id()
        return MapType(
            key_id,
            iceberg_type(spark_type["keyType"], next_id),
            value_id,
            iceberg_type(spark_type["valueType"], next_id),
            value_required=False,
        )
    if kind.startswith("decimal(") and kind.endswith(")"):
        precision, scale = (int(n) for n in kind[len("decimal(") : -1].split(","))
        return DecimalType(precision, scale)
    if kind not in _PRIMITIVES:
        raise SchemaError(
            f"type {kind!r} has no Iceberg type; supported: struct, array, map, decimal(p,s), {sorted(_PRIMITIVES)}"
        )
    return _PRIMITIVES[kind]


def _fields(spark_fields: Iterable[dict[str, Any]], next_id: Callable[[], int]) -> list[NestedField]:
    # Every field optional: a line may lack any of them, and an optional column reads files that have it required.
    out = []
    for field in spark_fields:
        field_id = next_id()
        out.append(NestedField(field_id, field["name"], iceberg_type(field["type"], next_id), required=False))
    return out


def iceberg_schema(spark_fields: Sequence[dict[str, Any]], *, with_dt: bool) -> Schema:
    """The table schema of the job's output fields (and the ``dt`` column), with Iceberg's canonical field ids."""
    counter = iter(range(1, 1_000_000))
    fields = _fields(spark_fields, lambda: next(counter))
    if with_dt:
        fields.append(NestedField(next(counter), PARTITION_COLUMN, StringType(), required=False))
    return assign_fresh_schema_ids(Schema(*fields))


@dataclass(frozen=True)
class IcebergTableDefinition:
    """The Iceberg table of one dataset: schema with ids, partition spec and properties, one home for all three.

    Terraform declares it from ``to_json`` (infra/modules/catalog), the local stack creates it with ``create_table``.
    """

    database: str
    table: str
    location: str
    fields: tuple[dict[str, Any], ...]
    schema_version: int
    compression: Compression = Compression.SNAPPY
    # The dotted event-time field when the table is partitioned by day(<it>); None: identity on dt.
    event_time_field: str | None = None

    @classmethod
    def for_dataset(
        cls, database: str, layout: LakeLayout, schema: DeclaredSchema, options: ConversionOptions
    ) -> IcebergTableDefinition:
        """The table of the files the job writes with ``schema`` and ``options``."""
        fields = output_fields(schema.fields, rescue=options.read_mode == ReadMode.RESCUE, lineage=options.lineage)
        typed_event_time = options.partitioning is Partitioning.EVENT_TIME and _is_timestamp(
            fields, options.event_time_field
        )
        return cls(
            database=database,
            table=layout.dataset,
            location=layout.dataset_uri,
            fields=tuple(fields),
            schema_version=schema.version,
            compression=options.compression,
            event_time_field=options.event_time_field if typed_event_time else None,
        )

    def schema(self) -> Schema:
        return iceberg_schema(self.fields, with_dt=self.event_time_field is None)

    def partition_spec(self) -> PartitionSpec:
        schema = self.schema()
        if self.event_time_field is None:
            source = schema.find_field(PARTITION_COLUMN)
            return PartitionSpec(PartitionField(source.field_id, 1000, IdentityTransform(), PARTITION_COLUMN))
        source = schema.find_field(self.event_time_field)
        name = f"{self.event_time_field.replace('.', '_')}_day"
        return PartitionSpec(PartitionField(source.field_id, 1000, DayTransform(), name))

    def properties(self) -> dict[str, str]:
        return {
            "format-version": FORMAT_VERSION,
            # The files carry no field ids: their columns map to ids by name.
            "schema.name-mapping.default": self.schema().name_mapping.model_dump_json(),
            # Full bounds of _manifest_id (29 characters, beyond the default truncation to 16): a file that holds
            # one manifest's rows only is known to, and replaced or removed whole.
            f"write.metadata.metrics.column.{MANIFEST_COLUMN}": "full",
            "write.parquet.compression-codec": _PARQUET_CODEC[self.compression],
            SCHEMA_VERSION_PROPERTY: str(self.schema_version),
        }

    def to_json(self) -> str:
        """The rendered definition Terraform reads (``jsondecode``); it adds the database and the location."""
        schema = self.schema()
        doc = {
            "table": self.table,
            "format_version": FORMAT_VERSION,
            "schema": {
                "schema_id": 0,
                "fields": [
                    {"id": f.field_id, "name": f.name, "required": f.required, "type": _type_json(f.field_type)}
                    for f in schema.fields
                ],
            },
            "partition_spec": {
                "spec_id": 0,
                "fields": [
                    {"name": p.name, "source_id": p.source_id, "field_id": p.field_id, "transform": str(p.transform)}
                    for p in self.partition_spec().fields
                ],
            },
            "properties": self.properties(),
        }
        return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def _type_json(field_type: IcebergType) -> Any:
    """Iceberg's JSON of a type (``"string"``, or the object of a struct, list or map), as Glue takes it."""
    return json.loads(field_type.model_dump_json())


def _is_timestamp(fields: Sequence[dict[str, Any]], dotted: str) -> bool:
    current: Sequence[dict[str, Any]] = fields
    *parents, leaf = dotted.split(".")
    for name in parents:
        found = next((f for f in current if f["name"] == name), None)
        if found is None or type_kind(found["type"]) != "struct":
            return False
        current = found["type"]["fields"]
    field = next((f for f in current if f["name"] == leaf), None)
    return field is not None and type_kind(field["type"]) == "timestamp"


def create_table(catalog: Catalog, definition: IcebergTableDefinition) -> str:
    """Create the database and the table as ``definition`` says (the local stack; Terraform on AWS)."""
    identifier = (definition.database, definition.table)
    if definition.database not in {ns[0] for ns in catalog.list_namespaces()}:
        catalog.create_namespace(definition.database)
    try:
        catalog.load_table(identifier)
        return "exists"
    except NoSuchTableError:
        catalog.create_table(
            identifier,
            definition.schema(),
            location=definition.location,
            partition_spec=definition.partition_spec(),
            properties=definition.properties(),
        )
        return "created"
