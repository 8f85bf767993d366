"""Every alarm watches a metric that exists with the dimensions it names, and every metric the DAGs publish is alarmed.

The pipeline's own metrics are found in the code (tests/infra/code_facts.py); AWS's
are held to the dimension sets AWS documents for them (below, with where). A
metric with a wrong name or dimension set never gets a data point, so its alarm
never fires (or, with missing data breaching, always fires): both fail here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from ndjson_pipeline.resources import ResourceNames, ledger_spec
from ndjson_pipeline.settings import PipelineSettings
from tests.infra import hcl
from tests.infra.code_facts import PLUGINS, ROOT, ledger_operations, metric_dimensions, published_metrics

MONITORING = hcl.INFRA / "modules" / "monitoring"
NAME_PREFIX = "acme-ndjson-prod"
# (namespace, metric) -> the dimension sets AWS publishes it with.
AWS_METRICS = {
    # Amazon SQS Developer Guide, "Available CloudWatch metrics for Amazon SQS": QueueName only.
    ("AWS/SQS", "ApproximateNumberOfMessagesVisible"): [{"QueueName"}],
    ("AWS/SQS", "ApproximateAgeOfOldestMessage"): [{"QueueName"}],
    # DynamoDB Developer Guide, "DynamoDB metrics and dimensions": throttle events per table and per index;
    # SystemErrors per table and operation (data-plane operations only).
    ("AWS/DynamoDB", "ReadThrottleEvents"): [{"TableName"}, {"TableName", "GlobalSecondaryIndexName"}],
    ("AWS/DynamoDB", "WriteThrottleEvents"): [{"TableName"}, {"TableName", "GlobalSecondaryIndexName"}],
    ("AWS/DynamoDB", "SystemErrors"): [{"TableName", "Operation"}],
    # MWAA User Guide, Apache Airflow metrics in CloudWatch: namespace AmazonMWAA, scheduler_heartbeat as
    # SchedulerHeartbeat with Function=Scheduler, per Environment (AWS/MWAA holds container/queue/database metrics).
    ("AmazonMWAA", "SchedulerHeartbeat"): [{"Environment", "Function"}],
    # EventBridge User Guide, "Monitoring Amazon EventBridge": FailedInvocations per RuleName.
    ("AWS/Events", "FailedInvocations"): [{"RuleName"}],
}
# Published but deliberately not alarmed, and why.
NOT_ALARMED = {
    "OpenDays": "informational: how many days still hold unfinished work; a stuck day shows as OldestPendingAgeSeconds",
    "RescuedRowsPercent": "informational: the day's rescued share; the report judges it against the setting "
    "rescued_rows_alert_percent (the threshold's one home) and the alarm watches RescuedRowsAlerts",
}


@dataclass(frozen=True)
class Watched:
    alarm: str
    namespace: str
    metric: str
    dimensions: tuple[tuple[str, str], ...]

    @property
    def dimension_names(self) -> set[str]:
        return {name for name, _ in self.dimensions}


def _context() -> dict:
    env = hcl.env_context(NAME_PREFIX)
    # A function call the resolver leaves alone: with mwaa_environment_name unset (null) it is the name prefix.
    assert hcl.blocks(hcl.module_doc(hcl.ENV_ROOT), "locals")["mwaa_environment_name"] == (
        "${coalesce(var.mwaa_environment_name, var.name_prefix)}"
    )
    env["local"]["mwaa_environment_name"] = NAME_PREFIX
    inputs = hcl.module_inputs("monitoring", env)
    doc = hcl.module_doc(MONITORING)
    context = {"var": inputs, "local": hcl.blocks(doc, "locals")}
    rules = hcl.blocks(doc, "resource", "aws_cloudwatch_event_rule")
    context["aws_cloudwatch_event_rule"] = {n: {"name": hcl.resolve(r["name"], context)} for n, r in rules.items()}
    return context


def _alarms() -> dict[str, dict]:
    return hcl.blocks(hcl.module_doc(MONITORING), "resource", "aws_cloudwatch_metric_alarm")


def _iterations(for_each, context: dict) -> list[tuple[str, object]]:
    if isinstance(for_each, dict):
        return list(for_each.items())
    match = re.fullmatch(r"\$\{toset\((local\.\w+)\)\}", for_each)
    assert match, f"unsupported for_each {for_each}"
    return [(item, item) for item in hcl.resolve("${" + match.group(1) + "}", context)]


def _metric_id(expression: str, key: str, value: object) -> str:
    return {"${metric_query.key}": key, "${lower(metric_query.value)}": str(value).lower()}[expression]


def watched(name: str, alarm: dict, context: dict) -> list[Watched]:
    """The metrics an alarm reads: its own, or those of its metric queries (dynamic ones expanded)."""
    if "metric_name" in alarm:
        resolved = hcl.resolve(alarm, context)
        dims = tuple(sorted(resolved.get("dimensions", {}).items()))
        return [Watched(name, resolved["namespace"], resolved["metric_name"], dims)]
    queries = [(q, context) for q in alarm.get("metric_query", [])]
    for dynamic in alarm.get("dynamic", []):
        (content,) = dynamic["metric_query"]["content"]
        for key, value in _iterations(dynamic["metric_query"]["for_each"], context):
            item = {**context, "metric_query": {"key": key, "value": value}}
            queries.append(({**content, "id": _metric_id(content["id"], key, value)}, item))
    found = []
    for query, query_context in queries:
        for metric in query.get("metric", []):
            resolved = hcl.resolve(metric, query_context)
            dims = tuple(sorted(resolved.get("dimensions", {}).items()))
            found.append(Watched(name, resolved["namespace"], resolved["metric_name"], dims))
    return found


def _all_watched() -> list[Watched]:
    context = _context()
    return [w for name, alarm in _alarms().items() for w in watched(name, alarm, context)]


def problems(metrics: list[Watched], pipeline_namespace: str, published: set[str], dimensions: set[str]) -> list[str]:
    """What no data point would ever match: unknown metrics, wrong dimension sets, placeholders left unresolved."""
    found = []
    for w in metrics:
        if any("${" in value for _, value in w.dimensions):
            found.append(f"{w.alarm}: unresolved dimension in {w.dimensions}")
        if w.namespace == pipeline_namespace:
            if w.metric not in published:
                found.append(f"{w.alarm}: {w.metric} is not published by the DAGs")
            if w.dimension_names != dimensions:
                named = sorted(w.dimension_names)
                found.append(f"{w.alarm}: {w.metric} is published with {sorted(dimensions)}, not {named}")
        elif (w.namespace, w.metric) not in AWS_METRICS:
            found.append(f"{w.alarm}: {w.namespace}/{w.metric} is not a metric this test knows AWS publishes")
        elif w.dimension_names not in AWS_METRICS[(w.namespace, w.metric)]:
            found.append(f"{w.alarm}: {w.namespace}/{w.metric} has no dimension set {sorted(w.dimension_names)}")
    return found


def _check(metrics: list[Watched]) -> list[str]:
    return problems(metrics, PipelineSettings().metrics_namespace, set(published_metrics()), set(metric_dimensions()))


def test_every_alarm_watches_a_metric_with_the_dimensions_it_is_published_with():
    metrics = _all_watched()
    assert metrics
    assert _check(metrics) == []


@pytest.mark.parametrize(
    "metric",
    [
        Watched("a", "NdjsonPipeline", "FailedFile", (("Dataset", "events"),)),  # misspelt
        Watched("a", "NdjsonPipeline", "FailedFiles", (("Dataset", "events"), ("Manifest", "m"))),
        Watched("a", "AWS/DynamoDB", "SystemErrors", (("TableName", "t"),)),  # needs Operation
        Watched("a", "AWS/MWAA", "SchedulerHeartbeat", (("Environment", "e"), ("Function", "Scheduler"))),
        Watched("a", "AWS/SQS", "ApproximateAgeOfOldestMessage", (("QueueName", "${var.queue_name}"),)),
    ],
)
def test_the_checker_finds_metrics_no_data_point_would_match(metric):
    assert _check([metric])


def test_every_published_metric_is_alarmed_or_said_why_not():
    pipeline = PipelineSettings().metrics_namespace
    alarmed = {w.metric for w in _all_watched() if w.namespace == pipeline}
    published = published_metrics()
    assert set(published) - alarmed == set(NOT_ALARMED), {m: published[m] for m in set(published) - alarmed}
    assert not set(NOT_ALARMED) & alarmed


def test_metrics_are_published_only_through_publish_metrics():
    # Otherwise a metric could be published with other names or dimensions than the static scan sees.
    callers = {
        f"{p.relative_to(ROOT)}": p.read_text().count(".put_metrics(") + p.read_text().count(".put_metric_data(")
        for p in PLUGINS.rglob("*.py")
    }
    assert {p: n for p, n in callers.items() if n} == {
        "plugins/ndjson_pipeline_airflow/monitoring.py": 1,
        "plugins/ndjson_pipeline_airflow/hooks/cloudwatch.py": 1,
    }


def test_the_alarms_watch_this_deployments_resources():
    names, settings = ResourceNames(NAME_PREFIX), PipelineSettings()
    by_metric = {}
    for w in _all_watched():
        by_metric.setdefault((w.namespace, w.metric), set()).add(w.dimensions)
    assert by_metric[("AWS/SQS", "ApproximateNumberOfMessagesVisible")] == {(("QueueName", names.dlq),)}
    assert by_metric[("AWS/SQS", "ApproximateAgeOfOldestMessage")] == {(("QueueName", names.queue),)}
    index = ledger_spec()["work_index"]["name"]
    assert by_metric[("AWS/DynamoDB", "WriteThrottleEvents")] == {
        (("TableName", names.ledger_table),),
        (("GlobalSecondaryIndexName", index), ("TableName", names.ledger_table)),
    }
    assert by_metric[("AWS/DynamoDB", "ReadThrottleEvents")] == by_metric[("AWS/DynamoDB", "WriteThrottleEvents")]
    heartbeat = {(("Environment", NAME_PREFIX), ("Function", "Scheduler"))}
    assert by_metric[("AmazonMWAA", "SchedulerHeartbeat")] == heartbeat
    assert by_metric[("AWS/Events", "FailedInvocations")] == {(("RuleName", f"{NAME_PREFIX}-glue-run-failed"),)}
    for metric in published_metrics():
        if metric not in NOT_ALARMED:
            assert by_metric[(settings.metrics_namespace, metric)] == {(("Dataset", settings.dataset),)}
    env_variables = hcl.blocks(hcl.module_doc(hcl.ENV_ROOT), "variable")
    assert env_variables["dataset"]["default"] == settings.dataset


def test_system_errors_cover_every_operation_the_ledger_calls():
    declared = hcl.blocks(hcl.module_doc(MONITORING), "locals")["ledger_operations"]
    assert set(declared) == ledger_operations()
    operations = {dict(w.dimensions)["Operation"] for w in _all_watched() if w.metric == "SystemErrors"}
    assert operations == ledger_operations()


def test_metric_math_alarms_return_one_sum_of_their_metrics():
    for name, alarm in _alarms().items():
        if "metric_name" in alarm:
            continue
        returned = [q for q in alarm["metric_query"] if q.get("return_data")]
        assert [q["expression"] for q in returned] == ["SUM(METRICS())"], name
        assert len(watched(name, alarm, _context())) <= 10, f"{name}: CloudWatch allows 10 metrics per alarm"


def test_every_alarm_notifies_the_alert_topic_when_it_fires_and_when_it_clears():
    assert hcl.blocks(hcl.module_doc(MONITORING), "locals")["actions"] == ["${aws_sns_topic.alerts.arn}"]
    for name, alarm in _alarms().items():
        assert alarm["alarm_actions"] == "${local.actions}", name
        assert alarm["ok_actions"] == "${local.actions}", name


def test_silence_is_an_alarm_where_the_metric_is_a_heartbeat():
    # Published every cycle (OldestPendingAgeSeconds) or every few seconds (SchedulerHeartbeat): no data means
    # the publisher stopped. The others are published only when something went wrong.
    missing = {name: alarm["treat_missing_data"] for name, alarm in _alarms().items()}
    breaching = {name for name, treat in missing.items() if treat == "breaching"}
    assert breaching == {"oldest_pending_age", "mwaa_scheduler_heartbeat"}
    assert set(missing.values()) == {"breaching", "notBreaching"}


def test_glue_run_failures_go_to_the_topic_through_eventbridge():
    doc = hcl.module_doc(MONITORING)
    rule = hcl.blocks(doc, "resource", "aws_cloudwatch_event_rule")["glue_failed"]
    pattern = rule["event_pattern"]
    for state in ("FAILED", "TIMEOUT", "ERROR"):
        assert f'"{state}"' in pattern
    target = hcl.blocks(doc, "resource", "aws_cloudwatch_event_target")["glue_failed"]
    assert target["arn"] == "${aws_sns_topic.alerts.arn}"
