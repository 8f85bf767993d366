"""Render the catalog table definitions Terraform reads, from the dataset schemas; or check they are current.

``python -m tools.catalog``          writes infra/modules/catalog/tables/<dataset>.json (the Hive table)
                                     and <dataset>.iceberg.json (the Iceberg table: ids, partition spec, properties)
``python -m tools.catalog --check``  fails when a rendered file is missing or stale (CI runs this as a test)

The definitions are the ones the local stack creates in the emulator
(``ndjson_pipeline.catalog.TableDefinition``,
``ndjson_pipeline.iceberg_definition.IcebergTableDefinition``), for the default
conversion options; every schema version chain is checked first.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ndjson_pipeline.catalog import TableDefinition
from ndjson_pipeline.conversion import ConversionOptions
from ndjson_pipeline.dataset_schema import SchemaRegistry
from ndjson_pipeline.iceberg_definition import IcebergTableDefinition
from ndjson_pipeline.layout import LakeLayout

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = ROOT / "glue_scripts" / "schemas"
TABLES = ROOT / "infra" / "modules" / "catalog" / "tables"


def rendered_tables(schemas: Path = SCHEMAS) -> dict[Path, str]:
    """Each dataset's rendered definition by the file it belongs in."""
    out = {}
    for path in sorted(schemas.glob("*.json")):
        schema = SchemaRegistry(schemas, path.stem).check()
        # Database and location depend on the deployment; Terraform fills them in.
        layout = LakeLayout("s3://lake", "s3://quarantine", path.stem)
        definition = TableDefinition.for_dataset("", layout, schema, ConversionOptions())
        out[TABLES / f"{path.stem}.json"] = definition.to_json()
        iceberg = IcebergTableDefinition.for_dataset("", layout, schema, ConversionOptions())
        out[TABLES / f"{path.stem}.iceberg.json"] = iceberg.to_json()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when a rendered definition is stale")
    args = parser.parse_args(argv)
    stale = []
    for path, text in rendered_tables().items():
        if args.check:
            if not path.is_file() or path.read_text() != text:
                stale.append(str(path.relative_to(ROOT)))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path.relative_to(ROOT)}")
    if stale:
        print(f"stale catalog definitions (run python -m tools.catalog): {stale}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
