"""Airflow parts of the NDJSON pipeline: hooks, trigger, sensor, operator and shared tasks.

Shipped in MWAA's plugins.zip (with the ``ndjson_pipeline`` package) so that
workers and the triggerer can import them; the DAG files only wire them up.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def dag_run_name(context: Mapping[str, Any]) -> str:
    """``<dag_id>/<run_id>``: the DAG run a task works for, the same for every try and clear of that run.

    Claims carry it as their owner (a cleared run re-adopts what it claimed) and operator actions as who asked.
    """
    return f"{context['dag'].dag_id}/{context['run_id']}"
