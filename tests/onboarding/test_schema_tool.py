"""``python -m tools.schema``: a schema proposed from sample files (local and over the moto server), and checked."""

from __future__ import annotations

import gzip
import json
import random
import uuid
from pathlib import Path

import pytest

from ndjson_pipeline.dataset_schema import DeclaredSchema
from ndjson_pipeline.storage import Storage
from tools.local_stack import client
from tools.sample_data import make_event
from tools.schema import main

EVENTS_SCHEMA = Path(__file__).resolve().parents[2] / "glue_scripts" / "schemas" / "events.json"


def _lines(*objects: object) -> bytes:
    return b"".join(json.dumps(o).encode() + b"\n" for o in objects)


def _orders(n: int, start: int = 0) -> list[dict]:
    return [
        {
            "order_id": f"o-{i}",
            "amount": i * 1.5 if i % 2 else i,
            "placed_at": f"2026-11-24T10:{i % 60:02d}:00Z",
            "customer": {"id": f"c-{i}", "country": "DE"} | ({"vip": True} if i % 5 == 0 else {}),
            "lines": [{"sku": "s", "qty": 1}],
        }
        for i in range(start, start + n)
    ]


def _propose(capsys, *argv: str, storage: Storage | None = None) -> tuple[int, str, str]:
    code = main(["propose", *argv], storage=storage)
    out, err = capsys.readouterr()
    return code, out, err


def _types(path: Path) -> dict[str, object]:
    return {f["name"]: f["type"] for f in json.loads(path.read_text())["fields"]}


def test_propose_reads_plain_and_gzip_files_and_writes_the_schema_for_review(tmp_path, capsys):
    samples = tmp_path / "samples"
    samples.mkdir()
    (samples / "a.ndjson").write_bytes(_lines(*_orders(20)) + b"not json\n[1, 2]\n\n")
    # Two gzip members one after the other are one gzip file.
    (samples / "b.json.gz").write_bytes(gzip.compress(_lines(*_orders(5, 20))) + gzip.compress(_lines(*_orders(5, 25))))
    out = tmp_path / "schemas" / "orders.json"

    code, printed, _ = _propose(capsys, str(samples), "--dataset", "orders", "--out", str(out))

    assert code == 0
    document = json.loads(out.read_text())
    assert (document["type"], document["version"]) == ("struct", 1)
    assert _types(out) == {
        "order_id": "string",
        "amount": "double",
        "placed_at": "timestamp",
        "customer": {
            "type": "struct",
            "fields": [
                {"name": "id", "type": "string", "nullable": False, "metadata": {}},
                {"name": "country", "type": "string", "nullable": False, "metadata": {}},
                {"name": "vip", "type": "boolean", "nullable": True, "metadata": {}},
            ],
        },
        "lines": {
            "type": "array",
            "elementType": {
                "type": "struct",
                "fields": [
                    {"name": "sku", "type": "string", "nullable": False, "metadata": {}},
                    {"name": "qty", "type": "long", "nullable": False, "metadata": {}},
                ],
            },
            "containsNull": False,
        },
    }
    assert "read 2 file(s), 32 line(s): 30 object(s), 1 malformed, 1 not an object" in printed
    assert "customer.vip" in printed
    assert "in 6 of 30" in printed  # vip: every fifth order
    assert f"python -m tools.schema check {out}" in printed


def test_propose_reports_conflicts_with_counts_and_leaves_reserved_columns_out(tmp_path, capsys):
    sample = tmp_path / "s.ndjson"
    sample.write_bytes(_lines(*({"id": "a", "n": "x" if i < 3 else i, "dt": "2026-11-24"} for i in range(10))))
    out = tmp_path / "ds.json"

    code, printed, _ = _propose(capsys, str(sample), "--dataset", "ds", "--out", str(out))

    assert code == 0
    assert _types(out) == {"id": "string", "n": "long"}
    assert "n: long 7, string 3 -> long: 3 value(s) of other kinds would go to _rescued_data" in printed
    assert "left out 'dt'" in printed


def test_propose_reads_at_most_the_lines_asked_for_per_file(tmp_path, capsys):
    sample = tmp_path / "s.ndjson"
    sample.write_bytes(_lines({"a": 1}, {"a": 2}, {"b": 3}))
    code, _, _ = _propose(
        capsys, str(sample), "--dataset", "ds", "--out", str(tmp_path / "ds.json"), "--lines-per-file", "2"
    )
    assert code == 0
    assert _types(tmp_path / "ds.json") == {"a": "long"}


def test_propose_never_replaces_a_schema_file(tmp_path, capsys):
    sample = tmp_path / "s.ndjson"
    sample.write_bytes(_lines({"a": 1}))
    out = tmp_path / "events.json"
    out.write_text(EVENTS_SCHEMA.read_text())

    code, _, err = _propose(capsys, str(sample), "--dataset", "events", "--out", str(out))

    assert code == 1
    assert f"{out} exists and is not replaced" in err
    assert "docs/schema-evolution.md" in err
    assert out.read_text() == EVENTS_SCHEMA.read_text()


def test_propose_refuses_a_first_version_of_a_dataset_with_versions_in_use(tmp_path, capsys):
    sample = tmp_path / "s.ndjson"
    sample.write_bytes(_lines({"a": 1}))
    (tmp_path / "schemas" / "history" / "orders").mkdir(parents=True)
    out = tmp_path / "schemas" / "orders.json"

    code, _, err = _propose(capsys, str(sample), "--dataset", "orders", "--out", str(out))

    assert code == 1
    assert "holds versions of dataset 'orders' in use" in err
    assert not out.exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["missing.ndjson", "--dataset", "ds"], "missing.ndjson: no such file or folder"),
        (["SAMPLE", "--dataset", "Bad-Name"], "setting 'dataset' must be a lowercase identifier"),
        (["BINARY", "--dataset", "ds"], "no JSON object in 1 sample file(s)"),
        (["BAD_GZIP", "--dataset", "ds"], "not a readable gzip file"),
    ],
)
def test_propose_names_what_it_cannot_use(tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    Path("SAMPLE").write_bytes(_lines({"a": 1}))
    Path("BINARY").write_bytes(b"PK\x03\x04 not ndjson\n")
    Path("BAD_GZIP").write_bytes(gzip.compress(_lines({"a": 1}))[:-12] + b"\x00" * 12)
    code, _, err = _propose(capsys, *argv, "--out", str(tmp_path / "out.json"))
    assert code == 1
    assert message in err


def test_propose_reads_s3_objects_and_prefixes_over_the_local_aws(aws_endpoint, tmp_path, capsys):
    s3 = client("s3", aws_endpoint)
    bucket = f"samples-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    rng = random.Random(2)
    events = [make_event(rng, f"e{n}") for n in range(30)]
    s3.put_object(Bucket=bucket, Key="incoming/2026/11/24/a.ndjson", Body=_lines(*events[:10]))
    s3.put_object(Bucket=bucket, Key="incoming/2026/11/24/b.ndjson.gz", Body=gzip.compress(_lines(*events[10:20])))
    s3.put_object(Bucket=bucket, Key="other/c.ndjson", Body=_lines(*({**e, "plan": "pro"} for e in events[20:])))
    out = tmp_path / "events.json"

    code, printed, _ = _propose(
        capsys,
        f"s3://{bucket}/incoming/2026/11/24/",
        f"s3://{bucket}/other/c.ndjson",
        "--dataset",
        "events",
        "--out",
        str(out),
        storage=Storage(s3_client=s3),
    )

    assert code == 0
    assert "read 3 file(s), 30 line(s): 30 object(s)" in printed
    declared = DeclaredSchema.from_json(EVENTS_SCHEMA.read_text(), "events.json")
    expected = [f["name"] for f in declared.fields] + ["plan"]
    assert list(_types(out)) == expected
    assert _types(out)["event_time"] == "timestamp"


def _schema(fields: list[dict], version: int = 1, **extra: object) -> str:
    return json.dumps({"type": "struct", "version": version, "fields": fields, **extra})


def _field(name: str, spark_type: object = "string") -> dict:
    return {"name": name, "type": spark_type, "nullable": True, "metadata": {}}


def _check(capsys, path: Path, *options: str) -> tuple[int, str, str]:
    code = main(["check", str(path), *options])
    out, err = capsys.readouterr()
    return code, out, err


def test_check_accepts_the_pipelines_schema(capsys):
    code, out, _ = _check(capsys, EVENTS_SCHEMA)
    assert code == 0
    assert "version 2, 10 top-level fields" in out


@pytest.mark.parametrize(
    ("fields", "options", "message"),
    [
        ([_field("id"), _field("ID")], [], "fields 'id' and 'ID' differ only in case"),
        ([_field("u", {"type": "struct", "fields": [_field("a"), _field("A")]})], [], "'u.a' and 'u.A' differ only"),
        ([_field("id"), _field("payload", "binary")], [], "field 'payload' has type binary; supported:"),
        ([_field("id"), _field("_source_uri")], [], "declares reserved column(s) ['_source_uri']"),
        (
            [_field("id")],
            ["--conversion", '{"partitioning": "event_time", "event_time_field": "ts"}'],
            "--event_time_field 'ts' is not in the declared schema",
        ),
        ([_field("id")], ["--conversion", '{"read_mode": "lenient"}'], "read_mode must be one of"),
    ],
)
def test_check_refuses_a_schema_the_job_or_the_catalog_cannot_use(tmp_path, capsys, fields, options, message):
    path = tmp_path / "ds.json"
    path.write_text(_schema(fields))
    code, _, err = _check(capsys, path, *options)
    assert code == 1
    assert message in err


def test_check_holds_every_version_to_the_one_before(tmp_path, capsys):
    history = tmp_path / "history" / "ds"
    history.mkdir(parents=True)
    (history / "1.json").write_text(_schema([_field("id"), _field("n", "long")]))
    path = tmp_path / "ds.json"

    path.write_text(_schema([_field("id"), _field("n", "long"), _field("plan")], version=2))
    assert _check(capsys, path)[0] == 0

    path.write_text(_schema([_field("id"), _field("n", "double")], version=2))
    code, _, err = _check(capsys, path)
    assert code == 1
    assert "field 'n' changed type from long to double" in err

    path.write_text(_schema([_field("id")], version=3))
    code, _, err = _check(capsys, path)
    assert code == 1
    assert f"{history / '2.json'} is missing" in err


def test_a_proposal_from_the_sample_events_passes_check(tmp_path, capsys):
    rng = random.Random(4)
    sample = tmp_path / "s.ndjson"
    sample.write_bytes(_lines(*(make_event(rng, f"e{n}") for n in range(100))))
    out = tmp_path / "events.json"
    assert _propose(capsys, str(sample), "--dataset", "events", "--out", str(out))[0] == 0
    code, _, err = _check(capsys, out, "--conversion", '{"partitioning": "event_time"}')
    assert (code, err) == (0, "")
