"""What a log record carries besides its message: the fields its call gave with ``extra=``.

The pipeline logs with the standard library and gives the facts of a message as
fields too: ``log.info("manifest %s finalised: ...", manifest_id, ..., extra={"manifest_id": ..., "day": ...,
"rows_out": ...})``. Each side's logging setup (the Airflow tasks', ``ndjson_pipeline_airflow.logs``; the Glue
job's, ``ndjson_job.logs``) writes them as keys of the record's JSON object when the ``log_format`` setting is
``json``, and leaves them out of ``text``, whose message already says the same.

Fields, like messages, hold identities, names and counts, never record content: no line, no value of a field of
the data, no message body. Shipped to Glue with the job: standard library only.
"""

from __future__ import annotations

import logging
from typing import Any

# Every attribute the logging module itself gives a record (this Python's: 3.12 added taskName).
_STANDARD_ATTRIBUTES = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The fields ``record`` was given with ``extra=``; private attributes (``_name``) that tools add are not fields."""
    return {
        name: value
        for name, value in record.__dict__.items()
        if name not in _STANDARD_ATTRIBUTES and not name.startswith("_")
    }
