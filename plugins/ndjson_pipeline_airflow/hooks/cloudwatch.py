"""The pipeline's CloudWatch metrics through an Airflow AWS connection."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

from ndjson_pipeline_airflow.hooks import RecordsRequests

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_cloudwatch.type_defs import DimensionTypeDef


class CloudWatchMetricsHook(RecordsRequests, AwsBaseHook):
    """Publishes custom metrics; the provider has a hook for CloudWatch Logs only.

    Additional arguments (such as ``aws_conn_id``) are passed down to ``AwsBaseHook``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["client_type"] = "cloudwatch"
        super().__init__(*args, **kwargs)

    def put_metrics(self, namespace: str, values: Mapping[str, float], dimensions: Mapping[str, str]) -> None:
        """One data point per metric, all with the same dimensions.

        .. seealso::
            - :external+boto3:py:meth:`CloudWatch.Client.put_metric_data`

        :param namespace: the metrics' namespace.
        :param values: metric name -> value.
        :param dimensions: dimension name -> value.
        """
        dims: list[DimensionTypeDef] = [{"Name": name, "Value": value} for name, value in dimensions.items()]
        client: CloudWatchClient = self.conn
        client.put_metric_data(
            Namespace=namespace,
            MetricData=[{"MetricName": name, "Value": float(v), "Dimensions": dims} for name, v in values.items()],
        )
        self.log.info("published %s to %s", dict(values), namespace)
