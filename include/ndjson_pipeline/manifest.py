"""The batch manifest: the one contract between the batching task and the Glue job.

A manifest lists exact file versions: the files of the registration groups one
claim took, in one transaction (``ledger.claims``). Its id is derived from those
files and how often they were claimed before (``manifest_id_for``), so writing
the same claim twice yields the same id and the same bytes. The ledger's
manifest record names the groups; the files are theirs.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, replace
from typing import Any

from ndjson_pipeline.drift import Drift
from ndjson_pipeline.files import JOB_OUTCOMES, FileState, FileVersion

MANIFEST_FORMAT = 1
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_MANIFEST_ID = re.compile(r"^\d{8}-[0-9a-f]{20}$")


class ManifestError(ValueError):
    """A manifest document is malformed; the message names the field at fault."""


@dataclass(frozen=True)
class Manifest:
    """One batch of file versions of one day.

    ``generation`` counts earlier claims of these files, so a batch claimed again
    after a failure gets a new id while a retried write of the same claim keeps it.
    """

    manifest_id: str
    day: str
    files: tuple[FileVersion, ...]
    generation: int = 0

    @classmethod
    def for_files(cls, day: str, files: list[FileVersion] | tuple[FileVersion, ...], generation: int = 0) -> Manifest:
        ordered = tuple(sorted(files, key=lambda f: f.identity))
        return cls(manifest_id=manifest_id_for(day, ordered, generation), day=day, files=ordered, generation=generation)

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def to_json(self) -> str:
        doc = {
            "format": MANIFEST_FORMAT,
            "manifest_id": self.manifest_id,
            "day": self.day,
            "generation": self.generation,
            "files": [asdict(f) for f in self.files],
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> Manifest:
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ManifestError(f"manifest is not valid JSON: {exc}") from exc
        if not isinstance(doc, dict):
            raise ManifestError("manifest must be a JSON object")
        if doc.get("format") != MANIFEST_FORMAT:
            raise ManifestError(f"manifest format {doc.get('format')!r} is not {MANIFEST_FORMAT}")
        day = doc.get("day")
        if not isinstance(day, str) or not _DAY.match(day):
            raise ManifestError(f"manifest day {day!r} is not YYYY-MM-DD")
        raw_files = doc.get("files")
        if not isinstance(raw_files, list) or not raw_files:
            raise ManifestError("manifest files must be a non-empty list")
        files = []
        for index, raw in enumerate(raw_files):
            try:
                files.append(
                    FileVersion(
                        bucket=str(raw["bucket"]),
                        key=str(raw["key"]),
                        etag=str(raw["etag"]),
                        size=int(raw["size"]),
                        version_id=raw.get("version_id"),
                    )
                )
            except (KeyError, TypeError, ValueError) as exc:
                raise ManifestError(f"manifest files[{index}] is invalid: {exc!r}") from exc
        seen: set[str] = set()
        for file in files:
            if file.identity in seen:
                raise ManifestError(f"manifest lists {file.identity} more than once")
            seen.add(file.identity)
        generation = doc.get("generation", 0)
        if not isinstance(generation, int) or generation < 0:
            raise ManifestError(f"manifest generation {generation!r} is not a non-negative integer")
        manifest_id = doc.get("manifest_id")
        if (
            not isinstance(manifest_id, str)
            or not _MANIFEST_ID.match(manifest_id)
            or manifest_id[:8] != day.replace("-", "")
        ):
            raise ManifestError(f"manifest_id {manifest_id!r} is not a manifest id of {day} (YYYYMMDD-<20 hex digits>)")
        return cls(manifest_id, day, tuple(sorted(files, key=lambda f: f.identity)), generation)


@dataclass(frozen=True)
class ManifestRef:
    """What tasks pass between each other: a reference to a manifest, never its file list."""

    manifest_id: str
    day: str
    files: int
    bytes: int

    @classmethod
    def of(cls, manifest: Manifest) -> ManifestRef:
        return cls(manifest.manifest_id, manifest.day, len(manifest.files), manifest.total_bytes)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ManifestRef:
        return cls(**raw)


def manifest_id_for(day: str, files: tuple[FileVersion, ...] | list[FileVersion], generation: int = 0) -> str:
    digest = hashlib.sha256(f"{day}/{generation}".encode())
    for identity in sorted(f.identity for f in files):
        digest.update(b"\0" + identity.encode())
    return f"{day.replace('-', '')}-{digest.hexdigest()[:20]}"


# --- The job result: the one contract between the Glue job and the finalise task. ---

RESULT_FORMAT = 1
# The start of the reason of a version the job could not read because S3 no longer holds it with its eTag.
SUPERSEDED = "superseded"


class ReconciliationError(ValueError):
    """Rows in do not equal rows out plus rows quarantined for some file."""


@dataclass(frozen=True)
class FileResult:
    """What the job did with one file version of a manifest.

    ``rows_in`` counts the file's non-blank lines. A file that converted (bad
    lines aside) is DONE; a file that could not be decoded at all, or whose
    version is gone from S3 (``SUPERSEDED``), is QUARANTINED as a whole with a
    reason and zero rows out.
    """

    identity: str
    uri: str
    outcome: FileState
    reason: str | None = None
    rows_in: int = 0
    rows_out: int = 0
    rows_rescued: int = 0
    rows_quarantined: int = 0

    @property
    def reconciled(self) -> bool:
        return self.rows_in == self.rows_out + self.rows_quarantined


@dataclass(frozen=True)
class OutputFile:
    """A Parquet file a manifest's rows are in, and how many of them.

    ``sources``: in a compaction's result, the identities of the files whose rows it merged.
    """

    path: str
    bytes: int
    rows: int
    sources: tuple[str, ...] = ()


@dataclass(frozen=True)
class JobResult:
    """Written by the job as its last act: its presence means the output is complete."""

    manifest_id: str
    day: str
    files: tuple[FileResult, ...]
    output_files: tuple[OutputFile, ...] = ()
    schema: dict[str, Any] | None = None
    schema_version: int | None = None
    timings: dict[str, float] | None = None
    # Field paths found in _rescued_data (ndjson_pipeline.drift); None in results written before they were counted.
    drift: Drift | None = None

    @property
    def rows_in(self) -> int:
        return sum(f.rows_in for f in self.files)

    @property
    def rows_out(self) -> int:
        return sum(f.rows_out for f in self.files)

    @property
    def rows_rescued(self) -> int:
        return sum(f.rows_rescued for f in self.files)

    @property
    def rows_quarantined(self) -> int:
        return sum(f.rows_quarantined for f in self.files)

    def check_reconciled(self, manifest: Manifest | None = None) -> None:
        """Raise ReconciliationError naming every file whose rows do not add up (or that is missing)."""
        problems = [
            f"{f.uri}: rows_in {f.rows_in} != rows_out {f.rows_out} + rows_quarantined {f.rows_quarantined}"
            for f in self.files
            if not f.reconciled
        ]
        if sum(o.rows for o in self.output_files) != self.rows_out:
            problems.append(f"output files hold {sum(o.rows for o in self.output_files)} rows, not {self.rows_out}")
        if manifest is not None:
            expected = {f.identity for f in manifest.files}
            reported = {f.identity for f in self.files}
            problems += [f"{identity}: in the manifest but not in the result" for identity in expected - reported]
            problems += [f"{identity}: in the result but not in the manifest" for identity in reported - expected]
        if problems:
            raise ReconciliationError(f"manifest {self.manifest_id} does not reconcile: " + "; ".join(problems))

    def to_json(self) -> str:
        drift = None if self.drift is None else self.drift.to_json()
        doc = {"format": RESULT_FORMAT, **asdict(replace(self, drift=None)), "drift": drift}
        return json.dumps(doc, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> JobResult:
        try:
            doc = json.loads(text)
            if doc.get("format") != RESULT_FORMAT:
                raise ManifestError(f"result format {doc.get('format')!r} is not {RESULT_FORMAT}")
            bad = [raw.get("identity") for raw in doc["files"] if raw.get("outcome") not in JOB_OUTCOMES]
            if bad:
                raise ManifestError(f"result outcome must be DONE or QUARANTINED for {bad}")
            files = tuple(FileResult(**{**raw, "outcome": FileState(raw["outcome"])}) for raw in doc["files"])
            outputs = tuple(
                OutputFile(**{**raw, "sources": tuple(raw.get("sources", ()))}) for raw in doc.get("output_files", [])
            )
            return cls(
                manifest_id=str(doc["manifest_id"]),
                day=str(doc["day"]),
                files=files,
                output_files=outputs,
                schema=doc.get("schema"),
                schema_version=doc.get("schema_version"),
                timings=doc.get("timings"),
                drift=None if doc.get("drift") is None else Drift.from_json(doc["drift"]),
            )
        except (json.JSONDecodeError, AttributeError, KeyError, TypeError) as exc:
            raise ManifestError(f"job result is malformed: {exc!r}") from exc
