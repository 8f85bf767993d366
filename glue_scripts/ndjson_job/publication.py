"""Publication: staged files to their final names, this manifest's stale files removed, the publish log kept.

Only names carrying the manifest's id are ever deleted, so other manifests' files
are never touched. Before the first copy, the publish log lists every object this
and earlier attempts published, so a compensation that gives up on the manifest
can remove partial output wherever it landed.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from ndjson_job.groups import GroupOutput
from ndjson_pipeline.conversion import JobArguments
from ndjson_pipeline.layout import LakeLayout, PublishLog
from ndjson_pipeline.manifest import Manifest
from ndjson_pipeline.storage import Storage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Publication:
    """What one attempt publishes: final URI -> staged URI, rows and bytes of the Parquet files, the files record."""

    copies: dict[str, str]
    rows: dict[str, int]
    sizes: dict[str, int]
    files_record: bytes | None


def plan_publication(
    outputs: list[GroupOutput], args: JobArguments, manifest: Manifest, quarantined_files: list[dict[str, Any]]
) -> Publication:
    copies: dict[str, str] = {}
    rows: dict[str, int] = {}
    sizes: dict[str, int] = {}
    layout, staged_lines = args.layout, []
    for output in sorted(outputs, key=lambda o: o.index):
        for part in output.parts:
            final = layout.part_uri(part.dt, manifest.manifest_id, output.index, args.options.compression)
            copies[final], rows[final], sizes[final] = part.uri, part.rows, part.bytes
        if output.lines is not None:
            staged_lines.append(output.lines.uri)
    for n, uri in enumerate(staged_lines):
        copies[layout.quarantined_lines_uri(manifest.day, manifest.manifest_id, n)] = uri
    record = (
        "".join(json.dumps(f, sort_keys=True) + "\n" for f in quarantined_files).encode() if quarantined_files else None
    )
    return Publication(copies=copies, rows=rows, sizes=sizes, files_record=record)


def publish(
    storage: Storage, publication: Publication, layout: LakeLayout, manifest: Manifest, stale_dts: set[str]
) -> None:
    """Copy staged files to their final names, then delete this manifest's files that are not in the new set."""
    day, manifest_id = manifest.day, manifest.manifest_id
    files_uri = layout.quarantined_files_uri(day, manifest_id)
    keep = set(publication.copies)
    if publication.files_record is not None:
        keep.add(files_uri)
    log_uri = layout.publish_log_uri(day, manifest_id)
    earlier = PublishLog.read(storage, log_uri)
    logged = set(earlier.uris) if earlier else set()
    PublishLog(frozenset(logged | keep)).write(storage, log_uri)
    for final, staged in sorted(publication.copies.items()):
        storage.copy(staged, final)
    if publication.files_record is not None:
        storage.write_bytes(files_uri, publication.files_record)
    existing: dict[str, int] = {uri: 0 for uri in logged}
    for dt in sorted(stale_dts):
        existing |= storage.list(layout.part_prefix(dt, manifest_id))
    existing |= storage.list(layout.quarantine_uri(day, manifest_id) + "/")
    stale = sorted(set(existing) - keep)
    if stale:
        log.info(
            "deleting %s stale file(s) of manifest %s",
            len(stale),
            manifest_id,
            extra={"manifest_id": manifest_id, "day": day, "stale_files": len(stale)},
        )
        storage.delete(stale)
    PublishLog(frozenset(keep)).write(storage, log_uri)


def previous_dts(previous_result: bytes) -> set[str]:
    """The partitions an earlier result of the manifest published into (empty when it cannot be read)."""
    try:
        paths = [f["path"] for f in json.loads(previous_result).get("output_files", [])]
    except (ValueError, AttributeError, TypeError):
        return set()
    return {dt for dt in map(LakeLayout.dt_of, paths) if dt}
