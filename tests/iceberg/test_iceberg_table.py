"""The Iceberg table over the moto server, as the MWAA identity commits to it: one commit per manifest, idempotent,
replacing what an earlier attempt committed, removing only what was committed, racing commits all landing."""

from __future__ import annotations

import io
import threading

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.transforms import DayTransform, IdentityTransform
from pyiceberg.types import (
    DateType,
    DecimalType,
    DoubleType,
    FloatType,
    IntegerType,
    ListType,
    LongType,
    MapType,
    StringType,
    StructType,
    TimestampType,
    TimestamptzType,
)

from ndjson_pipeline.conversion import ConversionOptions
from ndjson_pipeline.dataset_schema import DeclaredSchema, SchemaError
from ndjson_pipeline.files import FileState
from ndjson_pipeline.iceberg_definition import IcebergTableDefinition, iceberg_type
from ndjson_pipeline.iceberg_table import ACTION_PROPERTY, MANIFESTS_PROPERTY, IcebergDataset
from ndjson_pipeline.manifest import FileResult, JobResult, ManifestRef, OutputFile
from tests.conftest import make_stack
from tests.factories import DAY, EVENTS_SCHEMA, EVOLVED_SCHEMA
from tools.local_stack import client, iceberg_catalog

MANIFEST_A = "20261124-aaaaaaaaaaaaaaaaaaaa"
MANIFEST_B = "20261124-bbbbbbbbbbbbbbbbbbbb"
MANIFEST_C = "20261124-cccccccccccccccccccc"


def _counter():
    ids = iter(range(1, 1000))
    return lambda: next(ids)


def _declared(**types) -> DeclaredSchema:
    return DeclaredSchema(1, tuple({"name": n, "type": t, "nullable": True, "metadata": {}} for n, t in types.items()))


# ------------------------------------------------------------------ definition (no AWS)


def test_spark_types_map_to_iceberg_types():
    assert iceberg_type("timestamp", _counter()) == TimestamptzType()  # an instant: Arrow writes it adjusted to UTC
    assert iceberg_type("timestamp_ntz", _counter()) == TimestampType()
    assert iceberg_type("date", _counter()) == DateType()
    assert iceberg_type("decimal(12,3)", _counter()) == DecimalType(12, 3)
    assert iceberg_type("float", _counter()) == FloatType()
    assert iceberg_type("double", _counter()) == DoubleType()
    assert iceberg_type("short", _counter()) == IntegerType()
    mapped = iceberg_type({"type": "map", "keyType": "string", "valueType": "long"}, _counter())
    assert isinstance(mapped, MapType)
    assert (mapped.key_type, mapped.value_type) == (StringType(), LongType())
    assert not mapped.value_required
    items = iceberg_type(
        {"type": "array", "elementType": {"type": "struct", "fields": [{"name": "sku", "type": "string"}]}}, _counter()
    )
    assert isinstance(items, ListType)
    assert isinstance(items.element_type, StructType)
    with pytest.raises(SchemaError, match="'interval'"):
        iceberg_type("interval", _counter())


def test_the_table_is_partitioned_by_dt_or_by_the_day_of_a_typed_event_time(stack_layout):
    arrival = IcebergTableDefinition.for_dataset("db", stack_layout, EVENTS_SCHEMA, ConversionOptions())
    (field,) = arrival.partition_spec().fields
    assert isinstance(field.transform, IdentityTransform)
    assert arrival.schema().find_field(field.source_id).name == "dt"
    # A string event time: the job's dt is the partition, as in the Hive layout.
    by_string = IcebergTableDefinition.for_dataset(
        "db",
        stack_layout,
        _declared(event_id="string", event_time="string"),
        ConversionOptions(partitioning="event_time"),
    )
    assert by_string.event_time_field is None
    typed = _declared(event_id="string", event_time="timestamp")
    options = ConversionOptions(partitioning="event_time")
    by_time = IcebergTableDefinition.for_dataset("db", stack_layout, typed, options)
    (field,) = by_time.partition_spec().fields
    assert isinstance(field.transform, DayTransform)
    assert by_time.schema().find_field(field.source_id).name == "event_time"
    assert "dt" not in by_time.schema()._name_to_id
    # Arrival partitioning keeps dt even when the event time is typed.
    assert IcebergTableDefinition.for_dataset("db", stack_layout, typed, ConversionOptions()).event_time_field is None


@pytest.fixture
def stack_layout():
    from ndjson_pipeline.layout import LakeLayout

    return LakeLayout("s3://lake", "s3://quarantine", "events")


# ------------------------------------------------------------------ commits over the moto server


@pytest.fixture
def iceberg_stack(aws_endpoint):
    return make_stack(aws_endpoint, table_format="iceberg")


def _dataset(stack, **kwargs) -> IcebergDataset:
    """The table as a DAG task commits to it: pyiceberg's GlueCatalog as the MWAA execution role."""
    catalog = iceberg_catalog(stack.endpoint, stack.names, stack.identities.mwaa)
    return IcebergDataset(catalog, stack.names.catalog_database, stack.settings.layout, **kwargs)


def _output(stack, manifest_id: str, event_ids: list[str], *, part: int = 0, day: str = DAY, schema=EVENTS_SCHEMA):
    """A Parquet file as the job writes it (as the Glue identity), and its OutputFile."""
    columns = {
        "event_id": pa.array(event_ids, pa.string()),
        "_source_uri": pa.array([f"s3://landing/{e}.ndjson" for e in event_ids], pa.string()),
        "_manifest_id": pa.array([manifest_id] * len(event_ids), pa.string()),
    }
    if schema is EVOLVED_SCHEMA:
        columns["source"] = pa.array(["web"] * len(event_ids), pa.string())
    buffer = io.BytesIO()
    pq.write_table(pa.table(columns), buffer)
    uri = stack.settings.layout.part_uri(day, manifest_id, part, "snappy")
    stack.job_storage.write_bytes(uri, buffer.getvalue())
    return OutputFile(uri, len(buffer.getvalue()), len(event_ids))


def _result(manifest_id: str, outputs: list[OutputFile], schema=EVENTS_SCHEMA) -> JobResult:
    from ndjson_pipeline.dataset_schema import output_fields

    rows = sum(o.rows for o in outputs)
    files = (FileResult(f"b/{manifest_id}#e", f"s3://b/{manifest_id}", FileState.DONE, None, rows, rows, 0, 0),)
    fields = output_fields(schema.fields, rescue=True, lineage=True)
    return JobResult(manifest_id, DAY, files, tuple(outputs), {"type": "struct", "fields": fields}, schema.version)


def _ref(manifest_id: str) -> ManifestRef:
    return ManifestRef(manifest_id, DAY, 1, 1)


def _rows(dataset: IcebergDataset, snapshot_id: int | None = None) -> list[dict]:
    scan = dataset.load().scan(selected_fields=("event_id", "_manifest_id", "dt"), snapshot_id=snapshot_id)
    return sorted(scan.to_arrow().to_pylist(), key=lambda r: r["event_id"])


def _snapshots(dataset: IcebergDataset) -> list:
    return list(dataset.load().snapshots())


def test_the_local_stack_creates_the_table_terraform_declares(iceberg_stack):
    import json

    from ndjson_pipeline.iceberg_definition import create_table

    table = _dataset(iceberg_stack).load()
    definition = IcebergTableDefinition.for_dataset(
        iceberg_stack.names.catalog_database, iceberg_stack.settings.layout, EVENTS_SCHEMA, ConversionOptions()
    )
    rendered = json.loads(definition.to_json())
    assert [(f["id"], f["name"]) for f in rendered["schema"]["fields"]] == [
        (f.field_id, f.name) for f in table.schema().fields
    ]
    assert [(p["source_id"], p["transform"]) for p in rendered["partition_spec"]["fields"]] == [
        (p.source_id, str(p.transform)) for p in table.spec().fields
    ]
    assert table.properties["write.metadata.metrics.column._manifest_id"] == "full"
    glue = client("glue", iceberg_stack.endpoint)
    parameters = glue.get_table(DatabaseName=iceberg_stack.names.catalog_database, Name="events")["Table"]["Parameters"]
    assert parameters["table_type"].upper() == "ICEBERG"
    assert create_table(iceberg_catalog(iceberg_stack.endpoint, iceberg_stack.names), definition) == "exists"


def test_a_manifest_is_committed_once_and_a_rerun_replaces_its_files_in_one_commit(iceberg_stack):
    dataset = _dataset(iceberg_stack)
    first = _result(MANIFEST_A, [_output(iceberg_stack, MANIFEST_A, ["a1", "a2", "a3"])])
    assert dataset.publish(_ref(MANIFEST_A), first) == "1 files added, 0 replaced"
    # A retry after a crash between the commit and the ledger: nothing to do, no new snapshot.
    assert dataset.publish(_ref(MANIFEST_A), first) == "already committed"
    assert len(_snapshots(dataset)) == 1
    # A rerun wrote other files for the manifest: one commit swaps them in (the old file is no longer read).
    rerun = _result(
        MANIFEST_A,
        [_output(iceberg_stack, MANIFEST_A, ["a1", "a2"], part=1), _output(iceberg_stack, MANIFEST_A, ["a4"], part=2)],
    )
    assert dataset.publish(_ref(MANIFEST_A), rerun) == "2 files added, 1 replaced"
    snapshots = _snapshots(dataset)
    assert len(snapshots) == 2
    summary = snapshots[-1].summary
    assert (summary.operation.value, summary[ACTION_PROPERTY], summary[MANIFESTS_PROPERTY]) == (
        "overwrite",
        "publish",
        MANIFEST_A,
    )
    rows = _rows(dataset)
    assert [r["event_id"] for r in rows] == ["a1", "a2", "a4"]
    assert {r["dt"] for r in rows} == {DAY}  # from the files' partition: the files do not hold dt
    # The snapshot before the rerun still reads the first attempt's rows (time travel).
    assert [r["event_id"] for r in _rows(dataset, snapshots[0].snapshot_id)] == ["a1", "a2", "a3"]


def test_withdraw_removes_a_manifests_rows_and_nothing_never_committed(iceberg_stack):
    dataset = _dataset(iceberg_stack)
    dataset.publish(_ref(MANIFEST_A), _result(MANIFEST_A, [_output(iceberg_stack, MANIFEST_A, ["a1"])]))
    dataset.publish(_ref(MANIFEST_C), _result(MANIFEST_C, [_output(iceberg_stack, MANIFEST_C, ["c1", "c2"])]))
    before = len(_snapshots(dataset))
    assert dataset.withdraw(_ref(MANIFEST_B)) == "already committed"  # never committed: no commit at all
    assert len(_snapshots(dataset)) == before
    assert dataset.withdraw(_ref(MANIFEST_A)) == "0 files added, 1 replaced"
    assert [r["event_id"] for r in _rows(dataset)] == ["c1", "c2"]
    assert _snapshots(dataset)[-1].summary[ACTION_PROPERTY] == "withdraw"


def test_a_file_a_compaction_merged_loses_only_the_withdrawn_manifests_rows(iceberg_stack):
    dataset = _dataset(iceberg_stack)
    outputs = {m: _output(iceberg_stack, m, [f"{m[-1]}1", f"{m[-1]}2"]) for m in (MANIFEST_A, MANIFEST_C)}
    for manifest_id, output in outputs.items():
        dataset.publish(_ref(manifest_id), _result(manifest_id, [output]))
    # What Glue's compaction does: one file with both manifests' rows replaces their files.
    table = dataset.load()
    merged = pa.concat_tables(
        pq.read_table(io.BytesIO(iceberg_stack.storage.read_bytes(o.path))) for o in outputs.values()
    )
    buffer = io.BytesIO()
    pq.write_table(merged, buffer)
    compacted = f"{iceberg_stack.settings.layout.partition_uri(DAY)}/compacted-00000.parquet"
    iceberg_stack.job_storage.write_bytes(compacted, buffer.getvalue())
    with table.transaction() as txn:
        old = [task.file for task in table.scan().plan_files()]
        with txn.update_snapshot().overwrite() as overwrite:
            for data_file in old:
                overwrite.delete_data_file(data_file)
            overwrite.append_data_file(dataset._data_file(table, txn, compacted))
    assert [r["event_id"] for r in _rows(dataset)] == ["a1", "a2", "c1", "c2"]

    dataset.withdraw(_ref(MANIFEST_A))

    assert [r["event_id"] for r in _rows(dataset)] == ["c1", "c2"]


def test_a_newer_schema_version_adds_its_columns_by_id(iceberg_stack):
    dataset = _dataset(iceberg_stack)
    dataset.publish(_ref(MANIFEST_A), _result(MANIFEST_A, [_output(iceberg_stack, MANIFEST_A, ["a1"])]))
    ids_before = {f.name: f.field_id for f in dataset.load().schema().fields}
    evolved = _output(iceberg_stack, MANIFEST_C, ["c1"], schema=EVOLVED_SCHEMA)
    dataset.publish(_ref(MANIFEST_C), _result(MANIFEST_C, [evolved], schema=EVOLVED_SCHEMA))
    schema = dataset.load().schema()
    assert {f.name: f.field_id for f in schema.fields if f.name in ids_before} == ids_before
    assert "source" in schema._name_to_id
    assert "user.tier" in schema._name_to_id
    rows = dataset.load().scan(selected_fields=("event_id", "source")).to_arrow().to_pylist()
    assert sorted(rows, key=lambda r: r["event_id"]) == [
        {"event_id": "a1", "source": None},
        {"event_id": "c1", "source": "web"},
    ]


def test_the_emulator_refuses_an_update_made_against_an_old_table_version(iceberg_stack):
    """Glue's optimistic check, which pyiceberg's commits rely on: moto alone accepts any VersionId."""
    glue = client("glue", iceberg_stack.endpoint)
    database = iceberg_stack.names.catalog_database
    table = glue.get_table(DatabaseName=database, Name="events")["Table"]
    table_input = {k: table[k] for k in ("Name", "TableType", "Parameters", "StorageDescriptor")}
    glue.update_table(DatabaseName=database, TableInput=table_input, VersionId=table["VersionId"])
    with pytest.raises(glue.exceptions.ConcurrentModificationException):
        glue.update_table(DatabaseName=database, TableInput=table_input, VersionId=table["VersionId"])
    # And so a commit of pyiceberg planned on an older version of the table fails instead of replacing the newer.
    dataset = _dataset(iceberg_stack)
    stale = dataset.load()
    dataset.publish(_ref(MANIFEST_A), _result(MANIFEST_A, [_output(iceberg_stack, MANIFEST_A, ["a"])]))
    late = _output(iceberg_stack, MANIFEST_C, ["c"])
    with pytest.raises(CommitFailedException), stale.transaction() as txn:  # noqa: SIM117 - the append is inside
        with txn.update_snapshot().fast_append() as append:
            append.append_data_file(dataset._data_file(stale, txn, late.path))
    assert [r["event_id"] for r in _rows(dataset)] == ["a"]


def test_concurrent_commits_all_land(iceberg_stack):
    """Four finalisers commit at once from the same table version: the losers retry and every manifest lands."""
    barrier = threading.Barrier(4, timeout=60)
    races = []

    class SameStart(IcebergDataset):
        first_read = threading.local()

        def load(self):
            table = super().load()
            if not getattr(self.first_read, "done", False):
                self.first_read.done = True
                barrier.wait()  # every thread has read the same version before any commits
            return table

    stack = iceberg_stack
    catalogs = [iceberg_catalog(stack.endpoint, stack.names, stack.identities.mwaa) for _ in range(4)]
    manifests = [f"20261124-{str(n) * 20}" for n in range(4)]
    results = {m: _result(m, [_output(iceberg_stack, m, [f"{m[-1]}-{i}" for i in range(3)])]) for m in manifests}
    errors = []

    def finalise(n: int) -> None:
        dataset = SameStart(catalogs[n], stack.names.catalog_database, stack.settings.layout, races.append)
        try:
            dataset.publish(_ref(manifests[n]), results[manifests[n]])
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=finalise, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(races) >= 3  # all four started from one version: at least three lost a race and tried again
    dataset = _dataset(iceberg_stack)
    rows = _rows(dataset)
    assert len(rows) == len({r["event_id"] for r in rows}) == 12
    assert sorted(s.summary[MANIFESTS_PROPERTY] for s in _snapshots(dataset)) == sorted(manifests)


def test_a_compensation_withdraws_what_was_committed_and_commits_nothing_otherwise(aws_endpoint):
    """A finaliser committed a manifest, then died; its result was lost. The compensation that follows takes the
    manifest's rows out of the table by a commit, and one of a manifest never committed makes no commit at all."""
    from ndjson_pipeline.ledger import ManifestState
    from tests.factories import finalise, plan, register_files

    stack = make_stack(aws_endpoint, table_format="iceberg", max_files_per_manifest=2, max_attempts=2)
    register_files(stack, 4)
    committed, never = plan(stack)
    dataset = _dataset(stack)
    dataset.publish(committed, _result(committed.manifest_id, [_output(stack, committed.manifest_id, ["x1", "x2"])]))
    assert len(_rows(dataset)) == 2

    assert finalise(stack, committed, catalog=dataset).status == ManifestState.COMPENSATED

    assert _rows(dataset) == []
    (withdrawn,) = [s for s in _snapshots(dataset) if s.summary[ACTION_PROPERTY] == "withdraw"]
    assert withdrawn.summary[MANIFESTS_PROPERTY] == committed.manifest_id
    snapshots = len(_snapshots(dataset))
    assert finalise(stack, never, catalog=dataset).status == ManifestState.COMPENSATED
    assert len(_snapshots(dataset)) == snapshots
