"""Compaction runs: a day's small Parquet files merged into target-sized ones, every row kept as it was."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ndjson_job.compaction import SourceChanged
from ndjson_job.job import convert_manifest
from ndjson_pipeline.conversion import ConversionOptions, JobArguments, RunKind
from ndjson_pipeline.files import FileVersion
from ndjson_pipeline.layout import LakeLayout
from ndjson_pipeline.manifest import Manifest
from ndjson_pipeline.storage import Storage
from tests.glue.conftest import DAY, SCHEMA_PATH
from tests.glue.in_process import tasks_here
from tools.sample_data import ndjson_body

LAKE = LakeLayout("s3://lake", "s3://quarantine", "events")


def _convert_small_manifests(storage: Storage, spark, count: int) -> list[FileVersion]:
    """``count`` manifests of one landing file each, converted into the lake: one small Parquet file each."""
    for n in range(count):
        body, _ = ndjson_body(40, seed=n, bad_fraction=0.05, prefix=f"m{n}")
        storage.write_bytes(f"s3://landing/in/{n}.ndjson", body)
        landing = FileVersion(
            "landing", f"in/{n}.ndjson", hashlib.md5(body, usedforsecurity=False).hexdigest(), len(body)
        )
        manifest = Manifest.for_files(DAY, [landing])
        storage.write_bytes(LAKE.manifest_uri(DAY, manifest.manifest_id), manifest.to_json().encode())
        arguments = JobArguments(manifest.manifest_id, DAY, LAKE, str(SCHEMA_PATH))
        convert_manifest(spark, arguments, storage)
    return _lake_files(storage)


def _lake_files(storage: Storage) -> list[FileVersion]:
    files = []
    for uri, size in sorted(storage.list(LAKE.partition_uri(DAY) + "/").items()):
        key = uri.removeprefix("s3://lake/")
        etag = hashlib.md5(storage.read_bytes(uri), usedforsecurity=False).hexdigest()
        files.append(FileVersion("lake", key, etag, size))
    return files


def _compact(storage: Storage, spark, files: list[FileVersion], target_file_mb: float):
    """Write the compaction's manifest into its layout and run the job on it; the layout and the result."""
    manifest = Manifest.for_files(DAY, files)
    layout = LAKE.compaction("c1")
    storage.write_bytes(layout.manifest_uri(DAY, manifest.manifest_id), manifest.to_json().encode())
    arguments = JobArguments(
        manifest.manifest_id,
        DAY,
        layout,
        str(SCHEMA_PATH),
        options=ConversionOptions(target_file_mb=target_file_mb),
        run_kind=RunKind.COMPACT,
    )
    return layout, convert_manifest(spark, arguments, storage)


def _rows(storage: Storage, uris: list[str], tmp: Path) -> list[tuple]:
    """Every row of the files, all columns, as sortable tuples (nested values as their text)."""
    rows = []
    for n, uri in enumerate(uris):
        path = tmp / f"{n}.parquet"
        path.write_bytes(storage.read_bytes(uri))
        table = pq.read_table(path)
        rows += [tuple(str(row[name]) for name in sorted(row)) for row in table.to_pylist()]
    return sorted(rows)


def test_small_files_become_the_fewest_target_sized_files_with_every_row_and_column_as_it_was(tmp_path, monkeypatch):
    storage = Storage(bucket_root=str(tmp_path / "buckets"))
    spark = tasks_here(monkeypatch)
    sources = _convert_small_manifests(storage, spark, 12)
    before = _rows(storage, [f.uri for f in sources], tmp_path)
    total = sum(f.size for f in sources)
    target_mb = total / 3.5 / (1024 * 1024)  # the files' bytes fill 3.5 targets: four files at the least

    layout, result = _compact(storage, spark, sources, target_mb)

    assert len(result.output_files) == 4
    assert [LakeLayout.dt_of(o.path) for o in result.output_files] == [DAY] * 4
    assert all(o.path.startswith(layout.partition_uri(DAY) + "/") for o in result.output_files)
    merged = sorted(identity for o in result.output_files for identity in o.sources)
    assert merged == sorted(f.identity for f in sources), "each file merged into exactly one output file"
    assert result.rows_out == result.rows_in == len(before)
    assert sum(o.rows for o in result.output_files) == len(before)
    assert _rows(storage, [o.path for o in result.output_files], tmp_path) == before, "same rows, lineage included"
    columns = pq.read_schema(tmp_path / "0.parquet").names
    assert {"_source_uri", "_manifest_id", "_rescued_data"} <= set(columns)
    assert storage.list(LAKE.partition_uri(DAY) + "/") == {f.uri: f.size for f in sources}, "the lake is untouched"
    assert storage.list(layout.staging_uri(result.manifest_id) + "/") == {}, "its staging is removed"


def test_a_file_changed_since_the_compaction_was_planned_fails_the_run_naming_it(tmp_path, monkeypatch):
    storage = Storage(bucket_root=str(tmp_path / "buckets"))
    spark = tasks_here(monkeypatch)
    sources = _convert_small_manifests(storage, spark, 2)
    storage.write_bytes(sources[1].uri, pq_bytes(tmp_path))  # a reprocess replaced it meanwhile

    with pytest.raises(SourceChanged, match=sources[1].key):
        _compact(storage, spark, sources, 128)
    assert (
        storage.read_bytes_if_exists(
            LAKE.compaction("c1").result_uri(DAY, Manifest.for_files(DAY, sources).manifest_id)
        )
        is None
    )


@pytest.mark.spark
def test_a_compaction_runs_its_groups_as_spark_tasks(tmp_path, monkeypatch, spark):
    storage = Storage(bucket_root=str(tmp_path / "buckets"))
    sources = _convert_small_manifests(storage, tasks_here(monkeypatch), 4)
    monkeypatch.undo()  # the compaction itself on the real session
    before = _rows(storage, [f.uri for f in sources], tmp_path)

    _, result = _compact(storage, spark, sources, 128)

    assert len(result.output_files) == 1
    assert _rows(storage, [result.output_files[0].path], tmp_path) == before


def pq_bytes(tmp_path: Path) -> bytes:
    path = tmp_path / "other.parquet"
    pq.write_table(pa.table({"event_id": ["x"]}), path)
    return path.read_bytes()
