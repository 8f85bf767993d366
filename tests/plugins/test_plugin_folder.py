"""Airflow's plugin loader leaves the packages of the plugins folder alone.

The loader imports every ``.py`` file of the plugins folder as a top-level
module named after the file, unless ``.airflowignore`` excludes it. The folder
(MWAA's unpacked plugins.zip) holds no AirflowPlugin, only packages imported by
their dotted names; loaded file by file they would run twice, under names such
as ``triggers`` and ``__init__``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from tools.local_stack import REPO_ROOT

PROBE = textwrap.dedent(
    """
    import json, sys
    from airflow import plugins_manager

    before = set(sys.modules)
    plugins_manager.ensure_plugins_loaded()
    loaded = sorted(name for name in set(sys.modules) - before if "." not in name)
    print(json.dumps({"errors": plugins_manager.get_import_errors(), "top_level": loaded}))
    """
)


def test_the_plugin_loader_imports_no_module_of_the_folder(tmp_path):
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path), "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins")}
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True, timeout=120
    )
    report = json.loads(out.stdout.strip().splitlines()[-1])
    ours = {p.stem for p in (REPO_ROOT / "plugins").rglob("*.py")} | {
        p.stem for p in (REPO_ROOT / "include" / "ndjson_pipeline").rglob("*.py")
    }
    assert report["errors"] == {}
    assert sorted(ours & set(report["top_level"])) == []
