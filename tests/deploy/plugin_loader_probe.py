"""Run in a child interpreter: Airflow's own plugin loader on an unpacked plugins.zip; report JSON.

Usage: ``python -I plugin_loader_probe.py <unpacked plugins folder>`` with
AIRFLOW__CORE__PLUGINS_FOLDER set to that folder. Reports every module loaded
from the folder (by name and file) and the loader's import errors.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main() -> None:
    folder = Path(sys.argv[1]).resolve()
    sys.path.insert(0, str(folder))  # as MWAA does for the plugins folder
    from airflow import plugins_manager

    plugins_manager.ensure_plugins_loaded()
    loaded = {
        name: str(Path(module.__file__).resolve().relative_to(folder))
        for name, module in list(sys.modules.items())
        if getattr(module, "__file__", None) and Path(module.__file__).resolve().is_relative_to(folder)
    }
    print(json.dumps({"loaded": loaded, "errors": plugins_manager.get_import_errors()}))


if __name__ == "__main__":
    main()
