"""A group's output while its task runs: one Parquet file per dt and the quarantined lines, on local disk.

Rows are buffered and written to local disk in runs of about ``ROW_GROUP_BYTES``
(Arrow memory), so a task holds at most about one run whatever the size of its
files. A file quarantined whole after it gave rows (a truncated gzip is only
found at its end; invalid UTF-8 under ``strict``; too large) must publish none of
them: ``drop_file`` forgets its buffered rows and quarantined lines, and says
when some of its rows were already written (only a file with more rows than a
run gets there); the task then starts its output again without that file.

Files are written for pruning: rows sorted by the sort column (``sort_column``:
``sort_by``, by default the event-time field) with nulls last, row groups of
about ``row_group_mb`` of Parquet, statistics and the page index written and the
order recorded in each row group's ``sorting_columns``, so a reader skips the
row groups and pages a predicate on that column cannot match. Without a sort
column the runs are the file's row groups.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ndjson_job.reading import MiB
from ndjson_job.sorting import SortedWriter, sort_column
from ndjson_pipeline.conversion import ConversionOptions
from ndjson_pipeline.layout import PARTITION_COLUMN
from ndjson_pipeline.storage import Storage

# Arrow memory of the rows buffered before they are written as a run: the most rows a task holds at once.
ROW_GROUP_BYTES = 128 * MiB


@dataclass(frozen=True)
class StagedPart:
    """A group's staged Parquet file of one dt."""

    dt: str
    uri: str
    rows: int
    bytes: int


@dataclass(frozen=True)
class StagedLines:
    """A group's staged quarantined lines (one JSON object a line)."""

    uri: str
    lines: int


class GroupParts:
    """The Parquet files (one per dt) and the quarantined lines of one group, built file by file."""

    def __init__(self, folder: Path, options: ConversionOptions, manifest_id: str) -> None:
        self._folder = folder
        self._options = options
        self._manifest_id = manifest_id
        self._writers: dict[str, pq.ParquetWriter] = {}  # dt -> its runs (the file itself when not sorted)
        self._sort_column: str | None = None
        self._rows: dict[str, int] = {}
        self._arrow_bytes: dict[str, int] = {}
        self._buffered: dict[str, list[tuple[int, pa.Table]]] = {}  # dt -> (file, rows) not yet written
        self._buffered_bytes = 0
        self._file = -1
        self._file_written = False  # some rows of the current file are in a written row group
        self._lines = (folder / "lines.json").open("w+b")
        self.lines = 0
        self._lines_mark = (0, 0)

    def start_file(self) -> None:
        self._file += 1
        self._file_written = False
        self._lines_mark = (self._lines.tell(), self.lines)

    def add(self, rows: pa.Table | None, bad_lines: list[dict[str, Any]]) -> None:
        """Add rows (with their dt column) and quarantined lines of the current file."""
        for line in bad_lines:
            self._lines.write((json.dumps({**line, "manifest_id": self._manifest_id}, sort_keys=True) + "\n").encode())
        self.lines += len(bad_lines)
        if rows is None or rows.num_rows == 0:
            return
        days = rows.column(PARTITION_COLUMN)
        unique = days.unique().to_pylist()
        for dt in unique:
            part = rows if len(unique) == 1 else rows.filter(pc.equal(days, dt))
            self._buffered.setdefault(dt, []).append((self._file, part.drop_columns([PARTITION_COLUMN])))
        self._buffered_bytes += rows.nbytes
        if self._buffered_bytes >= ROW_GROUP_BYTES:
            self._write_buffered()

    def drop_file(self) -> bool:
        """Forget the current file's buffered rows and lines; False when some of its rows are already written."""
        offset, self.lines = self._lines_mark
        self._lines.seek(offset)
        self._lines.truncate()
        for dt, parts in self._buffered.items():
            self._buffered[dt] = [(file, rows) for file, rows in parts if file != self._file]
        self._buffered_bytes = sum(rows.nbytes for parts in self._buffered.values() for _, rows in parts)
        return not self._file_written

    def _write_buffered(self) -> None:
        for dt, parts in sorted(self._buffered.items()):
            if not parts:
                continue
            table = pa.concat_tables([rows for _, rows in parts])
            if not self._writers:
                self._sort_column = sort_column(self._options, table.schema)
            if dt not in self._writers:
                self._writers[dt] = pq.ParquetWriter(
                    self._runs_path(dt), table.schema, compression=str(self._options.compression), write_page_index=True
                )
            self._writers[dt].write_table(table, row_group_size=table.num_rows)
            self._rows[dt] = self._rows.get(dt, 0) + table.num_rows
            self._arrow_bytes[dt] = self._arrow_bytes.get(dt, 0) + table.nbytes
            self._file_written |= any(file == self._file for file, _ in parts)
        self._buffered.clear()
        self._buffered_bytes = 0

    def stage(self, storage: Storage, staging: str, index: int) -> tuple[tuple[StagedPart, ...], StagedLines | None]:
        """Write what is buffered, close the files and store them under the attempt's staging prefix."""
        self._write_buffered()
        self.close()
        parts = []
        for dt, rows in sorted(self._rows.items()):
            path = self._folder / f"{dt}.parquet"
            if self._sort_column is not None:
                runs = self._runs_path(dt)
                SortedWriter(self._options, self._sort_column, self._arrow_bytes[dt] / rows).write(runs, path)
                runs.unlink()
            uri = f"{staging}/data/{PARTITION_COLUMN}={dt}/part-{index:05d}.parquet"
            storage.upload_file(str(path), uri)
            parts.append(StagedPart(dt=dt, uri=uri, rows=rows, bytes=path.stat().st_size))
        lines = None
        if self.lines:
            lines = StagedLines(uri=f"{staging}/quarantine/lines-{index:05d}.json", lines=self.lines)
            storage.upload_file(str(self._folder / "lines.json"), lines.uri)
        return tuple(parts), lines

    def _runs_path(self, dt: str) -> Path:
        # Not *.parquet: only the files to publish carry that name (drift reads them).
        return self._folder / (f"{dt}.parquet" if self._sort_column is None else f"{dt}.runs")

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._lines.close()
