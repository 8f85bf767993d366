"""The two jars local Spark needs for ``s3a://``: hadoop-aws and the AWS SDK bundle.

pyspark ships no hadoop-aws jar, and Maven Central is out of reach here; the
``sagemaker_pyspark`` 1.4.5 sdist on PyPI carries hadoop-aws-3.3.1 and
aws-java-sdk-bundle-1.11.901, which work with Spark 3.5's hadoop client 3.3.4
(checked: read and write of ``s3a://`` on the moto server). The jars are
extracted once into ``.local/jars`` (gitignored); later calls only check they
are there. Run ``python -m tools.spark_jars`` to fetch them and print their
paths, colon separated, the form ``NDJSON_PIPELINE_SPARK_JARS`` takes.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

JARS_DIR = Path(__file__).resolve().parent.parent / ".local" / "jars"
SDIST_REQUIREMENT = "sagemaker_pyspark==1.4.5"
JAR_NAMES = ("hadoop-aws-3.3.1.jar", "aws-java-sdk-bundle-1.11.901.jar")


def spark_jars(jars_dir: Path = JARS_DIR) -> list[str]:
    """Return the jar paths, downloading and extracting them first if any is missing."""
    paths = [jars_dir / name for name in JAR_NAMES]
    if not all(p.is_file() and p.stat().st_size > 0 for p in paths):
        _extract_from_sdist(jars_dir)
    return [str(p) for p in paths]


def _extract_from_sdist(jars_dir: Path) -> None:
    jars_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sagemaker-pyspark-") as tmp:
        pip_download = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:"]
        subprocess.run([*pip_download, "-d", tmp, SDIST_REQUIREMENT], check=True)
        sdists = list(Path(tmp).glob("*.tar.gz"))
        if len(sdists) != 1:
            raise RuntimeError(f"expected one sdist of {SDIST_REQUIREMENT} in {tmp}, found {sdists}")
        with tarfile.open(sdists[0]) as tar:
            members = {Path(m.name).name: m for m in tar.getmembers() if Path(m.name).name in JAR_NAMES}
            missing = sorted(set(JAR_NAMES) - set(members))
            if missing:
                raise RuntimeError(f"{sdists[0].name} does not contain {missing}")
            for name, member in members.items():
                source = tar.extractfile(member)
                if source is None:
                    raise RuntimeError(f"{member.name} in {sdists[0].name} is not a regular file")
                # Write to a temporary name first so an interrupted run never leaves a truncated jar behind.
                partial = jars_dir / f"{name}.partial"
                with source, partial.open("wb") as target:
                    target.write(source.read())
                partial.replace(jars_dir / name)


def main() -> None:
    print(":".join(spark_jars()))


if __name__ == "__main__":
    main()
