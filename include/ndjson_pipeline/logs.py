"""What the two logging setups share: a record's fields, and how a setup takes the pipeline's loggers over.

The pipeline logs with the standard library and gives the facts of a message as
fields too: ``log.info("manifest %s finalised: ...", manifest_id, ..., extra={"manifest_id": ..., "day": ...,
"rows_out": ...})``. Each side sets its loggers up in one place, from the ``log_format`` and ``log_level``
settings (``conversion.LogOptions``): the Airflow tasks in ``ndjson_pipeline_airflow.logs``, the Glue job in
``ndjson_job.logs``. Under ``json`` the fields are keys of the record's JSON object; ``text`` leaves them out,
its message already says the same.

Fields, like messages, hold identities, names and counts, never record content: no line, no value of a field of
the data, no message body. Shipped to Glue with the job: standard library only.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
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


def take_over(logger_names: Iterable[str], handler: logging.Handler, level: int) -> None:
    """Give each logger ``handler`` (in place of an earlier one of its type), ``level``, and no propagation.

    Its records are then written once, by ``handler``, at ``level``, whatever handlers and level the platform gave
    the root logger; a second call replaces what the first set.
    """
    for name in logger_names:
        logger = logging.getLogger(name)
        for earlier in [h for h in logger.handlers if type(h) is type(handler)]:
            logger.removeHandler(earlier)
        logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = False
