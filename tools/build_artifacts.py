"""Build what MWAA and Glue consume, under content-hashed keys, reproducibly.

``python -m tools.build_artifacts [--out dist]`` writes::

    dist/dags/...                                   -> s3://<assets>/dags/...
    dist/plugins.zip                                -> s3://<assets>/plugins/plugins.zip
    dist/requirements.txt                           -> s3://<assets>/requirements/requirements.txt (offline install)
    dist/glue/scripts/<sha>/ndjson_to_parquet.py    -> same key in the assets bucket
    dist/glue/python/<sha>/ndjson_pipeline.zip      -> same key (the contract modules the job imports)
    dist/glue/python/<sha>/ndjson_job.zip           -> same key (the job itself, beside its entry script)
    dist/glue/schemas/<sha>/<name>.json             -> same key
    dist/build.json                                 every artifact with its sha256 and S3 key

plugins.zip holds the contents of ``plugins/`` at its root plus the package
``ndjson_pipeline`` (from ``include/``) and an ``.airflowignore`` naming both
package folders (``airflowignore``): MWAA puts the unpacked plugins folder on
``sys.path`` for workers, the scheduler and the triggerer, and nothing else of the
repository reaches them. Glue gets both Glue zips as ``--extra-py-files`` (a
comma-separated list). Zips get fixed timestamps and sorted entries, so the same
sources always give the same bytes, hashes and keys.

MWAA installs the deployed requirements.txt with no index (``--no-index``,
``--find-links /usr/local/airflow/plugins``): plugins.zip also carries, at its root,
the wheels of what requirements.txt needs beyond MWAA's image
(``tools/requirements_bundle.py``, listed in build.json under ``requirements_bundle``)
and the vendored constraints file its ``--constraint`` line now names.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import shutil
import sys
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

from tools.requirements_bundle import MWAA_PLUGINS_DIR, BundleError, bundle, requirement_lines

ROOT = Path(__file__).resolve().parents[1]
BUILD_FORMAT = 2
# Downloaded resolutions and wheels of the requirements bundle, reused while their inputs stay the same.
BUNDLE_CACHE = ROOT / ".local" / "requirements-bundle"
MWAA_IMAGE = "constraints/mwaa-image.txt"
# Zip's earliest representable time: entries carry no build-time information.
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
_IGNORED_PARTS = {"__pycache__", ".pytest_cache", ".ruff_cache"}
_IGNORED_SUFFIXES = {".pyc", ".pyo"}
GLUE_SCRIPT = "ndjson_to_parquet.py"
GLUE_PACKAGE = "ndjson_pipeline"
AIRFLOWIGNORE = ".airflowignore"
# The job's own package; not named like the entry script, whose folder comes first on Glue's sys.path.
GLUE_JOB_PACKAGE = "ndjson_job"


def echo(message: str, *args: object, err: bool = False) -> None:
    """Command-line output of the build and deploy tools (printf-style, like logging)."""
    print(message % args if args else message, file=sys.stderr if err else sys.stdout)


class BuildError(RuntimeError):
    """A source the build needs is missing or malformed; the message names it."""


@dataclass(frozen=True)
class Artifact:
    """One built file: ``path`` inside the build folder, ``key`` in the assets bucket."""

    kind: str
    path: str
    key: str
    sha256: str
    size: int


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _source_files(folder: Path) -> list[Path]:
    """Files under ``folder`` in a stable order, without caches and bytecode."""
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and not _IGNORED_PARTS.intersection(p.parts) and p.suffix not in _IGNORED_SUFFIXES
    )


def deterministic_zip(entries: dict[str, bytes]) -> bytes:
    """A zip of ``{archive name: content}`` whose bytes depend on nothing else."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=_ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, entries[name], compresslevel=9)
    return buffer.getvalue()


def _tree_entries(folder: Path, prefix: str = "") -> dict[str, bytes]:
    return {prefix + p.relative_to(folder).as_posix(): p.read_bytes() for p in _source_files(folder)}


def airflowignore(entries: dict[str, bytes]) -> bytes:
    """plugins.zip's ``.airflowignore``: every package folder at its root, after any plugins/.airflowignore.

    Airflow's plugin loader walks the plugins folder and imports every ``.py`` file it does not
    ignore as a top-level module named after the file (``ledger``, ``operators``, ``__init__``),
    a second copy of each module beside the one its package imports. The packages hold no
    AirflowPlugin; they are imported by name, from ``sys.path``, which the ignore file leaves alone.
    """
    packages = sorted(name.split("/")[0] for name in entries if name.count("/") == 1 and name.endswith("/__init__.py"))
    lines = [
        "# Package folders, imported by name: Airflow's plugin loader must not import their files as plugins.",
        *(f"{package}/" for package in packages),
    ]
    return entries.get(AIRFLOWIGNORE, b"") + ("\n".join(lines) + "\n").encode()


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        raise BuildError(f"{what} not found: {path}")
    return path


def _constraint_url(text: str, path: Path) -> str:
    """The one ``--constraint`` of requirements.txt: MWAA refuses to install a requirements.txt without one."""
    urls = [
        line.split(None, 1)[1].strip().strip('"')
        for line in (raw.strip() for raw in text.splitlines())
        if line.startswith(("--constraint ", "-c ")) and len(line.split()) > 1
    ]
    if len(urls) != 1:
        raise BuildError(f"{path} must have exactly one --constraint line (MWAA requires one), found {len(urls)}")
    return urls[0]


def vendored_constraints(url: str, root: Path) -> Path:
    """The copy in ``constraints/`` of the constraints file at ``url``: the one whose header names that URL."""
    for candidate in sorted((root / "constraints").glob("*.txt")):
        header = candidate.read_text().splitlines()[:5]
        if any(line.lstrip("# ").strip() == url for line in header):
            return candidate
    raise BuildError(f"no file in {root / 'constraints'} names {url} in its header: vendor that constraints file")


def _image_requirements(image: Path, constraints_url: str) -> list[str]:
    """MWAA's image (constraints/mwaa-image.txt), checked to be of the Airflow release the constraints are for."""
    lines = requirement_lines(image.read_text(), str(image))
    airflow = [line for line in lines if line.startswith("apache-airflow[") or line.startswith("apache-airflow==")]
    version = airflow[0].rsplit("==", 1)[-1] if airflow else None
    if version is None or f"/constraints-{version}/" not in constraints_url:
        raise BuildError(
            f"{image} pins apache-airflow=={version} but requirements.txt's constraints are {constraints_url}: "
            "update both to the Airflow release MWAA runs"
        )
    return lines


def deployed_requirements(requirements: list[str], constraints_name: str) -> str:
    """requirements.txt as MWAA installs it without internet: no index, plugins.zip's wheels, its constraints copy."""
    return "".join(
        line + "\n"
        for line in (
            "# Built by tools/build_artifacts.py from requirements.txt. MWAA installs it without an index: what MWAA's",
            "# image lacks is a wheel in plugins.zip, which MWAA unpacks to the folder below (docs/deployment.md).",
            "--no-index",
            f"--find-links {MWAA_PLUGINS_DIR}",
            f"--constraint {MWAA_PLUGINS_DIR}/{constraints_name}",
            *requirements,
        )
    )


class _Build:
    def __init__(self, out: Path) -> None:
        self.out = out
        self.artifacts: list[Artifact] = []

    def add(self, kind: str, rel_path: str, key: str, data: bytes) -> Artifact:
        target = self.out / rel_path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        artifact = Artifact(kind=kind, path=rel_path, key=key, sha256=_sha256(data), size=len(data))
        self.artifacts.append(artifact)
        return artifact

    def add_hashed(self, kind: str, folder: str, name: str, data: bytes) -> Artifact:
        # The key changes whenever the content does: a run never reads a half-replaced file
        # and an older run keeps the exact code it started with.
        key = f"{folder}/{_sha256(data)[:16]}/{name}"
        return self.add(kind, key, key, data)


def _prepare_out(out: Path) -> None:
    if out.exists():
        if any(out.iterdir()) and not (out / "build.json").exists():
            raise BuildError(f"{out} is not empty and holds no earlier build; refusing to replace it")
        shutil.rmtree(out)
    out.mkdir(parents=True)


def build(out: Path, root: Path = ROOT, bundle_cache: Path = BUNDLE_CACHE) -> dict:
    """Build every artifact from the sources under ``root`` into ``out``; return the build.json document.

    :param bundle_cache: where the requirements bundle's resolutions and wheels are cached.
    """
    dags = _require(root / "dags", "DAG folder")
    plugins = _require(root / "plugins", "plugins folder")
    package = _require(root / "include" / GLUE_PACKAGE, "package include/ndjson_pipeline")
    requirements = _require(root / "requirements.txt", "requirements.txt")
    glue_script = _require(root / "glue_scripts" / GLUE_SCRIPT, "Glue script")
    job_package = _require(root / "glue_scripts" / GLUE_JOB_PACKAGE / "__init__.py", "Glue job package").parent
    schemas = sorted(_require(root / "glue_scripts" / "schemas", "Glue schema folder").glob("*.json"))
    if not schemas:
        raise BuildError(f"no *.json schema in {root / 'glue_scripts' / 'schemas'}")

    text = requirements.read_text()
    constraints_url = _constraint_url(text, requirements)
    constraints = vendored_constraints(constraints_url, root)
    image_file = _require(root / MWAA_IMAGE, "MWAA image requirements")
    try:
        needed = requirement_lines(text, str(requirements))
        image = _image_requirements(image_file, constraints_url)
        wheels = bundle(needed, image, constraints, bundle_cache).wheels
    except BundleError as exc:
        raise BuildError(str(exc)) from exc

    _prepare_out(out)
    result = _Build(out)

    for path in _source_files(dags):
        rel = path.relative_to(dags).as_posix()
        result.add("dag", f"dags/{rel}", f"dags/{rel}", path.read_bytes())

    plugin_entries = _tree_entries(plugins)
    package_entries = _tree_entries(package, prefix=f"{GLUE_PACKAGE}/")
    clash = sorted(set(plugin_entries) & set(package_entries))
    if clash:
        raise BuildError(f"plugins/ already contains {clash}, which would shadow include/{GLUE_PACKAGE}")
    plugins_zip = plugin_entries | package_entries
    # The requirements bundle sits at the zip's root: --find-links reads that folder, not below it.
    bundled = {p.name: p.read_bytes() for p in (*wheels, constraints)}
    clash = sorted(set(plugins_zip) & set(bundled))
    if clash:
        raise BuildError(f"plugins/ already contains {clash}, which the requirements bundle ships")
    plugins_zip |= bundled
    plugins_zip[AIRFLOWIGNORE] = airflowignore(plugins_zip)
    result.add("plugins", "plugins.zip", "plugins/plugins.zip", deterministic_zip(plugins_zip))

    deployed = deployed_requirements(needed, constraints.name)
    result.add("requirements", "requirements.txt", "requirements/requirements.txt", deployed.encode())

    result.add_hashed("glue_script", "glue/scripts", GLUE_SCRIPT, glue_script.read_bytes())
    result.add_hashed("glue_python", "glue/python", f"{GLUE_PACKAGE}.zip", deterministic_zip(package_entries))
    job_entries = _tree_entries(job_package, prefix=f"{GLUE_JOB_PACKAGE}/")
    result.add_hashed("glue_job_python", "glue/python", f"{GLUE_JOB_PACKAGE}.zip", deterministic_zip(job_entries))
    for schema in schemas:
        json.loads(schema.read_text())  # a malformed schema fails the build, not a Glue run
        result.add_hashed("glue_schema", "glue/schemas", schema.name, schema.read_bytes())

    document = {
        "format": BUILD_FORMAT,
        "artifacts": [asdict(a) for a in result.artifacts],
        "requirements_bundle": [{"file": p.name, "sha256": _sha256(p.read_bytes())} for p in wheels],
    }
    (out / "build.json").write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    return document


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="build folder (default: dist/)")
    args = parser.parse_args(argv)
    try:
        document = build(args.out.resolve())
    except BuildError as exc:
        echo("build failed: %s", exc, err=True)
        return 1
    for artifact in document["artifacts"]:
        echo("%s  %-13s %s", artifact["sha256"][:12], artifact["kind"], artifact["key"])
    echo("wrote %s", args.out / "build.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
