"""Names and shapes of the pipeline's AWS resources, read from ``resources.json``.

Terraform reads the same JSON file, so local and deployed resources cannot drift.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any


@cache
def _spec() -> dict[str, Any]:
    spec: dict[str, Any] = json.loads(resources.files(__package__).joinpath("resources.json").read_text())
    return spec


@dataclass(frozen=True)
class ResourceNames:
    """Concrete names for one deployment, derived from a name prefix."""

    name_prefix: str

    def _name(self, suffix: str) -> str:
        return f"{self.name_prefix}-{suffix}"

    @property
    def landing_bucket(self) -> str:
        return self._name(_spec()["buckets"]["landing"])

    @property
    def lake_bucket(self) -> str:
        return self._name(_spec()["buckets"]["lake"])

    @property
    def quarantine_bucket(self) -> str:
        return self._name(_spec()["buckets"]["quarantine"])

    @property
    def assets_bucket(self) -> str:
        return self._name(_spec()["buckets"]["assets"])

    @property
    def queue(self) -> str:
        return self._name(_spec()["queue"]["name"])

    @property
    def dlq(self) -> str:
        return self._name(_spec()["queue"]["dlq_name"])

    @property
    def ledger_table(self) -> str:
        return self._name(_spec()["ledger"]["table"])

    @property
    def glue_job(self) -> str:
        return self._name(_spec()["glue_job"]["name"])

    @property
    def catalog_database(self) -> str:
        # Glue database names are read unquoted by Athena and Spark SQL only when they hold no "-".
        return f"{self.name_prefix.replace('-', '_')}_{_spec()['catalog']['database']}"


def default_names() -> ResourceNames:
    return ResourceNames(_spec()["name_prefix"])


def landing_prefix() -> str:
    return str(_spec()["landing_prefix"])


def landing_retention_days() -> int:
    """Days a raw landing object is kept before S3's lifecycle expires it."""
    return int(_spec()["landing_retention"]["days"])


def landing_noncurrent_days() -> int:
    """Days an expired (or overwritten) landing version is kept as a noncurrent version."""
    return int(_spec()["landing_retention"]["noncurrent_days"])


def queue_spec() -> dict[str, int | str]:
    return dict(_spec()["queue"])


def ledger_spec() -> dict[str, Any]:
    return dict(_spec()["ledger"])


def glue_job_spec() -> dict[str, Any]:
    return dict(_spec()["glue_job"])


def conversion_slots(dag_kind: str) -> int:
    """Concurrent conversions per DAG (over all its runs): together exactly the Glue job's MaxConcurrentRuns.

    The end-of-day DAG gets a fixed share, the ingest DAG the rest, so the two
    never start more runs than Glue accepts (Terraform also enables job-run queuing).
    """
    total = int(glue_job_spec()["max_concurrent_runs"])
    end_of_day = max(1, total // 4)
    return end_of_day if dag_kind == "end_of_day" else total - end_of_day
