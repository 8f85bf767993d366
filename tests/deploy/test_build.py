"""The build: every artifact listed with its hash and key, deterministic, MWAA-ready requirements."""

from __future__ import annotations

import json
import zipfile

import pytest

from tests.deploy.conftest import SOURCE_ROOT
from tools.build_artifacts import BuildError, build, deterministic_zip


def test_build_lists_every_file_it_wrote(built):
    out, document = built
    listed = {a["path"] for a in document["artifacts"]}
    written = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} - {"build.json"}
    assert listed == written
    assert json.loads((out / "build.json").read_text()) == document


def test_build_has_one_artifact_of_each_mwaa_and_glue_kind(built):
    _, document = built
    kinds = [a["kind"] for a in document["artifacts"]]
    for kind in ("plugins", "requirements", "glue_script", "glue_python", "glue_job_python"):
        assert kinds.count(kind) == 1, kind
    assert "dag" in kinds
    assert "glue_schema" in kinds
    keys = {a["kind"]: a["key"] for a in document["artifacts"]}
    assert keys["plugins"] == "plugins/plugins.zip"
    assert keys["requirements"] == "requirements/requirements.txt"
    for kind in ("glue_script", "glue_python", "glue_job_python"):
        sha = next(a["sha256"] for a in document["artifacts"] if a["kind"] == kind)
        assert sha[:16] in keys[kind], f"{kind} key is not content-hashed"


def test_dags_are_the_dag_folder(built):
    _, document = built
    dag_keys = {a["key"] for a in document["artifacts"] if a["kind"] == "dag"}
    expected = {
        f"dags/{p.relative_to(SOURCE_ROOT / 'dags').as_posix()}"
        for p in (SOURCE_ROOT / "dags").rglob("*.py")
        if "__pycache__" not in p.parts
    }
    assert expected <= dag_keys
    assert not any("__pycache__" in k or k.endswith(".pyc") for k in dag_keys)


def test_plugins_zip_holds_plugins_and_the_package(built):
    out, _ = built
    names = zipfile.ZipFile(out / "plugins.zip").namelist()
    assert "ndjson_pipeline/__init__.py" in names
    assert "ndjson_pipeline/resources.json" in names
    for plugin_file in (SOURCE_ROOT / "plugins").rglob("*.py"):
        if "__pycache__" not in plugin_file.parts:
            assert plugin_file.relative_to(SOURCE_ROOT / "plugins").as_posix() in names
    assert not any(n.endswith(".pyc") for n in names)


def test_glue_zips_hold_the_contract_package_and_the_job_package(built):
    out, document = built
    zips = {
        a["kind"]: zipfile.ZipFile(out / a["path"]).namelist() for a in document["artifacts"] if "python" in a["kind"]
    }
    assert "ndjson_pipeline/conversion.py" in zips["glue_python"]
    assert all(name.startswith("ndjson_pipeline/") for name in zips["glue_python"])
    job_modules = {
        f"ndjson_job/{p.relative_to(SOURCE_ROOT / 'glue_scripts' / 'ndjson_job').as_posix()}"
        for p in (SOURCE_ROOT / "glue_scripts" / "ndjson_job").rglob("*.py")
        if "__pycache__" not in p.parts
    }
    assert set(zips["glue_job_python"]) == job_modules
    assert "ndjson_job/job.py" in job_modules


def test_build_without_the_job_package_fails_naming_it(tmp_path):
    root = tmp_path / "src"
    for folder in ("dags", "plugins", "include/ndjson_pipeline", "glue_scripts/schemas"):
        (root / folder).mkdir(parents=True)
    (root / "glue_scripts" / "ndjson_to_parquet.py").write_text("")
    (root / "requirements.txt").write_text("--constraint c.txt\n")
    with pytest.raises(BuildError, match=r"Glue job package not found: .*ndjson_job"):
        build(tmp_path / "out", root=root)


def test_requirements_keep_the_constraint_line(built):
    out, _ = built
    lines = (out / "requirements.txt").read_text().splitlines()
    assert len([line for line in lines if line.startswith(("--constraint ", "-c "))]) == 1


def test_build_is_deterministic(built, tmp_path):
    out, document = built
    again = build(tmp_path / "again", root=SOURCE_ROOT)
    assert again == document
    assert (tmp_path / "again" / "plugins.zip").read_bytes() == (out / "plugins.zip").read_bytes()


def test_deterministic_zip_ignores_entry_order():
    assert deterministic_zip({"b": b"2", "a": b"1"}) == deterministic_zip({"a": b"1", "b": b"2"})


def test_requirements_without_constraint_fail_the_build(tmp_path):
    root = tmp_path / "src"
    for folder in ("dags", "plugins", "include/ndjson_pipeline", "glue_scripts/schemas", "glue_scripts/ndjson_job"):
        (root / folder).mkdir(parents=True)
    (root / "glue_scripts" / "ndjson_to_parquet.py").write_text("")
    (root / "glue_scripts" / "ndjson_job" / "__init__.py").write_text("")
    (root / "glue_scripts" / "schemas" / "events.json").write_text("{}")
    (root / "requirements.txt").write_text("apache-airflow-providers-amazon==9.34.0\n")
    with pytest.raises(BuildError, match="--constraint"):
        build(tmp_path / "out", root=root)


def _make_root(tmp_path, **overrides):
    """A source tree with every folder the build needs; ``overrides`` maps relative paths to file contents."""
    root = tmp_path / "src"
    for folder in ("dags", "plugins", "include/ndjson_pipeline", "glue_scripts/schemas", "glue_scripts/ndjson_job"):
        (root / folder).mkdir(parents=True)
    files = {
        "glue_scripts/ndjson_to_parquet.py": "",
        "glue_scripts/ndjson_job/__init__.py": "",
        "glue_scripts/schemas/events.json": "{}",
        "requirements.txt": (SOURCE_ROOT / "requirements.txt").read_text(),
        "constraints/mwaa-image.txt": (SOURCE_ROOT / "constraints" / "mwaa-image.txt").read_text(),
        "constraints/airflow-3.3.1-constraints-py3.12.txt": CONSTRAINTS.read_text(),
        **overrides,
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


CONSTRAINTS = SOURCE_ROOT / "constraints" / "airflow-3.3.1-constraints-py3.12.txt"


def test_a_constraint_without_a_vendored_copy_fails_the_build(tmp_path):
    other = "https://raw.githubusercontent.com/apache/airflow/constraints-3.4.0/constraints-3.12.txt"
    root = _make_root(tmp_path, **{"requirements.txt": f'--constraint "{other}"\napache-airflow-providers-amazon\n'})
    with pytest.raises(BuildError, match=r"no file in .*constraints names .*constraints-3\.4\.0"):
        build(tmp_path / "out", root=root)


def test_an_image_of_another_airflow_release_than_the_constraints_fails_the_build(tmp_path):
    root = _make_root(tmp_path, **{"constraints/mwaa-image.txt": "apache-airflow[celery]==3.2.1\n"})
    with pytest.raises(BuildError, match=r"pins apache-airflow==3\.2\.1 but requirements.txt's constraints"):
        build(tmp_path / "out", root=root)


def test_an_index_option_mwaa_cannot_honour_offline_fails_the_build(tmp_path):
    text = (SOURCE_ROOT / "requirements.txt").read_text() + "--extra-index-url https://example.com/simple\n"
    root = _make_root(tmp_path, **{"requirements.txt": text})
    with pytest.raises(BuildError, match="--extra-index-url"):
        build(tmp_path / "out", root=root)


def test_build_refuses_to_wipe_a_foreign_folder(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(BuildError, match="not empty"):
        build(tmp_path, root=SOURCE_ROOT)
    assert (tmp_path / "precious.txt").exists()
