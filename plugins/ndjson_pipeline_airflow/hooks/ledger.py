"""The ledger table (DynamoDB) through an Airflow AWS connection."""

from __future__ import annotations

from typing import Any

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

from ndjson_pipeline.ledger import Ledger
from ndjson_pipeline.settings import PipelineSettings
from ndjson_pipeline_airflow.hooks import RecordsRequests


class LedgerHook(RecordsRequests, AwsBaseHook):
    """Gives the pipeline's ``Ledger`` a DynamoDB client; the triggerer uses its async client.

    The provider's ``DynamoDBHook`` writes unconditionally (``write_batch_data``);
    the ledger's transitions are conditional writes and transactions on the client.

    Additional arguments (such as ``aws_conn_id``) are passed down to ``AwsBaseHook``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["client_type"] = "dynamodb"
        super().__init__(*args, **kwargs)

    def get_ledger(self, settings: PipelineSettings) -> Ledger:
        return Ledger.for_settings(self.conn, settings)
