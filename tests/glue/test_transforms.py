"""Line and file handling of the conversion job, run on local files through the job's own flow.

One manifest holds every awkward case; it is converted once per read mode
(module-scoped) and each test checks one case in the result and the output,
in both modes where the modes may differ.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import duckdb
import pytest

from ndjson_job.job import convert_manifest
from ndjson_pipeline.storage import Storage
from tests.glue.conftest import SCHEMA_PATH, make_local_job
from tools.sample_data import gzip_body, make_event, ndjson_body

pytestmark = pytest.mark.spark


def _line(**fields) -> str:
    event = make_event(random.Random(len(json.dumps(fields, default=str))), fields.pop("event_id", "x"))
    event.update(fields)
    return json.dumps(event)


def _nested_bad() -> str:
    event = make_event(random.Random(3), "nested-bad")
    event["context"]["experiments"] = [{"name": "e", "variant": "a", "metrics": [{"k": "score", "v": "high"}]}]
    return json.dumps(event)


def _big_line() -> str:
    event = make_event(random.Random(5), "big-1")
    event["tags"] = [f"tag-{n:08d}" for n in range(400_000)]  # about 5.6 MB on one line
    return json.dumps(event)


GOOD_BODY, GOOD_KINDS = ndjson_body(40, seed=11, prefix="good")
CASES: dict[str, bytes] = {
    "good.ndjson": GOOD_BODY,
    "malformed.ndjson": ("\n".join([_line(event_id="m-1"), '{"event_id": "m-2", "value": ']) + "\n").encode(),
    "not_object.ndjson": ("\n".join([_line(event_id="n-1"), "[1, 2]", "42", '"text"', "null"]) + "\n").encode(),
    "conflict.ndjson": ("\n".join([_line(event_id="c-1", value="lots"), _line(event_id="c-2")]) + "\n").encode(),
    "unknown.ndjson": (_line(event_id="u-1", surprise={"a": 1}) + "\n").encode(),
    "nested.ndjson": (_nested_bad() + "\n").encode(),
    "utf8.ndjson": _line(event_id="v-1").encode() + b"\n" + b'{"event_id": "v-2\xff\xfe"}\n',
    "big.ndjson": (_big_line() + "\n").encode(),
    "empty.ndjson": b"",
    "blank.ndjson": b"  \n\t \r\n\n",
    "zipped.ndjson.gz": gzip_body(ndjson_body(7, seed=12, prefix="gz")[0]),
    "truncated.ndjson.gz": gzip_body(ndjson_body(200, seed=13, prefix="tr")[0])[:-300],
    # Random bytes without NUL: caught by the invalid-UTF-8 heuristic, not the NUL check.
    "binary.ndjson": bytes(random.Random(1).randbytes(4096).replace(b"\x00", b"\x01")),
    "image.ndjson": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(1, 200)),
    "crlf.ndjson": (_line(event_id="r-1") + "\r\n" + _line(event_id="r-2") + "\r\n").encode(),
    # One stray control byte costs its line, not the file.
    "nul.ndjson": "\n".join([_line(event_id="z-1"), '{"event_id": "z-2\x00"}', _line(event_id="z-3")]).encode(),
    "control.ndjson": "\n".join([_line(event_id="k-1"), '{"event_id": "k-2\x1b[0m"}']).encode(),
    "duplicate.ndjson": (_line(event_id="d-1")[:-1] + ', "event_id": "d-2"}\n').encode(),
    "huge_number.ndjson": (_line(event_id="h-1", value=int("9" * 400)) + "\n").encode(),
    "gzip_inside.ndjson": gzip_body(GOOD_BODY),
    "csv.ndjson": b"event_id,event_time\ne-1,2026-11-24T00:00:00Z\ne-2,2026-11-24T00:00:01Z\n",
}


def _run(tmp_path_factory, spark, **overrides):
    root = tmp_path_factory.mktemp("job")
    job = make_local_job(root, {f"in/{k}": v for k, v in CASES.items()}, **overrides)
    result = convert_manifest(spark, job.arguments, Storage(bucket_root=job.bucket_root))
    return job, result, {f.uri.rsplit("/", 1)[1]: f for f in result.files}


@pytest.fixture(scope="module")
def rescue_run(tmp_path_factory, spark):
    return _run(tmp_path_factory, spark)


@pytest.fixture(scope="module")
def strict_run(tmp_path_factory, spark):
    return _run(tmp_path_factory, spark, read_mode="strict")


def _select(job, sql: str) -> list[tuple]:
    """Run ``sql`` with LAKE standing for the job's published Parquet files (dt read from their paths)."""
    pattern = f"{job.lake_dir}/dt=*/*.parquet"
    return duckdb.sql(sql.replace("LAKE", f"read_parquet('{pattern}', hive_partitioning=true)")).fetchall()


def _column(job, sql: str) -> list:
    return [r[0] for r in _select(job, sql)]


def _quarantined_lines(job) -> list[dict]:
    root = job.quarantine_dir
    return [json.loads(line) for path in sorted(root.rglob("lines-*.json")) for line in path.read_text().splitlines()]


def _quarantined_files(job) -> dict[str, dict]:
    root = job.quarantine_dir
    records = [json.loads(line) for path in root.rglob("files.json") for line in path.read_text().splitlines()]
    return {r["uri"].rsplit("/", 1)[1]: r for r in records}


def test_result_reconciles_and_is_written_last(rescue_run):
    job, result, _ = rescue_run
    written = json.loads(job.result_path.read_text())
    assert written["manifest_id"] == job.manifest.manifest_id
    assert written["schema_version"] == 2  # the version events.json declares
    assert (
        sum(f["rows_out"] for f in written["files"]) == result.rows_out == _column(job, "select count(*) from LAKE")[0]
    )
    assert sum(o["rows"] for o in written["output_files"]) == result.rows_out
    assert not list(Path(job.arguments.layout.work_uri).glob("staging/*/*")), "staging is cleaned up"


def test_good_file_loads_every_row_with_lineage(rescue_run):
    job, _, files = rescue_run
    assert (files["good.ndjson"].outcome, files["good.ndjson"].rows_out) == ("DONE", 40)
    ids = _column(job, "select event_id from LAKE where _source_uri like '%good.ndjson'")
    assert sorted(ids) == sorted(f"good-{n}" for n in range(40))
    assert set(_column(job, "select distinct _manifest_id from LAKE")) == {job.manifest.manifest_id}
    assert set(_column(job, "select distinct dt::varchar from LAKE")) == {job.manifest.day}


def test_malformed_json_is_quarantined_with_line_number_and_raw_text(rescue_run):
    job, _, files = rescue_run
    f = files["malformed.ndjson"]
    assert (f.outcome, f.rows_in, f.rows_out, f.rows_quarantined) == ("DONE", 2, 1, 1)
    [bad] = [q for q in _quarantined_lines(job) if q["uri"].endswith("malformed.ndjson")]
    assert (bad["line_number"], bad["reason"], bad["raw"]) == (2, "malformed JSON", '{"event_id": "m-2", "value": ')
    assert bad["manifest_id"] == job.manifest.manifest_id


def test_json_that_is_not_an_object_is_quarantined(rescue_run):
    job, _, files = rescue_run
    f = files["not_object.ndjson"]
    assert (f.rows_in, f.rows_out, f.rows_quarantined) == (5, 1, 4)
    reasons = {q["line_number"]: q["reason"] for q in _quarantined_lines(job) if q["uri"].endswith("not_object.ndjson")}
    assert reasons == {
        2: "not a JSON object: array",
        3: "not a JSON object: scalar or null",
        4: "not a JSON object: scalar or null",
        5: "not a JSON object: scalar or null",
    }


def test_type_conflict_is_rescued_and_the_row_kept(rescue_run):
    job, _, files = rescue_run
    assert (files["conflict.ndjson"].rows_out, files["conflict.ndjson"].rows_rescued) == (2, 1)
    [(value, rescued, user_id)] = _select(job, "select value, _rescued_data, user.id from LAKE where event_id = 'c-1'")
    assert value is None
    assert json.loads(rescued) == {"value": "lots"}
    assert user_id is not None, "the other fields of a rescued row are kept"


def test_unknown_field_is_rescued(rescue_run):
    job, _, files = rescue_run
    assert files["unknown.ndjson"].rows_rescued == 1
    [rescued] = _column(job, "select _rescued_data from LAKE where event_id = 'u-1'")
    assert json.loads(json.loads(rescued)["surprise"]) == {"a": 1}


def test_type_conflict_deep_in_nested_arrays_of_structs_is_rescued(rescue_run):
    job, _, _ = rescue_run
    [(rescued, experiments)] = _select(
        job, "select _rescued_data, context.experiments from LAKE where event_id = 'nested-bad'"
    )
    assert list(json.loads(rescued)) == ["context"]
    assert experiments[0]["metrics"][0] == {"k": "score", "v": None}


def test_valid_nested_arrays_of_structs_round_trip(rescue_run):
    job, _, _ = rescue_run
    source = {json.loads(line)["event_id"]: json.loads(line) for line in GOOD_BODY.decode().splitlines()}
    rows = _select(
        job,
        "select event_id, to_json(items), to_json(context.experiments) from LAKE where _source_uri like '%good.ndjson'",
    )
    for event_id, items, experiments in rows:
        assert json.loads(items) == source[event_id]["items"]
        assert json.loads(experiments) == source[event_id]["context"]["experiments"]


def test_invalid_utf8_line_is_quarantined_under_rescue(rescue_run):
    job, _, files = rescue_run
    f = files["utf8.ndjson"]
    assert (f.outcome, f.rows_in, f.rows_out, f.rows_quarantined) == ("DONE", 2, 1, 1)
    [bad] = [q for q in _quarantined_lines(job) if q["uri"].endswith("utf8.ndjson")]
    assert (bad["line_number"], bad["reason"]) == (2, "invalid UTF-8")


def test_five_megabyte_line_loads(rescue_run):
    job, _, files = rescue_run
    assert (files["big.ndjson"].rows_out, files["big.ndjson"].rows_quarantined) == (1, 0)
    assert _column(job, "select len(tags) from LAKE where event_id = 'big-1'") == [400_000]


@pytest.mark.parametrize("name", ["empty.ndjson", "blank.ndjson"])
def test_empty_and_whitespace_files_are_done_with_no_rows(rescue_run, name):
    _, _, files = rescue_run
    f = files[name]
    assert (f.outcome, f.rows_in, f.rows_out, f.rows_quarantined) == ("DONE", 0, 0, 0)


def test_gzip_file_is_read(rescue_run):
    job, _, files = rescue_run
    assert (files["zipped.ndjson.gz"].outcome, files["zipped.ndjson.gz"].rows_out) == ("DONE", 7)
    assert sorted(_column(job, "select event_id from LAKE where event_id like 'gz-%'")) == sorted(
        f"gz-{n}" for n in range(7)
    )


@pytest.mark.parametrize("mode", ["rescue", "strict"])
@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("truncated.ndjson.gz", "undecodable gzip"),
        ("binary.ndjson", "not NDJSON text: none of its first"),
        ("csv.ndjson", "not NDJSON text: none of its first 3 non-blank line(s) is a JSON object"),
        ("image.ndjson", "binary content (PNG signature)"),
        ("gzip_inside.ndjson", "binary content (gzip signature)"),
    ],
)
def test_undecodable_files_are_quarantined_as_files_and_nothing_of_them_loads(request, mode, name, reason):
    job, _, files = request.getfixturevalue(f"{mode}_run")
    f = files[name]
    assert (f.outcome, f.rows_out) == ("QUARANTINED", 0)
    assert reason in f.reason
    assert reason in _quarantined_files(job)[name]["reason"]
    assert _column(job, f"select count(*) from LAKE where _source_uri like '%{name}'") == [0]


@pytest.mark.parametrize("mode", ["rescue", "strict"])
@pytest.mark.parametrize(("name", "prefix", "code"), [("nul.ndjson", "z", "U+0000"), ("control.ndjson", "k", "U+001B")])
def test_a_control_byte_in_one_line_quarantines_that_line_only(request, mode, name, prefix, code):
    job, _, files = request.getfixturevalue(f"{mode}_run")
    f = files[name]
    assert (f.outcome, f.rows_quarantined, f.rows_out) == ("DONE", 1, f.rows_in - 1)
    [bad] = [q for q in _quarantined_lines(job) if q["uri"].endswith(name)]
    assert (bad["line_number"], bad["reason"]) == (2, f"malformed JSON: control character {code}")
    loaded = _column(job, f"select event_id from LAKE where event_id like '{prefix}-%' order by 1")
    assert loaded == [f"{prefix}-{n}" for n in range(1, f.rows_in + 1) if n != 2]


def test_a_key_given_twice_keeps_its_last_value_in_rescue_mode(rescue_run):
    job, _, files = rescue_run
    assert (files["duplicate.ndjson"].rows_out, files["duplicate.ndjson"].rows_rescued) == (1, 1)
    [rescued] = _column(job, "select _rescued_data from LAKE where event_id = 'd-2'")
    assert json.loads(json.loads(rescued)["_duplicate_keys"]) == {"event_id": ["d-1"]}


def test_a_key_given_twice_is_quarantined_in_strict_mode(strict_run):
    job, _, files = strict_run
    assert (files["duplicate.ndjson"].rows_out, files["duplicate.ndjson"].rows_quarantined) == (0, 1)
    reasons = {q["uri"].rsplit("/", 1)[1]: q["reason"] for q in _quarantined_lines(job)}
    assert reasons["duplicate.ndjson"] == "duplicate key: event_id"


def test_an_integer_too_big_for_a_double_is_rescued_not_stored_as_infinity(rescue_run):
    job, _, files = rescue_run
    assert files["huge_number.ndjson"].rows_rescued == 1
    [(value, rescued)] = _select(job, "select value, _rescued_data from LAKE where event_id = 'h-1'")
    assert value is None
    assert json.loads(rescued) == {"value": "9" * 400}
    assert _column(job, "select count(*) from LAKE where isinf(value)") == [0]


def test_an_integer_too_big_for_a_double_is_a_type_mismatch_in_strict_mode(strict_run):
    job, _, files = strict_run
    assert files["huge_number.ndjson"].rows_quarantined == 1
    reasons = {q["uri"].rsplit("/", 1)[1]: q["reason"] for q in _quarantined_lines(job)}
    assert reasons["huge_number.ndjson"] == "type mismatch: value"


def test_crlf_line_endings_load(rescue_run):
    _, _, files = rescue_run
    assert (files["crlf.ndjson"].rows_out, files["crlf.ndjson"].rows_quarantined) == (2, 0)


def test_strict_mode_quarantines_conflicts_and_unknown_fields(strict_run):
    job, _, files = strict_run
    assert (files["conflict.ndjson"].rows_out, files["conflict.ndjson"].rows_quarantined) == (1, 1)
    assert (files["unknown.ndjson"].rows_out, files["unknown.ndjson"].rows_quarantined) == (0, 1)
    assert files["nested.ndjson"].rows_quarantined == 1
    reasons = {q["uri"].rsplit("/", 1)[1]: q["reason"] for q in _quarantined_lines(job)}
    assert reasons["conflict.ndjson"] == "type mismatch: value"
    assert reasons["unknown.ndjson"] == "unknown fields: surprise"
    assert reasons["nested.ndjson"] == "type mismatch: context"
    assert "_rescued_data" not in _column(job, "select column_name from (describe select * from LAKE)")


def test_strict_mode_quarantines_a_file_with_invalid_utf8_whole(strict_run):
    job, _, files = strict_run
    f = files["utf8.ndjson"]
    assert (f.outcome, f.reason, f.rows_in, f.rows_out, f.rows_quarantined) == ("QUARANTINED", "invalid UTF-8", 2, 0, 2)
    assert _column(job, "select count(*) from LAKE where event_id like 'v-%'") == [0]
    assert files["good.ndjson"].rows_out == 40, "the other files still convert"


def test_event_time_partitioning_quarantines_missing_and_unparsable_times(tmp_path, spark):
    lines = [
        _line(event_id="t-1", event_time="2026-11-20T23:59:59Z"),
        _line(event_id="t-2", event_time="2026-11-21T00:00:00+00:00"),
        _line(event_id="t-3", event_time=None),
        _line(event_id="t-4", event_time="yesterday"),
        json.dumps({"event_id": "t-5"}),
    ]
    job = make_local_job(tmp_path, {"t.ndjson": ("\n".join(lines) + "\n").encode()}, partitioning="event_time")
    result = convert_manifest(spark, job.arguments, Storage(bucket_root=job.bucket_root))
    [f] = result.files
    assert (f.rows_in, f.rows_out, f.rows_quarantined) == (5, 2, 3)
    dts = dict(_select(job, "select event_id, dt::varchar from LAKE"))
    assert dts == {"t-1": "2026-11-20", "t-2": "2026-11-21"}
    reasons = {q["line_number"]: q["reason"] for q in _quarantined_lines(job)}
    assert reasons == {
        3: "missing event time event_time",
        4: "unparsable event time event_time: yesterday",
        5: "missing event time event_time",
    }


def test_a_typed_event_time_partitions_by_its_utc_day(tmp_path, spark):
    lines = [
        _line(event_id="u-1", event_time="2026-11-24T23:30:00-01:00"),  # 00:30 UTC the next day
        _line(event_id="u-2", event_time="2026-11-25T00:30:00+02:00"),  # 22:30 UTC the day before
        _line(event_id="u-3", event_time="2026-11-24 23:30:00"),  # no offset: UTC
    ]
    job = make_local_job(tmp_path, {"u.ndjson": ("\n".join(lines) + "\n").encode()}, partitioning="event_time")
    result = convert_manifest(spark, job.arguments, Storage(bucket_root=job.bucket_root))
    assert (result.rows_out, result.rows_quarantined) == (3, 0)
    dts = dict(_select(job, "select event_id, dt::varchar from LAKE"))
    assert dts == {"u-1": "2026-11-25", "u-2": "2026-11-24", "u-3": "2026-11-24"}
    times = dict(_select(job, "select event_id, epoch_us(event_time) from LAKE"))
    assert times["u-1"] == 1795566600 * 10**6  # 2026-11-25T00:30:00Z


def test_event_time_with_a_custom_format(tmp_path, spark):
    # A strptime format is for an event time declared as a string.
    declared = json.loads(SCHEMA_PATH.read_text())
    for f in declared["fields"]:
        f["type"] = "string" if f["name"] == "event_time" else f["type"]
    schema_path = tmp_path / "string-event-time.json"
    schema_path.write_text(json.dumps(declared))
    lines = [_line(event_id="f-1", event_time="24/11/2026 10:00"), _line(event_id="f-2", event_time="2026-11-24")]
    job = make_local_job(
        tmp_path,
        {"f.ndjson": ("\n".join(lines) + "\n").encode()},
        partitioning="event_time",
        event_time_format="%d/%m/%Y %H:%M",
        schema_uri=str(schema_path),
    )
    result = convert_manifest(spark, job.arguments, Storage(bucket_root=job.bucket_root))
    assert (result.rows_out, result.rows_quarantined) == (1, 1)
    assert list(job.lake_dir.glob("dt=2026-11-24/part-*.parquet"))
