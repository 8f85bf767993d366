"""Reprocessing over the moto server: what the swap keeps, refuses and repeats.

Landing objects are real (the plan selects a day through its listing); the
rebuild's job is played by writing what the job writes into the rebuild layout.
The real job and DAG are exercised in tests/e2e/test_reprocess.py.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from ndjson_pipeline.catalog import DatasetCatalog, TableDefinition, ensure_table
from ndjson_pipeline.conversion import ConversionOptions
from ndjson_pipeline.files import FileState
from ndjson_pipeline.manifest import JobResult, OutputFile
from ndjson_pipeline.steps import PipelineError
from ndjson_pipeline.steps.compacting import plan_compaction
from ndjson_pipeline.steps.reconcile import DayTooOldError, reconcile_day
from ndjson_pipeline.steps.reprocessing import plan_reprocess, rebuild_id_for, sharing_files, swap_day
from ndjson_pipeline.storage import Storage
from tests.factories import DAY, DAY_PATH, EVENTS_SCHEMA, TODAY, file_result, finalise, plan, publish_result
from tools.local_stack import client

RUN = "ndjson_reprocess/manual__1"


def _land(stack, count: int, prefix: str) -> None:
    for i in range(count):
        stack.s3.put_object(Bucket=stack.names.landing_bucket, Key=f"{DAY_PATH}{prefix}{i}.ndjson", Body=b'{"a":1}\n')
    reconcile_day(stack.s3, stack.ledger, stack.settings, stack.names.landing_bucket, DAY, today=TODAY)


def _converted_day(stack, files: int = 3):
    """A day with one SUCCEEDED manifest (3 rows and 1 quarantined line a file), its partition in the catalog."""
    glue = client("glue", stack.endpoint)
    ensure_table(
        glue,
        TableDefinition.for_dataset(
            stack.names.catalog_database, stack.settings.layout, EVENTS_SCHEMA, ConversionOptions()
        ),
    )
    catalog = DatasetCatalog(glue, stack.names.catalog_database, stack.settings.layout)
    _land(stack, files, "m")
    (ref,) = plan(stack)
    publish_result(stack, ref)
    finalise(stack, ref, catalog=catalog)
    return ref, catalog, glue


def _plan_and_rebuild(stack, *, rows_per_file: int = 4, quarantined_per_file: int = 0):
    """The plan of DAY, and every rebuilt manifest's job output in the rebuild layout."""
    planned = plan_reprocess(
        stack.ledger, stack.storage, stack.settings, DAY, requested_by=RUN, dry_run=False, today=TODAY
    )
    rebuild = stack.settings.layout.rebuild(planned.rebuild_id)
    for ref in planned.manifests:
        publish_result(
            stack, ref.manifest, rows_per_file=rows_per_file, quarantined_per_file=quarantined_per_file, layout=rebuild
        )
    return planned, rebuild


def _swap(stack, catalog, sleep=lambda _seconds: None):
    return swap_day(stack.ledger, stack.storage, stack.settings, catalog, DAY, requested_by=RUN, sleep=sleep)


def _location(glue, stack) -> str:
    partition = glue.get_partition(DatabaseName=stack.names.catalog_database, TableName="events", PartitionValues=[DAY])
    return partition["Partition"]["StorageDescriptor"]["Location"]


def _objects(stack) -> dict[str, str]:
    found = {}
    for bucket in (stack.names.lake_bucket, stack.names.quarantine_bucket):
        for page in stack.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            found |= {f"{bucket}/{o['Key']}": o["ETag"] for o in page.get("Contents", [])}
    return found


def test_a_swap_replaces_the_manifests_output_and_keeps_a_manifest_finished_meanwhile(small_batches):
    stack = small_batches
    ref, catalog, glue = _converted_day(stack)
    layout = stack.settings.layout
    old_part = layout.part_uri(DAY, ref.manifest_id, 0, "snappy")
    planned, rebuild = _plan_and_rebuild(stack)
    assert [r.manifest.manifest_id for r in planned.manifests] == [ref.manifest_id]
    # A late file of the day, converted by another manifest between the plan and the swap.
    _land(stack, 1, "late")
    (late,) = plan(stack, owner="ingest/run-2")
    late_parts = publish_result(stack, late)
    finalise(stack, late, catalog=catalog)

    record = _swap(stack, catalog)

    assert _location(glue, stack) == f"{layout.partition_uri(DAY)}/", "the partition points back at the lake"
    assert (record.manifests, record.files, record.files_changed) == (1, 3, 3)
    assert (record.rows_out_before, record.rows_out_after) == (9, 12)
    assert (record.rows_quarantined_before, record.rows_quarantined_after) == (3, 0)
    assert set(stack.storage.list(layout.partition_uri(DAY) + "/")) == {old_part, *late_parts}
    result = JobResult.from_json(stack.storage.read_bytes(layout.result_uri(DAY, ref.manifest_id)))
    assert [o.path for o in result.output_files] == [old_part], "the lake's result names the lake's files"
    files = stack.ledger.get_files(stack.ledger.identities_of(stack.ledger.get_manifest(ref.manifest_id)))
    assert {(f.state, f.rows_out, f.rows_quarantined) for f in files.values()} == {(FileState.DONE, 4, 0)}
    assert not stack.storage.list(rebuild.lake_root + "/"), "the rebuild layout is removed"
    # Repeated (a retried or cleared swap): the record is found, nothing changes again.
    before = _objects(stack)
    assert _swap(stack, catalog) == record
    assert _objects(stack) == before


def test_a_rebuild_that_quarantined_a_converted_file_whole_is_refused_and_changes_nothing(small_batches):
    stack = small_batches
    ref, catalog, glue = _converted_day(stack)
    _, rebuild = _plan_and_rebuild(stack)
    # The rebuild found one raw version gone (its object deleted or overwritten since).
    result = JobResult.from_json(stack.storage.read_bytes(rebuild.result_uri(DAY, ref.manifest_id)))
    gone = result.files[0]
    lost = file_result(gone.identity, FileState.QUARANTINED, reason=f"superseded: {gone.uri} no longer has eTag x")
    (output,) = result.output_files
    kept = (replace(output, rows=output.rows - gone.rows_out),)
    lost_result = replace(result, files=(lost, *result.files[1:]), output_files=kept)
    stack.job_storage.write_bytes(rebuild.result_uri(DAY, ref.manifest_id), lost_result.to_json().encode())
    before = _objects(stack)
    files_before = stack.ledger.get_files(stack.ledger.identities_of(stack.ledger.get_manifest(ref.manifest_id)))

    with pytest.raises(PipelineError, match=r"quarantined 1 whole files.*nothing was swapped") as refused:
        _swap(stack, catalog)
    assert gone.uri in str(refused.value)
    assert _objects(stack) == before
    assert stack.ledger.get_files(list(files_before)) == files_before
    assert _location(glue, stack) == f"{stack.settings.layout.partition_uri(DAY)}/"


def test_a_day_with_a_rebuild_missing_its_result_is_not_swapped(small_batches):
    stack = small_batches
    ref, catalog, _ = _converted_day(stack)
    planned = plan_reprocess(
        stack.ledger, stack.storage, stack.settings, DAY, requested_by=RUN, dry_run=False, today=TODAY
    )
    before = _objects(stack)
    with pytest.raises(PipelineError, match=rf"have no result.*{ref.manifest_id}"):
        _swap(stack, catalog)
    assert _objects(stack) == before
    assert planned.rebuild_id == rebuild_id_for(RUN, DAY)


def test_a_dry_run_writes_nothing_and_a_day_past_the_landing_retention_is_refused(small_batches):
    stack = small_batches
    _converted_day(stack)
    before = _objects(stack)
    dry = plan_reprocess(stack.ledger, stack.storage, stack.settings, DAY, requested_by=RUN, dry_run=True, today=TODAY)
    assert (len(dry.manifests), dry.files, dry.rows_out, dry.rows_quarantined) == (1, 3, 9, 3)
    assert _objects(stack) == before
    too_late = TODAY + timedelta(days=stack.settings.landing_retention_days)
    with pytest.raises(DayTooOldError, match="landing_retention"):
        plan_reprocess(stack.ledger, stack.storage, stack.settings, DAY, requested_by=RUN, dry_run=True, today=too_late)


def test_a_swap_that_died_half_way_is_finished_by_its_retry_with_the_same_figures(small_batches, monkeypatch):
    stack = small_batches
    ref, catalog, glue = _converted_day(stack)
    _, rebuild = _plan_and_rebuild(stack)
    real_restate, calls = type(stack.ledger).restate_files, []

    def dies_once(ledger, manifest_id, outcomes):
        calls.append(manifest_id)
        if len(calls) == 1:
            raise ConnectionError("injected: the worker lost its connection")
        real_restate(ledger, manifest_id, outcomes)

    monkeypatch.setattr(type(stack.ledger), "restate_files", dies_once)
    with pytest.raises(ConnectionError):
        _swap(stack, catalog)
    # Died with the lake's files replaced and the ledger not yet restated: readers are on the rebuilt copy.
    assert _location(glue, stack) == f"{rebuild.partition_uri(DAY)}/"

    record = _swap(stack, catalog)

    assert calls == [ref.manifest_id, ref.manifest_id]
    assert (record.rows_out_before, record.rows_out_after) == (9, 12), "the figures from before the first try"
    assert _location(glue, stack) == f"{stack.settings.layout.partition_uri(DAY)}/"
    files = stack.ledger.get_files(stack.ledger.identities_of(stack.ledger.get_manifest(ref.manifest_id)))
    assert {(f.rows_out, f.rows_quarantined) for f in files.values()} == {(4, 0)}
    assert not stack.storage.list(rebuild.lake_root + "/")


def test_readers_get_the_grace_before_the_lake_changes_and_before_the_rebuilt_copy_goes(small_batches, monkeypatch):
    stack = small_batches
    _, catalog, _ = _converted_day(stack)
    _, rebuild = _plan_and_rebuild(stack)
    events: list[str] = []

    def recorded(cls, name, what):
        real = getattr(cls, name)

        def call(self, *args, **kwargs):
            events.append(what(*args))
            return real(self, *args, **kwargs)

        monkeypatch.setattr(cls, name, call)

    def where(uri) -> str:
        uris = [uri] if isinstance(uri, str) else list(uri)
        return "rebuild" if uris and all(u.startswith(rebuild.lake_root) for u in uris) else "lake"

    recorded(Storage, "copy", lambda source, target: f"copy to {where(target)}")
    recorded(Storage, "write_bytes", lambda uri, data: f"write to {where(uri)}")
    recorded(Storage, "delete", lambda uris: f"delete in {where(uris)}")
    recorded(
        DatasetCatalog, "point_partitions", lambda result, locations, **_: f"point at {where(*locations.values())}"
    )

    _swap(stack, catalog, sleep=lambda seconds: events.append(f"sleep {seconds}"))

    grace = f"sleep {stack.settings.reprocess_grace_seconds}"
    to_rebuild, to_lake = events.index("point at rebuild"), events.index("point at lake")
    first_lake_change = next(i for i, e in enumerate(events) if e.endswith("lake") and i > to_rebuild)
    assert grace in events[to_rebuild:first_lake_change], events
    removal = next(i for i, e in enumerate(events) if e == "delete in rebuild" and i > to_lake)
    assert grace in events[to_lake:removal], events


def test_a_manifest_with_a_file_quarantined_whole_keeps_its_outcome_in_the_lakes_result(small_batches):
    stack = small_batches
    _land(stack, 2, "m")
    (ref,) = plan(stack)
    publish_result(stack, ref)
    result = JobResult.from_json(stack.storage.read_bytes(stack.settings.layout.result_uri(DAY, ref.manifest_id)))
    whole = file_result(result.files[1].identity, FileState.QUARANTINED, reason="not decodable: truncated gzip")
    (output,) = result.output_files
    quarantined = replace(
        result, files=(result.files[0], whole), output_files=(replace(output, rows=result.files[0].rows_out),)
    )
    stack.job_storage.write_bytes(
        stack.settings.layout.result_uri(DAY, ref.manifest_id), quarantined.to_json().encode()
    )
    finalise(stack, ref)
    planned, _ = _plan_and_rebuild(stack)
    assert planned.files == 1, "the file quarantined whole is not rebuilt"

    _swap(stack, None)

    lake_result = JobResult.from_json(stack.storage.read_bytes(stack.settings.layout.result_uri(DAY, ref.manifest_id)))
    assert {f.identity: f.outcome for f in lake_result.files} == {
        result.files[0].identity: FileState.DONE,
        whole.identity: FileState.QUARANTINED,
    }
    lake_result.check_reconciled(stack.ledger.manifest_of(stack.ledger.get_manifest(ref.manifest_id)))


def test_a_reprocess_of_a_compacted_day_takes_in_every_manifest_sharing_a_file_however_indirectly():
    """m1 shares a file with m2, m2 another with m3: rebuilding m1 must replace both files, so all three."""

    def result(manifest_id: str, *paths: str) -> JobResult:
        return JobResult(manifest_id, DAY, (), tuple(OutputFile(p, 10, 1) for p in paths))

    results = {
        "m1": result("m1", "a"),
        "m2": result("m2", "a", "b"),
        "m3": result("m3", "b"),
        "m4": result("m4", "c"),
    }
    assert sharing_files(results, {"m1"}) == {"m1", "m2", "m3"}
    assert sharing_files(results, {"m4"}) == {"m4"}
    assert sharing_files(results, {"gone"}) == {"gone"}  # a manifest with no result shares nothing


def test_the_compact_action_refuses_an_iceberg_table(stack):
    """Glue's table optimizer compacts an Iceberg table; rewriting files under its snapshots would orphan them."""
    settings = stack.settings.replace(table_format="iceberg")
    with pytest.raises(PipelineError, match="Iceberg table is compacted by Glue's table optimizer"):
        plan_compaction(stack.ledger, stack.storage, settings, DAY, requested_by=RUN, dry_run=True, today=TODAY)
