"""Readers of the dataset's directory count every committed row exactly once, whatever runs meanwhile.

DuckDB (``<dataset>/**/*.parquet`` with ``hive_partitioning``), Polars
(``scan_parquet`` on the directory), pyarrow.dataset and Spark each read the
dataset at moments a run, a compensation, a cleared conversion and a reprocess
are stopped at, on the local AWS with both roles' policies enforced: the real
Glue script on local Spark, the steps the DAGs' tasks run. A proxy between them
and the local AWS stops the caller at the request that starts each moment (the
first publishing copy, the staging's removal, a compensation's delete, a switch
of the catalog, each copy and delete of a reprocess's swap), and the readers read
while it waits; the swap's grace periods are moments too.

At each moment every engine must see exactly the committed rows, plus, once a run
has published and not yet finished, that run's rows, each once; the catalog's
partition, read at the same moments, never shows a row twice or loses a committed
one. The files are converted again by the reprocess as they were, so its moments
see the committed rows.
"""

from __future__ import annotations

import json
import random
import re
import tempfile
import threading
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from html import unescape
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from ndjson_pipeline.catalog import DatasetCatalog
from ndjson_pipeline.landing import day_prefix
from ndjson_pipeline.ledger import Ledger, ManifestState
from ndjson_pipeline.local_glue import LocalGlueRunError
from ndjson_pipeline.manifest import ManifestRef
from ndjson_pipeline.settings import PipelineSettings
from ndjson_pipeline.steps import converting
from ndjson_pipeline.steps.finalising import finalise_manifest
from ndjson_pipeline.steps.intake import drain_queue
from ndjson_pipeline.steps.planning import plan_manifests
from ndjson_pipeline.steps.redoing import manifest_to_finalise
from ndjson_pipeline.steps.reprocessing import plan_reprocess, swap_day
from ndjson_pipeline.storage import Storage
from ndjson_pipeline_airflow.runs import LocalRuns
from tests.conftest import make_stack
from tests.e2e.conftest import today
from tests.e2e.lake_readers import ENGINES, mirror_prefix, read_dataset, typed_values
from tests.glue.s3_faults import Fault, FaultyS3, Request
from tools.local_stack import client, local_pipeline_settings
from tools.sample_data import make_event

pytestmark = [pytest.mark.e2e, pytest.mark.spark, pytest.mark.timeout(1200)]

EVENTS_PER_FILE = 20
_DELETED_KEY = re.compile(rb"<Key>(.*?)</Key>")


class Moments:
    """Reads the lake whenever the proxy stops a caller at a moment worth reading, and keeps what was wrong.

    ``committed``: the rows of finished conversions; ``in_flight``: the rows of the conversion that is running,
    visible from its first publishing copy on, until it finishes or its compensation removes them.
    """

    def __init__(self, stack, settings: PipelineSettings, spark) -> None:
        self.stack, self.settings, self.spark = stack, settings, spark
        self.committed: Counter[str] = Counter()
        self.in_flight: Counter[str] = Counter()
        self.failing_manifest: str | None = None  # its run's removal of its staging is refused: the run fails
        self.published: set[str] = set()  # manifests whose run made its first publishing copy
        self.seen: list[str] = []
        self.wrong: list[str] = []
        self._lock = threading.Lock()

    def on_request(self, request: Request) -> Fault | None:
        moment = self._moment(request)
        if moment is None:
            return None
        with self._lock:
            self.read(moment)
        if moment.startswith("staging removed") and self.failing_manifest and self.failing_manifest in moment:
            return Fault(key="", status=403, code="AccessDenied", message="injected: the run dies after publishing")
        return None

    def _moment(self, request: Request) -> str | None:
        """The moment a request starts, or None when it starts none."""
        dataset, identities = self.settings.dataset, self.stack.identities
        if request.headers.get("x-amz-target") == "AWSGlue.UpdatePartition":
            return "catalog partition switched"
        if request.method == "PUT" and "x-amz-copy-source" in request.headers and f"{dataset}/dt=" in request.key:
            source = unescape(request.headers["x-amz-copy-source"])
            if "staging" in source and request.key.startswith(f"{dataset}/"):  # a run of the pipeline publishes
                manifest = request.key.rsplit("/part-", 1)[1][:29]
                if manifest in self.published:
                    return None
                self.published.add(manifest)
                return f"first publishing copy of {manifest}"
            if "staging" not in source:
                return f"a swap copies {request.key.rsplit('/', 1)[-1]} into the lake"
            return None
        if request.method == "POST" and request.path.split("?")[-1].startswith("delete"):
            keys = [unescape(k.decode()) for k in _DELETED_KEY.findall(request.body)]
            staged = [k for k in keys if "staging" in k]
            if staged and request.access_key_id == identities.glue.access_key_id:
                return f"staging removed by {staged[0].split('staging/', 1)[1].split('/', 1)[0]}"
            if any(f"{dataset}/dt=" in k for k in keys) and not any("rebuilds" in k for k in keys):
                return "published files deleted"
            if any("rebuilds" in k for k in keys):
                return "rebuild layout removed"
        return None

    def read(self, moment: str) -> None:
        """Every engine's rows now, against what it must see at this moment."""
        expected = self.committed + (self.in_flight if self._published_in_flight(moment) else Counter())
        self.seen.append(moment)
        for engine, ids in read_dataset(
            self.stack.s3, self.stack.names.lake_bucket, self.settings.dataset, self.spark
        ).items():
            if isinstance(ids, Exception):
                self.wrong.append(f"{moment}: {engine} could not read the dataset: {type(ids).__name__}: {ids}")
            elif ids != expected:
                twice = sum(n - 1 for n in ids.values() if n > 1)
                self.wrong.append(
                    f"{moment}: {engine} read {sum(ids.values())} rows ({twice} more than once), "
                    f"expected {sum(expected.values())}"
                )
        catalog = self._catalog_rows()
        if catalog is not None and not (self.committed <= catalog <= self.committed + self.in_flight):
            self.wrong.append(f"{moment}: the catalog's partition holds {sum(catalog.values())} rows")

    def _published_in_flight(self, moment: str) -> bool:
        """Whether the running conversion's rows are in the dataset at this moment (published, not yet removed)."""
        return not moment.startswith("first publishing copy")

    def _catalog_rows(self) -> Counter[str] | None:
        """The rows of the day's partition as a reader of the catalog finds them (None while it has none)."""
        glue = client("glue", self.stack.endpoint)
        try:
            partition = glue.get_partition(
                DatabaseName=self.stack.names.catalog_database,
                TableName=self.settings.dataset,
                PartitionValues=[today()],
            )["Partition"]
        except glue.exceptions.EntityNotFoundException:
            return None
        bucket, prefix = partition["StorageDescriptor"]["Location"].removeprefix("s3://").split("/", 1)
        s3, rows = self.stack.s3, Counter()
        with tempfile.TemporaryDirectory(prefix="catalog-reader-") as target:
            for obj in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", []):
                if obj["Key"].endswith(".parquet") and "/" not in obj["Key"][len(prefix) :]:
                    path = str(Path(target) / obj["Key"].rsplit("/", 1)[-1])
                    s3.download_file(bucket, obj["Key"], path)
                    with duckdb.connect() as con:
                        rows.update(r[0] for r in con.sql(f"SELECT event_id FROM '{path}'").fetchall())
        return rows


def _land(stack, settings: PipelineSettings, name: str, files: int) -> Counter[str]:
    """``files`` landing files of plain events (their ids are ``<name>-<file>-<line>``); their ids."""
    rng, ids = random.Random(name), Counter()
    for n in range(files):
        events = [make_event(rng, f"{name}-{n}-{i}", today()) for i in range(EVENTS_PER_FILE)]
        ids.update(e["event_id"] for e in events)
        key = f"{day_prefix(today(), settings)}{name}-{n}.ndjson"
        body = "".join(json.dumps(e) + "\n" for e in events).encode()
        stack.s3.put_object(Bucket=stack.names.landing_bucket, Key=key, Body=body)
    return ids


def _claim(stack, ledger: Ledger, storage: Storage, settings: PipelineSettings, owner: str) -> ManifestRef:
    """What the intake and the planning tasks do for the files just landed: one manifest of them."""
    drain_queue(stack.sqs, stack.queue_url, ledger, settings)
    (ref,) = plan_manifests(ledger, storage, settings, [today()], owner=owner)
    return ref


def test_every_engine_counts_every_committed_row_once_while_runs_compensations_clears_and_reprocesses_go_on(
    aws_endpoint, spark, monkeypatch
):
    stack = make_stack(aws_endpoint)
    settings = PipelineSettings.from_mapping(local_pipeline_settings(stack.names))
    moments = Moments(stack, settings, spark)
    with FaultyS3(aws_endpoint) as proxy:
        proxy.on_request = moments.on_request
        for name, value in stack.identities.glue.env().items():  # the local runner's job runs as the Glue role
            monkeypatch.setenv(name, value)
        mwaa = stack.identities.mwaa
        ledger = Ledger.for_settings(client("dynamodb", aws_endpoint, mwaa), settings)
        storage = Storage(s3_client=client("s3", proxy.endpoint, mwaa))
        catalog = DatasetCatalog(client("glue", proxy.endpoint, mwaa), stack.names.catalog_database, settings.layout)
        runs = LocalRuns(settings, proxy.endpoint)

        def finalise(ref: ManifestRef) -> None:
            outcome = finalise_manifest(
                ledger, storage, settings, manifest_to_finalise(ledger, ref), runs=runs, catalog=catalog
            )
            if outcome.status == ManifestState.SUCCEEDED:
                moments.committed += moments.in_flight
            moments.in_flight = Counter()

        # A conversion: its rows appear in the dataset when it publishes, never its staged copy.
        moments.in_flight = _land(stack, settings, "first", files=2)
        first = _claim(stack, ledger, storage, settings, "readers/first")
        assert converting.convert(ledger, storage, settings, first, runs).manifest_id == first.manifest_id
        finalise(first)

        # A run that dies after publishing, before removing its staging: the compensation removes what it published.
        moments.in_flight = _land(stack, settings, "second", files=2)
        second = _claim(stack, ledger, storage, settings, "readers/second")
        moments.failing_manifest = second.manifest_id
        with pytest.raises(LocalGlueRunError):
            converting.convert(ledger, storage, settings, second, runs)
        in_flight = moments.in_flight
        finalise(second)
        assert ledger.get_manifest(second.manifest_id).state == ManifestState.COMPENSATED

        # Clearing the compensated manifest's conversion converts its redo.
        moments.in_flight, moments.failing_manifest = in_flight, None
        redo = converting.convert(ledger, storage, settings, second, runs)
        assert redo.manifest_id != second.manifest_id
        finalise(second)

        # A reprocess of the day, converting the same files as they were: readers see the committed rows throughout.
        plan = plan_reprocess(ledger, storage, settings, today(), requested_by="readers/reprocess", dry_run=False)
        assert {ref.manifest.manifest_id for ref in plan.manifests} == {first.manifest_id, redo.manifest_id}
        for ref in plan.manifests:
            layout = settings.layout.rebuild(ref.rebuild_id)
            converting.rebuild(storage, settings, ref, LocalRuns(settings, proxy.endpoint))
            assert storage.read_bytes_if_exists(layout.result_uri(today(), ref.manifest.manifest_id))

        def grace(seconds: float) -> None:
            with moments._lock:
                moments.read("reprocess grace")

        swap_day(ledger, storage, settings, catalog, today(), requested_by="readers/reprocess", sleep=grace)

    required = [
        f"first publishing copy of {first.manifest_id}",
        f"staging removed by {first.manifest_id}",
        f"staging removed by {second.manifest_id}",
        "published files deleted",
        f"first publishing copy of {redo.manifest_id}",
        f"staging removed by {redo.manifest_id}",
        "catalog partition switched",
        "reprocess grace",
        "rebuild layout removed",
    ]
    assert [m for m in required if m not in moments.seen] == [], moments.seen
    assert any(m.startswith("a swap copies") for m in moments.seen), moments.seen
    assert moments.wrong == [], "\n".join(moments.wrong)
    assert read_dataset(stack.s3, stack.names.lake_bucket, settings.dataset, spark) == dict.fromkeys(
        ENGINES, moments.committed
    )
    assert sum(moments.committed.values()) == 4 * EVENTS_PER_FILE


# How each engine names the sample schema's typed columns: the timestamp an instant in UTC, the decimal exact.
TYPES = {
    "duckdb": {"event_time": "TIMESTAMP WITH TIME ZONE", "amount": "DECIMAL(12,2)"},
    "polars": {"event_time": "Datetime(time_unit='us', time_zone='UTC')", "amount": "Decimal(precision=12, scale=2)"},
    "pyarrow": {"event_time": "timestamp[us, tz=UTC]", "amount": "decimal128(12, 2)"},
    "spark": {"event_time": "timestamp", "amount": "decimal(12,2)"},
}


def test_every_engine_and_the_catalog_read_the_typed_columns_with_their_types(aws_endpoint, spark, monkeypatch):
    stack = make_stack(aws_endpoint)
    settings = PipelineSettings.from_mapping(local_pipeline_settings(stack.names))
    for name, value in stack.identities.glue.env().items():  # the local runner's job runs as the Glue role
        monkeypatch.setenv(name, value)
    mwaa = stack.identities.mwaa
    ledger = Ledger.for_settings(client("dynamodb", aws_endpoint, mwaa), settings)
    storage = Storage(s3_client=client("s3", aws_endpoint, mwaa))
    catalog = DatasetCatalog(client("glue", aws_endpoint, mwaa), stack.names.catalog_database, settings.layout)
    runs = LocalRuns(settings, aws_endpoint)
    rng = random.Random("typed")
    events = [make_event(rng, f"typed-{i}", today()) for i in range(EVENTS_PER_FILE)]
    key = f"{day_prefix(today(), settings)}typed.ndjson"
    body = "".join(json.dumps(e) + "\n" for e in events).encode()
    stack.s3.put_object(Bucket=stack.names.landing_bucket, Key=key, Body=body)
    ref = _claim(stack, ledger, storage, settings, "readers/typed")
    converting.convert(ledger, storage, settings, ref, runs)
    outcome = finalise_manifest(
        ledger, storage, settings, manifest_to_finalise(ledger, ref), runs=runs, catalog=catalog
    )
    assert outcome.status == ManifestState.SUCCEEDED

    # What the lines said: the instant in UTC, the amount as written (two decimals), never through a double.
    expected = {
        e["event_id"]: (
            datetime.fromisoformat(e["event_time"]).astimezone(UTC),
            Decimal(json.dumps(e["amount"])).quantize(Decimal("0.01")),
        )
        for e in events
    }
    with tempfile.TemporaryDirectory(prefix="typed-readers-") as target:
        dataset_dir = mirror_prefix(stack.s3, stack.names.lake_bucket, f"{settings.dataset}/", Path(target))
        for engine in ENGINES:
            types, values = typed_values(engine, dataset_dir, spark)
            assert types == TYPES[engine], engine
            normalised = {
                event_id: (at.astimezone(UTC) if at.tzinfo else at.replace(tzinfo=UTC), amount)
                for event_id, (at, amount) in values.items()
            }
            assert normalised == expected, engine
        # Parquet's own type: INT64 TIMESTAMP(MICROS) adjusted to UTC, what Athena and Glue read as timestamp.
        (path,) = dataset_dir.rglob("*.parquet")
        column = pq.ParquetFile(path).schema.column(pq.ParquetFile(path).schema_arrow.get_field_index("event_time"))
        assert (column.physical_type, str(column.logical_type)) == (
            "INT64",
            "Timestamp(isAdjustedToUTC=true, timeUnit=microseconds, is_from_converted_type=false, "
            "force_set_converted_type=false)",
        )
    glue = client("glue", aws_endpoint)
    table = glue.get_table(DatabaseName=stack.names.catalog_database, Name=settings.dataset)["Table"]
    columns = {c["Name"]: c["Type"] for c in table["StorageDescriptor"]["Columns"]}
    assert (columns["event_time"], columns["amount"]) == ("timestamp", "decimal(12,2)")
