"""Compacting a closed day with the reprocess DAG: the fewest target-sized files, the same rows, a day that still works.

The day's many small manifests are set up with the job run in this process (the
job's code, without a Spark session per manifest); the compaction itself runs
the DAG with the real Glue script on local Spark, on the local AWS with both
roles' policies enforced.
"""

from __future__ import annotations

import math
import tempfile
from collections import Counter
from datetime import timedelta
from pathlib import Path

import duckdb
import pytest

from ndjson_pipeline.catalog import DatasetCatalog
from ndjson_pipeline.clock import utcnow
from ndjson_pipeline.files import FileId
from ndjson_pipeline.landing import day_prefix
from ndjson_pipeline.ledger import Ledger, ManifestState
from ndjson_pipeline.manifest import JobResult, Manifest
from ndjson_pipeline.settings import PipelineSettings
from ndjson_pipeline.steps import converting
from ndjson_pipeline.steps.finalising import finalise_manifest
from ndjson_pipeline.steps.intake import drain_queue
from ndjson_pipeline.steps.planning import plan_manifests
from ndjson_pipeline.steps.reporting import day_report
from ndjson_pipeline.storage import Storage
from tests.e2e.conftest import configure, run, task_states
from tests.e2e.lake_readers import read_dataset
from tests.glue.in_process import InProcessRuns
from tools.local_stack import client
from tools.sample_data import ndjson_body

pytestmark = [pytest.mark.e2e, pytest.mark.spark, pytest.mark.timeout(1800)]

TARGET_MB = 1.0


def _yesterday() -> str:
    return (utcnow() - timedelta(days=1)).date().isoformat()


def _settings(stack, monkeypatch) -> PipelineSettings:
    """One file a manifest (a registration group holds one), and a target a day of small files fills a few times."""
    return PipelineSettings.from_mapping(
        configure(stack, monkeypatch, max_files_per_manifest=1, conversion={"target_file_mb": TARGET_MB})
    )


def _land_and_convert(stack, settings: PipelineSettings, monkeypatch, day: str, files: int, name: str) -> None:
    """``files`` small landing files of ``day`` (a few bad lines each), each converted by a manifest of its own."""
    for n in range(files):
        body, _ = ndjson_body(40, seed=hash((name, n)) % 10**6, bad_fraction=0.05, prefix=f"{name}{n}", day=day)
        key = f"{day_prefix(day, settings)}{name}-{n:04d}.ndjson"
        stack.s3.put_object(Bucket=stack.names.landing_bucket, Key=key, Body=body)
    # The stack's ledger groups files by the stack's limits: this one by the test's (one file a group).
    ledger = Ledger.for_settings(client("dynamodb", stack.endpoint, stack.identities.mwaa), settings)
    drain_queue(stack.sqs, stack.queue_url, ledger, settings)
    runs = InProcessRuns(monkeypatch, stack.job_storage)
    catalog = DatasetCatalog(
        client("glue", stack.endpoint, stack.identities.mwaa), stack.names.catalog_database, settings.layout
    )
    converted = 0
    while refs := plan_manifests(ledger, stack.storage, settings, [day], owner=f"setup/{name}"):
        for ref in refs:
            converting.convert(ledger, stack.storage, settings, ref, runs)
            finalise_manifest(ledger, stack.storage, settings, ref, runs=runs, catalog=catalog)
            converted += 1
    assert converted == files


def _partition_files(stack, settings: PipelineSettings, day: str) -> dict[str, int]:
    return stack.storage.list(settings.layout.partition_uri(day) + "/")


def _rows(stack, uris) -> Counter[tuple]:
    """Every row of the files, every column (lineage and rescued data included) as text, counted."""
    rows: Counter[tuple] = Counter()
    with tempfile.TemporaryDirectory(prefix="compaction-rows-") as target, duckdb.connect() as con:
        for n, uri in enumerate(sorted(uris)):
            path = Path(target) / f"{n}.parquet"
            path.write_bytes(stack.storage.read_bytes(uri))
            relation = con.sql(f"SELECT * FROM '{path}'")
            rows.update(tuple(str(v) for v in row) for row in relation.fetchall())
    return rows


def _results(stack, settings: PipelineSettings, day: str) -> dict[str, JobResult]:
    prefix = settings.layout.result_uri(day, "").removesuffix(".json")
    return {
        r.manifest_id: r for r in (JobResult.from_json(stack.storage.read_bytes(u)) for u in stack.storage.list(prefix))
    }


def _assert_day_reconciles(stack, settings: PipelineSettings, day: str, rows: Counter[tuple]) -> dict:
    """Results list exactly the partition's files with their rows, the rows are ``rows``, ledger and report agree."""
    files = _partition_files(stack, settings, day)
    listed: Counter[str] = Counter()
    for manifest_id, result in _results(stack, settings, day).items():
        manifest = Manifest.from_json(stack.storage.read_bytes(settings.layout.manifest_uri(day, manifest_id)))
        result.check_reconciled(manifest)
        assert stack.ledger.get_manifest(manifest_id).state == ManifestState.SUCCEEDED
        for output in result.output_files:
            listed[output.path] += output.rows
    assert set(listed) == set(files), "every file of the partition is listed by a result, and only those"
    assert dict(listed) == {uri: sum(_rows(stack, [uri]).values()) for uri in files}, "listed rows are the files'"
    assert _rows(stack, files) == rows
    report = day_report(stack.ledger, stack.storage, settings, day)
    assert report["complete"]
    assert report["rows_in"] == report["rows_out"] + report["rows_quarantined"]
    assert report["rows_out"] == sum(rows.values())
    assert stack.storage.list(settings.layout.work_uri + "/") == {}, "no work in progress is left"
    return report


def _compact(dags, day: str):
    compacted = run(dags, "ndjson_reprocess", action="compact", day=day, dry_run=False)
    assert str(compacted.state) == "success", task_states(compacted)
    return compacted


class CatalogReader:
    """The day's rows as a reader of the catalog finds them (the partition's location), read after every swap step."""

    def __init__(self, stack, day: str) -> None:
        self.stack, self.day, self.seen = stack, day, []

    def rows(self) -> Counter[tuple]:
        glue = client("glue", self.stack.endpoint)
        location = glue.get_partition(
            DatabaseName=self.stack.names.catalog_database, TableName="events", PartitionValues=[self.day]
        )["Partition"]["StorageDescriptor"]["Location"]
        files = [u for u in Storage(s3_client=self.stack.s3).list(location) if "/" not in u[len(location) :]]
        return _rows(self.stack, files)

    def probe(self, after: str) -> None:
        self.seen.append((after, self.rows()))


def _probe_the_swap(monkeypatch, reader: CatalogReader) -> None:
    """Read the day through the catalog after every copy and delete of the lake's files and every catalog switch."""

    def probed(cls, name):
        real = getattr(cls, name)

        def call(self, *args, **kwargs):
            outcome = real(self, *args, **kwargs)
            reader.probe(f"{cls.__name__}.{name}")
            return outcome

        monkeypatch.setattr(cls, name, call)

    for name in ("copy", "delete"):
        probed(Storage, name)
    probed(DatasetCatalog, "point_partitions")


def test_a_day_of_hundreds_of_small_manifests_ends_in_the_fewest_target_sized_files_with_the_same_rows(
    dags, pipeline_stack, monkeypatch, spark
):
    stack, day = pipeline_stack, _yesterday()
    settings = _settings(stack, monkeypatch)
    _land_and_convert(stack, settings, monkeypatch, day, files=300, name="small")
    small = _partition_files(stack, settings, day)
    rows = _rows(stack, small)
    assert len(small) == 300
    event_ids = read_dataset(stack.s3, stack.names.lake_bucket, settings.dataset, spark)
    assert sum(event_ids["duckdb"].values()) == len(event_ids["duckdb"]) == sum(rows.values())

    dry = run(dags, "ndjson_reprocess", action="compact", day=day)
    assert str(dry.state) == "success", task_states(dry)
    assert _partition_files(stack, settings, day) == small, "a dry run changes nothing"
    reader = CatalogReader(stack, day)
    _probe_the_swap(monkeypatch, reader)
    _compact(dags, day)
    monkeypatch.undo()

    compacted = _partition_files(stack, settings, day)
    fewest = math.ceil(sum(small.values()) / (TARGET_MB * 1024 * 1024))
    print(
        f"compaction: {len(small)} files, {sum(small.values())} bytes -> {len(compacted)} files, "
        f"{sum(compacted.values())} bytes (target {TARGET_MB} MB: at least {fewest})"
    )
    assert len(compacted) == fewest < len(small)
    assert not set(compacted) & set(small)
    report = _assert_day_reconciles(stack, settings, day, rows)
    (record,) = [r for r in report["maintenance"] if r["action"] == "compact_day"]
    assert (record["files_before"], record["files_after"], record["manifests"]) == (300, fewest, 300)
    assert record["rows"] == sum(rows.values())
    # Readers of the catalog saw the same rows at every step of the swap; directory readers see each row once.
    assert reader.seen
    assert [after for after, seen in reader.seen if seen != rows] == []
    partition = client("glue", stack.endpoint).get_partition(
        DatabaseName=stack.names.catalog_database, TableName="events", PartitionValues=[day]
    )["Partition"]
    assert partition["StorageDescriptor"]["Location"] == settings.layout.partition_uri(day) + "/"
    for engine, ids in read_dataset(stack.s3, stack.names.lake_bucket, settings.dataset, spark).items():
        assert sum(ids.values()) == len(ids) == sum(rows.values()), engine


def test_a_compacted_day_still_takes_late_files_a_reprocess_a_redo_and_another_compaction(
    dags, pipeline_stack, monkeypatch
):
    stack, day = pipeline_stack, _yesterday()
    settings = _settings(stack, monkeypatch)
    _land_and_convert(stack, settings, monkeypatch, day, files=3, name="early")
    rows = _rows(stack, _partition_files(stack, settings, day))
    _compact(dags, day)
    (compacted,) = _partition_files(stack, settings, day)
    _assert_day_reconciles(stack, settings, day, rows)

    # A late file of the day lands beside the compacted file.
    _land_and_convert(stack, settings, monkeypatch, day, files=1, name="late")
    files = _partition_files(stack, settings, day)
    assert len(files) == 2
    rows = _rows(stack, files)
    ledger_before = {i: (f.state, f.rows_out, f.rows_quarantined) for i, f in _day_files(stack, settings, day).items()}

    # A reprocess rebuilds every manifest, those whose rows share the compacted file included, and replaces it.
    # Every param named: the DAG object of dag.test keeps the previous run's conf as its params' values.
    reprocessed = run(dags, "ndjson_reprocess", action="reprocess", day=day, dry_run=False)
    assert str(reprocessed.state) == "success", task_states(reprocessed)
    files = _partition_files(stack, settings, day)
    assert len(files) == 4
    assert compacted not in files
    _assert_day_reconciles(stack, settings, day, rows)
    assert {i: (f.state, f.rows_out, f.rows_quarantined) for i, f in _day_files(stack, settings, day).items()} == (
        ledger_before
    )

    # Closing the day again changes nothing; compacting it again merges its four files.
    closed = run(dags, "ndjson_end_of_day", day=day)
    assert str(closed.state) == "success", task_states(closed)
    assert _partition_files(stack, settings, day) == files
    _compact(dags, day)
    assert len(_partition_files(stack, settings, day)) == 1
    report = _assert_day_reconciles(stack, settings, day, rows)
    assert [r["action"] for r in report["maintenance"]] == ["compact_day", "reprocess_day", "compact_day"]


def _day_files(stack, settings: PipelineSettings, day: str):
    bucket = stack.names.landing_bucket
    listing = stack.s3.list_objects_v2(Bucket=bucket, Prefix=day_prefix(day, settings))["Contents"]
    return stack.ledger.get_files([str(FileId.from_listing(bucket, obj)) for obj in listing])
