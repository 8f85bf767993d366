"""The job's tasks in the test's own process: where a test must see what a task does (its logs, its S3 calls).

``convert_manifest`` runs its groups as Spark tasks (``groups.run_groups``, a
compaction's ``compaction.run_compaction``); ``tasks_here`` runs them one after
the other in this process instead and gives the session stand-in the job asks
how many cores it has. Spark only ships the
pickled work to a worker: what a task does is the same.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from ndjson_job import job
from ndjson_job.compaction import compact_group
from ndjson_job.groups import convert_group


def tasks_here(monkeypatch: Any, cores: int = 2) -> Any:
    """Run the job's tasks in this process; the stand-in to pass ``convert_manifest`` as its Spark session."""
    monkeypatch.setattr(job, "run_groups", lambda _spark, works: [convert_group(work) for work in works])
    monkeypatch.setattr(job, "run_compaction", lambda _spark, works: [compact_group(work) for work in works])
    return SimpleNamespace(sparkContext=SimpleNamespace(defaultParallelism=cores))


class InProcessRuns:
    """The conversion runs port (``steps.converting.ConversionRuns``) with the job run in this process.

    Each run is ``convert_manifest`` on ``storage`` (the Glue role's, in the tests that use it) with its tasks run
    here (``tasks_here``): the job's code, without a Spark session per run, for set-ups of many manifests.
    """

    synchronous = True

    def __init__(self, monkeypatch: Any, storage: Any) -> None:
        self.spark = tasks_here(monkeypatch)
        # The tasks use this storage's client too (the role's, on the local AWS), not one boto3's defaults make.
        monkeypatch.setattr(storage, "for_tasks", lambda: storage)
        self.storage = storage

    def active_run_of(self, manifest_id: str) -> str | None:
        return None

    def start(self, arguments: Any) -> str:
        job.convert_manifest(self.spark, arguments, self.storage)
        return "in-process"

    def stop(self, manifest_id: str) -> None:
        """Nothing outlives ``start``."""

    def request_stop(self, manifest_id: str) -> None:
        """Nothing outlives ``start``."""

    def billed(self, manifest_id: str, result: Any) -> Any:
        from ndjson_pipeline.usage import Usage

        return Usage()
