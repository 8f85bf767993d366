"""A day's cost from its own usage: variable cost by component and per file, fixed costs apart.

Formula (prices from ``prices.PRICES``)::

    glue        = billed DPU-seconds / 3600 x the DPU-hour price of each run's execution class (STANDARD or FLEX;
                  the runs' own figures, 1-minute minimum each)
    s3          = PUT/COPY/POST/LIST requests x tier-1 price + GET/HEAD/other x tier-2 price (DELETE free)
    sqs         = requests x request price
    dynamodb    = write units x WRU price + read units x RRU price
    cloudwatch  = PutMetricData requests x price;  sns = publishes x price
    landing     = the day's landing bytes x (retention + noncurrent days) / 30 x storage price:
                  what storing the day's raw files costs over their whole life
    per file    = the sum / the day's files

Fixed costs (the MWAA environment, the VPC interface endpoints, the custom
metrics) do not depend on the files: they are shown per day and, for scale,
per file of this day, apart from the variable cost. The Parquet the day added
is shown as storage per month, since the lake keeps it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ndjson_pipeline.usage.prices import AS_OF, PRICES, REGION, S3_FREE, S3_TIER1, UNBILLED_SERVICES, Prices
from ndjson_pipeline.usage.record import Usage

GB = 1024**3
DAYS_PER_MONTH = 30


@dataclass(frozen=True)
class FixedInfrastructure:
    """What runs whatever the volume, as the Terraform in infra/ declares it.

    :param mwaa_environment_class: ``mwaa_environment_class`` (infra/envs/prod).
    :param interface_endpoints: interface endpoints infra/modules/network requires (all created when
        no platform team provides them).
    :param availability_zones: subnets the endpoints sit in.
    :param custom_metrics: metrics the DAGs publish (plugins' ``publish_metrics`` calls), one ``Dataset`` each.
    """

    mwaa_environment_class: str = "mw1.small"
    interface_endpoints: int = 12
    availability_zones: int = 2
    custom_metrics: int = 8

    def per_day(self, prices: Prices = PRICES) -> dict[str, float]:
        return {
            "mwaa_environment": 24 * prices.mwaa_environment_hour[self.mwaa_environment_class],
            "vpc_interface_endpoints": 24
            * self.interface_endpoints
            * self.availability_zones
            * prices.interface_endpoint_az_hour,
            "cloudwatch_custom_metrics": self.custom_metrics * prices.cloudwatch_custom_metric_month / DAYS_PER_MONTH,
        }


def variable_costs(usage: Usage, *, landing_bytes: int, landing_days: int, prices: Prices = PRICES) -> dict[str, float]:
    """Dollars by component for what ``usage`` counted and the raw bytes it stored."""
    s3_tier1 = s3_tier2 = 0
    other: dict[str, float] = {"sqs": 0.0, "cloudwatch": 0.0, "sns": 0.0}
    for name, count in usage.requests.items():
        service, operation = name.split(".", 1)
        if service == "s3":
            if operation in S3_TIER1:
                s3_tier1 += count
            elif operation not in S3_FREE:
                s3_tier2 += count
        elif service == "sqs":
            other["sqs"] += count * prices.sqs_per_request
        elif service == "cloudwatch" and operation == "PutMetricData":
            other["cloudwatch"] += count * prices.cloudwatch_per_put_metric_data
        elif service == "sns" and operation == "Publish":
            other["sns"] += count * prices.sns_per_publish
        elif service not in UNBILLED_SERVICES | {"dynamodb", "cloudwatch", "sns"}:
            raise ValueError(f"no price for {name}: add it to ndjson_pipeline/usage/prices.py")
    return {
        "glue": (
            (usage.glue_dpu_seconds - usage.glue_flex_dpu_seconds) * prices.glue_dpu_hour
            + usage.glue_flex_dpu_seconds * prices.glue_flex_dpu_hour
        )
        / 3600,
        "s3_requests": s3_tier1 * prices.s3_tier1_per_request + s3_tier2 * prices.s3_tier2_per_request,
        "dynamodb": usage.write_units * prices.dynamodb_write_unit + usage.read_units * prices.dynamodb_read_unit,
        **other,
        "landing_storage": landing_bytes / GB * landing_days / DAYS_PER_MONTH * prices.s3_storage_gb_month,
    }


def day_cost(
    usage: Usage,
    *,
    files: int,
    landing_bytes: int,
    landing_days: int,
    prices: Prices = PRICES,
    fixed: FixedInfrastructure | None = None,
) -> dict[str, Any]:
    """The day report's cost section: per component, per file, fixed costs apart."""
    variable = variable_costs(usage, landing_bytes=landing_bytes, landing_days=landing_days, prices=prices)
    fixed_day = (fixed or FixedInfrastructure()).per_day(prices)
    total = sum(variable.values())
    per = max(1, files)
    return {
        "prices": f"{REGION} list prices as of {AS_OF} (ndjson_pipeline/usage/prices.py)",
        "files": files,
        "variable_usd": {name: round(value, 6) for name, value in variable.items()},
        "variable_total_usd": round(total, 6),
        "per_file_usd": round(total / per, 8),
        "per_file_by_component_usd": {name: round(value / per, 8) for name, value in variable.items()},
        "share_by_component": {name: round(value / total, 3) if total else 0.0 for name, value in variable.items()},
        "fixed_per_day_usd": {name: round(value, 4) for name, value in fixed_day.items()},
        "fixed_per_file_usd": round(sum(fixed_day.values()) / per, 8),
        "lake_storage_added_usd_per_month": round(usage.output_bytes / GB * prices.s3_storage_gb_month, 6),
        "requests_per_file": round(sum(usage.requests.values()) / per, 3),
        "requests_by_service": usage.by_service(),
        "dynamodb_units_per_file": {
            "write": round(usage.write_units / per, 3),
            "read": round(usage.read_units / per, 3),
        },
    }
