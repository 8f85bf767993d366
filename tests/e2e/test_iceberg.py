"""The Iceberg table end to end: the real DAGs and job on the local stack, a reader of the table probing every step.

Two readers of the Iceberg table (pyiceberg and DuckDB's iceberg extension, each
on the current snapshot) are probed after every S3 write, copy and delete and after
every commit of the runs: neither may see part of a manifest (a manifest's rows are all there or none are), nor a row
twice. A reprocess is one commit per day, and the snapshot before it still reads
the old day. The scenarios both formats share (the sample day, retries, clears,
compensation, overlapping runs) are the parametrised tests of test_end_to_end.py.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from urllib.parse import urlsplit

import duckdb
import duckdb_ext
import pytest

from ndjson_pipeline.clock import utcnow
from ndjson_pipeline.iceberg_table import ACTION_PROPERTY, IcebergDataset
from ndjson_pipeline.manifest import JobResult
from ndjson_pipeline.storage import Storage
from tests.e2e.conftest import (
    configure,
    deploy_next_schema_version,
    iceberg_table,
    ingest,
    land,
    parquet_event_ids,
    quarantined_line_records,
    run,
    table_rows,
    task_states,
    today,
)
from tests.e2e.expectations import assert_day_converted_exactly
from tests.e2e.test_reprocess import STRICT, _land, _xcom
from tools.local_stack import FAKE_CREDENTIALS, REGION

pytestmark = [pytest.mark.e2e, pytest.mark.spark]


def duckdb_table_rows(stack, columns: tuple[str, ...] = ("event_id",), snapshot_id: int | None = None) -> list[dict]:
    """The rows DuckDB's iceberg reader sees (the current snapshot, or ``snapshot_id``), reading the table over S3."""
    table = iceberg_table(stack)
    if table.current_snapshot() is None:
        return []
    with duckdb.connect() as con:
        duckdb_ext.init(con)  # the extensions installed as wheels (requirements-dev.txt), not downloaded
        endpoint = urlsplit(stack.endpoint)
        con.execute(
            "CREATE SECRET (TYPE s3, KEY_ID ?, SECRET ?, REGION ?, ENDPOINT ?, URL_STYLE 'path', USE_SSL false)",
            [FAKE_CREDENTIALS["aws_access_key_id"], FAKE_CREDENTIALS["aws_secret_access_key"], REGION, endpoint.netloc],
        )
        travel = "" if snapshot_id is None else f", snapshot_from_id={int(snapshot_id)}"
        cursor = con.execute(f"SELECT {', '.join(columns)} FROM iceberg_scan(?{travel})", [table.metadata_location])
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


READERS = {"pyiceberg": table_rows, "duckdb": duckdb_table_rows}


class TableReader:
    """What readers of the table see, each time they are probed: rows by manifest.

    pyiceberg reads after every step; DuckDB (an independent reader of the same
    metadata) after every commit, the only steps that change which files a
    snapshot names: between commits it would read what pyiceberg reads.
    """

    def __init__(self, stack) -> None:
        self.stack = stack
        self.seen: list[tuple[str, Counter[str], int]] = []  # (after what and by whom, rows per manifest, duplicates)

    def probe(self, after: str, readers: tuple[str, ...] = ("pyiceberg",)) -> None:
        for reader in readers:
            read = READERS[reader]
            rows = read(self.stack, ("event_id", "_manifest_id"))
            per_manifest = Counter(r["_manifest_id"] for r in rows)
            distinct = len({r["event_id"] for r in rows})
            self.seen.append((f"{after} ({reader})", per_manifest, len(rows) - distinct))


def _probe_every_step(monkeypatch, reader: TableReader) -> None:
    def probed(cls, name, readers=("pyiceberg",)):
        real = getattr(cls, name)

        def call(self, *args, **kwargs):
            outcome = real(self, *args, **kwargs)
            reader.probe(f"{cls.__name__}.{name}", readers)
            return outcome

        monkeypatch.setattr(cls, name, call)

    for name in ("copy", "delete", "write_bytes", "upload_file"):
        probed(Storage, name)
    probed(IcebergDataset, "_commit", tuple(READERS))


@pytest.mark.parametrize("pipeline_stack", ["iceberg"], indirect=True)
def test_a_reader_of_the_table_never_sees_part_of_a_manifest(dags, pipeline_stack, monkeypatch):
    stack = pipeline_stack
    configure(stack, monkeypatch, max_files_per_manifest=3)  # several manifests, several commits
    sample = land(stack, files=6)
    reader = TableReader(stack)
    _probe_every_step(monkeypatch, reader)
    ingested = ingest(dags)
    assert str(ingested.state) == "success", task_states(ingested)
    closed = run(dags, "ndjson_end_of_day", day=sample.day)
    assert str(closed.state) == "success", task_states(closed)
    assert_day_converted_exactly(stack, sample)

    final = {}
    for uri in stack.storage.list(stack.settings.layout.result_uri(sample.day, "").removesuffix(".json")):
        result = JobResult.from_json(stack.storage.read_bytes(uri))
        final[result.manifest_id] = result.rows_out
    assert len([m for m, rows in final.items() if rows]) >= 3
    commits = [s for s in iceberg_table(stack).snapshots() if s.summary[ACTION_PROPERTY] == "publish"]
    assert len(commits) == len([m for m, rows in final.items() if rows]), "one commit per manifest with rows"
    assert len(reader.seen) > 20
    assert len([after for after, _, _ in reader.seen if after.endswith("(duckdb)")]) >= len(commits)
    partial = [
        (after, manifest_id, rows)
        for after, per_manifest, _ in reader.seen
        for manifest_id, rows in per_manifest.items()
        if rows != final[manifest_id]
    ]
    assert not partial, f"a reader saw part of a manifest: {partial[:3]}"
    for name, read in READERS.items():  # each reader ends on the whole table
        seen = Counter(r["_manifest_id"] for r in read(stack, ("event_id", "_manifest_id")))
        assert seen == {m: rows for m, rows in final.items() if rows}, name
    assert not [after for after, _, duplicates in reader.seen if duplicates], "a reader saw a row twice"


@pytest.mark.parametrize("pipeline_stack", ["iceberg"], indirect=True)
def test_a_reprocess_is_one_commit_per_day_and_the_snapshot_before_reads_the_old_day(dags, pipeline_stack, monkeypatch):
    stack = pipeline_stack
    configure(stack, monkeypatch, conversion=STRICT)
    days = [(utcnow() - timedelta(days=1)).date().isoformat(), today()]
    landed = {day: _land(stack, day, files) for day, files in zip(days, (2, 3), strict=True)}
    assert str(ingest(dags).state) == "success"
    for day in days:
        closed = run(dags, "ndjson_end_of_day", day=day)
        assert str(closed.state) == "success", task_states(closed)
    old_rows = set().union(*(plain for plain, _, _ in landed.values()))
    assert sorted(parquet_event_ids(stack)) == sorted(old_rows), "strict v1 loads the plain events only"
    before = iceberg_table(stack).current_snapshot().snapshot_id

    deploy_next_schema_version(stack, monkeypatch, conversion=STRICT)
    reader = TableReader(stack)
    _probe_every_step(monkeypatch, reader)
    real = run(dags, "ndjson_reprocess", day=days[0], last_day=days[1], dry_run=False)
    assert str(real.state) == "success", task_states(real)

    # One overwrite commit per day; a reader saw the old table or a table with whole days replaced, nothing between.
    table = iceberg_table(stack)
    reprocessed = [s for s in table.snapshots() if s.summary[ACTION_PROPERTY] == "reprocess"]
    assert sorted(s.summary["ndjson-pipeline.day"] for s in reprocessed) == sorted(days)
    assert {s.summary.operation.value for s in reprocessed} == {"overwrite"}
    valid = set().union(*(plain | sourced for plain, sourced, _ in landed.values()))
    ids = parquet_event_ids(stack)
    assert len(ids) == len(set(ids)) == len(valid)
    assert set(ids) == valid
    assert "source" in table.schema()._name_to_id  # version 2's field, added by the commit that first brought it
    sizes = {sum(per_manifest.values()) for _, per_manifest, _ in reader.seen}
    day_sizes = {day: (len(plain), len(plain | sourced)) for day, (plain, sourced, _) in landed.items()}
    allowed = {a + b for a in day_sizes[days[0]] for b in day_sizes[days[1]]}
    assert sizes <= allowed, f"a reader saw a day half replaced: {sorted(sizes - allowed)}"
    assert not [after for after, _, duplicates in reader.seen if duplicates], "a reader saw a row twice"
    # Time travel: the snapshot before the reprocess still reads the old days.
    for name, read in READERS.items():
        old = [r["event_id"] for r in read(stack, snapshot_id=before)]
        assert sorted(old) == sorted(old_rows), name
    # The quarantine holds only the lines still bad; the ledger and the day report agree with the table.
    assert len(quarantined_line_records(stack)) == sum(b for _, _, b in landed.values())
    for day, (plain, sourced, _) in landed.items():
        reclosed = run(dags, "ndjson_end_of_day", day=day)
        assert str(reclosed.state) == "success", task_states(reclosed)
        report = _xcom(reclosed, "report_day")
        assert report["complete"]
        assert report["rows_in"] == report["rows_out"] + report["rows_quarantined"]
        assert report["rows_out"] == len(plain | sourced)
