"""Hooks: the only code of the Airflow side that talks to AWS, each through an Airflow AWS connection.

Where the Amazon provider has a hook that fits, it is used as is (``SqsHook``,
``SnsHook``) or subclassed (``GlueJobHook``, ``S3Hook``); the ledger and the
pipeline's metrics get small ``AwsBaseHook`` subclasses of their own.

Every sync client a hook makes counts its requests in ``TASK_RECORDER`` (see
``usage.py`` for where each task try's counts are written).
"""

from __future__ import annotations

from typing import Any

from ndjson_pipeline.usage import RequestRecorder

# This task process's AWS requests (a task runs in a process of its own).
TASK_RECORDER = RequestRecorder()


class RecordsRequests:
    """Mixin for AWS hooks: their sync clients count every request in ``TASK_RECORDER``."""

    def get_client_type(self, region_name: str | None = None, config: Any = None, deferrable: bool = False) -> Any:
        client = super().get_client_type(region_name=region_name, config=config, deferrable=deferrable)  # type: ignore[misc]
        # An async client is a context manager here: the trigger attaches its own recorder to the client it opens.
        return client if deferrable else TASK_RECORDER.attach(client)
