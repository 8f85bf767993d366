"""The pipeline's task logs: its own loggers at the ``log_level`` setting, their fields as the ``log_format`` says.

How Airflow 3.3 logs a task: the task process sets up structlog and the root
logger's one handler to write every event as one JSON object a line to its
supervisor (``airflow.sdk.log.configure_logging(json_output=True,
sending_to_supervisor=True)``), which masks secrets and stores them (the task
log file, CloudWatch on MWAA); the UI shows them as text. Stdlib records reach
it through the root handler, which drops their ``extra=`` fields and everything
under Airflow's ``[logging] logging_level``.

So this module leaves Airflow's handler and levels alone and gives the
pipeline's two logger trees (``ndjson_pipeline``, ``ndjson_pipeline_airflow``)
a handler of their own (``propagate`` off, so a record is written once): it
passes each record to structlog, through the processors Airflow configured,
with its fields as keys (``json``) or its message alone (``text``). The task log
then holds, for ``json``::

    {"timestamp": "...", "level": "info", "event": "manifest 20261124-ab finalised: ...",
     "manifest_id": "20261124-ab", "day": "2026-11-24", "rows_out": 298, ..., "logger":
     "ndjson_pipeline.steps.finalising", "filename": "finalising.py", "lineno": 98}

``configure_task_logging`` runs from ``settings_loader.load_settings``, the
first call of every task, operator, sensor and callback of the pipeline: the
one place the settings are read at run time.
"""

from __future__ import annotations

import logging

import structlog
from structlog.stdlib import ProcessorFormatter

from ndjson_pipeline.conversion import LogFormat, LogOptions
from ndjson_pipeline.logs import record_fields, take_over

TASK_LOGGERS = ("ndjson_pipeline", "ndjson_pipeline_airflow")
# Keys structlog's processors set themselves, and the call's own arguments: a field by one of these names is dropped.
_RESERVED = frozenset({"event", "level", "logger", "logger_name", "timestamp", "exc_info", "stack_info", "stack"})


class StructlogForwarder(logging.Handler):
    """Hands each record to structlog as configured in this process: in a task process, Airflow's task log.

    :param with_fields: give the record's ``extra=`` fields as keys of the event (``log_format`` ``json``).
    """

    def __init__(self, *, with_fields: bool) -> None:
        super().__init__()
        self.with_fields = with_fields

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields = record_fields(record) if self.with_fields else {}
            keys = {name: value for name, value in fields.items() if name not in _RESERVED}
            if record.exc_info:
                keys["exc_info"] = record.exc_info
            if record.stack_info:
                keys["stack"] = record.stack_info
            # The record itself under ``_record`` (not from structlog): the call-site processor takes the file and
            # line from it, not from this handler's frame; ``remove_processors_meta`` drops it before rendering.
            self._logger(record.name).log(
                record.levelno, record.getMessage(), **keys, _record=record, _from_structlog=False
            )
        except Exception:
            self.handleError(record)

    @staticmethod
    def _logger(name: str) -> structlog.typing.FilteringBoundLogger:
        # Built per record from the configuration in force, which Airflow sets per process; the level was
        # decided by the logger and this handler already.
        processors = list(structlog.get_config()["processors"])
        processors.insert(len(processors) - 1, ProcessorFormatter.remove_processors_meta)
        logger: structlog.typing.FilteringBoundLogger = structlog.wrap_logger(
            None,
            processors=processors,
            wrapper_class=structlog.make_filtering_bound_logger(logging.NOTSET),
            logger_factory_args=(name,),
        )
        return logger


def configure_task_logging(options: LogOptions) -> None:
    """Set the pipeline's loggers to ``options`` in this process; replaces what an earlier call set."""
    handler = StructlogForwarder(with_fields=options.log_format is LogFormat.JSON)
    take_over(TASK_LOGGERS, handler, options.log_level.number)
