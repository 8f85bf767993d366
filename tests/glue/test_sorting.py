"""Files written for pruning: rows sorted by the sort column (nulls last), row groups of row_group_mb with disjoint
ranges of it, statistics, the page index and sorting_columns in the metadata, the same bytes on every attempt."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ndjson_job import output as output_module
from ndjson_job.output import GroupParts
from ndjson_job.schema import JobArgumentError, parse_schema
from ndjson_job.sorting import range_ids, sort_column
from ndjson_pipeline.conversion import ConversionOptions, JobArguments, OptionError
from ndjson_pipeline.layout import PARTITION_COLUMN, LakeLayout
from ndjson_pipeline.storage import Storage
from tests.glue.conftest import DAY, SCHEMA_PATH

_SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("event_time", pa.string()),
        ("meta", pa.struct([("seq", pa.int64())])),
        (PARTITION_COLUMN, pa.string()),
    ]
)


def _make_rows(count: int, seed: int = 7, nulls: int = 0, repeated: int = 0) -> pa.Table:
    """Events of one day in arrival order with jitter: times shuffled, some null, some sharing one time."""
    rng = random.Random(seed)
    seconds = sorted(rng.randrange(86_400) for _ in range(count))
    times = [f"{DAY}T{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}Z" for s in seconds]
    for i in range(len(times) - 1):  # late events: a neighbour swap now and then
        if rng.random() < 0.3:
            times[i], times[i + 1] = times[i + 1], times[i]
    chosen = rng.sample(range(count), nulls + repeated)
    for i in chosen[:nulls]:
        times[i] = None
    for i in chosen[nulls:]:
        times[i] = f"{DAY}T12:00:00Z"
    return pa.table(
        {
            "event_id": [f"e{i:06d}" for i in range(count)],
            "event_time": times,
            "meta": [{"seq": rng.randrange(1_000_000) if i % 50 else None} for i in range(count)],
            PARTITION_COLUMN: [DAY] * count,
        },
        schema=_SCHEMA,
    )


def _write(folder: Path, rows: pa.Table, run_rows: int = 1_000, **options) -> Path:
    """``rows`` through GroupParts in runs of ``run_rows``; the staged file of the day."""
    folder.mkdir()
    parts = GroupParts(folder, ConversionOptions(**{"row_group_mb": 0.02, **options}), "m-1")
    parts.start_file()
    for start in range(0, rows.num_rows, run_rows):
        parts.add(rows.slice(start, run_rows), [])
    staged, _ = parts.stage(Storage(bucket_root=str(folder)), str(folder / "staging"), 0)
    [part] = staged
    assert part.rows == rows.num_rows
    return Path(part.uri)


def _column_chunks(path: Path, column: str) -> list:
    metadata = pq.ParquetFile(path).metadata
    index = [metadata.schema.column(i).path for i in range(metadata.num_columns)].index(column)
    return [metadata.row_group(g).column(index) for g in range(metadata.num_row_groups)]


@pytest.fixture(autouse=True)
def small_runs(monkeypatch):
    """Runs of a few rows, so that one day's rows come in many runs, as a large group's do."""
    monkeypatch.setattr(output_module, "ROW_GROUP_BYTES", 64 * 1024)


def test_a_sorted_files_row_groups_hold_disjoint_ordered_ranges_with_the_page_index_and_sorting_columns(tmp_path):
    rows = _make_rows(20_000, nulls=300)
    path = _write(tmp_path / "out", rows)

    parquet = pq.ParquetFile(path)
    chunks = _column_chunks(path, "event_time")
    assert parquet.metadata.num_row_groups >= 5  # row groups of row_group_mb, not one per file or per run
    with_values = [c.statistics for c in chunks if c.statistics.has_min_max]
    # Ordered and disjoint: two row groups share at most one key (a time several rows have, cut between them).
    assert all(a.max <= b.min for a, b in itertools.pairwise(with_values))
    assert all(s.min <= s.max for s in with_values)
    # Nulls last: once a row group holds a null, every later row group holds nothing else.
    first_null = next(g for g, c in enumerate(chunks) if c.statistics.null_count)
    assert all(c.statistics.null_count == c.num_values for c in chunks[first_null + 1 :])
    assert sum(c.statistics.null_count for c in chunks) == 300
    assert all(c.has_column_index and c.has_offset_index for c in chunks)
    for g in range(parquet.metadata.num_row_groups):
        [order] = parquet.metadata.row_group(g).sorting_columns
        assert (order.column_index, order.descending, order.nulls_first) == (1, False, False)

    written = parquet.read()
    times = written.column("event_time").to_pylist()
    assert times == sorted(t for t in times if t is not None) + [None] * 300
    assert sorted(written.column("event_id").to_pylist()) == rows.column("event_id").to_pylist()


def test_the_same_rows_give_the_same_bytes_on_every_attempt(tmp_path):
    rows = _make_rows(8_000, nulls=10, repeated=2_000)
    first = _write(tmp_path / "a", rows).read_bytes()
    assert _write(tmp_path / "b", rows).read_bytes() == first


def test_a_time_most_rows_share_and_the_nulls_are_written_in_row_groups_of_the_same_size(tmp_path):
    rows = _make_rows(12_000, nulls=3_000, repeated=6_000)
    path = _write(tmp_path / "out", rows)
    chunks = _column_chunks(path, "event_time")
    sizes = [c.num_values for c in chunks]
    assert max(sizes) <= 2 * min(sizes[:-1])  # no row group holds all the rows of one key
    times = pq.read_table(path).column("event_time").to_pylist()
    assert times == sorted(t for t in times if t is not None) + [None] * 3_000
    assert times.count(f"{DAY}T12:00:00Z") >= 6_000


def test_a_struct_child_sorts_the_file_and_sorting_columns_name_its_leaf(tmp_path):
    path = _write(tmp_path / "out", _make_rows(6_000), sort_by="meta.seq")
    parquet = pq.ParquetFile(path)
    leaves = [parquet.metadata.schema.column(i).path for i in range(parquet.metadata.num_columns)]
    [order] = parquet.metadata.row_group(0).sorting_columns
    assert leaves[order.column_index] == "meta.seq"
    values = [row["seq"] for row in parquet.read().column("meta").to_pylist()]
    assert values == sorted(v for v in values if v is not None) + [None] * values.count(None)


def test_without_a_sort_column_the_runs_are_the_row_groups_in_arrival_order(tmp_path):
    rows = _make_rows(5_000)
    path = _write(tmp_path / "out", rows, run_rows=5_000, sort_by="none")
    parquet = pq.ParquetFile(path)
    assert parquet.metadata.row_group(0).sorting_columns == ()
    assert parquet.read().column("event_id").to_pylist() == rows.column("event_id").to_pylist()


def test_the_sort_column_defaults_to_the_event_time_field_when_the_rows_hold_it():
    assert sort_column(ConversionOptions(), _SCHEMA) == "event_time"
    assert sort_column(ConversionOptions(event_time_field="meta.seq"), _SCHEMA) == "meta.seq"
    assert sort_column(ConversionOptions(event_time_field="ts"), _SCHEMA) is None
    assert sort_column(ConversionOptions(sort_by="none"), _SCHEMA) is None
    assert sort_column(ConversionOptions(sort_by="meta"), _SCHEMA) is None  # a struct is not a sort key


def test_range_ids_ascend_with_the_keys_and_give_each_boundary_a_range_of_its_own():
    keys = pa.array(["a", "b", "c", "d", "e", "f", "g", None, "b"])
    assert range_ids(keys, pa.array(["b", "d", "f"])).to_pylist() == [0, 1, 2, 3, 4, 5, 6, 7, 1]
    assert range_ids(pa.array([3, None, 1]), None).to_pylist() == [0, 1, 0]


@pytest.mark.parametrize(
    ("sort_by", "problem"),
    [("missing", "is not in the declared schema"), ("user", "must be a scalar field, not struct")],
)
def test_a_sort_by_the_schema_cannot_sort_by_names_the_argument(sort_by, problem):
    args = JobArguments(
        "m-1",
        DAY,
        LakeLayout("s3://lake", "s3://quarantine", "events"),
        str(SCHEMA_PATH),
        ConversionOptions(sort_by=sort_by),
    )
    with pytest.raises(JobArgumentError, match=f"--sort_by '{sort_by}' {problem}"):
        parse_schema(SCHEMA_PATH.read_text(), args)


def test_sort_by_is_a_dotted_path_auto_or_none():
    assert ConversionOptions.from_glue_args({"sort_by": "user.id", "row_group_mb": "8"}).row_group_mb == 8.0
    with pytest.raises(OptionError, match="sort_by must be a dotted field path, 'auto' or 'none'"):
        ConversionOptions(sort_by="user..id")
    with pytest.raises(OptionError, match="row_group_mb must be at least"):
        ConversionOptions(row_group_mb=0)


@pytest.mark.parametrize(
    "kind",
    [pa.timestamp("us", tz="UTC"), pa.date32(), pa.decimal128(22, 3), pa.float64(), pa.int64(), pa.bool_()],
    ids=str,
)
def test_the_event_time_sorts_whatever_its_type(tmp_path, kind):
    rng = random.Random(3)
    values = [rng.randrange(10**6) if i % 40 else None for i in range(6_000)]
    if pa.types.is_boolean(kind):
        values = [None if v is None else v % 2 == 0 for v in values]
    source = pa.array(values, pa.int64() if not pa.types.is_boolean(kind) else pa.bool_())
    typed = source.cast(pa.int32()).cast(kind) if pa.types.is_date(kind) else source.cast(kind)
    ids = pa.array([f"e{i:06d}" for i in range(len(values))])
    rows = pa.table({"event_id": ids, "event_time": typed, PARTITION_COLUMN: pa.array([DAY] * len(values))})
    path = _write(tmp_path / "out", rows, row_group_mb=0.01)

    chunks = _column_chunks(path, "event_time")
    with_values = [c.statistics for c in chunks if c.statistics.has_min_max]
    assert len(chunks) > 1
    assert all(a.max <= b.min for a, b in itertools.pairwise(with_values))
    written = pq.read_table(path).column("event_time").to_pylist()
    nulls = values.count(None)
    assert written == sorted(v for v in written if v is not None) + [None] * nulls
