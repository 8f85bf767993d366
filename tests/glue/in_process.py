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
