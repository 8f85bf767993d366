"""The one price table: AWS list prices the day report and the sizing figures use.

Region us-east-1 (N. Virginia), on-demand, without free tiers, as published on
the services' pricing pages; recorded 2026-12-01 from the pages as last read
(this machine has no internet: re-check them before a budget decision).
Change a price here and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass, field

AS_OF = "2026-12-01"
REGION = "us-east-1"
SOURCES = {
    "s3": "https://aws.amazon.com/s3/pricing/ (Standard storage, first 50 TB; requests)",
    "sqs": "https://aws.amazon.com/sqs/pricing/ (standard queue; each 64 KB chunk is a request)",
    "dynamodb": "https://aws.amazon.com/dynamodb/pricing/on-demand/ (prices of November 2024)",
    "glue": "https://aws.amazon.com/glue/pricing/ (Spark jobs, G.1X = 1 DPU, per second, 1-minute minimum; "
    "the Flex execution class at its own DPU-hour price, billed the same way)",
    "cloudwatch": "https://aws.amazon.com/cloudwatch/pricing/ (PutMetricData; custom metrics)",
    "sns": "https://aws.amazon.com/sns/pricing/ (standard topic publishes)",
    "mwaa": "https://aws.amazon.com/managed-workflows-for-apache-airflow/pricing/ (environment hours)",
    "privatelink": "https://aws.amazon.com/privatelink/pricing/ (interface endpoint hours per AZ)",
}


@dataclass(frozen=True)
class Prices:
    # S3: PUT, COPY, POST and LIST requests; GET, HEAD and the others; DELETE is free.
    s3_tier1_per_request: float = 0.005 / 1000
    s3_tier2_per_request: float = 0.0004 / 1000
    s3_storage_gb_month: float = 0.023
    sqs_per_request: float = 0.40 / 1_000_000
    dynamodb_write_unit: float = 0.625 / 1_000_000
    dynamodb_read_unit: float = 0.125 / 1_000_000
    glue_dpu_hour: float = 0.44
    glue_flex_dpu_hour: float = 0.29
    glue_minimum_seconds: int = 60
    cloudwatch_per_put_metric_data: float = 0.01 / 1000
    cloudwatch_custom_metric_month: float = 0.30
    sns_per_publish: float = 0.50 / 1_000_000
    mwaa_environment_hour: dict[str, float] = field(
        default_factory=lambda: {"mw1.micro": 0.26, "mw1.small": 0.49, "mw1.medium": 0.74, "mw1.large": 0.99}
    )
    interface_endpoint_az_hour: float = 0.01


PRICES = Prices()
# S3 operations billed at the PUT/COPY/POST/LIST rate (DeleteObjects is a POST); DeleteObject is free.
S3_TIER1 = frozenset(
    {
        "PutObject",
        "CopyObject",
        "PostObject",
        "ListObjectsV2",
        "ListObjects",
        "ListObjectVersions",
        "DeleteObjects",
        "CreateMultipartUpload",
        "UploadPart",
        "UploadPartCopy",
        "CompleteMultipartUpload",
        "PutBucketNotificationConfiguration",
    }
)
S3_FREE = frozenset({"DeleteObject", "AbortMultipartUpload"})
# Glue's API (runs, job definitions) is not billed; its Data Catalog is, past a free million a month.
UNBILLED_SERVICES = frozenset({"glue", "sts"})
