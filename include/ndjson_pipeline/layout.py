"""Where every object of the pipeline lives: the one owner of object names, for the job and the Airflow side.

::

    <lake_root>/<dataset>/dt=YYYY-MM-DD/part-<manifest_id>-<group><codec>.parquet   the dataset: published files only
    <lake_root>/_work/<dataset>/staging/<manifest_id>/<attempt>/...                  a run's work in progress
    <lake_root>/_pipeline/manifests/dt=<day>/<manifest_id>.json                     what to convert
    <lake_root>/_pipeline/published/dt=<day>/<manifest_id>.json                     what a run published (PublishLog)
    <lake_root>/_pipeline/results/dt=<day>/<manifest_id>.json                       the job result, written last
    <lake_root>/_pipeline/reports/dt=<day>/report.json                              the day report
    <lake_root>/_pipeline/maintenance/dt=<day>/<action>-<run>.json                  an operator action's record
    <quarantine_root>/<dataset>/dt=<day>/manifest=<manifest_id>/lines-NNNNN.json    quarantined lines
    <quarantine_root>/<dataset>/dt=<day>/manifest=<manifest_id>/files.json          files quarantined whole
    <lake_root>/_work/<dataset>/rebuilds/<rebuild_id>/...        a reprocess's layout (``rebuild``), gone after its swap
    <lake_root>/_work/<dataset>/compactions/<compaction_id>/...  a compaction's layout (``compaction``), likewise
    <quarantine_root>/_work/<dataset>/{rebuilds,compactions}/<id>/...   their quarantine

Roots are ``s3://<bucket>`` on AWS, or local directories in tests. Names derive
from the manifest id, never from an attempt, so every attempt of a manifest
writes each object under the same name.

Nothing is ever written under ``<dataset>/`` before it is published: work in
progress lives under ``_work/<dataset>/``, a sibling of the dataset, so a reader
that lists the dataset's directory (DuckDB's ``<dataset>/**/*.parquet``, Polars,
pyarrow.dataset, Spark) sees published files only, whatever its rules for
``_`` prefixes. The catalog may point a partition into ``_work/`` for a while (a
reprocess's or a compaction's switch): readers of the catalog read that copy.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Protocol

PIPELINE_PREFIX = "_pipeline"
# Beside the datasets, never inside one: see the module docstring.
WORK_PREFIX = "_work"
PARTITION_COLUMN = "dt"
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._=-]+")
_SAFE_ID = re.compile(r"[A-Za-z0-9_-]+")
CODEC_SUFFIX = {"snappy": ".snappy", "zstd": ".zstd", "gzip": ".gz", "none": ""}


class LayoutError(ValueError):
    """A root of the layout is not usable; ``root`` names it."""

    def __init__(self, root: str, problem: str) -> None:
        super().__init__(f"{root} {problem}")
        self.root = root
        self.problem = problem


class ObjectReader(Protocol):
    def read_bytes_if_exists(self, uri: str) -> bytes | None: ...


class ObjectWriter(ObjectReader, Protocol):
    def write_bytes(self, uri: str, data: bytes) -> None: ...


@dataclass(frozen=True)
class LakeLayout:
    """Object names of one dataset in one lake and quarantine."""

    lake_root: str
    quarantine_root: str
    dataset: str

    def __post_init__(self) -> None:
        for name in ("lake_root", "quarantine_root"):
            value = getattr(self, name)
            if not value or value.endswith("/"):
                raise LayoutError(name, f"must be a URI without a trailing '/', not {value!r}")

    # ---------------------------------------------------------------- the dataset

    @property
    def dataset_uri(self) -> str:
        return f"{self.lake_root}/{self.dataset}"

    def partition_uri(self, dt: str) -> str:
        return f"{self.dataset_uri}/{PARTITION_COLUMN}={dt}"

    def part_prefix(self, dt: str, manifest_id: str) -> str:
        """Every output file of a manifest in one partition starts with this."""
        return f"{self.partition_uri(dt)}/part-{manifest_id}-"

    def part_uri(self, dt: str, manifest_id: str, group: int, compression: str) -> str:
        return f"{self.part_prefix(dt, manifest_id)}{group:05d}{CODEC_SUFFIX[compression]}.parquet"

    @staticmethod
    def dt_of(uri: str) -> str | None:
        """The partition value of an output file's URI, or None when it is not in a partition."""
        marker = f"/{PARTITION_COLUMN}="
        return uri.split(marker, 1)[1].split("/", 1)[0] if marker in uri else None

    @property
    def work_uri(self) -> str:
        """Where this layout's runs and reprocesses keep what they have not published yet."""
        return f"{self.lake_root}/{WORK_PREFIX}/{self.dataset}"

    def staging_uri(self, manifest_id: str) -> str:
        return f"{self.work_uri}/staging/{manifest_id}"

    def rebuild(self, rebuild_id: str) -> LakeLayout:
        """The layout a reprocess converts into: this one's names under ``_work/<dataset>/rebuilds/<rebuild_id>``."""
        return self._work_layout("rebuilds", "rebuild_id", rebuild_id)

    def compaction(self, compaction_id: str) -> LakeLayout:
        """The layout a compaction writes into: this one's names under ``_work/<dataset>/compactions/<id>``."""
        return self._work_layout("compactions", "compaction_id", compaction_id)

    def _work_layout(self, kind: str, id_name: str, work_id: str) -> LakeLayout:
        """A layout of this one's names under ``_work/<dataset>/<kind>/<work_id>``, in both buckets.

        Outside the dataset prefix, so no reader of the dataset's directory sees
        it; a rebuilt object's name relative to its root is the name it replaces.
        """
        if not _SAFE_ID.fullmatch(work_id):
            raise LayoutError(id_name, f"must be letters, digits, '-' or '_', not {work_id!r}")
        suffix = f"{WORK_PREFIX}/{self.dataset}/{kind}/{work_id}"
        return LakeLayout(f"{self.lake_root}/{suffix}", f"{self.quarantine_root}/{suffix}", self.dataset)

    def moved_to(self, uri: str, other: LakeLayout) -> str:
        """``uri`` of this layout (dataset, pipeline object or quarantine) under the same name in ``other``."""
        for mine, theirs in ((self.quarantine_root, other.quarantine_root), (self.lake_root, other.lake_root)):
            if uri.startswith(mine + "/"):
                return theirs + uri[len(mine) :]
        raise LayoutError("uri", f"{uri} is not under {self.lake_root} or {self.quarantine_root}")

    # ---------------------------------------------------------------- pipeline objects

    def _pipeline_uri(self, kind: str, day: str, name: str) -> str:
        return f"{self.lake_root}/{PIPELINE_PREFIX}/{kind}/{PARTITION_COLUMN}={day}/{name}"

    def manifest_uri(self, day: str, manifest_id: str) -> str:
        return self._pipeline_uri("manifests", day, f"{manifest_id}.json")

    def result_uri(self, day: str, manifest_id: str) -> str:
        return self._pipeline_uri("results", day, f"{manifest_id}.json")

    def results_prefix(self, day: str) -> str:
        return self._pipeline_uri("results", day, "")

    def publish_log_uri(self, day: str, manifest_id: str) -> str:
        return self._pipeline_uri("published", day, f"{manifest_id}.json")

    def replaced_result_uri(self, day: str, manifest_id: str) -> str:
        """In a reprocess's layout: the lake's result of a manifest it replaces, as it was before the swap."""
        return self._pipeline_uri("replaced", day, f"{manifest_id}.json")

    def report_uri(self, day: str) -> str:
        return self._pipeline_uri("reports", day, "report.json")

    def usage_prefix(self, day: str) -> str:
        return self._pipeline_uri("usage", day, "")

    def usage_uri(self, day: str, name: str) -> str:
        """A usage record; ``name`` (a task try, a manifest's job run) is made safe for an object name."""
        return self._pipeline_uri("usage", day, f"{_UNSAFE_NAME.sub('_', name).strip('_')}.json")

    def maintenance_prefix(self, day: str) -> str:
        return self._pipeline_uri("maintenance", day, "")

    def maintenance_uri(self, day: str, name: str) -> str:
        """The record of one operator action on the day; ``name`` (action and run) is made safe for an object name."""
        return self._pipeline_uri("maintenance", day, f"{_UNSAFE_NAME.sub('_', name).strip('_')}.json")

    # ---------------------------------------------------------------- quarantine

    def quarantine_uri(self, day: str, manifest_id: str) -> str:
        return f"{self.quarantine_root}/{self.dataset}/{PARTITION_COLUMN}={day}/manifest={manifest_id}"

    def quarantined_lines_uri(self, day: str, manifest_id: str, part: int) -> str:
        return f"{self.quarantine_uri(day, manifest_id)}/lines-{part:05d}.json"

    def quarantined_files_uri(self, day: str, manifest_id: str) -> str:
        return f"{self.quarantine_uri(day, manifest_id)}/files.json"


@dataclass(frozen=True)
class PublishLog:
    """Every object a manifest's runs published or are about to publish.

    A run writes it before its first copy, so whoever compensates a failed run
    can remove its partial output wherever it landed.
    """

    uris: frozenset[str]

    @classmethod
    def read(cls, store: ObjectReader, uri: str) -> PublishLog | None:
        data = store.read_bytes_if_exists(uri)
        return None if data is None else cls(frozenset(json.loads(data)["uris"]))

    def write(self, store: ObjectWriter, uri: str) -> None:
        store.write_bytes(uri, json.dumps({"uris": sorted(self.uris)}).encode())
