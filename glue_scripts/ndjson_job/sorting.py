"""A dt's runs of rows -> one Parquet file sorted by one column, written for pruning, in bounded memory.

A group's rows of one dt can be far more than a task may hold (a 1 GB gzip file
is about 6 GB of NDJSON), so they are never sorted at once. The runs (row groups
of unsorted rows, ``output.GroupParts``) are read three times, a batch at a time:

1. the sort column only, every n-th value kept: its quantiles are the
   boundaries of key ranges of about half an output row group each;
2. each batch split by range into spill files on local disk (Arrow IPC):
   one range per interval between boundaries, one per boundary value (so a key
   shared by many rows holds no other key) and one for the nulls (last);
3. range after range in key order: an interval is read and sorted (about one
   row group of rows), a single-key range is already in order and is streamed;
   the rows go out as row groups of ``row_group_mb``.

Memory: meant to be about two row groups of rows (the range being sorted and
the rows not yet written), never the dt's rows; disk: the runs and one copy of
them spilled. Measured (``make bench-glue-memory``): 555 MB peak for a 1 GB
file, but 1,429 MB for 13.4 million rows of one dt (a 1 GB gzip file), so
something here still grows with the dt's rows.
The rows come out in the order of one stable sort of the runs by key, whatever
the boundaries (a key falls in one range, which keeps the runs' order): the same
bytes on every attempt.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ndjson_job.reading import MiB
from ndjson_pipeline.conversion import SORT_BY_AUTO, SORT_BY_NONE, ConversionOptions

# Sampled keys per range: enough that ranges come out near their size.
SAMPLES_PER_RANGE = 64
# Rows read from the runs at a time.
BATCH_ROWS = 65_536
# The most Arrow memory a row group may take, whatever row_group_mb says (a range is sorted in memory).
MAX_ROW_GROUP_ARROW_BYTES = 128 * MiB


def sort_column(options: ConversionOptions, schema: pa.Schema) -> str | None:
    """The dotted path rows of ``schema`` are sorted by: ``sort_by``, under "auto" the event-time field when the
    schema has it; None when there is none (or the files do not hold it: a compaction of older files)."""
    if options.sort_by == SORT_BY_NONE:
        return None
    path = options.event_time_field if options.sort_by == SORT_BY_AUTO else options.sort_by
    current: pa.DataType = pa.struct(list(schema))
    for name in path.split("."):
        if not pa.types.is_struct(current) or current.get_field_index(name) < 0:
            return None
        current = current.field(name).type
    return None if pa.types.is_nested(current) else path


def sort_key(table: pa.Table | pa.RecordBatch, path: str) -> pa.Array:
    """The values of ``path`` (a struct child for a dotted path) in ``table``."""
    names = path.split(".")
    values = table.column(names[0])
    key = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    for name in names[1:]:
        key = pc.struct_field(key, name)
    return key


class SortedWriter:
    """Writes a dt's runs as one file sorted by ``path``, nulls last.

    :param options: the conversion's options (compression, row_group_mb).
    :param path: the sort column (``sort_column``).
    :param arrow_bytes_per_row: the rows' average Arrow size, which caps a row group's rows.
    """

    def __init__(self, options: ConversionOptions, path: str, arrow_bytes_per_row: float) -> None:
        self._options = options
        self._path = path
        self._arrow_bytes_per_row = max(arrow_bytes_per_row, 1.0)

    def write(self, runs: Path, out: Path) -> None:
        metadata = pq.read_metadata(runs)
        rows = metadata.num_rows
        # The runs' own Parquet size per row estimates the sorted file's (sorted rows compress a little better).
        parquet_bytes_per_row = max(runs.stat().st_size / max(rows, 1), 1.0)
        group_rows = max(
            1,
            min(
                int(self._options.row_group_mb * MiB / parquet_bytes_per_row),
                int(MAX_ROW_GROUP_ARROW_BYTES / self._arrow_bytes_per_row),
            ),
        )
        # Ranges of half a row group: the range being sorted (twice: as read and sorted) and the rows not yet
        # written (under a row group) stay within about two row groups.
        boundaries = self._boundaries(runs, math.ceil(2 * rows / group_rows))
        with tempfile.TemporaryDirectory(dir=out.parent, prefix=f"{out.stem}-ranges-") as spill:
            ranges = self._spill(runs, boundaries, Path(spill))
            schema = metadata.schema.to_arrow_schema()
            writer = pq.ParquetWriter(
                out,
                schema,
                compression=str(self._options.compression),
                write_statistics=True,
                write_page_index=True,
                sorting_columns=pq.SortingColumn.from_ordering(
                    schema, [(self._path, "ascending")], null_placement="at_end"
                ),
            )
            try:
                pending: list[pa.Table] = []
                pending_rows = 0
                for range_id in sorted(ranges):
                    for table in self._range_tables(ranges[range_id], sort=range_id % 2 == 0):
                        pending.append(table)
                        pending_rows += table.num_rows
                        if pending_rows >= group_rows:
                            rest = pa.concat_tables(pending)
                            full = rest.num_rows // group_rows * group_rows
                            writer.write_table(rest.slice(0, full), row_group_size=group_rows)
                            # A copy: a slice would keep every row of the ranges it came from in memory.
                            pending, pending_rows = [rest.slice(full).combine_chunks()], rest.num_rows - full
                            del rest, table
                if pending_rows:
                    writer.write_table(pa.concat_tables(pending), row_group_size=group_rows)
            finally:
                writer.close()

    def _boundaries(self, runs: Path, ranges: int) -> pa.Array | None:
        """Distinct keys, ascending, that cut the rows into about ``ranges`` ranges of equal rows."""
        if ranges <= 1:
            return None
        source = _open(runs)
        step = max(1, source.metadata.num_rows // (ranges * SAMPLES_PER_RANGE))
        samples, seen = [], 0
        top = self._path.split(".")[0]
        for batch in source.iter_batches(batch_size=BATCH_ROWS, columns=[top]):
            key = sort_key(batch, self._path)
            # Every step-th row of the runs, counted across batches.
            picked = key.take(pa.array(range((-seen) % step, len(key), step), pa.int64()))
            samples.append(picked.filter(pc.is_valid(picked)))
            seen += len(key)
        sample = pa.concat_arrays(samples)
        if len(sample) == 0:
            return None
        ordered = sample.take(pc.sort_indices(sample))
        cuts = ordered.take(pa.array([len(ordered) * i // ranges for i in range(1, ranges)], pa.int64()))
        return pc.unique(cuts)  # in order of first appearance: still ascending

    def _spill(self, runs: Path, boundaries: pa.Array | None, folder: Path) -> dict[int, Path]:
        """Each batch of the runs split by range (``range_ids``) into one spill file per range."""
        source = _open(runs)
        writers: dict[int, pa.ipc.RecordBatchFileWriter] = {}
        paths: dict[int, Path] = {}
        # Uncompressed: a range is then read back from the memory map without a copy, however many pieces it has.
        options = pa.ipc.IpcWriteOptions(compression=None)
        try:
            for batch in source.iter_batches(batch_size=BATCH_ROWS):
                ids = range_ids(sort_key(batch, self._path), boundaries)
                order = pc.sort_indices(ids)  # stable: rows of one range keep their order
                grouped, start = batch.take(order), 0
                for count in pc.value_counts(ids.take(order)).to_pylist():
                    range_id, rows = count["values"], count["counts"]
                    if range_id not in writers:
                        paths[range_id] = folder / f"{range_id:08d}.arrow"
                        writers[range_id] = pa.ipc.new_file(str(paths[range_id]), batch.schema, options=options)
                    writers[range_id].write_batch(grouped.slice(start, rows))
                    start += rows
        finally:
            for writer in writers.values():
                writer.close()
        return paths

    def _range_tables(self, path: Path, sort: bool) -> Iterator[pa.Table]:
        """A range's rows in key order: an interval sorted whole (stable), a single key's rows streamed as they are
        (they can be any number: all the nulls, or a key most rows share)."""
        with pa.memory_map(str(path)) as source:
            reader = pa.ipc.open_file(source)
            if not sort:
                for index in range(reader.num_record_batches):
                    yield pa.Table.from_batches([reader.get_batch(index)])
                return
            table = reader.read_all()
        ordered = table.take(pc.sort_indices(sort_key(table, self._path)))
        del table  # not held while the sorted rows are written
        yield ordered


def _open(runs: Path) -> pq.ParquetFile:
    """The runs, for one pass: a reader holds the last row group it decoded for as long as it lives (closing it
    is not enough), so each pass opens its own and drops it when it returns."""
    return pq.ParquetFile(runs)


def range_ids(key: pa.Array, boundaries: pa.Array | None) -> pa.Array:
    """Each row's range: 2p for the keys between boundaries p-1 and p, 2p+1 for boundary p itself, nulls last.

    Range ids ascend with the keys, so ranges written in id order are written in key order. The keys are
    ranked among the boundaries by one stable sort of both (a boundary before the keys equal to it).
    """
    count = 0 if boundaries is None else len(boundaries)
    valid = pc.is_valid(key)
    if boundaries is None or count == 0:
        return pc.if_else(valid, 0, 1).cast(pa.int64())
    values = pc.fill_null(key, boundaries[0])
    both = pa.table(
        {
            "key": pa.concat_arrays([boundaries, values]),
            "is_key": pa.concat_arrays([pa.array([False] * count), pa.array([True] * len(values))]),
        }
    )
    order = pc.sort_indices(both, sort_keys=[("key", "ascending"), ("is_key", "ascending")])
    is_boundary = pc.invert(both.column("is_key").combine_chunks().take(order))
    # Boundaries at or below each key (bisect_right), in sorted order, then back in the rows' order.
    at_or_below = pc.cumulative_sum(is_boundary.cast(pa.int64())).take(pc.sort_indices(order))
    at_or_below = at_or_below.slice(count)
    previous = boundaries.take(pc.max_element_wise(pc.subtract(at_or_below, 1), 0))
    equal = pc.and_(pc.greater(at_or_below, 0), pc.equal(values, previous))
    below = pc.subtract(at_or_below, equal.cast(pa.int64()))  # bisect_left
    ids = pc.add(pc.multiply(below, 2), equal.cast(pa.int64()))
    return pc.if_else(valid, ids, 2 * count + 1).cast(pa.int64())
