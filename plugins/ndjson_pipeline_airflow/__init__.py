"""Airflow parts of the NDJSON pipeline: hooks, trigger, sensor, operator and shared tasks.

Shipped in MWAA's plugins.zip (with the ``ndjson_pipeline`` package) so that
workers and the triggerer can import them; the DAG files only wire them up.
The modules DAG files import (tasks, operators, sensors, callbacks and the
operator actions' tasks) import only Airflow's authoring interface at module
level: boto3, the provider's hooks and the pipeline's core are imported when a
task runs, so a DAG file parses as fast as Airflow's own (``make
bench-dag-parse``; tests/dags holds them to it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# The Airflow connection every hook of the pipeline uses unless told otherwise: the Amazon provider's default
# (``AwsBaseHook.default_conn_name``; tests/plugins holds the two equal), named here so that DAG-facing modules
# need not import the provider.
AWS_CONN_ID = "aws_default"


def dag_run_name(context: Mapping[str, Any]) -> str:
    """``<dag_id>/<run_id>``: the DAG run a task works for, the same for every try and clear of that run.

    Claims carry it as their owner (a cleared run re-adopts what it claimed) and operator actions as who asked.
    """
    return f"{context['dag'].dag_id}/{context['run_id']}"
