"""The shared contract: file identity, conversion options and arguments, lake layout, settings embedding them."""

from __future__ import annotations

import json

import pytest

from ndjson_pipeline.conversion import (
    Compression,
    ConversionOptions,
    JobArguments,
    LogFormat,
    LogLevel,
    LogOptions,
    OptionError,
    ReadMode,
)
from ndjson_pipeline.files import TERMINAL_STATES, FileId, FileState, FileVersion
from ndjson_pipeline.layout import LakeLayout, PublishLog
from ndjson_pipeline.manifest import ManifestRef
from ndjson_pipeline.settings import PipelineSettings, SettingsError
from ndjson_pipeline.storage import Storage, StorageError

LAYOUT = LakeLayout("s3://acme-lake", "s3://acme-quarantine", "events")


@pytest.mark.parametrize(
    "key", ["incoming/2026/11/24/a.ndjson", "incoming/2026/11/24/odd #name/with/slashes#.json", "k"]
)
def test_file_identity_round_trips_through_its_text_form(key):
    file_id = FileId("landing", key, "0a1b")
    assert FileId.parse(str(file_id)) == file_id
    assert FileVersion("landing", key, "0a1b", 7).identity == str(file_id)
    assert FileId.from_listing("landing", {"Key": key, "ETag": '"0a1b"'}) == file_id


@pytest.mark.parametrize("text", ["landing#etag", "landing/key", "/key#etag", "landing/#etag"])
def test_a_malformed_identity_is_refused_with_the_text(text):
    with pytest.raises(ValueError, match="not a file identity"):
        FileId.parse(text)


def test_terminal_states_are_the_outcomes_plus_failed():
    assert {s for s in FileState if s.terminal} == TERMINAL_STATES == {"DONE", "QUARANTINED", "FAILED"}


def test_options_take_text_as_glue_passes_it_and_give_it_back():
    options = ConversionOptions.from_glue_args({"read_mode": " Strict", "lineage": "false", "target_file_mb": "64"})
    assert (options.read_mode, options.lineage, options.target_file_mb) == (ReadMode.STRICT, False, 64.0)
    assert options.to_glue_args()["--read_mode"] == "strict"
    assert options.to_glue_args()["--target_file_mb"] == "64"
    assert ConversionOptions.from_glue_args({k.removeprefix("--"): v for k, v in options.to_glue_args().items()}) == (
        options
    )
    assert ConversionOptions().compression is Compression.SNAPPY


@pytest.mark.parametrize(
    ("values", "option"),
    [
        ({"compression": "lz4"}, "compression"),
        ({"lineage": "yes"}, "lineage"),
        ({"target_file_mb": 0}, "target_file_mb"),
        ({"max_raw_chars": True}, "max_raw_chars"),
        ({"event_time_field": "a b"}, "event_time_field"),
    ],
)
def test_a_bad_option_is_named(values, option):
    with pytest.raises(OptionError) as raised:
        ConversionOptions(**values)
    assert raised.value.option == option


def test_job_arguments_name_the_missing_ones():
    with pytest.raises(OptionError, match=r"--manifest_id, --day.*missing"):
        JobArguments.from_glue_args({"lake_root": "s3://l", "quarantine_root": "s3://q", "dataset": "e"})


def test_layout_owns_every_object_name():
    day, manifest_id = "2026-11-24", "20261124-abc"
    assert LAYOUT.manifest_uri(day, manifest_id) == "s3://acme-lake/_pipeline/manifests/dt=2026-11-24/20261124-abc.json"
    assert LAYOUT.result_uri(day, manifest_id) == "s3://acme-lake/_pipeline/results/dt=2026-11-24/20261124-abc.json"
    assert LAYOUT.publish_log_uri(day, manifest_id).startswith("s3://acme-lake/_pipeline/published/dt=2026-11-24/")
    assert LAYOUT.report_uri(day) == "s3://acme-lake/_pipeline/reports/dt=2026-11-24/report.json"
    part = LAYOUT.part_uri(day, manifest_id, 3, Compression.ZSTD)
    assert part == "s3://acme-lake/events/dt=2026-11-24/part-20261124-abc-00003.zstd.parquet"
    assert part.startswith(LAYOUT.part_prefix(day, manifest_id))
    assert LakeLayout.dt_of(part) == day
    assert LakeLayout.dt_of(LAYOUT.staging_uri(manifest_id)) is None
    assert LAYOUT.quarantined_files_uri(day, manifest_id) == (
        "s3://acme-quarantine/events/dt=2026-11-24/manifest=20261124-abc/files.json"
    )


def test_publish_log_round_trips(tmp_path):
    storage = Storage()
    uri = str(tmp_path / "published.json")
    assert PublishLog.read(storage, uri) is None
    PublishLog(frozenset({"s3://b/x", "s3://b/a"})).write(storage, uri)
    assert json.loads((tmp_path / "published.json").read_text()) == {"uris": ["s3://b/a", "s3://b/x"]}
    assert PublishLog.read(storage, uri) == PublishLog(frozenset({"s3://b/a", "s3://b/x"}))


def test_settings_embed_the_options_and_name_a_bad_one():
    settings = PipelineSettings.from_mapping({"name_prefix": "acme-prod", "conversion": {"read_mode": "strict"}})
    assert settings.conversion.read_mode is ReadMode.STRICT
    arguments = settings.job_arguments(ManifestRef("20261124-abc", "2026-11-24", 3, 30))
    assert arguments.layout == LakeLayout("s3://acme-prod-lake", "s3://acme-prod-quarantine", "events")
    assert arguments.to_glue_args()["--read_mode"] == "strict"
    with pytest.raises(SettingsError, match=r"setting 'conversion\.compression' must be one of"):
        PipelineSettings.from_mapping({"conversion": {"compression": "lz4"}})
    with pytest.raises(SettingsError, match=r"conversion\.mode' is not a conversion option"):
        PipelineSettings.from_mapping({"conversion": {"mode": "strict"}})


def test_every_run_is_told_the_log_settings_and_reads_them_back():
    settings = PipelineSettings.from_mapping({"name_prefix": "acme-prod", "log_format": "json", "log_level": "DEBUG"})
    arguments = settings.job_arguments(ManifestRef("20261124-abc", "2026-11-24", 3, 30))
    glue_args = arguments.to_glue_args()
    assert (glue_args["--log_format"], glue_args["--log_level"]) == ("json", "debug")
    back = JobArguments.from_glue_args({name.removeprefix("--"): value for name, value in glue_args.items()})
    assert back.logs == LogOptions(log_format=LogFormat.JSON, log_level=LogLevel.DEBUG) == settings.logs
    # A run started before the job knew these arguments, or by hand without them, logs as before.
    del glue_args["--log_format"], glue_args["--log_level"]
    assert JobArguments.from_glue_args({n.removeprefix("--"): v for n, v in glue_args.items()}).logs == LogOptions()
    with pytest.raises(OptionError, match=r"--log_level must be one of"):
        JobArguments.from_glue_args({n.removeprefix("--"): v for n, v in glue_args.items()} | {"log_level": "loud"})


class _DeleteRefusingS3:
    """What S3 answers to a quiet DeleteObjects the caller may not delete from: 200 with per-key errors."""

    def delete_objects(self, Bucket, Delete):
        return {"Errors": [{"Key": o["Key"], "Code": "AccessDenied"} for o in Delete["Objects"]]}


def test_a_delete_refused_for_some_keys_raises_naming_them():
    with pytest.raises(StorageError, match=r"could not delete 2 objects from s3://lake: \['a: AccessDenied'"):
        Storage(s3_client=_DeleteRefusingS3()).delete(["s3://lake/a", "s3://lake/b"])
