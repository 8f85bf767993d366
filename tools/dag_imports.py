"""The DAG files' import contract, checked by ``make lint``: DAG files are wiring, they import only the plugins.

A DAG file may import the standard library, ``airflow.sdk`` (the authoring
interface) and ``ndjson_pipeline_airflow`` (the plugins, which MWAA ships in
plugins.zip). Anything else (the core, the provider, boto3) belongs in the
plugins, where tasks reach it at run time; the DAG processor then parses a
file without loading what only tasks need. DAG files are not a package, so
import-linter (pyproject.toml) cannot hold them to this: this does.

Run: ``python -m tools.dag_imports [DAG_FOLDER]``; exits 1 naming each file, line and import at fault.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ALLOWED_PACKAGES = ("airflow.sdk", "ndjson_pipeline_airflow")
DAGS = Path(__file__).resolve().parent.parent / "dags"


def allowed(module: str) -> bool:
    top = module.split(".", 1)[0]
    if top == "__future__" or top in sys.stdlib_module_names:
        return True
    return any(module == package or module.startswith(f"{package}.") for package in ALLOWED_PACKAGES)


def violations(dag_folder: Path) -> list[str]:
    """``file:line: imports X`` for every import of a DAG file outside its contract."""
    found = []
    for path in sorted(dag_folder.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                modules = ["." * node.level + (node.module or "")]
            else:
                continue
            found += [f"{path}:{node.lineno}: imports {m}" for m in modules if m.startswith(".") or not allowed(m)]
    return found


def main() -> None:
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else DAGS
    found = violations(folder)
    for line in found:
        print(f"{line} (DAG files import only {', '.join(ALLOWED_PACKAGES)} and the standard library)")
    if found:
        sys.exit(1)
    print(f"DAG files: imports kept to {', '.join(ALLOWED_PACKAGES)} and the standard library")


if __name__ == "__main__":
    main()
