"""Deferrable sensor: waits for pending work without holding a worker slot.

DAG files import this module: what the sensor needs beyond Airflow's authoring
interface (the ledger, the trigger, boto3) is imported when it runs.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseSensorOperator
from airflow.sdk.exceptions import AirflowException, AirflowSkipException

from ndjson_pipeline_airflow import AWS_CONN_ID, dag_run_name

log = logging.getLogger(__name__)  # not the sensor's ``self.log``: the pipeline's log settings apply to this one


class PendingWorkSensor(BaseSensorOperator):
    """Defers to :class:`PendingWorkTrigger` and returns the days that are ready to batch.

    The trigger watches every day the ledger lists as open, so nothing upstream
    has to guess days. Thresholds come from the pipeline settings at run time
    (``PipelineSettings.batching``). A ready day wakes one run only: the one whose
    trigger takes the day's wake (``ledger.wakes``); the others keep waiting.
    When nothing becomes ready for this run before the sensor's timeout the task
    is skipped, and the next scheduled run takes over.

    A retried or cleared run may already hold claims (its planner claimed, then
    the run was cleared): then the sensor does not wait at all and returns no
    ready day, so the planner runs at once and re-adopts them, however quiet the
    day is. Otherwise they would wait out their lease and cost their files an
    attempt. A first try holds nothing (claims are owned by the run), so only
    later tries ask the ledger.

    :param aws_conn_id: the Airflow AWS connection.
    """

    def __init__(self, *, aws_conn_id: str | None = AWS_CONN_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.aws_conn_id = aws_conn_id

    def execute(self, context: Any) -> list[str]:
        from ndjson_pipeline.clock import iso, utcnow
        from ndjson_pipeline.ledger import WorkIndex
        from ndjson_pipeline.steps.planning import holds_open_manifests
        from ndjson_pipeline_airflow.hooks.ledger import LedgerHook
        from ndjson_pipeline_airflow.settings_loader import load_settings
        from ndjson_pipeline_airflow.triggers import PendingWorkTrigger

        settings = load_settings()
        batching = settings.batching
        if context["ti"].try_number > 1:
            held = holds_open_manifests(
                LedgerHook(aws_conn_id=self.aws_conn_id).get_ledger(settings), dag_run_name(context)
            )
            if held:
                log.info(
                    "this run already holds %d open manifests: planning re-adopts them now",
                    len(held),
                    extra={"manifest_ids": [record.manifest_id for record in held]},
                )
                return []
        self.defer(
            trigger=PendingWorkTrigger(
                work_index=WorkIndex.of(settings.names.ledger_table).as_dict(),
                dag_run=dag_run_name(context),
                enough_files=batching.files,
                enough_bytes=batching.bytes,
                max_wait_seconds=batching.wait_seconds,
                deadline=iso(utcnow() + timedelta(seconds=batching.sensor_timeout_seconds)),
                poll_seconds=settings.sensor_poll_seconds,
                aws_conn_id=self.aws_conn_id,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=batching.sensor_timeout_seconds + 300),
        )

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> list[str]:
        from ndjson_pipeline.usage import Usage
        from ndjson_pipeline_airflow.settings_loader import load_settings
        from ndjson_pipeline_airflow.usage import first_day, write_task_usage

        if not isinstance(event, dict) or event.get("status") not in ("ready", "timeout"):
            raise AirflowException(f"unexpected event from PendingWorkTrigger: {event!r}")
        # The trigger's polls, which no client of this process sent, under the newest ready day (else today).
        write_task_usage(load_settings(), first_day(list(event["days"])), Usage.from_dict(event.get("usage")))
        if event["status"] == "timeout":
            raise AirflowSkipException("no open day's pending work became ready before the sensor's timeout")
        log.info("ready: %s", event["summary"], extra={"days": list(event["days"])})
        return list(event["days"])
