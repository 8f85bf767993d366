"""The job's logs: one setup, from ``--log_format`` and ``--log_level``, for the driver and every Spark task.

The entry script calls ``configure_job_logging`` once its arguments are read,
and each Spark task (``groups.convert_group``, in an executor's Python worker)
calls it with the same options, which travel with the task's work. The job's
loggers (``ndjson_job`` and the contract modules' ``ndjson_pipeline``) then
write to stderr, which Glue sends to CloudWatch for the driver and each
executor: as text, or as one JSON object a line whose keys are the message's
fields (``ndjson_pipeline.logs``). Nothing else is reconfigured: Spark's,
py4j's (at DEBUG it logs every call into the JVM), boto's and Glue's loggers
keep whatever the platform gave them.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from ndjson_pipeline.conversion import LogFormat, LogOptions
from ndjson_pipeline.logs import record_fields, take_over

JOB_LOGGERS = ("ndjson_job", "ndjson_pipeline")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonLineFormatter(logging.Formatter):
    """A record as one line of JSON: timestamp, level, event (the message), logger, then the record's fields.

    The first four keys are the ones Airflow's task logs use, so one CloudWatch Logs Insights query reads both.
    """

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat().replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "event": record.getMessage(),
            "logger": record.name,
        }
        for name, value in record_fields(record).items():
            entry.setdefault(name, value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str)


class _StderrHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is when the record comes (a worker's pipe; a test's capture)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:
            self.handleError(record)


def configure_job_logging(options: LogOptions) -> None:
    """Set the job's loggers to ``options``: replaces what an earlier call set (Spark reuses its Python workers)."""
    handler = _StderrHandler()
    json_lines = options.log_format is LogFormat.JSON
    handler.setFormatter(JsonLineFormatter() if json_lines else logging.Formatter(TEXT_FORMAT))
    take_over(JOB_LOGGERS, handler, options.log_level.number)
