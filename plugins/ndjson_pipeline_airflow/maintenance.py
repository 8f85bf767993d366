"""The maintenance DAG's task: one operator action on a day's files, as the run's params ask.

The DAG file imports this module: what the task uses beyond Airflow's authoring interface is imported when it runs.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from airflow.sdk import get_current_context, task
from airflow.sdk.exceptions import AirflowFailException

from ndjson_pipeline_airflow import dag_run_name
from ndjson_pipeline_airflow.usage import records_usage

log = logging.getLogger(__name__)


def _day_param() -> str:
    return str(get_current_context()["params"]["day"])


@task(multiple_outputs=False)
@records_usage(_day_param)
def maintain() -> dict[str, Any]:
    """Apply the ``action`` param to the FAILED or quarantined files of ``day`` (or of ``manifest_id``)."""
    from ndjson_pipeline.steps import PipelineError
    from ndjson_pipeline.steps.maintenance import MaintenanceAction, run_action
    from ndjson_pipeline_airflow.hooks.ledger import LedgerHook
    from ndjson_pipeline_airflow.hooks.storage import StorageHook
    from ndjson_pipeline_airflow.settings_loader import load_settings

    context = get_current_context()
    params = context["params"]
    settings = load_settings()
    try:
        record = run_action(
            LedgerHook().get_ledger(settings),
            StorageHook().get_storage(),
            settings,
            action=MaintenanceAction(params["action"]),
            day=params["day"],
            manifest_id=params.get("manifest_id") or None,
            dry_run=bool(params["dry_run"]),
            requested_by=dag_run_name(context),
            triggered_by=getattr(context.get("dag_run"), "triggering_user_name", None),
        )
    except PipelineError as exc:
        raise AirflowFailException(str(exc)) from exc
    log.info(
        "maintenance: %s",
        json.dumps(record.as_dict(), indent=2),
        extra={"day": record.day, "maintenance": record.as_dict()},
    )
    return record.as_dict()
