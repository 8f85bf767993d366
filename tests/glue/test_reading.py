"""Streamed reading of one file version: gunzip, blocks of whole lines, the limits, and S3's answers.

S3 faults are real HTTP answers from a proxy in front of the moto server
(``s3_faults``), so botocore's retries and streaming errors are exercised as on AWS.
"""

from __future__ import annotations

import gzip
import hashlib
import random
import uuid

import pytest
from botocore.exceptions import ClientError

from ndjson_job.reading import BLOCK_BYTES, MAX_LINE_BYTES, Unconvertible, gunzip_chunks, line_blocks, text_blocks
from ndjson_pipeline.conversion import ConversionOptions
from ndjson_pipeline.files import FileVersion
from ndjson_pipeline.storage import ObjectChanged, ObjectUnreadable, Storage
from tests.glue.s3_faults import Fault, FaultyS3
from tools.local_stack import client
from tools.sample_data import ndjson_body

MiB = 1024 * 1024


def _pieces(data: bytes, rng: random.Random, largest: int = 5000) -> list[bytes]:
    """``data`` in chunks of random sizes, as a network read hands them over."""
    out, start = [], 0
    while start < len(data):
        size = rng.randint(1, largest)
        out.append(data[start : start + size])
        start += size
    return out


@pytest.mark.parametrize("seed", range(3))
def test_gunzip_streams_exactly_what_gzip_decompresses_members_and_padding_included(seed):
    rng = random.Random(seed)
    members = [ndjson_body(200, seed=seed + n)[0] for n in range(3)]
    data = gzip.compress(members[0]) + b"\x00" * 7 + gzip.compress(members[1]) + gzip.compress(members[2])
    assert b"".join(gunzip_chunks(_pieces(data, rng))) == gzip.decompress(data) == b"".join(members)


def test_gunzip_output_comes_in_bounded_chunks_however_compressible_the_input():
    bomb = gzip.compress(b"\n" * (64 * MiB))
    sizes = [len(chunk) for chunk in gunzip_chunks([bomb])]
    assert sum(sizes) == 64 * MiB
    assert max(sizes) <= 8 * MiB


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda data: data[:-100], "truncated"),
        (lambda data: data[:-8] + b"\x00\x00\x00\x00" + data[-4:], "incorrect data check"),
        (lambda data: data[:20] + bytes(40) + data[60:], "undecodable gzip"),
    ],
    ids=["truncated", "bad CRC", "corrupt"],
)
def test_a_damaged_gzip_file_is_never_read_as_its_readable_prefix(damage, message):
    data = damage(gzip.compress(ndjson_body(500, seed=1)[0]))
    with pytest.raises(Unconvertible, match="undecodable gzip") as failure:
        b"".join(gunzip_chunks(_pieces(data, random.Random(1))))
    assert message in failure.value.reason


@pytest.mark.parametrize("seed", range(3))
def test_blocks_hold_whole_lines_numbered_from_one(seed):
    body, _ = ndjson_body(3000, seed=seed, bad_fraction=0.05)
    blocks = list(line_blocks(_pieces(body, random.Random(seed)), prefix_bytes=100, block_bytes=64 * 1024))
    assert len(blocks) > 5
    assert b"".join(b.data for b in blocks) == body
    assert all(b.data.endswith(b"\n") for b in blocks)
    numbers = [b.first_line + i for b in blocks for i in range(b.data.count(b"\n"))]
    assert numbers == list(range(1, body.count(b"\n") + 1))


def test_a_line_longer_than_the_limit_is_cut_and_the_next_lines_keep_their_numbers():
    long_line = b'{"event_id": "' + b"x" * (MAX_LINE_BYTES + MiB) + b'"}'
    body = b'{"a": 1}\n' + long_line + b'\n{"b": 2}\n{"c": 3}'
    chunks = _pieces(body, random.Random(2), largest=4 * MiB)
    blocks = list(line_blocks(chunks, prefix_bytes=30, block_bytes=BLOCK_BYTES))
    [cut] = [b for b in blocks if b.cut]
    assert (cut.first_line, cut.data) == (2, long_line[:30])
    rest = [b for b in blocks if not b.cut]
    assert [(b.first_line, b.data) for b in rest] == [(1, b'{"a": 1}\n'), (3, b'{"b": 2}\n{"c": 3}')]


def _local_file(tmp_path, name: str, body: bytes) -> tuple[Storage, FileVersion]:
    path = tmp_path / "landing" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body)
    etag = hashlib.md5(body, usedforsecurity=False).hexdigest()
    return Storage(bucket_root=str(tmp_path)), FileVersion("landing", name, etag, len(body))


@pytest.mark.parametrize("name", ["big.ndjson", "big.ndjson.gz"])
def test_a_file_over_max_decompressed_mb_is_refused_as_too_large(tmp_path, name):
    text = ndjson_body(4000, seed=3)[0]  # about 1.9 MB
    storage, file = _local_file(tmp_path, name, gzip.compress(text) if name.endswith(".gz") else text)
    with pytest.raises(Unconvertible, match=r"too large: over 1 MB of decoded text \(--max_decompressed_mb\)"):
        list(text_blocks(storage, file, ConversionOptions(max_decompressed_mb=1)))
    assert b"".join(b.data for b in text_blocks(storage, file, ConversionOptions(max_decompressed_mb=2))) == text


@pytest.mark.parametrize(
    ("head", "kind"),
    [(b"PK\x03\x04", "zip"), (b"PAR1", "Parquet"), (b"\xff\xfe{\x00", "UTF-16 byte-order mark"), (b"%PDF-1.7", "PDF")],
)
def test_content_with_a_binary_signature_is_refused_before_any_line(tmp_path, head, kind):
    storage, file = _local_file(tmp_path, "x.ndjson", head + b'\n{"event_id": "a"}\n')
    with pytest.raises(Unconvertible, match=rf"binary content \({kind} signature\), not NDJSON text"):
        list(text_blocks(storage, file, ConversionOptions()))


def test_a_local_file_whose_content_changed_is_superseded(tmp_path):
    storage, file = _local_file(tmp_path, "a.ndjson", b'{"a": 1}\n')
    (tmp_path / "landing" / "a.ndjson").write_bytes(b'{"a": 2}\n')
    with pytest.raises(Unconvertible, match=r"^superseded: s3://landing/a\.ndjson no longer has eTag"):
        list(text_blocks(storage, file, ConversionOptions()))


# --------------------------------------------------------------------------- S3, through the fault proxy


@pytest.fixture
def bucket(aws_endpoint) -> str:
    name = f"reads-{uuid.uuid4().hex[:12]}"
    client("s3", aws_endpoint).create_bucket(Bucket=name)
    return name


@pytest.fixture
def proxy(aws_endpoint):
    with FaultyS3(aws_endpoint) as faulty:
        yield faulty


def _put(endpoint: str, bucket: str, key: str, body: bytes, **extra) -> FileVersion:
    etag = client("s3", endpoint).put_object(Bucket=bucket, Key=key, Body=body, **extra)["ETag"].strip('"')
    return FileVersion(bucket, key, etag, len(body))


def _read(storage: Storage, file: FileVersion, chunk_bytes: int = 64 * 1024) -> bytes:
    return b"".join(storage.read_version_chunks(file.uri, file.etag, chunk_bytes))


def test_a_body_cut_off_mid_read_is_resumed_with_a_range_that_carries_if_match(aws_endpoint, bucket, proxy):
    body = ndjson_body(2000, seed=4)[0]
    file = _put(aws_endpoint, bucket, "cut.ndjson", body)
    proxy.faults.append(Fault("cut.ndjson", cut_after=300_000, times=2))
    assert _read(Storage(endpoint_url=proxy.endpoint), file) == body
    resumed = [headers for path, headers in proxy.gets if path.endswith("cut.ndjson")][1:]
    assert [h.get("Range") for h in resumed][:1] == ["bytes=300000-"]
    assert all(h.get("If-Match") == file.etag for h in resumed)


def test_an_object_overwritten_before_the_resume_is_changed_not_mixed(aws_endpoint, bucket, proxy):
    body = ndjson_body(2000, seed=5)[0]
    file = _put(aws_endpoint, bucket, "moving.ndjson", body)
    proxy.faults.append(Fault("moving.ndjson", cut_after=100_000, times=1))
    chunks = Storage(endpoint_url=proxy.endpoint).read_version_chunks(file.uri, file.etag, 50_000)
    assert next(chunks) == body[:50_000]
    _put(aws_endpoint, bucket, "moving.ndjson", body.replace(b"event", b"EVENT"))
    with pytest.raises(ObjectChanged, match="no longer has eTag"):
        list(chunks)


@pytest.mark.parametrize(
    ("status", "code"),
    [(403, "AccessDenied"), (400, "KMS.DisabledException"), (403, "InvalidObjectState")],
)
def test_a_refusal_retrying_cannot_change_is_unreadable(aws_endpoint, bucket, proxy, status, code):
    file = _put(aws_endpoint, bucket, "denied.ndjson", b'{"a": 1}\n')
    proxy.faults.append(Fault("denied.ndjson", status=status, code=code, message="The ciphertext refers to a key"))
    with pytest.raises(ObjectUnreadable) as failure:
        _read(Storage(endpoint_url=proxy.endpoint, max_attempts=3), file)
    assert (failure.value.code, failure.value.message) == (code, "The ciphertext refers to a key")
    assert len(proxy.gets) == 1, "a permanent refusal is not retried"


def test_an_archived_object_is_unreadable_on_the_emulator_too(aws_endpoint, bucket):
    file = _put(aws_endpoint, bucket, "cold.ndjson", b'{"a": 1}\n', StorageClass="GLACIER")
    with pytest.raises(ObjectUnreadable, match="InvalidObjectState"):
        _read(Storage(endpoint_url=aws_endpoint), file)


def test_a_deleted_object_is_changed(aws_endpoint, bucket):
    file = _put(aws_endpoint, bucket, "gone.ndjson", b'{"a": 1}\n')
    client("s3", aws_endpoint).delete_object(Bucket=bucket, Key="gone.ndjson")
    with pytest.raises(ObjectChanged):
        _read(Storage(endpoint_url=aws_endpoint), file)


@pytest.mark.parametrize(("status", "code"), [(503, "SlowDown"), (500, "InternalError"), (400, "RequestTimeout")])
def test_transient_errors_are_retried_and_raised_as_they_are_when_they_persist(
    aws_endpoint, bucket, proxy, status, code
):
    body = b'{"a": 1}\n'
    file = _put(aws_endpoint, bucket, "flaky.ndjson", body)
    fault = Fault("flaky.ndjson", status=status, code=code, times=2)
    proxy.faults.append(fault)
    assert _read(Storage(endpoint_url=proxy.endpoint, max_attempts=3), file) == body
    assert len(proxy.gets) == 3

    fault.times = 1_000
    gets = len(proxy.gets)
    with pytest.raises(ClientError) as failure:  # as botocore raised it: the run fails and is retried
        _read(Storage(endpoint_url=proxy.endpoint, max_attempts=2), file)
    assert failure.value.response["Error"]["Code"] == code
    assert len(proxy.gets) - gets == 2


def test_gzip_read_over_s3_in_small_chunks(aws_endpoint, bucket):
    text = ndjson_body(1500, seed=6)[0]
    file = _put(aws_endpoint, bucket, "z.ndjson.gz", gzip.compress(text))
    storage = Storage(endpoint_url=aws_endpoint)
    assert b"".join(b.data for b in text_blocks(storage, file, ConversionOptions())) == text
