"""Run in a child interpreter: the pipeline's Airflow side over one landing day, logging as an Airflow task does.

Usage: ``python task_log_probe.py <day> <out dir>``, in a task's environment (the ``aws_default`` connection as
the MWAA role, the settings Variable, the Glue role as default credentials for the local Glue runner).

Logging is set up as Airflow 3.3's task runner sets up a task process
(``airflow.sdk.log.configure_logging(json_output=True, sending_to_supervisor=True)`` on the channel to its
supervisor); the channel's lines then go through what the supervisor does with them
(``process_log_messages_from_subprocess``, with the processors of the task log file) into
``<out dir>/task.log``: the task log as Airflow stores it. A new interpreter, because that setup is for the
whole process.

The work is the ingest and end-of-day path for the day: the intake and reconcile tasks, planning, each
manifest's conversion (the local Glue runner: spark-submit, whose own output is not a task log) and its
finalising, then the day report task.
"""

from __future__ import annotations

import sys
from pathlib import Path


def main(day: str, out: Path) -> None:
    channel_path = out / "channel.jsonl"
    with open(channel_path, "wb", buffering=0) as channel:
        from airflow.sdk.log import configure_logging

        configure_logging(json_output=True, output=channel, sending_to_supervisor=True)
        run_the_day(day)
    write_task_log(channel_path, out / "task.log")


def run_the_day(day: str) -> None:
    from ndjson_pipeline.steps import converting, finalising, planning
    from ndjson_pipeline_airflow import tasks
    from ndjson_pipeline_airflow.hooks.ledger import LedgerHook
    from ndjson_pipeline_airflow.hooks.storage import StorageHook
    from ndjson_pipeline_airflow.runs import conversion_runs
    from ndjson_pipeline_airflow.settings_loader import load_settings

    # The task functions without their usage recording, which needs a task's context.
    tasks.intake.function.__wrapped__()
    tasks.reconcile.function.__wrapped__([day])
    settings = load_settings()
    ledger, storage = LedgerHook().get_ledger(settings), StorageHook().get_storage()
    runs = conversion_runs(settings)
    for ref in planning.plan_manifests(ledger, storage, settings, [day], owner="logs-probe/run"):
        converting.convert(ledger, storage, settings, ref, runs)
        finalising.finalise_manifest(ledger, storage, settings, ref, runs=runs, catalog=None)
    tasks.report_day.function.__wrapped__([day])


def write_task_log(channel_path: Path, task_log_path: Path) -> None:
    """What the supervisor makes of the task process's lines: the task log file's lines."""
    import structlog
    from airflow.sdk.execution_time.supervisor import process_log_messages_from_subprocess
    from airflow.sdk.log import logging_processors

    with open(task_log_path, "wb") as task_log:
        processors = logging_processors(json_output=True)
        logger = structlog.wrap_logger(structlog.BytesLogger(task_log), processors=processors, logger_name="task")
        receiver = process_log_messages_from_subprocess((logger.bind(),))
        next(receiver)
        for line in channel_path.read_bytes().splitlines():
            receiver.send(line)


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
