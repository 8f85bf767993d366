"""Run in a child interpreter (``python -I``): import plugins.zip as MWAA would, report as JSON.

Usage: ``python -I plugins_probe.py <unpacked plugins folder> <repository root>``. Isolated
mode keeps PYTHONPATH and this script's folder off ``sys.path``; only the unpacked
folder is added, like MWAA's plugins folder on workers and the triggerer.
"""

from __future__ import annotations

import importlib
import inspect
import json
import sys
import traceback
from pathlib import Path

_DUMMIES = (("dict", {}), ("list", []), ("str", "x"), ("int", 1), ("float", 1.0), ("bool", False))


def _module_names(folder: Path) -> list[str]:
    names = []
    for path in sorted(folder.rglob("*.py")):
        parts = list(path.relative_to(folder).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        if parts:
            names.append(".".join(parts))
    return names


def _dummy_kwargs(cls) -> dict | None:
    """Arguments for the required parameters when all are simple JSON types, else None."""
    kwargs = {}
    for name, param in inspect.signature(cls.__init__).parameters.items():
        if name == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if param.default is not param.empty:
            continue
        annotation = (
            param.annotation if isinstance(param.annotation, str) else getattr(param.annotation, "__name__", "")
        )
        value = next((v for prefix, v in _DUMMIES if annotation.startswith(prefix)), None)
        if value is None:
            return None
        kwargs[name] = value
    return kwargs


def _trigger_classpath(cls, modules: set[str]) -> dict:
    kwargs = _dummy_kwargs(cls)
    if kwargs is not None:
        try:
            classpath, _ = cls(**kwargs).serialize()
        except Exception:
            classpath = None
        if classpath:
            module_name, _, name = classpath.rpartition(".")
            try:
                importable = getattr(importlib.import_module(module_name), name) is not None
            except (ImportError, AttributeError):
                importable = False
            return {"classpath": classpath, "how": "serialize", "ok": importable and module_name in modules}
    return {"classpath": f"{cls.__module__}.{cls.__qualname__}", "how": "module", "ok": cls.__module__ in modules}


def main() -> None:
    folder, repo = Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve()
    sys.path.insert(0, str(folder))
    # The virtual environment may live inside the repository; its sources may not.
    sources = [repo / name for name in ("dags", "plugins", "include", "glue_scripts", "tools", "tests")]
    leaks = [
        p
        for p in sys.path
        if p
        and (
            Path(p).resolve() == repo or any(s == Path(p).resolve() or s in Path(p).resolve().parents for s in sources)
        )
    ]

    from airflow.sdk import BaseOperator, BaseSensorOperator
    from airflow.triggers.base import BaseTrigger

    modules = _module_names(folder)
    errors, triggers, operators, sensors = {}, {}, [], []
    for name in modules:
        try:
            module = importlib.import_module(name)
        except Exception:
            errors[name] = traceback.format_exc()
            continue
        for obj in vars(module).values():
            if not inspect.isclass(obj) or obj.__module__ != name:
                continue
            qualified = f"{name}.{obj.__qualname__}"
            if issubclass(obj, BaseTrigger):
                triggers[qualified] = _trigger_classpath(obj, set(modules))
            elif issubclass(obj, BaseSensorOperator):
                sensors.append(qualified)
            elif issubclass(obj, BaseOperator):
                operators.append(qualified)
    report = {
        "modules": modules,
        "errors": errors,
        "leaks": leaks,
        "triggers": triggers,
        "operators": operators,
        "sensors": sensors,
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
