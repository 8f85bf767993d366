"""Hooks: the only code of the Airflow side that talks to AWS, each through an Airflow AWS connection.

Where the Amazon provider has a hook that fits, it is used as is (``SqsHook``,
``SnsHook``) or subclassed (``GlueJobHook``, ``S3Hook``); the ledger and the
pipeline's metrics get small ``AwsBaseHook`` subclasses of their own.
"""

from __future__ import annotations

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

AWS_CONN_ID: str = AwsBaseHook.default_conn_name
