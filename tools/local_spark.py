"""The local SparkSession of the Glue job's tests and benchmarks: ``local[2]``, executors importing the job as on Glue.

The session's Python workers import ``ndjson_job`` and ``ndjson_pipeline`` from
zips added with ``addPyFile`` (``local_glue.job_py_files``: the same folders Glue
gets as ``--extra-py-files``), so tasks are pickled by reference exactly as in a
Glue run, whatever PYTHONPATH the caller has.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ndjson_pipeline.local_glue import job_py_files

GLUE_SCRIPT = Path(__file__).resolve().parent.parent / "glue_scripts" / "ndjson_to_parquet.py"


def local_session(app_name: str, py_files_dir: Path, *, driver_memory: str, shuffle_partitions: int):
    """A ``local[2]`` session without UI whose executors import the job's zips, written to ``py_files_dir``.

    :param driver_memory: the JVM's heap (the job's rows live in the Python workers, not here).
    :param shuffle_partitions: ``spark.sql.shuffle.partitions`` (only the benchmark's Spark references shuffle).
    """
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    # The tasks need this interpreter's packages (pyarrow), not whatever "python3" is on PATH.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[2]")
        .appName(app_name)
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", str(shuffle_partitions))
        .config("spark.driver.memory", driver_memory)
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    py_files_dir.mkdir(parents=True, exist_ok=True)
    for path in job_py_files(str(GLUE_SCRIPT), str(py_files_dir)):
        session.sparkContext.addPyFile(path)
    return session
