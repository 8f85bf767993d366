"""Settings at run time: the Airflow Variable first, then NDJSON_PIPELINE_SETTINGS, then the defaults."""

from __future__ import annotations

import json

import pytest

from ndjson_pipeline.settings import SETTINGS_ENV, PipelineSettings, SettingsError
from ndjson_pipeline_airflow.settings_loader import load_settings

VARIABLE_ENV = "AIRFLOW_VAR_NDJSON_PIPELINE_SETTINGS"


def test_the_variable_wins_over_the_environment(monkeypatch):
    monkeypatch.setenv(VARIABLE_ENV, json.dumps({"dataset": "from_variable"}))
    monkeypatch.setenv(SETTINGS_ENV, json.dumps({"dataset": "from_env"}))
    assert load_settings().dataset == "from_variable"


def test_without_the_variable_the_environment_then_the_defaults(monkeypatch):
    monkeypatch.delenv(VARIABLE_ENV, raising=False)
    monkeypatch.setenv(SETTINGS_ENV, json.dumps({"dataset": "from_env"}))
    assert load_settings().dataset == "from_env"
    monkeypatch.delenv(SETTINGS_ENV)
    assert load_settings() == PipelineSettings()


@pytest.mark.parametrize(
    ("value", "message"),
    [("{not json", "is not valid JSON"), (json.dumps({"max_attempts": 0}), "'max_attempts' must be a positive")],
)
def test_a_bad_variable_is_named_in_the_error(monkeypatch, value, message):
    monkeypatch.setenv(VARIABLE_ENV, value)
    with pytest.raises(SettingsError, match=message) as caught:
        load_settings()
    assert "ndjson_pipeline_settings" in str(caught.value)
