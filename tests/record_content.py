"""Record content that must never be logged, and the checks that it was not.

Every piece of content here (a good line's values, each kind of bad line, a
value under an unknown key, a file that is not NDJSON, SQS bodies that are not
S3 notifications) carries ``MARKER``. A test runs the pipeline over it at DEBUG
and asserts the marker is nowhere in what was logged, and also that it did reach
the data the pipeline keeps (Parquet, quarantine objects): a check that could
not see the marker would pass for nothing.
"""

from __future__ import annotations

import gzip
import json
import random
from typing import Any

from tools.s3_events import make_body, make_record
from tools.sample_data import make_event

MARKER = "zqxRecordContent"


def _line(event: dict[str, Any]) -> bytes:
    return json.dumps(event, separators=(",", ":")).encode()


def marked_ndjson(day: str) -> bytes:
    """One line of each kind the job meets, every one holding the marker in its values (and in a key)."""
    rng = random.Random(11)
    good = make_event(rng, f"{MARKER}-good", day)
    good["event_type"], good["user"]["id"], good["tags"] = f"{MARKER}-type", f"{MARKER}-user", [f"{MARKER}-tag"]
    mismatched = make_event(rng, f"{MARKER}-mismatched", day)
    mismatched["value"] = f"{MARKER}-not-a-double"
    unknown = make_event(rng, f"{MARKER}-unknown", day)
    unknown[f"{MARKER}_key"] = f"{MARKER}-unknown-value"
    untimed = make_event(rng, f"{MARKER}-untimed", day)
    untimed["event_time"] = f"{MARKER}-not-a-time"
    lines = [
        _line(good),
        _line(mismatched),  # rescued (rescue) or quarantined: type mismatch
        _line(unknown),  # rescued or quarantined: unknown field
        _line(untimed),  # quarantined under event-time partitioning, the value in its reason
        _line(good)[:-9],  # malformed JSON
        f'"{MARKER}-scalar"'.encode(),  # not an object
        f'["{MARKER}-array"]'.encode(),
        f'{{"event_id":"{MARKER}-first","event_id":"{MARKER}-second"}}'.encode(),  # duplicate key
        f'{{"event_id":"{MARKER}-nul'.encode() + b"\x00" + b'"}',  # control character
        f'{{"event_id":"{MARKER}-nan","value":NaN}}'.encode(),
    ]
    return b"\n".join(lines) + b"\n"


def marked_files(day: str) -> dict[str, bytes]:
    """File name -> body: the marked lines plain and gzipped, one with invalid UTF-8 (under ``strict`` the whole
    file is quarantined), a file that is not NDJSON, a truncated gzip."""
    body = marked_ndjson(day)
    return {
        "marked.ndjson": body,
        "marked.ndjson.gz": gzip.compress(body, mtime=0),
        "latin1.ndjson": body + f'{{"event_id":"{MARKER}-'.encode() + b"\xff\xfe" + b'"}\n',
        "notes.ndjson": f"{MARKER} plain text, not one JSON object\n".encode() * 5,
        "broken.ndjson.gz": gzip.compress(body * 50, mtime=0)[:-40],
    }


def marked_sqs_bodies(bucket: str, key: str) -> list[str]:
    """SQS bodies that are not usable S3 notifications, each holding the marker, as a queue can receive them."""
    wrong_size = make_record(bucket, key)
    wrong_size["s3"]["object"]["size"] = f"{MARKER}-size"  # int() of it quotes the value in its error
    return [
        f"{MARKER} is not JSON {{",
        json.dumps([MARKER]),
        json.dumps({f"{MARKER}_key": f"{MARKER}-value"}),
        make_body(wrong_size),
    ]


def assert_no_record_content(logged: str, where: str) -> None:
    """Fail naming the first line of ``logged`` that holds the marker, in any case or escaping of its letters."""
    leaked = [line for line in logged.splitlines() if MARKER.lower() in line.lower()]
    assert not leaked, f"record content in {where}: {leaked[0][:500]}"
