"""Read the Terraform in infra/ with python-hcl2 and resolve the references the tests need.

The resolver knows plain references (``var.x``, ``local.spec.queue.name``,
``var.bucket_arns["lake"]``) and string templates made of them; anything else
(function calls, module outputs) is left unresolved on purpose.
"""

from __future__ import annotations

import contextlib
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import hcl2

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
ENV_ROOT = INFRA / "envs" / "prod"
_OPTIONS = hcl2.SerializationOptions(with_comments=False, explicit_blocks=False, strip_string_quotes=True)
_WHOLE_REF = re.compile(r"^\$\{([A-Za-z_][\w.\-]*(?:\[\"[^\"]+\"\][\w.\-]*)*)\}$")
_INNER_REF = re.compile(r"\$\{([^{}]+)\}")
_TOKEN = re.compile(r"([A-Za-z_][\w\-]*)|\[\"([^\"]+)\"\]|(\.)")


class Unresolved(LookupError):
    """An expression is not a plain reference this resolver can follow."""


@cache
def load(path: Path) -> dict[str, Any]:
    with path.open() as handle:
        return hcl2.load(handle, serialization_options=_OPTIONS)


def tf_files() -> list[Path]:
    return sorted(INFRA.rglob("*.tf"))


def module_doc(folder: Path) -> dict[str, list]:
    """All top-level blocks of a module's .tf files, merged."""
    merged: dict[str, list] = {}
    for path in sorted(folder.glob("*.tf")):
        for key, blocks in load(path).items():
            merged.setdefault(key, []).extend(blocks)
    return merged


def blocks(doc: dict[str, list], kind: str, type_name: str | None = None) -> dict[str, Any]:
    """``{name: body}`` of resources/data sources of one type, or of module calls / locals."""
    found: dict[str, Any] = {}
    for entry in doc.get(kind, []):
        if type_name is None:
            found.update(entry)
        else:
            found.update(entry.get(type_name, {}))
    return found


def _lookup(path: str, context: dict[str, Any]) -> Any:
    value: Any = context
    for name, key, dot in _TOKEN.findall(path):
        if dot:
            continue
        step = name or key
        if not isinstance(value, dict) or step not in value:
            raise Unresolved(path)
        value = value[step]
    return value


def _resolve_or_keep(value: Any, context: dict[str, Any]) -> Any:
    try:
        return resolve(value, context)
    except Unresolved:
        return value


def resolve(value: Any, context: dict[str, Any]) -> Any:
    """Resolve a reference or template; inside blocks and lists, unresolvable parts stay as written."""
    if isinstance(value, dict):
        return {k: _resolve_or_keep(v, context) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_or_keep(v, context) for v in value]
    if not isinstance(value, str):
        return value
    whole = _WHOLE_REF.match(value)
    if whole:
        return resolve(_lookup(whole.group(1), context), context)

    def substitute(match: re.Match) -> str:
        if not _WHOLE_REF.match(match.group(0)):
            raise Unresolved(match.group(0))
        return str(_lookup(match.group(1), context))

    return _INNER_REF.sub(substitute, value)


def resources_spec_path() -> Path:
    """The file ``local.spec`` of the env root decodes; fails unless it is jsondecode(file(...))."""
    spec_expr = blocks(module_doc(ENV_ROOT), "locals")["spec"]
    match = re.fullmatch(r'\$\{jsondecode\(file\("\$\{path\.module\}/([^"]+)"\)\)\}', spec_expr)
    assert match, f"local.spec must be jsondecode(file(...)), got {spec_expr!r}"
    return (ENV_ROOT / match.group(1)).resolve()


def env_context(name_prefix: str, **variables: Any) -> dict[str, Any]:
    """Resolution context of the env root for one name prefix (locals resolved where possible)."""
    defaults = {name: body.get("default") for name, body in blocks(module_doc(ENV_ROOT), "variable").items()}
    context: dict[str, Any] = {
        "var": {**defaults, "name_prefix": name_prefix, **variables},
        "local": {"spec": json.loads(resources_spec_path().read_text())},
    }
    for name, expr in blocks(module_doc(ENV_ROOT), "locals").items():
        if name == "spec":
            continue
        with contextlib.suppress(Unresolved):
            context["local"][name] = resolve(expr, context)
    return context


def module_inputs(module: str, context: dict[str, Any]) -> dict[str, Any]:
    """The env root's arguments to ``module "<module>"``, resolved where they are plain references."""
    call = blocks(module_doc(ENV_ROOT), "module")[module]
    inputs: dict[str, Any] = {}
    for name, expr in call.items():
        with contextlib.suppress(Unresolved):
            inputs[name] = resolve(expr, context)
    return inputs


def module_folder(module: str) -> Path:
    call = blocks(module_doc(ENV_ROOT), "module")[module]
    return (ENV_ROOT / call["source"]).resolve()
