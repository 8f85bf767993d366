"""Peak memory of one Glue task (``convert_group``) on one large file: does it stay flat as the file grows?

Cases: a 100 MB plain NDJSON file (read from local disk and, the production
path, from S3 on the local moto server), a 1 GB plain file and a 1 GB gzip
file of about 6 GB of NDJSON. Each file is generated streamed (a 64 MB pool of
realistic events, 0.1% bad lines, repeated) under a temporary directory, and
converted by ``ndjson_job.groups.convert_group`` in a fresh child process: the
code a Spark Python worker runs for a group, in a process of its own.

What is measured, and why it is faithful: the child's peak resident set size
(``VmHWM`` in /proc/self/status) is what the operating system, and so a Glue
worker's memory limit, charges the Python worker: the Python heap, Arrow's
memory pool (jemalloc/mimalloc, invisible to tracemalloc), zlib's buffers and
boto3's read buffers alike. tracemalloc would miss Arrow's pool and Arrow's pool
would miss Python objects, so both are printed only as a breakdown: ``arrow
peak`` is the pool's ``max_memory()``. ``baseline`` is the child's RSS after its
imports, before the conversion; ``task`` is peak minus baseline.

Target: peak <= 1 GB whatever the size or compression. Takes several minutes
and about 9 GB of disk. Run: ``make bench-glue-memory``, or
``PYTHONPATH=include:. .venv/bin/python -m benchmarks.glue_memory_benchmark [--cases 100mb,1gb,1gb-gz,100mb-s3]``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

from tools.local_stack import client, moto_server
from tools.sample_data import DAY, ndjson_body

MiB = 1024 * 1024
GLUE_SCRIPTS = Path(__file__).resolve().parent.parent / "glue_scripts"
SCHEMA_PATH = GLUE_SCRIPTS / "schemas" / "events.json"
POOL_BYTES = 64 * MiB
TARGET_PEAK_MB = 1024
CASES = {  # name: (file name, decoded MB, stored on S3)
    "100mb": ("events-100mb.ndjson", 100, False),
    "100mb-s3": ("events-100mb.ndjson", 100, True),
    "1gb": ("events-1gb.ndjson", 1024, False),
    "1gb-gz": ("events-6gb.ndjson.gz", 6 * 1024, False),
}


def event_pool() -> bytes:
    bodies, size, n = [], 0, 0
    while size < POOL_BYTES:
        body, _ = ndjson_body(7400, seed=n, bad_fraction=0.001, prefix=f"f{n}")
        bodies.append(body)
        size += len(body)
        n += 1
    return b"".join(bodies)


def generate(path: Path, decoded_mb: int, pool: bytes) -> dict:
    """Write ``decoded_mb`` MB of NDJSON lines to ``path`` (gzip level 6 when it ends in .gz), streamed.

    Returns the file's MD5 (its eTag on local storage) and its decoded size.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.md5(usedforsecurity=False)
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31) if path.suffix == ".gz" else None
    written, target = 0, decoded_mb * MiB
    with path.open("wb") as out:
        while written < target:
            piece = pool if target - written >= len(pool) else pool[: pool.rfind(b"\n", 0, target - written) + 1]
            if not piece:
                break
            data = compressor.compress(piece) if compressor else piece
            digest.update(data)
            out.write(data)
            written += len(piece)
        if compressor:
            tail = compressor.flush()
            digest.update(tail)
            out.write(tail)
    return {"etag": digest.hexdigest(), "decoded_bytes": written}


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def measure(args: argparse.Namespace) -> None:
    """In the child: convert one file as one group; print peak memory and speed as JSON."""
    sys.path.insert(0, str(GLUE_SCRIPTS))
    import pyarrow as pa

    from ndjson_job.groups import GroupWork, convert_group
    from ndjson_job.lines import LineRules
    from ndjson_job.schema import arrow_schema, parse_schema
    from ndjson_pipeline.conversion import JobArguments
    from ndjson_pipeline.files import FileVersion
    from ndjson_pipeline.layout import LakeLayout
    from ndjson_pipeline.storage import Storage

    layout = LakeLayout("s3://lake", "s3://quarantine", "events")
    job_args = JobArguments("m-1", DAY, layout, str(SCHEMA_PATH))
    rules = LineRules(schema=arrow_schema(parse_schema(SCHEMA_PATH.read_text(), job_args)), day=DAY)
    if args.endpoint:
        storage, staging = Storage(endpoint_url=args.endpoint), f"s3://{args.bucket}/staging"
    else:
        storage, staging = Storage(bucket_root=args.root), f"{args.root}/staging"
    file = FileVersion(args.bucket, args.key, args.etag, args.size)
    work = GroupWork(index=0, files=(file,), rules=rules, storage=storage, staging=staging, manifest_id="m-1")
    baseline = _status_mb("VmRSS")
    started = time.monotonic()
    output = convert_group(work)
    seconds = time.monotonic() - started
    [result] = output.files
    report = {
        "baseline_mb": round(baseline),
        "peak_mb": round(_status_mb("VmHWM")),
        "arrow_peak_mb": round(pa.default_memory_pool().max_memory() / MiB),
        "seconds": round(seconds, 1),
        "rows_out": result.rows_out,
        "rows_quarantined": result.rows_quarantined,
        "outcome": str(result.outcome),
    }
    print(json.dumps(report))


def run_case(name: str, root: Path, pool: bytes, endpoint: str | None) -> dict:
    file_name, decoded_mb, on_s3 = CASES[name]
    path = root / "landing" / "in" / file_name
    facts = path.with_name(path.name + ".json")
    if not facts.exists():
        started = time.monotonic()
        facts.write_text(json.dumps(generate(path, decoded_mb, pool)))
        print(f"  generated {path.name}: {path.stat().st_size / MiB:.0f} MB in {time.monotonic() - started:.0f} s")
    etag, decoded_bytes = json.loads(facts.read_text()).values()
    command = [sys.executable, "-m", "benchmarks.glue_memory_benchmark", "--measure"]
    command += ["--key", f"in/{file_name}", "--etag", etag, "--size", str(path.stat().st_size)]
    if on_s3:
        s3 = client("s3", endpoint)
        s3.create_bucket(Bucket="landing")
        s3.upload_file(str(path), "landing", f"in/{file_name}")
        etag = s3.head_object(Bucket="landing", Key=f"in/{file_name}")["ETag"].strip('"')
        command[command.index("--etag") + 1] = etag
        command += ["--endpoint", endpoint]
    else:
        command += ["--root", str(root)]
    # The moto server takes any credentials; the child must not look for real ones.
    credentials = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    credentials["AWS_DEFAULT_REGION"] = "us-east-1"
    child = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True, env={**os.environ, **credentials})
    report = json.loads(child.stdout.strip().splitlines()[-1])
    shutil.rmtree(root / "staging", ignore_errors=True)
    sizes = {"stored_mb": round(path.stat().st_size / MiB), "decoded_mb": round(decoded_bytes / MiB)}
    return {"case": name, **sizes, **report}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default="100mb,100mb-s3,1gb,1gb-gz", help="comma-separated: " + ", ".join(CASES))
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    for name in ("--root", "--bucket", "--key", "--etag", "--endpoint"):
        parser.add_argument(name, help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        args.bucket = "landing"
        measure(args)
        return
    names = args.cases.split(",")
    work = Path(tempfile.mkdtemp(prefix="glue-memory-benchmark-"))
    try:
        pool = event_pool()
        print(f"event pool: {len(pool) / MiB:.0f} MB; files under {work}", flush=True)
        with contextlib.ExitStack() as stack:
            endpoint = None
            if any(CASES[name][2] for name in names):
                endpoint = stack.enter_context(moto_server(log_path=str(work / "moto.log")))
            rows = []
            for name in names:
                row = run_case(name, work, pool, endpoint)
                rows.append(row)
                mbps = row["decoded_mb"] / row["seconds"]
                print(
                    f"{name:<9} stored {row['stored_mb']:>5} MB, decoded {row['decoded_mb']:>5} MB: "
                    f"peak RSS {row['peak_mb']:>4} MB (baseline {row['baseline_mb']} MB, task "
                    f"{row['peak_mb'] - row['baseline_mb']} MB, arrow peak {row['arrow_peak_mb']} MB), "
                    f"{row['seconds']:.0f} s = {mbps:.1f} MB/s decoded, {row['outcome']} "
                    f"{row['rows_out']} rows out, {row['rows_quarantined']} quarantined",
                    flush=True,
                )
        worst = max(row["peak_mb"] for row in rows)
        verdict = "within" if worst <= TARGET_PEAK_MB else "OVER"
        print(f"largest peak RSS {worst} MB: {verdict} the {TARGET_PEAK_MB} MB target")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
