"""docs/querying.md: every snippet runs against a lake of two schema versions and gives the counts of the input.

The lake is written by the conversion job itself (local Spark, local disk): 2026-11-24 with the schema's version 1,
2026-11-25 with a version 2 that adds ``plan``, and a running conversion's staged output beside them. Athena cannot
run here: its query is transpiled from Trino SQL to DuckDB (sqlglot) and run over the same files, and the columns
it names are checked against the catalog table the project defines.
"""

from __future__ import annotations

import json
import random
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest
import sqlglot
from sqlglot import exp

from ndjson_job.job import convert_manifest
from ndjson_pipeline.catalog import TableDefinition, glue_type
from ndjson_pipeline.conversion import ConversionOptions
from ndjson_pipeline.dataset_schema import DeclaredSchema
from ndjson_pipeline.layout import LakeLayout
from ndjson_pipeline.storage import Storage
from tests.glue.conftest import SCHEMA_PATH, make_local_job
from tools.sample_data import make_event

pytestmark = pytest.mark.spark

DOC = Path(__file__).resolve().parents[2] / "docs" / "querying.md"
DOC_LAKE = "s3://ndjson-pipeline-lake"
DAYS = ("2026-11-24", "2026-11-25")
SNIPPET = re.compile(r"<!-- snippet: (\w+) -->\n```(\w+)\n(.*?)```", re.DOTALL)


def snippets() -> dict[str, str]:
    text = DOC.read_text()
    found = {name: code for name, _, code in SNIPPET.findall(text)}
    assert len(found) == text.count("\n```") // 2, "every code block of docs/querying.md is a named snippet"
    return found


@dataclass(frozen=True)
class Lake:
    root: Path  # what s3://ndjson-pipeline-lake stands for
    expected: list[tuple[str, int, int, int]]  # per day: events, with a plan, from DE
    v2: DeclaredSchema


def _events(day: str, count: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    events = [make_event(rng, f"{day}-{n}", day=day) for n in range(count)]
    for event in events[::3]:
        event["plan"] = rng.choice(("free", "pro"))
    return events


@pytest.fixture(scope="module")
def lake(tmp_path_factory, spark) -> Lake:
    root = tmp_path_factory.mktemp("querying")
    v1 = DeclaredSchema.from_json(SCHEMA_PATH.read_text(), str(SCHEMA_PATH))
    v2_doc = {**v1.struct_json(), "version": 2}
    v2_doc["fields"].append({"name": "plan", "type": "string", "nullable": True, "metadata": {}})
    v2_path = root / "schemas" / "events.json"
    v2_path.parent.mkdir()
    v2_path.write_text(json.dumps(v2_doc))
    expected = []
    for day, schema, count, seed in ((DAYS[0], SCHEMA_PATH, 60, 1), (DAYS[1], v2_path, 90, 2)):
        events = _events(day, count, seed)
        bodies = {
            f"in/{day}/{i}.ndjson": b"".join(json.dumps(e).encode() + b"\n" for e in events[i::3]) for i in range(3)
        }
        job = make_local_job(root, bodies, day=day, schema_uri=str(schema), target_file_mb="0.02")
        convert_manifest(spark, job.arguments, Storage(bucket_root=job.bucket_root))
        # Under version 1 the plan is rescued, not a column: no reader may see one for that day.
        with_plan = 0 if schema == SCHEMA_PATH else sum("plan" in e for e in events)
        expected.append((day, count, with_plan, sum(e["user"]["country"] == "DE" for e in events)))
    dataset = root / "lake" / "events"
    # A conversion in flight: its staged copy of a day's rows must not be counted by any snippet.
    staged = dataset / "_staging" / "20261125-0000" / "attempt" / "data" / f"dt={DAYS[1]}"
    staged.mkdir(parents=True)
    for part in (dataset / f"dt={DAYS[1]}").glob("*.parquet"):
        shutil.copy(part, staged / part.name)
    return Lake(root / "lake", expected, DeclaredSchema.from_json(json.dumps(v2_doc), str(v2_path)))


def _local(code: str, lake: Lake) -> str:
    assert DOC_LAKE in code
    return code.replace(DOC_LAKE, str(lake.root))


def _run_python(names: list[str], lake: Lake, **context) -> dict:
    namespace = dict(context)
    code = snippets()
    for name in names:
        exec(compile(_local(code[name], lake) if DOC_LAKE in code[name] else code[name], name, "exec"), namespace)  # noqa: S102
    return namespace


def _rows(rows) -> list[tuple[str, int, int, int]]:
    return [(str(dt), int(a), int(b), int(c)) for dt, a, b, c in rows]


def test_duckdb(lake):
    assert _rows(duckdb.sql(_local(snippets()["duckdb"], lake)).fetchall()) == lake.expected


def test_polars(lake):
    daily = _run_python(["files", "polars"], lake)["daily"]
    assert _rows(daily.rows()) == lake.expected


def test_pyarrow(lake):
    daily = _run_python(["files", "pyarrow"], lake)["daily"]
    assert _rows(zip(*(daily.column(n).to_pylist() for n in daily.column_names), strict=True)) == lake.expected


def test_spark(lake, spark):
    daily = _run_python(["files", "spark"], lake, spark=spark)["daily"]
    assert _rows(tuple(row) for row in daily.collect()) == lake.expected


def test_athena_through_the_catalog_definition(lake):
    query = sqlglot.parse_one(snippets()["athena"], read="trino")
    table = TableDefinition.for_dataset(
        "ndjson_pipeline_catalog", LakeLayout("s3://lake", "s3://q", "events"), lake.v2, ConversionOptions()
    )
    columns = {c["Name"]: c["Type"] for c in table.columns} | {"dt": "string"}
    (source,) = query.find_all(exp.Table)
    assert (source.db, source.name) == (table.database, table.table)
    for column in query.find_all(exp.Column):
        if column.table:  # a struct's field: "user".country
            assert f"{column.name}:" in columns[column.table], f"{column.table}.{column.name} is not in the table"
        else:
            assert column.name in columns, f"{column.name} is not a column of the catalog table"
    assert columns["plan"] == glue_type("string")

    duck = duckdb.connect()
    duck.execute("CREATE SCHEMA ndjson_pipeline_catalog")
    duck.execute(
        "CREATE VIEW ndjson_pipeline_catalog.events AS SELECT * FROM read_parquet("
        f"'{lake.root}/events/dt=*/*.parquet', hive_partitioning = true, union_by_name = true, "
        "hive_types = {'dt': VARCHAR})"
    )
    # The files read by name hold exactly the catalog table's columns.
    assert {row[0] for row in duck.execute("DESCRIBE ndjson_pipeline_catalog.events").fetchall()} == set(columns)
    (transpiled,) = sqlglot.transpile(snippets()["athena"], read="trino", write="duckdb")
    assert _rows(duck.execute(transpiled).fetchall()) == lake.expected


def test_what_the_doc_says_happens_without_the_options(lake):
    """The first file is version 1: read without the options, the column version 2 added is lost or refused."""
    import polars as pl
    import pyarrow.dataset as ds

    dataset = f"{lake.root}/events"
    assert "plan" not in ds.dataset(dataset, format="parquet", partitioning="hive").schema.names
    without_union = duckdb.sql(f"SELECT * FROM read_parquet('{dataset}/dt=*/*.parquet', hive_partitioning = true)")
    assert "plan" not in without_union.columns
    with pytest.raises(pl.exceptions.SchemaError, match="plan"):
        pl.scan_parquet(f"{dataset}/dt=*/*.parquet", hive_partitioning=True).collect()
    kept = pl.scan_parquet(f"{dataset}/dt=*/*.parquet", hive_partitioning=True, extra_columns="ignore")
    assert "plan" not in kept.collect_schema().names()


def test_user_is_quoted_where_the_doc_says_it_must_be(lake):
    import polars as pl

    code = snippets()
    assert '"user".country' in code["athena"]  # Athena reserves USER in its DDL; quoted, it is a name everywhere
    assert '"user".country' in code["polars"]
    namespace = _run_python(["files"], lake)
    unquoted = compile(code["polars"].replace('"user".country', "user.country"), "polars", "exec")
    with pytest.raises(pl.exceptions.SQLSyntaxError, match="dot-notation"):
        exec(unquoted, namespace)  # noqa: S102
