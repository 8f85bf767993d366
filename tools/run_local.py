"""The main job on the embedded local stack: a sample day through the real DAGs, end to end.

Starts a moto server and creates the pipeline's resources in it, gives Airflow
its own home and SQLite database under ``.local/``, uploads a generated sample
day, runs the intake, ingest and end-of-day DAGs in turn (``airflow dags test``,
conversions on local Spark with the real Glue script), prints progress while
they run, and ends with a summary and the place the Parquet was copied to.
The DAG tasks run as the MWAA execution role's local identity and the Glue job
as the Glue job role's, held to the policies of infra/policies/; the calls each
made are printed at the end (and any the policies refused).

``--table-format iceberg`` (``TABLE_FORMAT=iceberg make run``) makes the dataset
an Iceberg table: each manifest is one commit, and the summary reads the rows back
through the table (pyiceberg) and lists its snapshots.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from ndjson_pipeline.clock import utcnow
from ndjson_pipeline.files import FileId
from ndjson_pipeline.landing import day_listing_pages
from ndjson_pipeline.ledger import Ledger
from ndjson_pipeline.settings import PipelineSettings
from ndjson_pipeline.storage import Storage
from tools import iam_report
from tools.local_stack import (
    REPO_ROOT,
    airflow_environment,
    bootstrap_identities,
    bootstrap_resources,
    client,
    iceberg_catalog,
    local_pipeline_settings,
    moto_server,
)
from tools.sample_day import sample_day, upload

LOCAL = REPO_ROOT / ".local"
FILES = 200


def file_states(s3, ledger: Ledger, settings: PipelineSettings, day: str) -> Counter:
    bucket = settings.names.landing_bucket
    identities = [
        str(FileId.from_listing(bucket, obj))
        for objects in day_listing_pages(s3, bucket, day, settings)
        for obj in objects
    ]
    states = ledger.get_states(identities)
    return Counter(str(states.get(i, "NOT YET RECORDED")) for i in identities)


def run_dag(env: dict[str, str], dag_id: str, log_dir: Path, progress, conf: dict | None = None) -> None:
    """``airflow dags test`` in a child process; its log goes to a file while progress is printed here."""
    log_path = log_dir / f"{dag_id}.log"
    command = [sys.executable, "-m", "airflow", "dags", "test", dag_id]
    if conf:
        command += ["-c", json.dumps(conf)]
    print(f"\n== {dag_id}{' ' + json.dumps(conf) if conf else ''} (log: {log_path.relative_to(REPO_ROOT)})")
    started = time.monotonic()
    shown, shown_at = "", 0.0
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        while proc.poll() is None:
            time.sleep(3)
            now, current = time.monotonic(), progress()
            if current != shown or now - shown_at >= 30:  # on every change, else every 30 s
                print(f"  {now - started:5.0f}s  files: {current}", flush=True)
                shown, shown_at = current, now
    if proc.returncode != 0:
        tail = log_path.read_text(errors="replace").splitlines()[-30:]
        sys.exit(f"{dag_id} failed (exit {proc.returncode}); last lines of {log_path}:\n" + "\n".join(tail))
    print(f"  {dag_id} finished in {time.monotonic() - started:.0f}s")


def copy_dataset(storage: Storage, settings: PipelineSettings, target: Path) -> int:
    """The emulator's storage ends with this command: keep the Parquet on local disk."""
    shutil.rmtree(target, ignore_errors=True)
    dataset = settings.layout.dataset_uri + "/"
    copied = 0
    for uri in storage.list(dataset):
        if uri.endswith(".parquet"):
            path = target / uri.removeprefix(dataset)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(storage.read_bytes(uri))
            copied += 1
    return copied


def print_cost(report: dict) -> None:
    """The day report's cost: what this sample day used of AWS, priced, per file and by component."""
    cost, usage = report["cost"], report["usage"]
    print(f"  cost ({cost['prices']}):")
    print(
        f"    variable ${cost['variable_total_usd']:.4f} for {cost['files']} files = ${cost['per_file_usd']:.6f}/file: "
        + ", ".join(f"{name} {share:.0%}" for name, share in cost["share_by_component"].items() if share)
    )
    print(
        f"    {cost['requests_per_file']} requests/file {cost['requests_by_service']}; DynamoDB units/file "
        f"{cost['dynamodb_units_per_file']}; Glue {usage['glue_runs']} runs ({usage['glue_flex_runs']} in FLEX), "
        f"{usage['glue_dpu_seconds']:.0f} DPU-s billed ({usage['records']} usage records)"
    )
    fixed = cost["fixed_per_day_usd"]
    print(
        "    fixed, apart: "
        + ", ".join(f"{name} ${value:.2f}/day" for name, value in fixed.items())
        + f" (${cost['fixed_per_file_usd']:.4f}/file at this day's volume)"
    )


def read_back_table(endpoint: str, settings: PipelineSettings, target: Path) -> tuple[int, int, list[str]]:
    """The Iceberg table's rows as a reader sees them, written to ``target``: (rows, distinct event ids, snapshots)."""
    import pyarrow.parquet as pq

    table = iceberg_catalog(endpoint, settings.names).load_table((settings.names.catalog_database, settings.dataset))
    rows = table.scan().to_arrow()
    target.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(rows, target)
    snapshots = [
        f"{s.snapshot_id} {s.summary.operation.value} {s.summary.get('ndjson-pipeline.manifest-ids', '')}"
        for s in table.snapshots()
    ]
    return rows.num_rows, len(set(rows.column("event_id").to_pylist())), snapshots


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table-format", choices=("hive", "iceberg"), default="hive", help="the setting table_format")
    table_format = parser.parse_args(argv).table_format
    home = LOCAL / "airflow"
    shutil.rmtree(home, ignore_errors=True)  # a fresh metadata database: no leftover runs or triggers
    home.mkdir(parents=True)
    with moto_server(log_path=str(LOCAL / "moto.log")) as endpoint:
        print(f"local AWS (moto) at {endpoint}")
        raw_settings = local_pipeline_settings(PipelineSettings().names, max_wait_seconds=5, table_format=table_format)
        settings = PipelineSettings.from_mapping(raw_settings)
        bootstrap_resources(endpoint, settings.names, settings.table_format)
        identities = bootstrap_identities(endpoint, settings.names, settings.dataset)
        env = {
            **os.environ,
            **airflow_environment(home),
            **identities.airflow_env(endpoint),
            "AIRFLOW_VAR_NDJSON_PIPELINE_SETTINGS": json.dumps(raw_settings),
        }
        print("preparing Airflow's metadata database ...", flush=True)
        subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True, capture_output=True)

        s3, sqs = client("s3", endpoint), client("sqs", endpoint)
        ledger = Ledger(client("dynamodb", endpoint), settings.names.ledger_table)
        day = utcnow().date().isoformat()
        sample = sample_day(day, settings, files=FILES)
        queue_url = sqs.get_queue_url(QueueName=settings.names.queue)["QueueUrl"]
        upload(sample, s3, sqs, queue_url, settings.names.landing_bucket)
        print(
            f"uploaded {len(sample.uploads)} objects for {day}: {FILES} NDJSON files with bad lines, an empty file, "
            "a gzip file, a .txt file, an overwritten key, and one duplicated notification"
        )

        def progress() -> str:
            return ", ".join(f"{state} {n}" for state, n in sorted(file_states(s3, ledger, settings, day).items()))

        run_dag(env, "ndjson_intake", home, progress)
        run_dag(env, "ndjson_ingest", home, progress)
        run_dag(env, "ndjson_end_of_day", home, progress, {"day": day})

        storage = Storage(s3_client=s3)
        report = json.loads(storage.read_bytes(settings.layout.report_uri(day)))
        lake = LOCAL / "lake" / settings.dataset
        if table_format == "iceberg":
            read_back = LOCAL / "lake" / f"{settings.dataset}.iceberg.parquet"
            shutil.rmtree(lake, ignore_errors=True)
            table_rows, table_distinct, snapshots = read_back_table(endpoint, settings, read_back)
        else:
            copied = copy_dataset(storage, settings, lake)
        refused = [d for d in iam_report.denials(endpoint) if d["identity"] != "root"]
        print("\n== AWS calls by role (action, resource pattern, the policy statement that allowed it)")
        print(iam_report.summary(endpoint))
    print("\n== summary")
    print(f"  day {day}: complete={report['complete']}, files by state {report['files_by_state']}")
    print(
        f"  rows in {report['rows_in']} = out {report['rows_out']} + quarantined {report['rows_quarantined']} "
        f"(rescued {report['rows_rescued']}); expected out {len(sample.expected_rows)}, "
        f"expected quarantined {sample.expected_bad_lines}"
    )
    print(f"  latency arrival->DONE p50 {report['latency_seconds_p50']}s, p95 {report['latency_seconds_p95']}s")
    print_cost(report)
    if table_format == "iceberg":
        print(f"  Iceberg table {settings.names.catalog_database}.{settings.dataset} at {settings.layout.dataset_uri}/")
        print(f"  snapshots (id, operation, manifests): {len(snapshots)}")
        for line in snapshots:
            print(f"    {line}")
        print(f"  read back through the table: {table_rows} rows, {table_distinct} distinct, copied to {read_back}")
        query = f"SELECT dt, count(*) AS rows FROM read_parquet('{read_back}') GROUP BY dt"
    else:
        print(f"  Parquet: {settings.layout.dataset_uri}/ (copied {copied} files to {lake})")
        query = (
            f"SELECT dt, count(*) AS rows FROM read_parquet('{lake}/*/*.parquet', hive_partitioning=true) GROUP BY dt"
        )
    print(f'  query it: .venv/bin/python -c "import duckdb; duckdb.sql(\\"{query}\\").show()"')
    if not report["complete"] or report["rows_out"] != len(sample.expected_rows):
        sys.exit("the sample day did not convert exactly; see the logs above")
    if table_format == "iceberg" and not table_rows == table_distinct == report["rows_out"]:
        sys.exit(f"the table reads {table_rows} rows ({table_distinct} distinct), not the day's {report['rows_out']}")
    if refused:
        sys.exit(f"{len(refused)} call(s) were refused by the roles' policies; see the list above")


if __name__ == "__main__":
    main()
