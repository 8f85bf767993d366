"""The metadata cleanup DAG's task: Airflow's ``db clean`` beyond the retention, run where the database is."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from airflow.sdk import get_current_context, task

if TYPE_CHECKING:
    from ndjson_pipeline.metadata_cleanup import AirflowAdmin
    from ndjson_pipeline.settings import PipelineSettings

# The DAG file imports this module: what the task uses beyond Airflow's authoring interface is imported when it runs.

log = logging.getLogger(__name__)


def airflow_admin(settings: PipelineSettings) -> AirflowAdmin:
    """Where ``db clean`` runs: MWAA's web server, or the local stack (setting ``metadata_cleanup_runner``)."""
    from ndjson_pipeline_airflow.hooks.airflow_admin import LocalAirflowAdmin, MwaaAirflowHook

    return LocalAirflowAdmin() if settings.metadata_cleanup_runner == "local" else MwaaAirflowHook()


@task(multiple_outputs=False)
def purge_metadata_database() -> dict[str, Any]:
    """Purge the metadata database's rows older than ``metadata_retention_days``; rows of unfinished runs stay."""
    from ndjson_pipeline.clock import utcnow
    from ndjson_pipeline.metadata_cleanup import purge_metadata
    from ndjson_pipeline_airflow.settings_loader import load_settings

    settings = load_settings()
    dry_run = bool(get_current_context()["params"]["dry_run"])
    record = purge_metadata(airflow_admin(settings), utcnow(), settings.metadata_retention_days, dry_run=dry_run)
    if record.held_back_by is not None:
        log.warning(
            "an unfinished run holds the cleanup back to %s: %s; rows older than %d days stay until it finishes",
            record.horizon.isoformat(),
            json.dumps(record.held_back_by.as_dict()),
            settings.metadata_retention_days,
        )
    log.info(
        "metadata cleanup: %s", json.dumps(record.as_dict(), indent=2), extra={"metadata_cleanup": record.as_dict()}
    )
    return record.as_dict()
