"""The dataset as an Apache Iceberg table of the Glue Data Catalog (``table_format`` "iceberg").

The Glue job writes Parquet with Arrow as in the Hive layout; what makes it
visible is a commit on the Airflow side, through pyiceberg's ``GlueCatalog``:

- ``publish``: a finished manifest's files become part of the table in one
  commit (one snapshot), whatever partitions they are in. The commit replaces
  whatever the table held of that manifest before (an earlier attempt, a rerun),
  so a retry after a crash, a clear or a rerun ends with exactly the manifest's
  current files, and a commit that finds them there already changes nothing.
- ``withdraw``: a compensation removes by a commit what a compensated run had
  committed; a manifest never committed leaves the table untouched.
- ``replace_manifests``: a reprocess puts a day's rebuilt manifests in place of
  the old ones in one commit; the snapshot before it stays readable (time
  travel) until the snapshot retention expires it.

A manifest's rows are found by the lineage column ``_manifest_id`` (so
``table_format`` "iceberg" needs ``conversion.lineage``), whose statistics the
table keeps in full: a file holding only that manifest's rows is dropped whole,
one that a compaction merged with others is rewritten without them. Every commit
is optimistic (Glue's ``UpdateTable`` with the table version it read) and is
retried from a fresh read when another commit won the race. Each snapshot's
summary names the action and the manifests, for audit.

The table itself (its schema, partitioning and properties) is ``iceberg_definition``'s.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

import pyarrow.parquet as pq
from pyiceberg.conversions import from_bytes
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.expressions import BooleanExpression, In
from pyiceberg.io.pyarrow import (
    _check_pyarrow_schema_compatible,
    compute_statistics_plan,
    data_file_statistics_from_parquet_metadata,
    parquet_path_to_id_mapping,
)
from pyiceberg.manifest import DataFile, DataFileContent, FileFormat
from pyiceberg.transforms import IdentityTransform
from pyiceberg.typedef import Record
from pyiceberg.types import (
    StringType,
)

from ndjson_pipeline.catalog import CatalogError
from ndjson_pipeline.iceberg_definition import MANIFEST_COLUMN, SCHEMA_VERSION_PROPERTY, iceberg_schema
from ndjson_pipeline.layout import PARTITION_COLUMN, LakeLayout
from ndjson_pipeline.manifest import JobResult, ManifestRef

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog
    from pyiceberg.table import Table, Transaction

log = logging.getLogger(__name__)

# Snapshot summary keys: what made each snapshot, for audit and for the tests.
ACTION_PROPERTY = "ndjson-pipeline.action"  # publish | withdraw | reprocess
MANIFESTS_PROPERTY = "ndjson-pipeline.manifest-ids"
COMMIT_ATTEMPTS = 12


@dataclass(frozen=True)
class IcebergDataset:
    """The dataset's Iceberg table as the finaliser, compensations and reprocesses change it.

    :param catalog: pyiceberg's ``GlueCatalog`` (its Glue client and its S3 file IO as the task's identity).
    :param database: the catalog database holding the dataset's table.
    :param layout: where the dataset lives; its name is the table's.
    :param sleep: how a lost commit race waits before the next try.
    """

    catalog: Catalog
    database: str
    layout: LakeLayout
    sleep: Callable[[float], None] = time.sleep

    @property
    def commits_manifests(self) -> bool:
        return True

    @property
    def identifier(self) -> tuple[str, str]:
        return (self.database, self.layout.dataset)

    def load(self) -> Table:
        return self.catalog.load_table(self.identifier)

    def publish(self, ref: ManifestRef, result: JobResult) -> str:
        """Commit a finished manifest's files, in place of whatever the table held of it; what was done."""
        return self._replace([ref.manifest_id], [result], action="publish", day=ref.day)

    def withdraw(self, ref: ManifestRef) -> str:
        """Remove by a commit whatever the table holds of a compensated manifest (nothing: no commit)."""
        return self._replace([ref.manifest_id], [], action="withdraw", day=ref.day)

    def replace_manifests(self, day: str, results: dict[str, JobResult], rebuild_id: str) -> str:
        """A reprocess's one commit: the day's rebuilt manifests' files in place of everything of those manifests."""
        return self._replace(sorted(results), list(results.values()), action="reprocess", day=day, rebuild=rebuild_id)

    def _replace(
        self, manifest_ids: list[str], results: list[JobResult], *, action: str, day: str, rebuild: str | None = None
    ) -> str:
        wanted = {o.path: o for result in results for o in result.output_files}
        summary = {ACTION_PROPERTY: action, MANIFESTS_PROPERTY: ",".join(manifest_ids), "ndjson-pipeline.day": day}
        if rebuild:
            summary["ndjson-pipeline.rebuild-id"] = rebuild
        newest = max(results, key=lambda r: r.schema_version or 0, default=None)

        def build(table: Table, txn: Transaction) -> str | None:
            column = table.schema().find_field(MANIFEST_COLUMN).field_id
            committed = self._files_of(table, manifest_ids)
            whole = [f for f in committed if _holds_only(f, column, manifest_ids)]
            if {f.file_path for f in committed} == set(wanted) and len(whole) == len(committed):
                return None
            if newest is not None and newest.schema is not None:
                self._evolve_schema(table, txn, newest, newest.schema["fields"])
            added = [self._data_file(table, txn, path) for path in sorted(wanted)]
            if len(whole) < len(committed):
                # A compaction merged some of these rows with other manifests' into files: those are rewritten
                # without them (and the whole files dropped) by one delete, then the new files are appended.
                txn.delete(_of(manifest_ids), snapshot_properties=summary)
                whole = []
            if whole:
                with txn.update_snapshot(snapshot_properties=summary).overwrite() as overwrite:
                    for data_file in whole:
                        overwrite.delete_data_file(data_file)
                    for data_file in added:
                        overwrite.append_data_file(data_file)
            elif added:
                with txn.update_snapshot(snapshot_properties=summary).fast_append() as append:
                    for data_file in added:
                        append.append_data_file(data_file)
            return f"{len(added)} files added, {len(committed)} replaced"

        what = self._commit(build, f"{action} of {', '.join(manifest_ids[:3])}{'...' if len(manifest_ids) > 3 else ''}")
        outcome = what or "already committed"
        log.info(
            "table %s.%s: %s of %s: %s",
            *self.identifier,
            action,
            ",".join(manifest_ids),
            outcome,
            extra={"day": day, "manifests": len(manifest_ids), "commit": outcome},
        )
        return outcome

    def _commit(self, build: Callable[[Table, Transaction], str | None], what: str) -> str | None:
        """Build the change on a fresh read of the table and commit it; a lost race is retried from a new read."""
        for attempt in range(1, COMMIT_ATTEMPTS + 1):
            table = self.load()
            txn = table.transaction()
            done = build(table, txn)
            if done is None:
                return None
            try:
                txn.commit_transaction()
                return done
            except CommitFailedException as exc:
                log.info("table %s.%s: %s lost a commit race (try %d): %s", *self.identifier, what, attempt, exc)
                self.sleep(min(2.0, 0.05 * 2**attempt) * random.uniform(0.5, 1.5))  # noqa: S311 - jitter only
        raise CatalogError(
            f"table {self.database}.{self.layout.dataset}: {what} lost {COMMIT_ATTEMPTS} commit races in a row"
        )

    def _files_of(self, table: Table, manifest_ids: list[str]) -> list[DataFile]:
        """The table's current data files that may hold rows of these manifests (their statistics say so)."""
        if table.current_snapshot() is None:
            return []
        return [task.file for task in table.scan(row_filter=_of(manifest_ids)).plan_files()]

    def _evolve_schema(self, table: Table, txn: Transaction, result: JobResult, fields: list[dict[str, Any]]) -> None:
        """Add the fields the result's schema has and the table lacks (columns keep their ids)."""
        written = iceberg_schema(fields, with_dt=False)
        current = table.schema()
        if set(written._name_to_id) <= set(current._name_to_id):
            return
        try:
            with txn.update_schema() as update:
                update.union_by_name(written)
            txn.set_properties({SCHEMA_VERSION_PROPERTY: str(result.schema_version or 0)})
        except ValueError as exc:
            raise CatalogError(
                f"table {self.database}.{self.layout.dataset}: schema version {result.schema_version} of manifest "
                f"{result.manifest_id} cannot evolve the table's schema: {exc}"
            ) from exc

    def _data_file(self, table: Table, txn: Transaction, path: str) -> DataFile:
        """One output file as a data file of the table: its statistics from its footer, its partition from its dt."""
        metadata = txn.table_metadata
        schema = metadata.schema()
        dt = LakeLayout.dt_of(path)
        if dt is None:
            raise CatalogError(f"output file {path} is in no {PARTITION_COLUMN}= partition")
        input_file = table.io.new_input(path)
        with input_file.open() as stream:
            footer = pq.read_metadata(stream)
        try:
            _check_pyarrow_schema_compatible(schema, footer.schema.to_arrow_schema(), format_version=2)
        except ValueError as exc:
            raise CatalogError(
                f"output file {path} does not fit table {self.database}.{self.layout.dataset}: {exc}"
            ) from exc
        statistics = data_file_statistics_from_parquet_metadata(
            parquet_metadata=footer,
            stats_columns=compute_statistics_plan(schema, metadata.properties),
            parquet_column_mapping=parquet_path_to_id_mapping(schema),
        )
        spec = metadata.spec()
        transform = spec.fields[0].transform
        value: Any = dt if isinstance(transform, IdentityTransform) else (date.fromisoformat(dt) - _EPOCH).days
        return DataFile.from_args(
            content=DataFileContent.DATA,
            file_path=path,
            file_format=FileFormat.PARQUET,
            partition=Record(value),
            file_size_in_bytes=len(input_file),
            sort_order_id=None,
            spec_id=metadata.default_spec_id,
            equality_ids=None,
            key_metadata=None,
            **statistics.to_serialized_dict(),
        )


_EPOCH = date(1970, 1, 1)


def _of(manifest_ids: list[str]) -> BooleanExpression:
    # In's own __init__ takes (term, literals); mypy sees the pydantic fields behind it instead.
    return In(MANIFEST_COLUMN, manifest_ids)  # type: ignore[call-arg, arg-type]


def _holds_only(data_file: DataFile, column: int, manifest_ids: list[str]) -> bool:
    """Whether every row of the file belongs to one of these manifests: equal bounds, no nulls."""
    lower, upper = data_file.lower_bounds.get(column), data_file.upper_bounds.get(column)
    if lower is None or upper is None or data_file.null_value_counts.get(column, 0):
        return False
    low = from_bytes(StringType(), lower)
    return bool(low == from_bytes(StringType(), upper) and low in manifest_ids)
