"""Usage counts and their records: one JSON object per task try or job run, under the day it worked for
(``LakeLayout.usage_uri``).

Names are unique per task try (``dag/run/task/map index/try``) or per manifest
(the job and its Glue runs), so a record is written once and a retry writes its
own: every try's requests were sent, and are billed.
"""

from __future__ import annotations

import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from ndjson_pipeline.layout import LakeLayout


class UsageStore(Protocol):
    def write_bytes(self, uri: str, data: bytes) -> None: ...
    def read_bytes(self, uri: str) -> bytes: ...
    def list(self, prefix: str) -> dict[str, int]: ...


@dataclass
class Usage:
    """What some work sent to AWS and used there.

    :param requests: HTTP requests sent, by ``<service>.<Operation>`` (retries count: each is billed).
    :param read_units: DynamoDB read request units.
    :param write_units: DynamoDB write request units.
    :param glue_runs: Glue job runs.
    :param glue_dpu_seconds: DPU-seconds Glue bills for them (its 1-minute minimum included).
    :param glue_flex_runs: of those runs, the ones in Glue's FLEX execution class.
    :param glue_flex_dpu_seconds: of those DPU-seconds, the ones billed at FLEX's rate.
    :param output_bytes: bytes of Parquet published.
    """

    requests: Counter[str] = field(default_factory=Counter)
    read_units: float = 0.0
    write_units: float = 0.0
    glue_runs: int = 0
    glue_dpu_seconds: float = 0.0
    glue_flex_runs: int = 0
    glue_flex_dpu_seconds: float = 0.0
    output_bytes: int = 0

    def add(self, other: Usage) -> Usage:
        self.requests.update(other.requests)
        self.read_units += other.read_units
        self.write_units += other.write_units
        self.glue_runs += other.glue_runs
        self.glue_dpu_seconds += other.glue_dpu_seconds
        self.glue_flex_runs += other.glue_flex_runs
        self.glue_flex_dpu_seconds += other.glue_flex_dpu_seconds
        self.output_bytes += other.output_bytes
        return self

    def by_service(self) -> dict[str, int]:
        services: Counter[str] = Counter()
        for name, count in self.requests.items():
            services[name.split(".", 1)[0]] += count
        return dict(sorted(services.items()))

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": dict(sorted(self.requests.items())),
            "read_units": round(self.read_units, 3),
            "write_units": round(self.write_units, 3),
            "glue_runs": self.glue_runs,
            "glue_dpu_seconds": round(self.glue_dpu_seconds, 3),
            "glue_flex_runs": self.glue_flex_runs,
            "glue_flex_dpu_seconds": round(self.glue_flex_dpu_seconds, 3),
            "output_bytes": self.output_bytes,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None) -> Usage:
        raw = raw or {}
        return cls(
            requests=Counter({str(k): int(v) for k, v in (raw.get("requests") or {}).items()}),
            read_units=float(raw.get("read_units", 0)),
            write_units=float(raw.get("write_units", 0)),
            glue_runs=int(raw.get("glue_runs", 0)),
            glue_dpu_seconds=float(raw.get("glue_dpu_seconds", 0)),
            glue_flex_runs=int(raw.get("glue_flex_runs", 0)),
            glue_flex_dpu_seconds=float(raw.get("glue_flex_dpu_seconds", 0)),
            output_bytes=int(raw.get("output_bytes", 0)),
        )


def write_usage(
    store: UsageStore, layout: LakeLayout, day: str, name: str, usage: Usage, *, counts_own_write: bool = True
) -> str:
    """Write one record, its own PutObject counted in it unless the writer's client records it elsewhere.

    Returns the record's URI.
    """
    uri = layout.usage_uri(day, name)
    if counts_own_write:
        usage.requests["s3.PutObject"] += 1
    store.write_bytes(uri, json.dumps(usage.as_dict(), sort_keys=True).encode())
    return uri


def read_day_usage(store: UsageStore, layout: LakeLayout, day: str, *, threads: int = 8) -> tuple[Usage, int]:
    """The sum of a day's records and how many there were (one listing, one read per record)."""
    uris = sorted(store.list(layout.usage_prefix(day)))
    total = Usage()
    with ThreadPoolExecutor(threads) as pool:
        for body in pool.map(store.read_bytes, uris):
            total.add(Usage.from_dict(json.loads(body)))
    return total, len(uris)
