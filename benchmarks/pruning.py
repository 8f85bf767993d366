"""Row groups a one-hour query reads: the sorted layout against the unsorted one, on a day's files.

Generates a day of NDJSON (``--files`` files, events spread over 24 hours in
arrival order, each file a slice of the day; event times lag their arrival by a
few seconds, 5% by minutes and 1% by hours: phones that were offline), converts
the day as one manifest with the job's core (``groups.convert_group`` per output
group, no Spark) twice, with the default ``sort_by`` (the event time) and with
``sort_by none`` (rows in arrival order, a row group per buffered run), then,
for a one-hour predicate on the event time, counts:

- the row groups whose statistics can match (min/max from the Parquet footers);
- the row groups and bytes pyarrow.dataset reads: the fragments that survive its
  statistics pruning (``split_by_row_group`` with the filter), and their
  compressed size; the rows it returns must be the same for both layouts.

The day is about 1/16 of the size the defaults are made for (a day's files of
~120 MB of NDJSON, not a few GB), so ``--row_group_mb`` is 1, not 16, and
``--target_file_mb`` 8: the same number of row groups per file as the defaults
give a full-size day. The schema is ``glue_scripts/schemas/events.json``, whose
``event_time`` is a timestamp: the predicate compares typed times.

Run: ``make bench-pruning``, or ``PYTHONPATH=include:. .venv/bin/python -m benchmarks.pruning``
(``.venv-glue50/bin/python`` for Glue 5.0's pyarrow 17).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import shutil
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from tools.sample_data import DAY, make_event

GLUE_SCRIPTS = Path(__file__).resolve().parent.parent / "glue_scripts"
sys.path.insert(0, str(GLUE_SCRIPTS))

from ndjson_job.groups import convert_group  # noqa: E402
from ndjson_job.job import plan_work  # noqa: E402
from ndjson_job.schema import parse_schema  # noqa: E402
from ndjson_pipeline.conversion import JobArguments  # noqa: E402
from ndjson_pipeline.files import FileVersion  # noqa: E402
from ndjson_pipeline.layout import LakeLayout  # noqa: E402
from ndjson_pipeline.manifest import Manifest  # noqa: E402
from ndjson_pipeline.storage import Storage  # noqa: E402

MiB = 1024 * 1024
START = datetime.fromisoformat(f"{DAY}T00:00:00+00:00")


def lag(rng: random.Random) -> timedelta:
    """How long after it happened an event arrives: seconds mostly, minutes for 5%, hours for 1%."""
    draw = rng.random()
    if draw < 0.01:
        return timedelta(hours=rng.uniform(1, 12))
    if draw < 0.06:
        return timedelta(minutes=rng.uniform(1, 30))
    return timedelta(seconds=rng.expovariate(1 / 5))


def generate_day(landing: Path, files: int, events_per_file: int, seed: int) -> list[FileVersion]:
    """``files`` NDJSON files, file n holding the events that arrived in the n-th slice of the day."""
    rng = random.Random(seed)
    slice_seconds = 86_400 / files
    versions = []
    for n in range(files):
        arrivals = sorted(rng.uniform(n * slice_seconds, (n + 1) * slice_seconds) for _ in range(events_per_file))
        lines = []
        for i, arrival in enumerate(arrivals):
            happened = max(START, START + timedelta(seconds=arrival) - lag(rng))
            event = make_event(rng, f"f{n:03d}-{i}")
            event["event_time"] = happened.isoformat()
            lines.append(json.dumps(event, separators=(",", ":")))
        body = ("\n".join(lines) + "\n").encode()
        key = f"in/{DAY}/events-{n:03d}.ndjson"
        (landing / key).parent.mkdir(parents=True, exist_ok=True)
        (landing / key).write_bytes(body)
        versions.append(FileVersion("landing", key, hashlib.md5(body, usedforsecurity=False).hexdigest(), len(body)))
    return versions


def schema_text() -> str:
    return (GLUE_SCRIPTS / "schemas" / "events.json").read_text()


def convert(root: Path, files: list[FileVersion], options: dict[str, str]) -> tuple[list[Path], float]:
    """The day as one manifest, group by group as the job's tasks convert it; the staged Parquet files."""
    layout = LakeLayout(str(root / "lake"), str(root / "quarantine"), "events")
    root.mkdir(parents=True)
    schema_path = root / "schema.json"
    schema_path.write_text(schema_text())
    args = JobArguments.from_glue_args(
        {"manifest_id": "m", "day": DAY, "lake_root": layout.lake_root, "quarantine_root": layout.quarantine_root}
        | {"dataset": "events", "schema_uri": str(schema_path), **options}
    )
    manifest = Manifest.for_files(DAY, files)
    storage = Storage(bucket_root=str(root.parent))  # the landing files are beside the layouts' roots
    started = time.monotonic()
    works = plan_work(manifest, parse_schema(schema_text(), args), args, storage, attempt="benchmark")
    outputs = [convert_group(work) for work in works]
    seconds = time.monotonic() - started
    return [Path(part.uri) for output in outputs for part in output.parts], seconds


def row_groups_that_can_match(paths: list[Path], low: object, high: object) -> tuple[int, int]:
    """Row groups in all, and those whose event-time statistics overlap [low, high)."""
    total = matching = 0
    for path in paths:
        metadata = pq.ParquetFile(path).metadata
        column = [metadata.schema.column(i).path for i in range(metadata.num_columns)].index("event_time")
        for g in range(metadata.num_row_groups):
            stats = metadata.row_group(g).column(column).statistics
            total += 1
            matching += stats is None or not stats.has_min_max or (stats.min < high and stats.max >= low)
    return total, matching


def dataset_reads(paths: list[Path], low: object, high: object) -> dict[str, int]:
    """What pyarrow.dataset reads for the predicate: the row groups its pruning keeps, their bytes, the rows."""
    dataset = ds.dataset([str(p) for p in paths], format="parquet")
    predicate = (ds.field("event_time") >= low) & (ds.field("event_time") < high)
    groups = bytes_read = 0
    for fragment in dataset.get_fragments(filter=predicate):
        for piece in fragment.split_by_row_group(predicate):
            [group] = piece.row_groups
            metadata = piece.metadata.row_group(group.id)
            groups += 1
            bytes_read += sum(metadata.column(c).total_compressed_size for c in range(metadata.num_columns))
    rows = dataset.to_table(filter=predicate, columns=["event_id"]).column("event_id")
    return {"groups": groups, "bytes": bytes_read, "rows": len(rows), "ids": hash(tuple(sorted(rows.to_pylist())))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=40)
    parser.add_argument("--events-per-file", type=int, default=6_000)
    parser.add_argument("--hour", type=int, default=13, help="the predicate's hour of the day, UTC")
    parser.add_argument("--row_group_mb", default="1")
    parser.add_argument("--target_file_mb", default="8")
    parser.add_argument("--seed", type=int, default=1)
    cli = parser.parse_args()
    low = START + timedelta(hours=cli.hour)
    high = START + timedelta(hours=cli.hour + 1)
    work = Path(tempfile.mkdtemp(prefix="pruning-benchmark-"))
    try:
        files = generate_day(work / "landing", cli.files, cli.events_per_file, cli.seed)
        size = sum(f.size for f in files)
        print(f"pyarrow {pa.__version__}; {len(files)} files, {size / MiB:.0f} MB of NDJSON", flush=True)
        print(f"predicate: {low} <= event_time < {high}", flush=True)
        reads = {}
        for name, sort_by in (("sorted", "auto"), ("unsorted", "none")):
            root = work / name
            options = {"row_group_mb": cli.row_group_mb, "target_file_mb": cli.target_file_mb, "sort_by": sort_by}
            paths, seconds = convert(root, files, options)
            total, matching = row_groups_that_can_match(paths, low, high)
            read = reads[name] = dataset_reads(paths, low, high)
            parquet_bytes = sum(p.stat().st_size for p in paths)
            print(
                f"{name:<8} {len(paths)} files, {parquet_bytes / MiB:.1f} MB, {total} row groups "
                f"(converted in {seconds:.1f} s): statistics can match {matching}/{total} row groups; "
                f"pyarrow.dataset reads {read['groups']} row groups, {read['bytes'] / MiB:.1f} MB "
                f"({100 * read['bytes'] / parquet_bytes:.0f}% of the bytes) for {read['rows']} rows"
            )
        same = reads["sorted"]["ids"] == reads["unsorted"]["ids"]
        print(f"both layouts return the same {reads['sorted']['rows']} rows: {same}")
        if not same:
            raise SystemExit("the layouts disagree on the rows of the hour")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
