"""The dataset as users open it without the catalog: its directory, read by DuckDB, Polars, pyarrow and Spark.

Each engine gets the dataset prefix (``<lake>/<dataset>/``) as it is at one
moment, copied key for key into a local directory (the engines' own S3 access
is not available against the emulator), and applies its own rules to it: which
files a glob or a directory scan takes, what ``dt=`` path segments mean.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pyarrow.dataset as ds

ENGINES = ("duckdb", "polars", "pyarrow", "spark")


def mirror_prefix(s3: Any, bucket: str, prefix: str, target: Path) -> Path:
    """Every object under ``s3://bucket/prefix`` written to ``target`` under its key; the prefix's directory."""
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            path = target / obj["Key"]
            path.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, obj["Key"], str(path))
    return target / prefix.rstrip("/")


def event_ids(engine: str, dataset_dir: Path, spark: Any) -> Counter[str]:
    """The ``event_id`` of every row ``engine`` reads from the dataset's directory, each counted as often as read."""
    if not any(dataset_dir.rglob("*.parquet")):
        return Counter()
    if engine == "duckdb":
        glob = f"{dataset_dir}/**/*.parquet"
        with duckdb.connect() as con:
            rows = con.sql(f"SELECT event_id FROM read_parquet('{glob}', hive_partitioning=true)").fetchall()
        return Counter(row[0] for row in rows)
    if engine == "polars":
        return Counter(pl.scan_parquet(f"{dataset_dir}/").select("event_id").collect()["event_id"].to_list())
    if engine == "pyarrow":
        table = ds.dataset(str(dataset_dir), format="parquet", partitioning="hive").to_table(columns=["event_id"])
        return Counter(table.column("event_id").to_pylist())
    if engine == "spark":
        return Counter(row.event_id for row in spark.read.parquet(str(dataset_dir)).select("event_id").collect())
    raise ValueError(f"unknown engine {engine!r}")


def read_dataset(s3: Any, bucket: str, dataset: str, spark: Any) -> dict[str, Counter[str] | Exception]:
    """What each engine counts in the dataset's directory now, or the error it reading it ended with."""
    with tempfile.TemporaryDirectory(prefix="lake-readers-") as target:
        dataset_dir = mirror_prefix(s3, bucket, f"{dataset}/", Path(target))
        found: dict[str, Counter[str] | Exception] = {}
        for engine in ENGINES:
            try:
                found[engine] = event_ids(engine, dataset_dir, spark)
            except Exception as exc:  # an engine that cannot read the directory at all is a wrong answer too
                found[engine] = exc
        return found
