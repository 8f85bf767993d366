"""The Glue version: one value (resources.json), a test environment per version, the local runner on its Spark line.

Terraform's job and the local stack's take ``glue_job.glue_version`` from
resources.json (test_resources_consistency.py resolves the Terraform and describes
the job the local bootstrap created). Here: that version is one of the versions
``make test-glue-envs`` tests the job on, the local runner (``glue_runner`` "local":
``.venv`` and the Docker image, requirements-local.txt) runs the same Spark line,
and glue_scripts/README.md's table of versions says what the environments install.
"""

from __future__ import annotations

import re
from pathlib import Path

from ndjson_pipeline.resources import glue_job_spec
from tests.infra import hcl

README = hcl.ROOT / "glue_scripts" / "README.md"


def _tested_envs() -> list[str]:
    makefile = (hcl.ROOT / "Makefile").read_text()
    match = re.search(r"^GLUE_ENVS := (.+)$", makefile, flags=re.M)
    assert match, "the Makefile has no GLUE_ENVS"
    return match.group(1).split()


def _pin(requirements: Path, package: str) -> str:
    match = re.search(rf"^{re.escape(package)}(?:\[[^\]]*\])?==(\S+)", requirements.read_text(), flags=re.M)
    assert match, f"{requirements.name} pins no {package}"
    return match.group(1)


def _spark_line(version: str) -> tuple[str, str]:
    major, minor, *_ = version.split(".")
    return major, minor


def test_the_declared_glue_version_is_one_the_job_is_tested_on():
    version = glue_job_spec()["glue_version"]
    assert f"glue{version.replace('.', '')}" in _tested_envs()


def test_the_local_runner_runs_the_spark_line_of_the_declared_glue_version():
    env = f"glue{glue_job_spec()['glue_version'].replace('.', '')}"
    glue_spark = _pin(hcl.ROOT / f"requirements-{env}.txt", "pyspark")
    local_spark = _pin(hcl.ROOT / "requirements-local.txt", "pyspark")
    assert _spark_line(local_spark) == _spark_line(glue_spark)


def test_the_readme_lists_each_tested_version_with_what_its_environment_installs():
    rows = {}
    for line in README.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if line.startswith("| ") and len(cells) == 6 and re.fullmatch(r"\d+\.\d+( \(default\))?", cells[0]):
            rows[cells[0].split()[0]] = cells
    tested = {f"{env[4]}.{env[5:]}": env for env in _tested_envs()}
    assert set(rows) == set(tested)
    for version, env in tested.items():
        _, spark, _, pyarrow, boto3, environment = rows[version]
        requirements = hcl.ROOT / f"requirements-{env}.txt"
        assert (spark, pyarrow, boto3) == tuple(_pin(requirements, p) for p in ("pyspark", "pyarrow", "boto3"))
        assert f"`.venv-{env}`" in environment
    default = glue_job_spec()["glue_version"]
    assert [v for v, cells in rows.items() if cells[0].endswith("(default)")] == [default]
