"""The job's drift count: which field paths the rows it publishes hold in ``_rescued_data``, per group and manifest."""

from __future__ import annotations

import gzip
import hashlib
import json
import random
from pathlib import Path

import pytest

from ndjson_job import output as output_module
from ndjson_job import reading as reading_module
from ndjson_job.drift import rescued_paths
from ndjson_job.groups import GroupWork, convert_group
from ndjson_job.job import convert_manifest
from ndjson_job.lines import LineRules, classify_line
from ndjson_job.schema import arrow_schema, parse_schema
from ndjson_pipeline.conversion import ConversionOptions, JobArguments
from ndjson_pipeline.files import FileVersion
from ndjson_pipeline.layout import LakeLayout
from ndjson_pipeline.manifest import JobResult
from ndjson_pipeline.storage import Storage
from tests.glue.conftest import DAY, SCHEMA_PATH, make_local_job
from tools.sample_data import make_event

_ARGS = JobArguments("m-1", DAY, LakeLayout("s3://lake", "s3://quarantine", "events"), str(SCHEMA_PATH))
SCHEMA = arrow_schema(parse_schema(SCHEMA_PATH.read_text(), _ARGS))
RULES = LineRules(schema=SCHEMA, day=DAY)


def _rescued(line: dict) -> dict[str, str]:
    """What the job's line rules put in _rescued_data for ``line``."""
    _, rescued, reason = classify_line(json.dumps(line), RULES)
    assert reason is None
    assert rescued is not None
    return json.loads(rescued)


def _event(n: int = 0, **changes) -> dict:
    event = make_event(random.Random(n), f"e-{n}")
    for path, value in changes.items():
        target = event
        *parents, name = path.split(".")
        for parent in parents:
            target = target[parent]
        target[name] = value
    return event


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (_event(plan="pro"), {"plan": (False, ["pro"])}),
        # _rescued_data keeps a string as it is: for an undeclared field, text that reads as a number is one.
        (_event(plan="12"), {"plan": (False, [12])}),
        (_event(promo={"code": "X", "pct": 5}), {"promo": (False, [{"code": "X", "pct": 5}])}),
        (_event(**{"user.plan": "gold"}), {"user.plan": (False, ["gold"])}),
        (_event(**{"context.page.title": None}), {"context.page.title": (False, [None])}),
        (_event(value="not-a-number"), {"value": (True, ["not-a-number"])}),
        (_event(count="5"), {"count": (True, ["5"])}),  # declared long, given as text that reads as one
        (_event(**{"user.age": "33", "user.tier": 2}), {"user.age": (True, ["33"]), "user.tier": (False, [2])}),
        (
            _event(items=[{"sku": "a", "qty": 1, "discount": 0.5}, {"sku": "b", "qty": "x", "discount": 1}]),
            {"items[].discount": (False, [0.5, 1]), "items[].qty": (True, ["x"])},
        ),
        (_event(tags=["a", 1]), {"tags[]": (True, [1])}),
    ],
    ids=[
        "new top-level field",
        "new field whose text reads as a number",
        "new struct",
        "new nested field",
        "new nested null",
        "mismatched double",
        "mismatched long given as numeric text",
        "mismatched and new in one struct",
        "array items",
        "array item of another type",
    ],
)
def test_rescued_values_are_walked_down_to_the_paths_that_did_not_fit(line, expected):
    assert rescued_paths(_rescued(line), SCHEMA) == expected


def test_earlier_values_of_a_repeated_key_are_not_a_field():
    _, rescued, _ = classify_line('{"event_id": "a", "event_id": "b", "plan": 1}', RULES)
    assert "_duplicate_keys" in json.loads(rescued)
    assert rescued_paths(json.loads(rescued), SCHEMA) == {"plan": (False, [1])}


def _local_files(root: Path, bodies: dict[str, bytes]) -> list[FileVersion]:
    files = []
    for key, body in bodies.items():
        (root / "landing").mkdir(parents=True, exist_ok=True)
        (root / "landing" / key).write_bytes(body)
        files.append(FileVersion("landing", key, hashlib.md5(body, usedforsecurity=False).hexdigest(), len(body)))
    return files


def _body(events: list[dict]) -> bytes:
    return b"".join(json.dumps(e).encode() + b"\n" for e in events)


def test_a_group_counts_the_rows_of_each_rescued_path_it_publishes(tmp_path):
    events = [_event(n) for n in range(300)]
    for n in range(0, 300, 3):
        events[n]["plan"] = "pro" if n % 2 else 7
    for n in range(0, 300, 10):
        events[n]["user"]["tier"] = "gold"
    storage = Storage(bucket_root=str(tmp_path))
    files = _local_files(tmp_path, {"a.ndjson": _body(events[:150]), "b.ndjson": _body(events[150:])})
    work = GroupWork(0, tuple(files), RULES, storage, str(tmp_path / "staging"), "m-1")

    drift = convert_group(work).drift

    assert sorted(drift.paths) == ["plan", "user.tier"]
    assert (drift.paths["plan"].rows, drift.paths["plan"].declared) == (100, False)
    assert drift.paths["plan"].values.kinds == {"string": 50, "long": 50}
    assert (drift.paths["user.tier"].rows, dict(drift.paths["user.tier"].values.kinds)) == (30, {"string": 30})


def test_a_group_has_no_drift_in_strict_mode(tmp_path):
    files = _local_files(tmp_path, {"a.ndjson": _body([_event(0, plan="pro"), _event(1)])})
    rules = LineRules(schema=SCHEMA, day=DAY, options=ConversionOptions(read_mode="strict"))
    output = convert_group(GroupWork(0, tuple(files), rules, Storage(bucket_root=str(tmp_path)), str(tmp_path), "m"))
    assert output.drift is not None
    assert output.drift.paths == {}


def test_rows_of_a_file_dropped_after_they_were_written_are_not_counted(tmp_path, monkeypatch):
    """A truncated gzip is found at its end, after some of its rows were written: the group starts again."""
    monkeypatch.setattr(output_module, "ROW_GROUP_BYTES", 64 * 1024)
    monkeypatch.setattr(reading_module, "BLOCK_BYTES", 64 * 1024)
    monkeypatch.setattr(reading_module, "READ_BYTES", 64 * 1024)
    kept = [_event(n, plan="pro") for n in range(50)]
    dropped = [_event(n, plan="pro", extra=n) for n in range(50, 4050)]
    bodies = {"a.ndjson": _body(kept), "b.ndjson.gz": gzip.compress(_body(dropped))[:-200]}
    storage = Storage(bucket_root=str(tmp_path))
    work = GroupWork(0, tuple(_local_files(tmp_path, bodies)), RULES, storage, str(tmp_path / "staging"), "m-1")

    output = convert_group(work)

    outcomes = {r.uri.rsplit("/", 1)[1]: r.outcome for r in output.files}
    assert outcomes == {"a.ndjson": "DONE", "b.ndjson.gz": "QUARANTINED"}
    assert {path: p.rows for path, p in output.drift.paths.items()} == {"plan": 50}


@pytest.mark.spark
def test_the_result_records_the_manifests_drift(tmp_path, spark):
    events = [_event(n) for n in range(40)]
    for n in range(0, 40, 4):
        events[n]["user"]["plan"] = "pro"
    bodies = {f"in/{i}.ndjson": _body(events[i * 10 : (i + 1) * 10]) for i in range(4)}
    job = make_local_job(tmp_path, bodies, target_file_mb="0.01")  # a group per file: the groups' counts add up

    convert_manifest(spark, job.arguments, Storage(bucket_root=job.bucket_root))

    result = JobResult.from_json(job.result_path.read_text())
    assert result.rows_rescued == 10
    assert {path: (p.rows, p.declared) for path, p in result.drift.paths.items()} == {"user.plan": (10, False)}
    assert dict(result.drift.paths["user.plan"].values.kinds) == {"string": 10}
