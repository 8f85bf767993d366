"""Throughput of the NDJSON -> Parquet conversion job against the single-node limits, on the same machine and data.

Generates realistic nested NDJSON (``--mb`` MB, files of about 3.5 MB, 0.1% bad
lines) in a temporary directory, then converts it five ways, one after the other:

- raw pyarrow: ``pyarrow.json.read_json`` with the declared schema (its own 2
  threads) + ``pyarrow.parquet.write_table``, file by file, on a copy of the data
  without bad lines (Arrow alone refuses a whole file for one bad line): what
  Arrow needs to read and write these bytes, with nothing checked;
- DuckDB ``read_json`` with the declared columns -> Parquet, 2 threads;
- the job's core without Spark: the manifest's files in two output groups,
  converted by ``groups.convert_group`` (read, parse, quarantine, write the
  group's Parquet, stage it) in two processes at once;
- this job: ``ndjson_job.job.convert_manifest`` (what ``glue_scripts/ndjson_to_parquet.py``
  runs) on ``local[2]`` with local paths, its tasks importing the job's zips as
  on Glue (the whole flow, publication and result included);
- a seed-style Spark job, as a naive pipeline does it: ``spark.read.json`` with
  schema inference, ``cache()`` + ``count()``, ``coalesce`` by a size estimate,
  Parquet write.

The local disk stands in for S3: a read checks no MD5 (S3's If-Match costs the
reader nothing), and the manifest's eTags are computed before the clock starts.
Each Spark variant runs in its own fresh JVM (a child process), twice: the first
run pays the JIT warm-up every fresh Glue run pays, the second shows the steady
state. Prints MB/s (input MB per wall-clock second) and the ratios, all from this
one run (targets: core/raw pyarrow >= 0.7x, this job warm/DuckDB >= 0.6x,
this/seed >= 2x). Run: ``make bench-glue``, or
``PYTHONPATH=include:. .venv/bin/python -m benchmarks.glue_job_benchmark [--mb 200]``.
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


def generate(root: Path, megabytes: float, bad_fraction: float = 0.001) -> list[Path]:
    """Write NDJSON files under ``root/landing/in`` until ``megabytes`` MB; return their paths."""
    target = root / "landing" / "in"
    target.mkdir(parents=True)
    paths, total, n = [], 0, 0
    while total < megabytes * MiB:
        body, _ = ndjson_body(LINES_PER_FILE, seed=n, bad_fraction=bad_fraction, prefix=f"f{n}")
        path = target / f"events-{n:04d}.ndjson"
        path.write_bytes(body)
        paths.append(path)
        total += len(body)
        n += 1
    return paths


def manifest_of(buckets: Path, paths: list[Path]) -> Manifest:
    """The manifest of the landing files, their eTags computed here: before any clock starts."""
    files = [
        FileVersion(
            bucket="landing",
            key=str(p.relative_to(buckets / "landing")),
            etag=hashlib.md5(p.read_bytes(), usedforsecurity=False).hexdigest(),
            size=p.stat().st_size,
        )
        for p in paths
    ]
    return Manifest.for_files(DAY, files)


def job_arguments(manifest: Manifest, out: Path, **options: str) -> JobArguments:
    """The job's arguments for ``manifest`` with output under ``out``; the manifest written where they point."""
    layout = LakeLayout(str(out / "lake"), str(out / "quarantine"), "events")
    args = {"manifest_id": manifest.manifest_id, "day": DAY, "schema_uri": str(SCHEMA_PATH), **options}
    args |= {"lake_root": layout.lake_root, "quarantine_root": layout.quarantine_root, "dataset": layout.dataset}
    arguments = JobArguments.from_glue_args(args)
    manifest_path = Path(arguments.manifest_uri)
    manifest_path.parent.mkdir(parents=True, exist_ok=True)
    manifest_path.write_text(manifest.to_json())
    return arguments


def storage_standing_in_for_s3(buckets: Path) -> Storage:
    return Storage(bucket_root=str(buckets), check_local_versions=False)


def run_this_job(spark, buckets: Path, manifest: Manifest, out: Path) -> dict:
    from ndjson_job.job import convert_manifest

    result = convert_manifest(spark, job_arguments(manifest, out), storage_standing_in_for_s3(buckets))
    return {"rows": result.rows_out, "files": len(result.output_files), "timings": result.timings}


def run_core(buckets: Path, manifest: Manifest, out: Path) -> dict:
    """The job's group conversion without Spark: two groups, each in a process of its own, as two tasks would."""
    from concurrent.futures import ProcessPoolExecutor

    from pyspark.sql import types as T

    from ndjson_job.groups import convert_group
    from ndjson_job.job import plan_work

    half = manifest.total_bytes / 2 / MiB + 1  # two output groups
    arguments = job_arguments(manifest, out, target_file_mb=f"{half:.0f}")
    schema = T.StructType.fromJson(json.loads(SCHEMA_PATH.read_text()))
    works = plan_work(manifest, schema, arguments, storage_standing_in_for_s3(buckets), "core", cores=2)
    with ProcessPoolExecutor(len(works)) as pool:
        outputs = list(pool.map(convert_group, works))
    return {"groups": len(works), "rows": sum(p.rows for o in outputs for p in o.parts)}


def run_raw_pyarrow(clean: list[Path], out: Path) -> dict:
    import pyarrow.json as pa_json
    import pyarrow.parquet as pq
    from pyspark.sql import types as T

    from ndjson_job.schema import arrow_schema

    schema = arrow_schema(T.StructType.fromJson(json.loads(SCHEMA_PATH.read_text())))
    out.mkdir(parents=True, exist_ok=True)
    rows = 0
    for n, path in enumerate(clean):
        table = pa_json.read_json(
            path,
            read_options=pa_json.ReadOptions(use_threads=True),
            parse_options=pa_json.ParseOptions(explicit_schema=schema),
        )
        pq.write_table(table, out / f"part-{n:05d}.parquet", compression="snappy")
        rows += table.num_rows
    return {"rows": rows, "files": len(clean)}


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
    manifest = manifest_of(buckets, paths)
    spark = local_session("glue-job-benchmark", work / f"py-files-{variant}", driver_memory="4g", shuffle_partitions=4)
    speeds = []
    for attempt in ("cold", "warm"):
        out = work / f"{variant}-{attempt}"
        if variant == "this":
            speeds.append(timed(f"this {attempt}", megabytes, lambda o=out: run_this_job(spark, buckets, manifest, o)))
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
        clean = generate(work / "clean", args.mb, bad_fraction=0.0)
        megabytes = sum(p.stat().st_size for p in paths) / MiB
        print(f"input: {len(paths)} files, {megabytes:.1f} MB of NDJSON under {work}", flush=True)
        manifest = manifest_of(work / "buckets", paths)
        raw = timed("raw arrow", megabytes, lambda: run_raw_pyarrow(clean, work / "raw"))
        duck = timed("duckdb", megabytes, lambda: run_duckdb(paths, work / "duckdb"))
        core = timed("core", megabytes, lambda: run_core(work / "buckets", manifest, work / "core"))
        this = spark_variant("this", work)
        seed = spark_variant("seed", work)
        print(f"core/raw pyarrow {core / raw:5.2f}x (target >= 0.7x)")
        for n, attempt in enumerate(("cold", "warm")):
            ratios = f"this/seed {this[n] / seed[n]:5.2f}x (target >= 2x), this/duckdb {this[n] / duck:5.2f}x"
            print(f"{attempt}: {ratios}" + (" (target >= 0.6x warm)" if attempt == "warm" else ""))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
