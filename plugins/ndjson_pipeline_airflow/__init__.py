"""Airflow parts of the NDJSON pipeline: hooks, trigger, sensor, operator and shared tasks.

Shipped in MWAA's plugins.zip (with the ``ndjson_pipeline`` package) so that
workers and the triggerer can import them; the DAG files only wire them up.
"""
