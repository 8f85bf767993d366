"""plugins.zip alone is enough for MWAA's workers and triggerer to import every plugin module.

The zip is unpacked into a fresh folder and imported by a child interpreter that
has that folder on sys.path but not dags/, plugins/, include/ or the repository.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tools.build_artifacts import ROOT

PROBE = Path(__file__).with_name("plugins_probe.py")


@pytest.fixture(scope="module")
def report(built, tmp_path_factory) -> dict:
    out, _ = built
    unpacked = tmp_path_factory.mktemp("mwaa") / "plugins"
    zipfile.ZipFile(out / "plugins.zip").extractall(unpacked)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["AIRFLOW_HOME"] = str(tmp_path_factory.mktemp("airflow-home"))
    proc = subprocess.run(
        [sys.executable, "-I", str(PROBE), str(unpacked), str(ROOT)],
        capture_output=True,
        text=True,
        cwd=unpacked.parent,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_child_interpreter_sees_no_repository_path(report):
    assert report["leaks"] == []


def test_every_module_in_the_zip_imports(report):
    assert "ndjson_pipeline.resources" in report["modules"]
    assert report["errors"] == {}, "\n".join(report["errors"].values())


def test_zip_defines_triggers_and_operators(report):
    assert report["triggers"], "no BaseTrigger subclass in plugins.zip"
    assert report["operators"] or report["sensors"], "no BaseOperator subclass in plugins.zip"
    assert report["operators"], "no (non-sensor) operator in plugins.zip"


def test_trigger_classpaths_resolve_inside_the_zip(report):
    unresolved = {name: info for name, info in report["triggers"].items() if not info["ok"]}
    assert not unresolved, f"the triggerer could not load these triggers from plugins.zip: {unresolved}"
