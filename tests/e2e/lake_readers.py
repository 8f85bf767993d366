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


# The typed columns of the sample schema, each as a (type as the engine names it, value as Python) per event id.
TYPED_COLUMNS = ("event_time", "amount")


def typed_values(engine: str, dataset_dir: Path, spark: Any) -> tuple[dict[str, str], dict[str, tuple[Any, ...]]]:
    """The engine's type of each of ``TYPED_COLUMNS``, and their values by event id, as the engine reads them."""
    columns = ", ".join(("event_id", *TYPED_COLUMNS))
    if engine == "duckdb":
        glob = f"{dataset_dir}/**/*.parquet"
        with duckdb.connect() as con:
            con.sql("SET TimeZone = 'UTC'")
            relation = con.sql(f"SELECT {columns} FROM read_parquet('{glob}', hive_partitioning=true)")
            types = dict(zip(relation.columns, (str(t) for t in relation.types), strict=True))
            rows = relation.fetchall()
    elif engine == "polars":
        frame = pl.scan_parquet(f"{dataset_dir}/").select("event_id", *TYPED_COLUMNS).collect()
        types = {name: str(dtype) for name, dtype in frame.schema.items()}
        rows = frame.rows()
    elif engine == "pyarrow":
        table = ds.dataset(str(dataset_dir), format="parquet", partitioning="hive").to_table(
            columns=["event_id", *TYPED_COLUMNS]
        )
        types = {f.name: str(f.type) for f in table.schema}
        rows = [tuple(row.values()) for row in table.to_pylist()]
    elif engine == "spark":
        frame = spark.read.parquet(str(dataset_dir)).select("event_id", *TYPED_COLUMNS)
        types = {f.name: f.dataType.simpleString() for f in frame.schema.fields}
        rows = [tuple(row) for row in frame.collect()]
    else:
        raise ValueError(f"unknown engine {engine!r}")
    return {name: types[name] for name in TYPED_COLUMNS}, {row[0]: tuple(row[1:]) for row in rows}


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
