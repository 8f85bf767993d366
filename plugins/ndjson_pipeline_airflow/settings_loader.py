"""The pipeline settings at run time: the Airflow Variable, else the environment, else the defaults."""

from __future__ import annotations

from airflow.sdk import Variable

from ndjson_pipeline.settings import SETTINGS_VARIABLE, PipelineSettings, SettingsError
from ndjson_pipeline_airflow.logs import configure_task_logging


def load_settings() -> PipelineSettings:
    """Settings from the Variable ``ndjson_pipeline_settings`` (or its ``AIRFLOW_VAR_`` environment variable),
    else ``NDJSON_PIPELINE_SETTINGS``, else the defaults; a bad value raises ``SettingsError`` naming where it was.

    The pipeline's loggers then log as the settings say (``log_format``, ``log_level``) for the rest of the task.
    Call it in ``execute`` or a task, never at DAG import time.
    """
    settings = _read_settings()
    configure_task_logging(settings.logs)
    return settings


def _read_settings() -> PipelineSettings:
    raw = Variable.get(SETTINGS_VARIABLE, default=None)
    if raw is None:
        return PipelineSettings.from_env()
    if isinstance(raw, dict):
        return PipelineSettings.from_mapping(raw)
    try:
        return PipelineSettings.from_json(raw, f"Airflow Variable {SETTINGS_VARIABLE!r}")
    except SettingsError as exc:
        raise SettingsError(f"{exc} (fix the Airflow Variable {SETTINGS_VARIABLE!r})") from exc
