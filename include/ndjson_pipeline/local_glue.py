"""Run a Glue job script locally through pyspark's spark-submit, the way Glue would call it.

The script gets its arguments Glue style (``--name value``), runs on ``local[2]``,
imports its code from zips given as ``--py-files`` (what Glue's
``--extra-py-files`` does: this package and each package beside the script), and
reaches S3 with boto3 on ``s3_endpoint`` (a moto server locally), in the driver
and in the tasks. No Airflow import here.
"""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from ndjson_pipeline.conversion import JobArguments

TAIL_LINES = 40


class LocalGlueRunError(RuntimeError):
    """spark-submit failed; carries its exit code and the tail of its output."""

    def __init__(self, script_path: str, exit_code: int | None, tail: str) -> None:
        self.exit_code = exit_code
        self.tail = tail
        what = "timed out" if exit_code is None else f"exited with code {exit_code}"
        super().__init__(f"local Glue run of {script_path} {what}; last lines of its output:\n{tail}")


def spark_submit_path() -> str:
    """The spark-submit script of the installed pyspark package."""
    import pyspark

    path = Path(pyspark.__file__).resolve().parent / "bin" / "spark-submit"
    if not path.is_file():
        raise FileNotFoundError(f"pyspark at {path.parent.parent} has no bin/spark-submit")
    return str(path)


def job_py_files(script_path: str, out_dir: str) -> list[str]:
    """Zip what the job imports into ``out_dir``: ``ndjson_pipeline`` and every package beside the script.

    These are the zips Glue gets as ``--extra-py-files`` (``tools.build_artifacts`` builds
    the deployable, content-hashed ones from the same folders).
    """
    packages = [Path(__file__).resolve().parent]
    packages += sorted(p.parent for p in Path(script_path).resolve().parent.glob("*/__init__.py"))
    zips = []
    for package in packages:
        target = Path(out_dir) / f"{package.name}.zip"
        with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(package.rglob("*")):
                if path.is_file() and "__pycache__" not in path.parts:
                    archive.write(path, f"{package.name}/{path.relative_to(package).as_posix()}")
        zips.append(str(target))
    return zips


def run_glue_script_locally(
    script_path: str,
    arguments: JobArguments,
    *,
    s3_endpoint: str | None,
    py_files: list[str] | None = None,
    timeout_seconds: int = 1800,
    log_path: str | None = None,
) -> None:
    """Run ``script_path`` with ``arguments`` as Glue passes them; raise LocalGlueRunError on failure.

    :param s3_endpoint: S3 endpoint for boto3 (None: the default AWS endpoints).
    :param py_files: Python zips for the driver and the executors, as Glue's ``--extra-py-files``
        (default: ``job_py_files`` of the script, zipped for this run).
    :param log_path: file to keep Spark's whole output in (a temporary file otherwise).
    """
    env = {
        **os.environ,
        "SPARK_LOCAL_IP": "127.0.0.1",
        "PYSPARK_PYTHON": os.environ.get("PYSPARK_PYTHON", sys.executable),
        "PYSPARK_DRIVER_PYTHON": os.environ.get("PYSPARK_DRIVER_PYTHON", sys.executable),
    }
    env.setdefault("AWS_ACCESS_KEY_ID", "testing")
    env.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    env.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    if s3_endpoint:
        env["AWS_ENDPOINT_URL_S3"] = s3_endpoint
    conf = {"spark.ui.enabled": "false", "spark.ui.showConsoleProgress": "false"}
    command = [spark_submit_path(), "--master", "local[2]"]
    for key, value in conf.items():
        command += ["--conf", f"{key}={value}"]
    zips = tempfile.TemporaryDirectory(prefix="glue-py-files-")
    command += ["--py-files", ",".join(py_files or job_py_files(script_path, zips.name))]
    command.append(script_path)
    for name, value in arguments.to_glue_args().items():
        command += [name, value]

    with zips, open(log_path, "w+b") if log_path else tempfile.TemporaryFile() as log:
        try:
            completed = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env, timeout=timeout_seconds)
            exit_code: int | None = completed.returncode
        except subprocess.TimeoutExpired:
            exit_code = None
        if exit_code != 0:
            log.seek(0)
            tail = collections.deque((line.decode("utf-8", "replace") for line in log), maxlen=TAIL_LINES)
            raise LocalGlueRunError(script_path, exit_code, "".join(tail))
