"""The pipeline's object store (S3) through an Airflow AWS connection."""

from __future__ import annotations

from airflow.providers.amazon.aws.hooks.s3 import S3Hook

from ndjson_pipeline.storage import Storage
from ndjson_pipeline_airflow.hooks import RecordsRequests


class StorageHook(RecordsRequests, S3Hook):
    """The provider's ``S3Hook`` that also hands out the pipeline's ``Storage`` (the one the Glue job uses too).

    Arguments are those of ``S3Hook`` (such as ``aws_conn_id``).
    """

    def get_storage(self) -> Storage:
        return Storage(s3_client=self.conn)

    @property
    def endpoint_url(self) -> str | None:
        """The S3 endpoint the connection points at (a local emulator), or None for AWS itself."""
        url: str | None = self.conn_config.endpoint_url
        return url
