"""The landing bucket's lifecycle: raw data expires after resources.json's retention, which the ledger outlasts."""

from __future__ import annotations

from ndjson_pipeline.layout import WORK_PREFIX
from ndjson_pipeline.resources import landing_noncurrent_days, landing_retention_days
from ndjson_pipeline.settings import LIFECYCLE_LAG_DAYS, PipelineSettings
from tests.infra import hcl


def _dynamic_rules() -> dict[str, dict]:
    doc = hcl.module_doc(hcl.module_folder("storage"))
    lifecycle = hcl.blocks(doc, "resource", "aws_s3_bucket_lifecycle_configuration")["this"]
    rules = {}
    for entry in lifecycle["dynamic"]:
        (content,) = entry["rule"]["content"]
        rules[content["id"]] = {"for_each": entry["rule"]["for_each"], **content}
    return rules


def test_landing_data_expires_after_the_retention_resources_json_declares():
    rule = _dynamic_rules()["expire-landing-data"]
    assert rule["for_each"] == '${each.key == "landing" ? [""] : []}'
    assert rule["filter"] == [{}]  # the whole bucket: objects outside the layout are raw data too
    assert rule["expiration"] == [{"days": "${var.landing_retention_days}"}]
    inputs = hcl.module_inputs("storage", hcl.env_context("acme"))
    assert inputs["landing_retention_days"] == landing_retention_days()
    call = hcl.blocks(hcl.module_doc(hcl.ENV_ROOT), "module")["storage"]
    assert call["landing_retention_days"] == "${local.spec.landing_retention.days}"


def test_expired_landing_versions_and_their_markers_go_too():
    rules = _dynamic_rules()
    assert rules["remove-expired-delete-markers"]["expiration"] == [{"expired_object_delete_marker": True}]
    inputs = hcl.module_inputs("storage", hcl.env_context("acme"))
    assert inputs["landing_noncurrent_version_retention_days"] == landing_noncurrent_days()
    assert 1 <= landing_noncurrent_days() < inputs["noncurrent_version_retention_days"]


def test_the_ledger_outlasts_the_landing_data_by_default():
    assert PipelineSettings().terminal_ttl_days >= landing_retention_days() + LIFECYCLE_LAG_DAYS


def test_work_in_progress_outside_the_datasets_expires_and_keeps_no_old_versions():
    rule = _dynamic_rules()["expire-work-in-progress"]
    assert rule["for_each"] == '${contains(["lake", "quarantine"], each.key) ? [""] : []}'
    assert rule["filter"] == [{"prefix": f"{WORK_PREFIX}/"}]
    assert rule["expiration"] == [{"days": "${var.pipeline_retention_days}"}]
    assert rule["noncurrent_version_expiration"] == [{"noncurrent_days": 1}]
    layout = PipelineSettings().layout
    for uri in (layout.staging_uri("m"), layout.rebuild("r").lake_root, layout.compaction("c").quarantine_root):
        assert f"/{WORK_PREFIX}/" in uri
        assert not uri.startswith(layout.dataset_uri + "/")
