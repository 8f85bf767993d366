"""plugins.zip alone is enough for MWAA's workers and triggerer to import every plugin module, once.

The zip is unpacked into a fresh folder and imported by a child interpreter that
has that folder on sys.path but not dags/, plugins/, include/ or the repository.
"""

from __future__ import annotations

import json
import os
import shutil
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


LOADER_PROBE = Path(__file__).with_name("plugin_loader_probe.py")


def _load_plugins(folder: Path, tmp_path_factory) -> dict:
    """Airflow's plugin loader (airflow.plugins_manager of the installed Airflow) on ``folder``."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env |= {
        "AIRFLOW_HOME": str(tmp_path_factory.mktemp("airflow-home")),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(folder),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }
    proc = subprocess.run(
        [sys.executable, "-I", str(LOADER_PROBE), str(folder)],
        capture_output=True,
        text=True,
        cwd=folder.parent,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def unpacked(built, tmp_path_factory) -> Path:
    out, _ = built
    folder = tmp_path_factory.mktemp("loader") / "plugins"
    zipfile.ZipFile(out / "plugins.zip").extractall(folder)
    return folder


def test_airflows_plugin_loader_imports_no_package_file_as_a_top_level_module(unpacked, tmp_path_factory):
    lines = (unpacked / ".airflowignore").read_text().splitlines()
    patterns = {line.strip("/") for line in lines if line and not line.startswith("#")}
    assert patterns == {"ndjson_pipeline", "ndjson_pipeline_airflow"}
    report = _load_plugins(unpacked, tmp_path_factory)
    assert report["errors"] == {}
    bare = {name: path for name, path in report["loaded"].items() if "." not in name}
    assert bare == {}, f"loaded as top-level modules by the plugin loader: {bare}"


def test_without_the_ignore_file_the_loader_would_import_every_file_again(unpacked, tmp_path_factory):
    """The control: the same folder without .airflowignore gets its files imported under their bare names."""
    bare_folder = tmp_path_factory.mktemp("loader-bare") / "plugins"
    shutil.copytree(unpacked, bare_folder, ignore=shutil.ignore_patterns(".airflowignore"))
    loaded = _load_plugins(bare_folder, tmp_path_factory)["loaded"]
    assert loaded.get("ledger") == "ndjson_pipeline/ledger/ledger.py"
    assert loaded.get("operators") == "ndjson_pipeline_airflow/operators.py"
