"""The cost formula, the Glue billing rules, and the fixed infrastructure as the Terraform declares it."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from ndjson_pipeline.usage import Usage
from ndjson_pipeline.usage.costs import GB, FixedInfrastructure, day_cost, variable_costs
from ndjson_pipeline.usage.glue import ExecutionClass, billed_dpu_seconds, local_run_usage, runs_usage
from ndjson_pipeline.usage.prices import PRICES
from tests.infra import hcl
from tests.infra.code_facts import published_metrics


def _make_usage(**overrides) -> Usage:
    values = {
        "requests": Counter(
            {
                "s3.PutObject": 1000,
                "s3.GetObject": 10_000,
                "s3.DeleteObject": 500,
                "sqs.ReceiveMessage": 1_000_000,
                "glue.GetJobRuns": 40,
                "dynamodb.TransactWriteItems": 10,
                "cloudwatch.PutMetricData": 1000,
            }
        ),
        "write_units": 2_000_000,
        "read_units": 8_000_000,
        "glue_runs": 10,
        "glue_dpu_seconds": 3600,
        "output_bytes": GB,
    }
    return Usage(**{**values, **overrides})


def test_each_component_follows_the_price_table():
    costs = variable_costs(_make_usage(), landing_bytes=30 * GB, landing_days=30)
    assert costs["glue"] == pytest.approx(PRICES.glue_dpu_hour)
    assert costs["s3_requests"] == pytest.approx(1000 * 0.005 / 1000 + 10_000 * 0.0004 / 1000)  # DELETE is free
    assert costs["sqs"] == pytest.approx(0.40)
    assert costs["dynamodb"] == pytest.approx(2 * 0.625 + 8 * 0.125)
    assert costs["cloudwatch"] == pytest.approx(0.01)
    assert costs["landing_storage"] == pytest.approx(30 * PRICES.s3_storage_gb_month)  # 30 GB kept a month


def test_an_operation_without_a_price_is_an_error_naming_it():
    with pytest.raises(ValueError, match=r"kinesis\.PutRecord"):
        variable_costs(_make_usage(requests=Counter({"kinesis.PutRecord": 1})), landing_bytes=0, landing_days=30)


def test_day_cost_per_file_with_fixed_costs_apart():
    usage = _make_usage()
    cost = day_cost(usage, files=1000, landing_bytes=30 * GB, landing_days=30)
    total = sum(variable_costs(usage, landing_bytes=30 * GB, landing_days=30).values())
    assert cost["per_file_usd"] == pytest.approx(total / 1000, rel=1e-6)
    assert sum(cost["share_by_component"].values()) == pytest.approx(1, abs=0.01)
    assert cost["fixed_per_day_usd"]["mwaa_environment"] == pytest.approx(24 * 0.49)
    assert cost["fixed_per_day_usd"]["vpc_interface_endpoints"] == pytest.approx(24 * 12 * 2 * 0.01)
    assert cost["fixed_per_file_usd"] == pytest.approx(sum(cost["fixed_per_day_usd"].values()) / 1000, rel=1e-3)
    assert cost["lake_storage_added_usd_per_month"] == pytest.approx(PRICES.s3_storage_gb_month)
    assert cost["dynamodb_units_per_file"] == {"write": 2000.0, "read": 8000.0}


def test_fixed_infrastructure_is_what_the_terraform_declares():
    fixed = FixedInfrastructure()
    network = hcl.module_doc(hcl.INFRA / "modules" / "network")
    required = hcl.blocks(network, "locals")["required_endpoints"]
    assert sum(kind == "Interface" for kind in required.values()) == fixed.interface_endpoints
    assert len(published_metrics()) == fixed.custom_metrics  # one Dataset each
    variables = hcl.blocks(hcl.module_doc(hcl.ENV_ROOT), "variable")
    assert variables["mwaa_environment_class"]["default"] == fixed.mwaa_environment_class
    mwaa_call = hcl.blocks(hcl.module_doc(hcl.ENV_ROOT), "module")["mwaa"]
    assert mwaa_call["subnet_ids"] == f"${{slice(var.subnet_ids, 0, {fixed.availability_zones})}}"


def test_glue_bills_each_run_at_least_a_minute_of_its_capacity():
    short = {"JobRunState": "SUCCEEDED", "ExecutionTime": 24, "WorkerType": "G.1X", "NumberOfWorkers": 2}
    long = {**short, "ExecutionTime": 150}
    assert billed_dpu_seconds(short) == 120
    assert billed_dpu_seconds(long) == 300
    # Flex and auto-scaling runs report their DPU-seconds, and the minimum holds for them too.
    assert billed_dpu_seconds({**short, "DPUSeconds": 95.5}) == 120
    assert billed_dpu_seconds({**long, "DPUSeconds": 250.5}) == 250.5
    # A run that never started consumed nothing and is not billed.
    assert billed_dpu_seconds({**short, "JobRunState": "EXPIRED", "ExecutionTime": 0}) == 0
    start = datetime(2026, 11, 24, tzinfo=UTC)
    runs = [
        {**short, "StartedOn": start, "CompletedOn": start + timedelta(seconds=44)},
        {**long, "JobRunState": "FAILED"},
        {**short, "JobRunState": "RUNNING"},  # not ended: billed once it ends, recorded by a later finaliser
    ]
    usage = runs_usage(runs, poll_seconds=30)
    assert (usage.glue_runs, usage.glue_dpu_seconds) == (2, 420)
    assert usage.requests == {"glue.GetJobRun": 3}  # 44 s at one poll per 30 s, plus the last


def test_each_run_is_priced_at_its_execution_class_rate():
    standard = {"JobRunState": "SUCCEEDED", "ExecutionTime": 150, "WorkerType": "G.1X", "NumberOfWorkers": 2}
    flex = {**standard, "ExecutionClass": "FLEX", "ExecutionTime": 20, "DPUSeconds": 38.0}
    usage = runs_usage([standard, flex, {**flex, "JobRunState": "WAITING"}], poll_seconds=30)
    assert (usage.glue_runs, usage.glue_dpu_seconds) == (2, 300 + 120)
    assert (usage.glue_flex_runs, usage.glue_flex_dpu_seconds) == (1, 120)  # its minute, at Flex's rate
    glue = variable_costs(usage, landing_bytes=0, landing_days=30)["glue"]
    assert glue == pytest.approx(300 / 3600 * PRICES.glue_dpu_hour + 120 / 3600 * PRICES.glue_flex_dpu_hour)
    assert PRICES.glue_flex_dpu_hour < PRICES.glue_dpu_hour
    # A record written before execution classes were recorded reads as all STANDARD.
    assert Usage.from_dict({"glue_runs": 1, "glue_dpu_seconds": 120}).glue_flex_dpu_seconds == 0
    assert Usage.from_dict(usage.as_dict()) == usage


def test_a_local_run_is_priced_as_the_glue_job_would_be_in_the_class_it_was_asked_for():
    spec = {"worker_type": "G.1X", "number_of_workers": 2}
    assert local_run_usage(12.3, spec, ExecutionClass.STANDARD).glue_dpu_seconds == 120
    assert local_run_usage(61.2, spec, ExecutionClass.STANDARD).glue_dpu_seconds == 124
    flex = local_run_usage(61.2, spec, ExecutionClass.FLEX)
    assert (flex.glue_runs, flex.glue_flex_runs, flex.glue_dpu_seconds, flex.glue_flex_dpu_seconds) == (1, 1, 124, 124)
