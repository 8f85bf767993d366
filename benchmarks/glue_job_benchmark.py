"""Throughput of the NDJSON -> Parquet conversion job against two references, on the same generated data.

Generates realistic nested NDJSON (``--mb`` MB, files of about 3.5 MB, 0.1% bad
lines) in a temporary directory, then converts it three ways on this machine:

- this job: ``ndjson_job.job.convert_manifest`` (what ``glue_scripts/ndjson_to_parquet.py``
  runs) on ``local[2]`` with local paths, its tasks importing the job's zips as
  on Glue (whole flow: version check, parse, quarantine, staging, publish, result);
- a seed-style Spark job, as a naive pipeline does it: ``spark.read.json`` with
  schema inference, ``cache()`` + ``count()``, ``coalesce`` by a size estimate,
  Parquet write;
- DuckDB ``read_json`` with the declared columns -> Parquet, 2 threads: the
  single-node reference.

Each Spark variant runs in its own fresh JVM (a child process), twice on the
whole input: the first run pays the JIT warm-up every fresh Glue run pays, the
second shows the steady state. Prints MB/s (input MB per wall-clock second) for
both and the ratios (targets: this/seed >= 2x, this/duckdb >= 0.1x). Run:
``make bench-glue``, or ``PYTHONPATH=include:. .venv/bin/python -m benchmarks.glue_job_benchmark [--mb 200]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ndjson_pipeline.conversion import JobArguments
from ndjson_pipeline.files import FileVersion
from ndjson_pipeline.layout import LakeLayout
from ndjson_pipeline.manifest import Manifest
from ndjson_pipeline.storage import Storage
from tools.local_spark import local_session
from tools.sample_data import DAY, ndjson_body

MiB = 1024 * 1024
GLUE_SCRIPTS = Path(__file__).resolve().parent.parent / "glue_scripts"
SCHEMA_PATH = GLUE_SCRIPTS / "schemas" / "events.json"
# The driver imports the job from its folder, as pytest's pythonpath does; the tasks import its zips.
sys.path.insert(0, str(GLUE_SCRIPTS))
LINES_PER_FILE = 7400  # about 3.5 MB of events


def generate(root: Path, megabytes: float) -> list[Path]:
    """Write NDJSON files under ``root/landing/in`` until ``megabytes`` MB; return their paths."""
    target = root / "landing" / "in"
    target.mkdir(parents=True)
    paths, total, n = [], 0, 0
    while total < megabytes * MiB:
        body, _ = ndjson_body(LINES_PER_FILE, seed=n, bad_fraction=0.001, prefix=f"f{n}")
        path = target / f"events-{n:04d}.ndjson"
        path.write_bytes(body)
        paths.append(path)
        total += len(body)
        n += 1
    return paths


def run_this_job(spark, buckets: Path, paths: list[Path], out: Path) -> dict:
    from ndjson_job.job import convert_manifest

    files = [
        FileVersion(
            bucket="landing",
            key=str(p.relative_to(buckets / "landing")),
            etag=hashlib.md5(p.read_bytes(), usedforsecurity=False).hexdigest(),
            size=p.stat().st_size,
        )
        for p in paths
    ]
    manifest = Manifest.for_files(DAY, files)
    layout = LakeLayout(str(out / "lake"), str(out / "quarantine"), "events")
    arguments = JobArguments(manifest.manifest_id, DAY, layout, schema_uri=str(SCHEMA_PATH))
    manifest_path = Path(arguments.manifest_uri)
    manifest_path.parent.mkdir(parents=True, exist_ok=True)
    manifest_path.write_text(manifest.to_json())
    result = convert_manifest(spark, arguments, Storage(bucket_root=str(buckets)))
    return {"rows": result.rows_out, "files": len(result.output_files), "timings": result.timings}


def run_seed_job(spark, paths: list[Path], out: Path) -> dict:
    frame = spark.read.json([str(p) for p in paths]).cache()
    rows = frame.count()
    files = max(1, math.ceil(sum(p.stat().st_size for p in paths) / (128 * MiB)))
    frame.coalesce(files).write.mode("overwrite").parquet(str(out))
    frame.unpersist()
    return {"rows": rows, "files": files}


def duckdb_type(spark_type) -> str:
    if isinstance(spark_type, str):
        return {"string": "VARCHAR", "long": "BIGINT", "integer": "INTEGER", "double": "DOUBLE", "boolean": "BOOLEAN"}[
            spark_type
        ]
    if spark_type["type"] == "struct":
        return "STRUCT(" + ", ".join(f'"{f["name"]}" {duckdb_type(f["type"])}' for f in spark_type["fields"]) + ")"
    if spark_type["type"] == "array":
        return duckdb_type(spark_type["elementType"]) + "[]"
    raise ValueError(f"no DuckDB type for {spark_type}")


def run_duckdb(paths: list[Path], out: Path) -> dict:
    import duckdb

    schema = json.loads(SCHEMA_PATH.read_text())
    columns = "{" + ", ".join(f"'{f['name']}': '{duckdb_type(f['type'])}'" for f in schema["fields"]) + "}"
    out.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute("SET threads = 2")
    pattern = f"{paths[0].parent}/*.ndjson"
    source = f"read_json('{pattern}', format='newline_delimited', columns={columns}, ignore_errors=true)"
    con.execute(f"COPY (SELECT * FROM {source}) TO '{out / 'events.parquet'}' (FORMAT parquet, COMPRESSION snappy)")
    rows = con.execute(f"SELECT count(*) FROM '{out / 'events.parquet'}'").fetchone()[0]
    return {"rows": rows, "files": 1}


def timed(label: str, megabytes: float, run) -> float:
    started = time.monotonic()
    info = run()
    seconds = time.monotonic() - started
    print(f"{label:<11} {seconds:7.1f} s {megabytes / seconds:7.1f} MB/s  {info}", flush=True)
    return megabytes / seconds


def run_spark_variant(variant: str, work: Path) -> None:
    """In a child process: run one Spark variant twice (cold, then warm) and print its MB/s as the last line."""
    buckets = work / "buckets"
    paths = sorted((buckets / "landing" / "in").glob("*.ndjson"))
    megabytes = sum(p.stat().st_size for p in paths) / MiB
    spark = local_session("glue-job-benchmark", work / f"py-files-{variant}", driver_memory="4g", shuffle_partitions=4)
    speeds = []
    for attempt in ("cold", "warm"):
        out = work / f"{variant}-{attempt}"
        if variant == "this":
            speeds.append(timed(f"this {attempt}", megabytes, lambda o=out: run_this_job(spark, buckets, paths, o)))
        else:
            speeds.append(timed(f"seed {attempt}", megabytes, lambda o=out: run_seed_job(spark, paths, o)))
        shutil.rmtree(out, ignore_errors=True)
    spark.stop()
    print(json.dumps(speeds))


def spark_variant(variant: str, work: Path) -> list[float]:
    child = subprocess.run(
        [sys.executable, "-m", "benchmarks.glue_job_benchmark", "--variant", variant, "--work", str(work)],
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    )
    lines = child.stdout.strip().splitlines()
    print("\n".join(lines[:-1]), flush=True)
    return json.loads(lines[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=float, default=200.0, help="input size in MB (default 200)")
    parser.add_argument("--variant", choices=("this", "seed"), help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        run_spark_variant(args.variant, args.work)
        return
    work = Path(tempfile.mkdtemp(prefix="glue-job-benchmark-"))
    try:
        paths = generate(work / "buckets", args.mb)
        megabytes = sum(p.stat().st_size for p in paths) / MiB
        print(f"input: {len(paths)} files, {megabytes:.1f} MB of NDJSON under {work}", flush=True)
        this = spark_variant("this", work)
        seed = spark_variant("seed", work)
        duck = timed("duckdb", megabytes, lambda: run_duckdb(paths, work / "duckdb"))
        for n, attempt in enumerate(("cold", "warm")):
            ratios = f"this/seed {this[n] / seed[n]:5.2f}x (target >= 2x), this/duckdb {this[n] / duck:5.2f}x (>= 0.1x)"
            print(f"{attempt}: {ratios}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
