"""The dataset as an Apache Iceberg table of the Glue Data Catalog (``table_format`` "iceberg").

The Glue job writes Parquet with Arrow as in the Hive layout; what makes it
visible is a commit on the Airflow side, through pyiceberg's ``GlueCatalog``:

- ``publish``: a finished manifest's files become part of the table in one
  commit (one snapshot), whatever partitions they are in. The commit replaces
  whatever the table held of that manifest before (an earlier attempt, a rerun),
  so a retry after a crash, a clear or a rerun ends with exactly the manifest's
  current files, and a commit that finds them there already changes nothing.
- ``withdraw``: a compensation removes by a commit what a compensated run had
  committed; a manifest never committed leaves the table untouched.
- ``replace_manifests``: a reprocess puts a day's rebuilt manifests in place of
  the old ones in one commit; the snapshot before it stays readable (time
  travel) until the snapshot retention expires it.

A manifest's rows are found by the lineage column ``_manifest_id`` (so
``table_format`` "iceberg" needs ``conversion.lineage``), whose statistics the
table keeps in full: a file holding only that manifest's rows is dropped whole,
one that a compaction merged with others is rewritten without them. Every commit
is optimistic (Glue's ``UpdateTable`` with the table version it read) and is
retried from a fresh read when another commit won the race. Each snapshot's
summary names the action and the manifests, for audit.

The table's schema is the job's output schema with field ids, plus the ``dt``
column, an identity partition filled from each file's partition (the files do
not hold it), unless the event time is a typed timestamp and the job partitions
by it: then the table is partitioned by ``day(<event time>)``. The files carry
no field ids: the table's name mapping maps their columns to ids, so columns
evolve by id; new fields of a newer schema version are added by the commit that
first brings them.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

import pyarrow.parquet as pq
from pyiceberg.conversions import from_bytes
from pyiceberg.exceptions import CommitFailedException, NoSuchTableError
from pyiceberg.expressions import BooleanExpression, In
from pyiceberg.io.pyarrow import (
    _check_pyarrow_schema_compatible,
    compute_statistics_plan,
    data_file_statistics_from_parquet_metadata,
    parquet_path_to_id_mapping,
)
from pyiceberg.manifest import DataFile, DataFileContent, FileFormat
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema, assign_fresh_schema_ids
from pyiceberg.transforms import DayTransform, IdentityTransform
from pyiceberg.typedef import Record
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

from ndjson_pipeline.catalog import CatalogError
from ndjson_pipeline.conversion import Compression, ConversionOptions, Partitioning, ReadMode
from ndjson_pipeline.dataset_schema import LINEAGE_COLUMNS, DeclaredSchema, SchemaError, output_fields, type_kind
from ndjson_pipeline.layout import PARTITION_COLUMN, LakeLayout
from ndjson_pipeline.manifest import JobResult, ManifestRef

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog
    from pyiceberg.table import Table, Transaction

log = logging.getLogger(__name__)

MANIFEST_COLUMN = LINEAGE_COLUMNS[1]  # _manifest_id: which manifest wrote a row
FORMAT_VERSION = "2"
SCHEMA_VERSION_PROPERTY = "ndjson_pipeline.schema_version"
# Snapshot summary keys: what made each snapshot, for audit and for the tests.
ACTION_PROPERTY = "ndjson-pipeline.action"  # publish | withdraw | reprocess
MANIFESTS_PROPERTY = "ndjson-pipeline.manifest-ids"
COMMIT_ATTEMPTS = 12
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


@dataclass(frozen=True)
class IcebergDataset:
    """The dataset's Iceberg table as the finaliser, compensations and reprocesses change it.

    :param catalog: pyiceberg's ``GlueCatalog`` (its Glue client and its S3 file IO as the task's identity).
    :param database: the catalog database holding the dataset's table.
    :param layout: where the dataset lives; its name is the table's.
    :param sleep: how a lost commit race waits before the next try.
    """

    catalog: Catalog
    database: str
    layout: LakeLayout
    sleep: Callable[[float], None] = time.sleep

    @property
    def commits_manifests(self) -> bool:
        return True

    @property
    def identifier(self) -> tuple[str, str]:
        return (self.database, self.layout.dataset)

    def load(self) -> Table:
        return self.catalog.load_table(self.identifier)

    def publish(self, ref: ManifestRef, result: JobResult) -> str:
        """Commit a finished manifest's files, in place of whatever the table held of it; what was done."""
        return self._replace([ref.manifest_id], [result], action="publish", day=ref.day)

    def withdraw(self, ref: ManifestRef) -> str:
        """Remove by a commit whatever the table holds of a compensated manifest (nothing: no commit)."""
        return self._replace([ref.manifest_id], [], action="withdraw", day=ref.day)

    def replace_manifests(self, day: str, results: dict[str, JobResult], rebuild_id: str) -> str:
        """A reprocess's one commit: the day's rebuilt manifests' files in place of everything of those manifests."""
        return self._replace(sorted(results), list(results.values()), action="reprocess", day=day, rebuild=rebuild_id)

    def _replace(
        self, manifest_ids: list[str], results: list[JobResult], *, action: str, day: str, rebuild: str | None = None
    ) -> str:
        wanted = {o.path: o for result in results for o in result.output_files}
        summary = {ACTION_PROPERTY: action, MANIFESTS_PROPERTY: ",".join(manifest_ids), "ndjson-pipeline.day": day}
        if rebuild:
            summary["ndjson-pipeline.rebuild-id"] = rebuild
        newest = max(results, key=lambda r: r.schema_version or 0, default=None)

        def build(table: Table, txn: Transaction) -> str | None:
            column = table.schema().find_field(MANIFEST_COLUMN).field_id
            committed = self._files_of(table, manifest_ids)
            whole = [f for f in committed if _holds_only(f, column, manifest_ids)]
            if {f.file_path for f in committed} == set(wanted) and len(whole) == len(committed):
                return None
            if newest is not None and newest.schema is not None:
                self._evolve_schema(table, txn, newest, newest.schema["fields"])
            added = [self._data_file(table, txn, path) for path in sorted(wanted)]
            if len(whole) < len(committed):
                # A compaction merged some of these rows with other manifests' into files: those are rewritten
                # without them (and the whole files dropped) by one delete, then the new files are appended.
                txn.delete(_of(manifest_ids), snapshot_properties=summary)
                whole = []
            if whole:
                with txn.update_snapshot(snapshot_properties=summary).overwrite() as overwrite:
                    for data_file in whole:
                        overwrite.delete_data_file(data_file)
                    for data_file in added:
                        overwrite.append_data_file(data_file)
            elif added:
                with txn.update_snapshot(snapshot_properties=summary).fast_append() as append:
                    for data_file in added:
                        append.append_data_file(data_file)
            return f"{len(added)} files added, {len(committed)} replaced"

        what = self._commit(build, f"{action} of {', '.join(manifest_ids[:3])}{'...' if len(manifest_ids) > 3 else ''}")
        outcome = what or "already committed"
        log.info(
            "table %s.%s: %s of %s: %s",
            *self.identifier,
            action,
            ",".join(manifest_ids),
            outcome,
            extra={"day": day, "manifests": len(manifest_ids), "commit": outcome},
        )
        return outcome

    def _commit(self, build: Callable[[Table, Transaction], str | None], what: str) -> str | None:
        """Build the change on a fresh read of the table and commit it; a lost race is retried from a new read."""
        for attempt in range(1, COMMIT_ATTEMPTS + 1):
            table = self.load()
            txn = table.transaction()
            done = build(table, txn)
            if done is None:
                return None
            try:
                txn.commit_transaction()
                return done
            except CommitFailedException as exc:
                log.info("table %s.%s: %s lost a commit race (try %d): %s", *self.identifier, what, attempt, exc)
                self.sleep(min(2.0, 0.05 * 2**attempt) * random.uniform(0.5, 1.5))  # noqa: S311 - jitter only
        raise CatalogError(
            f"table {self.database}.{self.layout.dataset}: {what} lost {COMMIT_ATTEMPTS} commit races in a row"
        )

    def _files_of(self, table: Table, manifest_ids: list[str]) -> list[DataFile]:
        """The table's current data files that may hold rows of these manifests (their statistics say so)."""
        if table.current_snapshot() is None:
            return []
        return [task.file for task in table.scan(row_filter=_of(manifest_ids)).plan_files()]

    def _evolve_schema(self, table: Table, txn: Transaction, result: JobResult, fields: list[dict[str, Any]]) -> None:
        """Add the fields the result's schema has and the table lacks (columns keep their ids)."""
        written = iceberg_schema(fields, with_dt=False)
        current = table.schema()
        if set(written._name_to_id) <= set(current._name_to_id):
            return
        try:
            with txn.update_schema() as update:
                update.union_by_name(written)
            txn.set_properties({SCHEMA_VERSION_PROPERTY: str(result.schema_version or 0)})
        except ValueError as exc:
            raise CatalogError(
                f"table {self.database}.{self.layout.dataset}: schema version {result.schema_version} of manifest "
                f"{result.manifest_id} cannot evolve the table's schema: {exc}"
            ) from exc

    def _data_file(self, table: Table, txn: Transaction, path: str) -> DataFile:
        """One output file as a data file of the table: its statistics from its footer, its partition from its dt."""
        metadata = txn.table_metadata
        schema = metadata.schema()
        dt = LakeLayout.dt_of(path)
        if dt is None:
            raise CatalogError(f"output file {path} is in no {PARTITION_COLUMN}= partition")
        input_file = table.io.new_input(path)
        with input_file.open() as stream:
            footer = pq.read_metadata(stream)
        try:
            _check_pyarrow_schema_compatible(schema, footer.schema.to_arrow_schema(), format_version=2)
        except ValueError as exc:
            raise CatalogError(
                f"output file {path} does not fit table {self.database}.{self.layout.dataset}: {exc}"
            ) from exc
        statistics = data_file_statistics_from_parquet_metadata(
            parquet_metadata=footer,
            stats_columns=compute_statistics_plan(schema, metadata.properties),
            parquet_column_mapping=parquet_path_to_id_mapping(schema),
        )
        spec = metadata.spec()
        transform = spec.fields[0].transform
        value: Any = dt if isinstance(transform, IdentityTransform) else (date.fromisoformat(dt) - _EPOCH).days
        return DataFile.from_args(
            content=DataFileContent.DATA,
            file_path=path,
            file_format=FileFormat.PARQUET,
            partition=Record(value),
            file_size_in_bytes=len(input_file),
            sort_order_id=None,
            spec_id=metadata.default_spec_id,
            equality_ids=None,
            key_metadata=None,
            **statistics.to_serialized_dict(),
        )


_EPOCH = date(1970, 1, 1)


def _of(manifest_ids: list[str]) -> BooleanExpression:
    # In's own __init__ takes (term, literals); mypy sees the pydantic fields behind it instead.
    return In(MANIFEST_COLUMN, manifest_ids)  # type: ignore[call-arg, arg-type]


def _holds_only(data_file: DataFile, column: int, manifest_ids: list[str]) -> bool:
    """Whether every row of the file belongs to one of these manifests: equal bounds, no nulls."""
    lower, upper = data_file.lower_bounds.get(column), data_file.upper_bounds.get(column)
    if lower is None or upper is None or data_file.null_value_counts.get(column, 0):
        return False
    low = from_bytes(StringType(), lower)
    return bool(low == from_bytes(StringType(), upper) and low in manifest_ids)
