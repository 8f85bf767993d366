"""Settings rules: each inconsistent combination is refused with an error naming the settings at fault."""

from __future__ import annotations

import pytest

from ndjson_pipeline.conversion import LogFormat, LogLevel, LogOptions
from ndjson_pipeline.resources import landing_retention_days
from ndjson_pipeline.settings import (
    LIFECYCLE_LAG_DAYS,
    PIPELINE_LATENCY_SECONDS,
    Batching,
    PipelineSettings,
    RunPurpose,
    SettingsError,
)
from ndjson_pipeline.usage.glue import ExecutionClass


def _make_settings(**overrides) -> PipelineSettings:
    return PipelineSettings.from_mapping(overrides)


def test_defaults_are_consistent():
    settings = _make_settings()
    batching = settings.batching
    assert batching.sensor_timeout_seconds > batching.wait_seconds + settings.sensor_poll_seconds
    assert settings.lease_seconds > settings.glue_max_wait_seconds + settings.glue_poll_seconds
    assert settings.terminal_ttl_days >= settings.landing_retention_days + LIFECYCLE_LAG_DAYS
    assert settings.metadata_retention_days >= settings.landing_retention_days


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        # A sensor that gives up before its oldest file reaches max_wait_seconds never fires on age.
        ({"sensor_timeout_seconds": 100}, ["'sensor_timeout_seconds' (100)", "batch wait (420"]),
        ({"sensor_timeout_seconds": 430}, ["'sensor_timeout_seconds' (430)", "'sensor_poll_seconds' (20)"]),
        (
            {"max_wait_seconds": 600, "sensor_timeout_seconds": 240},
            ["'sensor_timeout_seconds' (240)", "batch wait (600", "'max_wait_seconds'"],
        ),
        ({"latency_budget_seconds": 190}, ["'latency_budget_seconds' (190)", "own latency (180 s", "max_wait_seconds"]),
        ({"background_execution_class": "spot"}, ["'background_execution_class'", "['STANDARD', 'FLEX']", "'spot'"]),
        ({"min_batch_files": 0}, ["'min_batch_files'", "positive integer"]),
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
        ({"rescued_rows_alert_percent": 101}, ["'rescued_rows_alert_percent'", "from 0 to 100", "101"]),
        ({"rescued_rows_alert_percent": "5"}, ["'rescued_rows_alert_percent'", "'5'"]),
    ],
)
def test_inconsistent_settings_are_refused_naming_them(overrides, named):
    with pytest.raises(SettingsError) as caught:
        _make_settings(**overrides)
    for text in named:
        assert text in str(caught.value)


def test_the_rescued_rows_alert_percent_takes_any_number_from_0_to_100():
    assert _make_settings().rescued_rows_alert_percent == 1.0
    assert _make_settings(rescued_rows_alert_percent=0).rescued_rows_alert_percent == 0.0
    assert _make_settings(rescued_rows_alert_percent=12.5).rescued_rows_alert_percent == 12.5


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


def test_the_latency_budget_leaves_a_batch_its_wait_and_a_full_manifest_closes_it_early():
    """A batch waits what the budget leaves after the pipeline's own latency, and closes early only when it fills a
    manifest: waiting longer could not make its run larger. The manifest limits bound every run."""
    assert _make_settings().batching == Batching(
        files=600, bytes=2048 * 1024**2, wait_seconds=600 - PIPELINE_LATENCY_SECONDS, sensor_timeout_seconds=460
    )
    tighter = _make_settings(latency_budget_seconds=300, max_files_per_manifest=400, sensor_poll_seconds=10)
    assert tighter.batching == Batching(
        files=400, bytes=2048 * 1024**2, wait_seconds=300 - PIPELINE_LATENCY_SECONDS, sensor_timeout_seconds=140
    )


def test_explicit_thresholds_override_what_the_budget_derives_one_by_one():
    settings = _make_settings(latency_budget_seconds=900, min_batch_files=50)
    assert settings.batching == Batching(
        files=50, bytes=2048 * 1024**2, wait_seconds=900 - PIPELINE_LATENCY_SECONDS, sensor_timeout_seconds=760
    )
    explicit = _make_settings(min_batch_bytes=10**6, max_wait_seconds=30, sensor_timeout_seconds=90)
    assert explicit.batching == Batching(files=600, bytes=10**6, wait_seconds=30, sensor_timeout_seconds=90)
    # An explicit wait needs no budget to leave one: the budget is not consulted.
    assert _make_settings(latency_budget_seconds=60, max_wait_seconds=5).batching.wait_seconds == 5


def test_a_replaced_budget_derives_the_thresholds_again():
    assert _make_settings().replace(latency_budget_seconds=400).batching.wait_seconds == 400 - PIPELINE_LATENCY_SECONDS


def test_only_runs_no_file_waits_on_take_the_background_execution_class():
    settings = _make_settings()
    assert settings.background_execution_class is ExecutionClass.FLEX
    assert settings.execution_class(RunPurpose.INGEST) is ExecutionClass.STANDARD
    background = (RunPurpose.END_OF_DAY, RunPurpose.REPROCESS, RunPurpose.COMPACTION)
    assert {settings.execution_class(kind) for kind in background} == {ExecutionClass.FLEX}
    standard = _make_settings(background_execution_class="standard")
    assert {standard.execution_class(kind) for kind in RunPurpose} == {ExecutionClass.STANDARD}


def test_the_table_format_is_hive_or_iceberg_and_iceberg_needs_the_lineage_column():
    assert _make_settings().table_format == "hive"
    assert _make_settings(table_format="iceberg").table_format == "iceberg"
    with pytest.raises(SettingsError, match="'table_format' must be one of"):
        _make_settings(table_format="delta")
    # A commit finds the rows a manifest committed before by _manifest_id: without it, no rerun could replace them.
    with pytest.raises(SettingsError, match=r"'table_format' 'iceberg' needs 'conversion.lineage'"):
        _make_settings(table_format="iceberg", conversion={"lineage": False})
