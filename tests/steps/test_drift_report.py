"""The day report's drift: rescued field paths of the day's manifests, the rescued share, and the next schema version.

The job's side is played by results carrying the drift the job counts (tests/glue/test_drift.py shows the job
counting it); the report reads the day's results over the moto server, as the MWAA role.
"""

from __future__ import annotations

import json
import shutil

from ndjson_pipeline.dataset_schema import SchemaRegistry, evolution_problems
from ndjson_pipeline.drift import Drift, RescuedPath
from ndjson_pipeline.schema_inference import Observed, field_types, type_string
from ndjson_pipeline.steps.reconcile import reconcile_day
from ndjson_pipeline.steps.reporting import day_report
from tests.conftest import make_stack
from tests.factories import DAY, EVENTS_SCHEMA, EVENTS_SCHEMA_PATH, TODAY, finalise, plan, publish_result
from tools.schema import check_schema_file


def _path(rows: int, *values: object, declared: bool = False) -> RescuedPath:
    observed = Observed()
    for value in values:
        observed.add(value)
    return RescuedPath(rows, declared, observed)


def _day_of_manifests(stack, files: int) -> list:
    for i in range(files):
        key = f"incoming/2026/11/24/d{i}.ndjson"
        stack.s3.put_object(Bucket=stack.names.landing_bucket, Key=key, Body=b"{}\n")
    reconcile_day(stack.s3, stack.ledger, stack.settings, stack.names.landing_bucket, DAY, today=TODAY)
    return plan(stack)


def test_the_report_lists_the_days_rescued_paths_and_the_next_version_that_takes_the_new_ones_in(small_batches):
    stack = small_batches
    first, second, old = _day_of_manifests(stack, 12)
    drifts = {
        first.manifest_id: Drift(
            {"user.plan": _path(3, "pro", "free", "pro"), "value": _path(1, "n/a", declared=True)}, omitted=2
        ),
        second.manifest_id: Drift(
            {
                "user.plan": _path(2, "pro", "pro"),
                "promo": _path(1, {"code": "X", "pct": 5}),
                "items[].discount": _path(2, 0.5, 1, 2),
            }
        ),
    }
    for ref in (first, second, old):  # 4 files of 3 rows each: 12 rows out per manifest
        publish_result(stack, ref, rescued_per_file=1, drift=drifts.get(ref.manifest_id))
        finalise(stack, ref)

    drift = day_report(stack.ledger, stack.storage, stack.settings, DAY)["drift"]

    assert (drift["manifests"], drift["manifests_unknown"], drift["omitted_paths"]) == (3, 1, 2)
    assert (drift["rows_rescued_percent"], drift["alert"]) == (33.333, True)  # 12 of 36 rows, over 1%
    assert drift["new_fields"] == [
        {"path": "user.plan", "rows": 5, "type": "string"},
        {"path": "items[].discount", "rows": 2, "type": "double"},
        {"path": "promo", "rows": 1, "type": "struct<code:string,pct:long>"},
    ]
    assert drift["mismatched"] == [{"path": "value", "rows": 1, "type": "string", "declared": "double"}]
    nxt = drift["next_schema"]
    assert nxt["version"] == EVENTS_SCHEMA.version + 1
    types = {path: type_string(t) for path, t in field_types(nxt["fields"])}
    assert (types["user.plan"], types["items[].discount"], types["promo"]) == (
        "string",
        "double",
        "struct<code:string,pct:long>",
    )
    declared = dict(field_types(EVENTS_SCHEMA.fields))
    assert set(types) - set(declared) == {"user.plan", "items[].discount", "promo", "promo.code", "promo.pct"}
    assert evolution_problems(EVENTS_SCHEMA.fields, nxt["fields"]) == []
    stored = json.loads(stack.storage.read_bytes(stack.settings.layout.report_uri(DAY)))
    assert stored["drift"] == drift


def test_the_next_version_passes_the_schema_check_against_the_history(small_batches, tmp_path):
    stack = small_batches
    (ref,) = _day_of_manifests(stack, 4)
    publish_result(stack, ref, drift=Drift({"user.plan": _path(1, "pro"), "session": _path(1, {"id": "s"})}))
    finalise(stack, ref)
    nxt = day_report(stack.ledger, stack.storage, stack.settings, DAY)["drift"]["next_schema"]

    history = tmp_path / "history" / "events"
    shutil.copytree(EVENTS_SCHEMA_PATH.parent / "history" / "events", history)
    (history / f"{EVENTS_SCHEMA.version}.json").write_text(EVENTS_SCHEMA_PATH.read_text())
    (tmp_path / "events.json").write_text(json.dumps(nxt))
    assert check_schema_file(tmp_path / "events.json").version == EVENTS_SCHEMA.version + 1
    assert SchemaRegistry(tmp_path, "events").check().version == EVENTS_SCHEMA.version + 1


def test_paths_the_current_schema_declares_since_are_not_proposed_again(small_batches):
    stack = small_batches
    current = json.loads(stack.storage.read_bytes(stack.settings.dataset_schema_uri))
    current["version"] = 2
    current["fields"].append({"name": "plan", "type": "string", "nullable": True, "metadata": {}})
    stack.s3.put_object(Bucket=stack.names.assets_bucket, Key="glue/schemas/events.json", Body=json.dumps(current))
    (ref,) = _day_of_manifests(stack, 4)
    publish_result(stack, ref, drift=Drift({"plan": _path(4, "pro")}))
    finalise(stack, ref)

    drift = day_report(stack.ledger, stack.storage, stack.settings, DAY)["drift"]

    assert drift["declared_now"] == [{"path": "plan", "rows": 4, "type": "string", "declared": "string"}]
    assert (drift["new_fields"], drift["next_schema"]) == ([], None)


def test_a_day_under_the_alert_percentage_raises_no_alert(aws_endpoint):
    stack = make_stack(aws_endpoint, max_files_per_manifest=4, rescued_rows_alert_percent=50)
    (ref,) = _day_of_manifests(stack, 4)
    publish_result(stack, ref, rescued_per_file=1, drift=Drift())
    finalise(stack, ref)

    drift = day_report(stack.ledger, stack.storage, stack.settings, DAY)["drift"]

    assert (drift["rows_rescued_percent"], drift["alert_percent"], drift["alert"]) == (33.333, 50.0, False)
    assert (drift["manifests"], drift["manifests_unknown"], drift["new_fields"], drift["next_schema"]) == (
        1,
        0,
        [],
        None,
    )


def test_results_written_before_drift_was_counted_report_it_unknown_not_zero(small_batches):
    stack = small_batches
    (ref,) = _day_of_manifests(stack, 4)
    publish_result(stack, ref)  # no drift: as every result written before this change
    finalise(stack, ref)
    drift = day_report(stack.ledger, stack.storage, stack.settings, DAY)["drift"]
    assert (drift["manifests"], drift["manifests_unknown"]) == (1, 1)
