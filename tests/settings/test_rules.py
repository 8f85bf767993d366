"""Settings rules: each inconsistent combination is refused with an error naming the settings at fault."""

from __future__ import annotations

import pytest

from ndjson_pipeline.conversion import LogFormat, LogLevel, LogOptions
from ndjson_pipeline.resources import landing_retention_days
from ndjson_pipeline.settings import LIFECYCLE_LAG_DAYS, PipelineSettings, SettingsError


def _make_settings(**overrides) -> PipelineSettings:
    return PipelineSettings.from_mapping(overrides)


def test_defaults_are_consistent():
    settings = _make_settings()
    assert settings.sensor_timeout_seconds > settings.max_wait_seconds + settings.sensor_poll_seconds
    assert settings.lease_seconds > settings.glue_max_wait_seconds + settings.glue_poll_seconds
    assert settings.terminal_ttl_days >= settings.landing_retention_days + LIFECYCLE_LAG_DAYS
    assert settings.metadata_retention_days >= settings.landing_retention_days


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        # A sensor that gives up before its oldest file reaches max_wait_seconds never fires on age.
        ({"sensor_timeout_seconds": 100}, ["'sensor_timeout_seconds' (100)", "'max_wait_seconds' (120)"]),
        ({"sensor_timeout_seconds": 130}, ["'sensor_timeout_seconds' (130)", "'sensor_poll_seconds' (20)"]),
        ({"max_wait_seconds": 600}, ["'sensor_timeout_seconds' (240)", "'max_wait_seconds' (600)"]),
        ({"max_files_per_manifest": 1001}, ["'max_files_per_manifest'", "1000"]),
        # A lease that ends while the conversion is still waited for lets the sweeper repair a running claim.
        ({"lease_seconds": 3600}, ["'lease_seconds' (3600)", "'glue_max_wait_seconds' (3600)"]),
        ({"glue_max_wait_seconds": 3900}, ["'lease_seconds' (3900)", "'glue_max_wait_seconds' (3900)"]),
        ({"glue_poll_seconds": 60, "glue_max_wait_seconds": 30}, ["'glue_max_wait_seconds' (30)"]),
        ({"intake_wait_seconds": 20, "intake_time_budget_seconds": 10}, ["'intake_time_budget_seconds' (10)"]),
        ({"max_file_bytes": 3 * 1024**3}, ["'max_file_bytes'", "'max_bytes_per_manifest'"]),
        # Terminal records that expire while the raw file can still be listed let a re-close convert it again.
        ({"terminal_ttl_days": 10}, ["'terminal_ttl_days' (10)", "landing_retention"]),
        ({"usage_capacity_source": "guessed"}, ["'usage_capacity_source'"]),
        # The runs and records of days an operator can still act on stay in the metadata database.
        ({"metadata_retention_days": 3}, ["'metadata_retention_days' (3)", "landing_retention"]),
        ({"metadata_retention_days": 0}, ["'metadata_retention_days'", "positive integer"]),
        ({"metadata_cleanup_runner": "cli"}, ["'metadata_cleanup_runner'", "'mwaa', 'local'"]),
        ({"log_format": "xml"}, ["'log_format'", "['text', 'json']", "'xml'"]),
        ({"log_level": "verbose"}, ["'log_level'", "['debug', 'info', 'warning', 'error']", "'verbose'"]),
        ({"log_level": 10}, ["'log_level'", "10"]),
    ],
)
def test_inconsistent_settings_are_refused_naming_them(overrides, named):
    with pytest.raises(SettingsError) as caught:
        _make_settings(**overrides)
    for text in named:
        assert text in str(caught.value)


def test_rules_follow_the_values_given():
    settings = _make_settings(
        max_wait_seconds=600, sensor_timeout_seconds=700, glue_max_wait_seconds=1800, lease_seconds=1900
    )
    assert (settings.sensor_timeout_seconds, settings.lease_seconds) == (700, 1900)
    minimum = landing_retention_days() + LIFECYCLE_LAG_DAYS
    assert _make_settings(terminal_ttl_days=minimum).terminal_ttl_days == minimum
    with pytest.raises(SettingsError, match="terminal_ttl_days"):
        _make_settings(terminal_ttl_days=minimum - 1)


def test_the_metadata_retention_may_be_as_short_as_the_landing_retention():
    assert _make_settings(metadata_retention_days=landing_retention_days()).metadata_retention_days == 7
    with pytest.raises(SettingsError, match="metadata_retention_days"):
        _make_settings(metadata_retention_days=landing_retention_days() - 1)


def test_log_settings_default_to_text_at_info_and_take_any_case():
    assert (_make_settings().log_format, _make_settings().log_level) == ("text", "info")
    settings = _make_settings(log_format=" JSON", log_level="DEBUG")
    assert (settings.log_format, settings.log_level) == (LogFormat.JSON, LogLevel.DEBUG)
    assert settings.logs == LogOptions(log_format="json", log_level="debug")


def test_the_table_format_is_hive_or_iceberg_and_iceberg_needs_the_lineage_column():
    assert _make_settings().table_format == "hive"
    assert _make_settings(table_format="iceberg").table_format == "iceberg"
    with pytest.raises(SettingsError, match="'table_format' must be one of"):
        _make_settings(table_format="delta")
    # A commit finds the rows a manifest committed before by _manifest_id: without it, no rerun could replace them.
    with pytest.raises(SettingsError, match=r"'table_format' 'iceberg' needs 'conversion.lineage'"):
        _make_settings(table_format="iceberg", conversion={"lineage": False})
