"""The dataset in the Glue Data Catalog: one table over the lake, and a partition per day with data.

Terraform declares the database and table on AWS from the definition rendered
by ``tools.catalog`` (the same ``TableDefinition`` the local stack creates in
the emulator). Partitions are added by the finalise step, after a manifest's
result is recorded, with ``BatchCreatePartition`` treating "already exists" as
success: concurrent and repeated finalises converge, no crawler is needed, and
Athena, Spark and Redshift Spectrum all see them (partition projection would
serve Athena alone).
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from ndjson_pipeline.conversion import ConversionOptions, ReadMode
from ndjson_pipeline.dataset_schema import DeclaredSchema, SchemaError, evolution_problems, output_fields, type_kind
from ndjson_pipeline.layout import PARTITION_COLUMN, LakeLayout
from ndjson_pipeline.manifest import JobResult, ManifestRef

SCHEMA_VERSION_PARAMETER = "ndjson_pipeline.schema_version"
OUTPUT_SCHEMA_PARAMETER = "ndjson_pipeline.output_schema"
_SIMPLE_TYPES = {
    "string": "string",
    "long": "bigint",
    "integer": "int",
    "short": "smallint",
    "byte": "tinyint",
    "double": "double",
    "float": "float",
    "boolean": "boolean",
    "timestamp": "timestamp",
    "date": "date",
}
_DECIMAL = re.compile(r"decimal\(\d+,\d+\)")  # as Spark's JSON writes it: decimal(12,2)
_PARQUET = {
    "InputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
    "OutputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
    "SerdeInfo": {
        "SerializationLibrary": "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe",
        "Parameters": {"serialization.format": "1"},
    },
}
_BATCH = 100  # BatchCreatePartition takes at most 100 partitions


class CatalogError(RuntimeError):
    """The catalog refused a change; the message names the table, partition or field."""


def glue_type(spark_type: Any) -> str:
    """The Hive/Glue type string of a Spark type JSON (``struct<id:string,age:bigint>``)."""
    kind = type_kind(spark_type)
    if kind == "struct":
        return "struct<" + ",".join(f"{f['name']}:{glue_type(f['type'])}" for f in spark_type["fields"]) + ">"
    if kind == "array":
        return f"array<{glue_type(spark_type['elementType'])}>"
    if kind == "map":
        return f"map<{glue_type(spark_type['keyType'])},{glue_type(spark_type['valueType'])}>"
    if _DECIMAL.fullmatch(kind):
        return kind
    if kind not in _SIMPLE_TYPES:
        raise SchemaError(
            f"type {kind!r} has no Glue catalog type; supported: struct, array, map, decimal(p,s), "
            f"{sorted(_SIMPLE_TYPES)}"
        )
    return _SIMPLE_TYPES[kind]


@dataclass(frozen=True)
class TableDefinition:
    """The catalog table of one dataset, as the job writes it with one schema version and options."""

    database: str
    table: str
    location: str
    fields: tuple[dict[str, Any], ...]
    schema_version: int

    @classmethod
    def for_dataset(
        cls, database: str, layout: LakeLayout, schema: DeclaredSchema, options: ConversionOptions
    ) -> TableDefinition:
        """The table of the files the job writes with ``schema`` and ``options``."""
        fields = output_fields(schema.fields, rescue=options.read_mode == ReadMode.RESCUE, lineage=options.lineage)
        return cls(
            database=database,
            table=layout.dataset,
            location=layout.dataset_uri + "/",
            fields=tuple(fields),
            schema_version=schema.version,
        )

    @property
    def columns(self) -> list[dict[str, str]]:
        return [{"Name": f["name"], "Type": glue_type(f["type"])} for f in self.fields]

    def storage_descriptor(self, location: str) -> dict[str, Any]:
        return {"Columns": self.columns, "Location": location, **_PARQUET}

    def table_input(self) -> dict[str, Any]:
        """``TableInput`` of CreateTable/UpdateTable; the output schema is kept to check later evolutions."""
        return {
            "Name": self.table,
            "TableType": "EXTERNAL_TABLE",
            "Parameters": {
                "classification": "parquet",
                "EXTERNAL": "TRUE",
                SCHEMA_VERSION_PARAMETER: str(self.schema_version),
                OUTPUT_SCHEMA_PARAMETER: json.dumps(list(self.fields), sort_keys=True, separators=(",", ":")),
            },
            "PartitionKeys": [{"Name": PARTITION_COLUMN, "Type": "string"}],
            "StorageDescriptor": self.storage_descriptor(self.location),
        }

    def partition_input(self, dt: str) -> dict[str, Any]:
        location = f"{self.location}{PARTITION_COLUMN}={dt}/"
        return {"Values": [dt], "StorageDescriptor": self.storage_descriptor(location)}

    def to_json(self) -> str:
        """The rendered definition Terraform reads (``jsondecode``); it adds the database and the location."""
        doc = {
            "table": self.table,
            "columns": self.columns,
            "partition_keys": [{"Name": PARTITION_COLUMN, "Type": "string"}],
            "parameters": self.table_input()["Parameters"],
            "serde": _PARQUET,
        }
        return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def ensure_table(glue: Any, definition: TableDefinition, *, allow_breaking: bool = False) -> str:
    """Create the database and table, or move the table to ``definition``; returns what was done.

    An existing table at a newer schema version is left alone (an older build
    must not roll it back); a change that breaks readers of the table's current
    schema is refused naming the fields, unless ``allow_breaking``.
    """
    with contextlib.suppress(glue.exceptions.AlreadyExistsException):
        glue.create_database(DatabaseInput={"Name": definition.database})
    try:
        current = glue.get_table(DatabaseName=definition.database, Name=definition.table)["Table"]
    except glue.exceptions.EntityNotFoundException:
        glue.create_table(DatabaseName=definition.database, TableInput=definition.table_input())
        return "created"
    parameters = current.get("Parameters", {})
    version = int(parameters.get(SCHEMA_VERSION_PARAMETER, "0"))
    if version > definition.schema_version:
        return f"kept (table is at schema version {version}, newer than {definition.schema_version})"
    if version == definition.schema_version and current["StorageDescriptor"]["Columns"] == definition.columns:
        return "unchanged"
    old_fields = json.loads(parameters.get(OUTPUT_SCHEMA_PARAMETER, "[]"))
    problems = evolution_problems(old_fields, list(definition.fields))
    if problems and not allow_breaking:
        raise CatalogError(
            f"table {definition.database}.{definition.table}: schema version {definition.schema_version} breaks "
            f"readers of version {version}: {'; '.join(problems)}"
        )
    glue.update_table(DatabaseName=definition.database, TableInput=definition.table_input())
    return f"updated from schema version {version} to {definition.schema_version}"


def register_partitions(glue: Any, definition: TableDefinition, dts: Iterable[str]) -> list[str]:
    """Make the ``dt`` partitions visible; idempotent and safe under concurrency. Returns the ones added."""
    wanted = sorted(set(dts))
    added = []
    for start in range(0, len(wanted), _BATCH):
        chunk = wanted[start : start + _BATCH]
        response = glue.batch_create_partition(
            DatabaseName=definition.database,
            TableName=definition.table,
            PartitionInputList=[definition.partition_input(dt) for dt in chunk],
        )
        failed = {}
        for error in response.get("Errors", []):
            detail = error.get("ErrorDetail", {})
            if detail.get("ErrorCode") != "AlreadyExistsException":
                failed[error["PartitionValues"][0]] = f"{detail.get('ErrorCode')}: {detail.get('ErrorMessage')}"
            else:
                chunk.remove(error["PartitionValues"][0])
        if failed:
            raise CatalogError(f"table {definition.database}.{definition.table}: partitions not added: {failed}")
        added += chunk
    return added


class DatasetTable(Protocol):
    """The dataset's table as the finaliser and the compensations change it: one implementation per table format.

    ``DatasetCatalog`` (Hive: Parquet folders, a catalog partition per dt) and
    ``iceberg_table.IcebergDataset`` (an Iceberg table, a commit per manifest);
    the Airflow side picks one from the setting ``table_format``.
    """

    @property
    def commits_manifests(self) -> bool:
        """True when readers see what the table's commits name (Iceberg), not what its folders hold (Hive)."""
        ...

    def publish(self, ref: ManifestRef, result: JobResult) -> str:
        """Make a finished manifest's output visible to the table's readers, idempotently; what was done."""
        ...

    def withdraw(self, ref: ManifestRef) -> str:
        """Take a compensated manifest's output out of the table before its objects are deleted; what was done."""
        ...


@dataclass(frozen=True)
class DatasetCatalog:
    """The catalog table of the dataset a pipeline writes, as the finalise step uses it.

    :param glue: a boto3 ``glue`` client.
    :param database: the catalog database holding the dataset's table.
    :param layout: where the dataset lives.
    """

    glue: Any
    database: str
    layout: LakeLayout

    @property
    def commits_manifests(self) -> bool:
        return False

    def publish(self, ref: ManifestRef, result: JobResult) -> str:
        """Readers list the partition folders: the manifest's rows are visible once its partitions exist."""
        added = self.add_partitions_of(result)
        return f"partitions {added} added to the catalog" if added else "partitions already in the catalog"

    def withdraw(self, ref: ManifestRef) -> str:
        """Nothing to change in the catalog: deleting the manifest's files takes its rows out of every partition."""
        return "nothing to withdraw from the catalog"

    def add_partitions_of(self, result: JobResult) -> list[str]:
        """Make the partitions a finished manifest wrote to visible, described with the schema it wrote."""
        dts = {dt for f in result.output_files if (dt := LakeLayout.dt_of(f.path))}
        return register_partitions(self.glue, self._definition_of(result), dts)

    def point_partitions(self, result: JobResult, locations: dict[str, str], *, existing_only: bool) -> None:
        """Point each ``dt`` partition at ``locations[dt]``, described with ``result``'s schema: one update each.

        A reader's query plans from one partition's location, so it sees all of
        the old files or all of the new. A partition not in the catalog is left
        out when ``existing_only`` (nothing to switch away from), else created.
        """
        definition = self._definition_of(result)
        for dt, location in sorted(locations.items()):
            partition = {"Values": [dt], "StorageDescriptor": definition.storage_descriptor(location)}
            try:
                self.glue.update_partition(
                    DatabaseName=self.database,
                    TableName=definition.table,
                    PartitionValueList=[dt],
                    PartitionInput=partition,
                )
            except self.glue.exceptions.EntityNotFoundException:
                if not existing_only:
                    with contextlib.suppress(self.glue.exceptions.AlreadyExistsException):
                        self.glue.create_partition(
                            DatabaseName=self.database, TableName=definition.table, PartitionInput=partition
                        )

    def _definition_of(self, result: JobResult) -> TableDefinition:
        if result.schema is None:
            raise CatalogError(f"result of manifest {result.manifest_id} records no schema")
        return TableDefinition(
            database=self.database,
            table=self.layout.dataset,
            location=self.layout.dataset_uri + "/",
            fields=tuple(result.schema["fields"]),
            schema_version=result.schema_version or 0,
        )
