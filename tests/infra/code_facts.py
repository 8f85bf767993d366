"""What the pipeline's code does with AWS, read statically: the metrics it publishes, the DynamoDB operations it calls.

The tests hold the Terraform (alarms, endpoints) and docs/deployment.md to these,
so a metric or an operation added to the code fails a test until it is alarmed
or documented.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import botocore.session
from botocore import xform_name

from tests.infra.hcl import ROOT

PLUGINS = ROOT / "plugins" / "ndjson_pipeline_airflow"
MONITORING = PLUGINS / "monitoring.py"
# Where the ledger's DynamoDB requests are made: the ledger package, and the sensors' trigger (async client).
LEDGER_CODE = (ROOT / "include" / "ndjson_pipeline" / "ledger", PLUGINS / "triggers.py")


class UnreadableMetricCall(ValueError):
    """A publish_metrics call whose metric names are not a dict literal: they cannot be checked statically."""


def _calls(tree: ast.AST, name: str) -> list[ast.Call]:
    def called(node: ast.Call) -> str | None:
        return getattr(node.func, "id", None) or getattr(node.func, "attr", None)

    return [node for node in ast.walk(tree) if isinstance(node, ast.Call) and called(node) == name]


def _literal_keys(node: ast.expr, where: str) -> list[str]:
    if not isinstance(node, ast.Dict) or not all(
        isinstance(k, ast.Constant) and isinstance(k.value, str) for k in node.keys
    ):
        raise UnreadableMetricCall(f"{where}: metric names must be a dict literal with string keys")
    return [k.value for k in node.keys]  # type: ignore[union-attr]


def metrics_in(source: str, where: str) -> dict[str, str]:
    """metric name -> ``where:line`` of each ``publish_metrics(settings, {...}, ...)`` call in ``source``."""
    found: dict[str, str] = {}
    for call in _calls(ast.parse(source), "publish_metrics"):
        values = (
            call.args[1] if len(call.args) > 1 else next((k.value for k in call.keywords if k.arg == "values"), None)
        )
        if values is None:
            raise UnreadableMetricCall(f"{where}:{call.lineno}: publish_metrics without its values")
        for name in _literal_keys(values, f"{where}:{call.lineno}"):
            found.setdefault(name, f"{where}:{call.lineno}")
    return found


@cache
def published_metrics() -> dict[str, str]:
    """Every metric the plugins publish, with where."""
    found: dict[str, str] = {}
    for path in sorted(PLUGINS.rglob("*.py")):
        for name, where in metrics_in(path.read_text(), str(path.relative_to(ROOT))).items():
            found.setdefault(name, where)
    return found


def metric_dimensions() -> list[str]:
    """The dimension names ``publish_metrics`` gives every metric (the dict literal it passes to put_metrics)."""
    tree = ast.parse(MONITORING.read_text())
    (function,) = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "publish_metrics"]
    (call,) = _calls(function, "put_metrics")
    return _literal_keys(call.args[2], f"{MONITORING}:{call.lineno}")


def boto_operations(service: str, paths: tuple[Path, ...]) -> set[str]:
    """Operations of ``service`` called as client methods (``client.get_item(``) or paginators in ``paths``."""
    model = botocore.session.get_session().get_service_model(service)
    by_method = {xform_name(operation): operation for operation in model.operation_names}
    files = [f for p in paths for f in (sorted(p.rglob("*.py")) if p.is_dir() else [p])]
    found = set()
    for path in files:
        text = path.read_text()
        names = re.findall(r"\.([a-z_0-9]+)\(", text) + re.findall(r"get_paginator\(\"([a-z_0-9]+)\"\)", text)
        found |= {by_method[name] for name in names if name in by_method}
    return found


def ledger_operations() -> set[str]:
    return boto_operations("dynamodb", LEDGER_CODE)
