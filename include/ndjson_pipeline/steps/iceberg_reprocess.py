"""Reprocessing into an Iceberg table: a day's rebuilt manifests swapped in by one commit.

The rebuild itself is the Hive layout's (``reprocessing``): each SUCCEEDED
manifest of the day converted again, under its id, into the reprocess's layout,
and the same checks before anything changes. What differs is the swap. Readers
of an Iceberg table see the files its current snapshot names, so one commit
that drops every file of the rebuilt manifests and adds the rebuilt ones is the
whole switch, atomic for every reader: no pointing of partitions, no carrying of
late files (other manifests' files stay in the table), no grace period (a query
planned on the previous snapshot reads its files, which stay in place until the
snapshot retention expires that snapshot; until then it can be read by time
travel). So the rebuilt Parquet is copied into the dataset under names of its
own (``<rebuild_id>-part-...``: the files it replaces keep theirs for the older
snapshots) before the commit names it; the lake's quarantined lines, result and
the ledger's row counts are replaced as in the Hive layout.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, cast

from ndjson_pipeline.catalog import DatasetTable
from ndjson_pipeline.layout import LakeLayout
from ndjson_pipeline.ledger import Ledger
from ndjson_pipeline.manifest import JobResult
from ndjson_pipeline.settings import PipelineSettings
from ndjson_pipeline.steps.reprocessing import (
    ReprocessRecord,
    checked_rebuild,
    finish_swap,
    rebuild_id_for,
    swap_record,
)
from ndjson_pipeline.steps.swapping import remove_work, replace_manifest_output
from ndjson_pipeline.storage import Storage

if TYPE_CHECKING:
    from ndjson_pipeline.iceberg_table import IcebergDataset


def swap_day_by_commit(
    ledger: Ledger,
    storage: Storage,
    settings: PipelineSettings,
    table: DatasetTable,
    day: str,
    *,
    requested_by: str,
    triggered_by: str | None = None,
) -> ReprocessRecord:
    """Put the day's rebuilt manifests in place of the old ones by one commit; return the record.

    Safe to repeat: a commit that finds the rebuilt files in the table already
    changes nothing, and once the record exists a retry only removes what is left.
    """
    iceberg = cast("IcebergDataset", table)
    lake = settings.layout
    rebuild_id = rebuild_id_for(requested_by, day)
    rebuild = lake.rebuild(rebuild_id)
    done = swap_record(storage, settings, day, requested_by)
    if done is not None:
        remove_work(storage, rebuild)
        return done
    rebuilt, old = checked_rebuild(storage, lake, rebuild, day)
    rebuilt = {m: _copied_into_dataset(storage, lake, rebuild_id, result) for m, result in rebuilt.items()}
    iceberg.replace_manifests(day, rebuilt, rebuild_id)
    for manifest_id, result in rebuilt.items():
        replace_manifest_output(
            storage, lake, rebuild, day, manifest_id, result, old[manifest_id], set(), move_data=False
        )
        ledger.restate_files(manifest_id, result.files)
    record = finish_swap(storage, settings, day, requested_by, triggered_by, rebuilt, old)
    remove_work(storage, rebuild)
    return record


def _copied_into_dataset(storage: Storage, lake: LakeLayout, rebuild_id: str, result: JobResult) -> JobResult:
    """``result`` with its Parquet copied from the rebuild's layout (under ``_work/``, which expires) into the
    dataset's partitions, under names no other snapshot uses."""
    copied = []
    for output in result.output_files:
        dt, name = LakeLayout.dt_of(output.path), output.path.rsplit("/", 1)[-1]
        if dt is None:
            raise ValueError(f"rebuilt file {output.path} is not in a partition")
        target = f"{lake.partition_uri(dt)}/{rebuild_id}-{name}"
        storage.copy(output.path, target)
        copied.append(replace(output, path=target))
    return replace(result, output_files=tuple(copied))
