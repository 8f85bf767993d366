"""AWS Glue entry point of the NDJSON -> Parquet job: arguments in, ``ndjson_job.job.convert_manifest`` out.

The job itself is the ``ndjson_job`` package, shipped beside ``ndjson_pipeline``
as ``--extra-py-files`` (see glue_scripts/README.md). Only this script knows it
runs on Glue: ``awsglue`` is imported here and nowhere else, and without it (local
spark-submit, tests) the job runs on a plain SparkSession.
"""

from __future__ import annotations

import sys

from pyspark.sql import SparkSession

from ndjson_job.job import convert_manifest
from ndjson_job.logs import configure_job_logging
from ndjson_pipeline.conversion import JobArguments
from ndjson_pipeline.manifest import JobResult
from ndjson_pipeline.storage import Storage
from ndjson_pipeline.usage import RequestRecorder


def spark_session() -> SparkSession:
    """GlueContext's session on Glue, else the active or a new plain one."""
    try:
        from awsglue.context import GlueContext
    except ImportError:
        return SparkSession.builder.appName("ndjson_to_parquet").getOrCreate()
    from pyspark.context import SparkContext

    return GlueContext(SparkContext.getOrCreate()).spark_session


def main(argv: list[str]) -> JobResult:
    """Run the job on the arguments Glue passes (``sys.argv``); a bad argument fails naming it."""
    arguments = JobArguments.from_argv(argv)
    configure_job_logging(arguments.logs)
    return convert_manifest(spark_session(), arguments, Storage(recorder=RequestRecorder()))


if __name__ == "__main__":
    main(sys.argv)
