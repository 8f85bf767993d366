"""NDJSON landing files to date-partitioned Parquet: ledger, intake and batching logic.

Plain Python with no Airflow import, so the same code runs in tasks, in the
triggerer, in the Glue job's driver and in tests.
"""
