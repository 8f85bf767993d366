"""The deployed requirements.txt installs on MWAA's image from plugins.zip alone, with every index disabled.

What this proves and what it cannot: see tests/deploy/offline_install.py and
docs/deployment.md ("Installing requirements without internet"). The first run
resolves and downloads from PyPI (about two minutes); later runs use the cache in
.local/requirements-bundle and make no network call.
"""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name, parse_wheel_filename

from tests.deploy.conftest import SOURCE_ROOT
from tests.deploy.offline_install import image_site, offline_install
from tools.build_artifacts import BUNDLE_CACHE, MWAA_IMAGE, deployed_requirements
from tools.requirements_bundle import MWAA_PLUGINS_DIR, Bundle, bundle, requirement_lines

CONSTRAINTS = SOURCE_ROOT / "constraints" / "airflow-3.3.1-constraints-py3.12.txt"
# Beyond MWAA's image: a provider whose own dependencies are partly in the image, and a compiled wheel.
BEYOND_THE_IMAGE = ["apache-airflow-providers-slack", "orjson"]


def _requirements() -> list[str]:
    return requirement_lines((SOURCE_ROOT / "requirements.txt").read_text(), "requirements.txt")


def _bundle(requirements: list[str]) -> Bundle:
    image = requirement_lines((SOURCE_ROOT / MWAA_IMAGE).read_text(), MWAA_IMAGE)
    return bundle(requirements, image, CONSTRAINTS, BUNDLE_CACHE)


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    """MWAA's image as pip sees it: the installed distributions of the image's resolution."""
    return image_site(_bundle(_requirements()).image, tmp_path_factory.mktemp("image") / "site-packages")


def _install(requirements: Path, plugins: Path, image: Path, tmp_path: Path) -> tuple[int, str, list[str]]:
    work = tmp_path / "pip"
    work.mkdir()
    return offline_install(requirements, plugins, image, work, BUNDLE_CACHE)


@pytest.fixture(scope="module")
def deployed(built, tmp_path_factory) -> tuple[Path, Path, dict]:
    """The build's requirements.txt and its plugins.zip unpacked, as MWAA has them."""
    out, document = built
    plugins = tmp_path_factory.mktemp("mwaa") / "plugins"
    zipfile.ZipFile(out / "plugins.zip").extractall(plugins)
    return out / "requirements.txt", plugins, document


def test_the_deployed_requirements_install_on_the_image_from_plugins_zip_alone(deployed, image, tmp_path):
    requirements, plugins, document = deployed
    code, output, would_install = _install(requirements, plugins, image, tmp_path)
    assert code == 0, output
    # Every bundled wheel is needed and nothing else is installed (today: pyiceberg and what the image lacks of it).
    assert would_install == [entry["file"] for entry in document["requirements_bundle"]]


def test_without_the_image_the_same_install_fails(deployed, tmp_path):
    """The control: the bundle alone is not enough on an empty interpreter, so the image is what the test relies on."""
    requirements, plugins, _ = deployed
    empty = tmp_path / "empty"
    empty.mkdir()
    code, output, _ = _install(requirements, plugins, empty, tmp_path)
    assert code != 0
    assert "apache-airflow" in output


def test_the_deployed_requirements_name_no_index_the_plugins_folder_and_the_shipped_constraints(deployed):
    requirements, plugins, _ = deployed
    lines = requirements.read_text().splitlines()
    assert "--no-index" in lines
    assert f"--find-links {MWAA_PLUGINS_DIR}" in lines
    constraint = next(line for line in lines if line.startswith("--constraint "))
    shipped = plugins / constraint.removeprefix(f"--constraint {MWAA_PLUGINS_DIR}/")
    assert shipped.read_bytes() == CONSTRAINTS.read_bytes()
    assert [line for line in lines if not line.startswith(("#", "-"))] == _requirements()


@pytest.fixture(scope="module")
def beyond(tmp_path_factory) -> tuple[Bundle, Path, Path]:
    """A requirements.txt that needs more than the image: its bundle, deployed requirements and plugins folder."""
    requirements = [*_requirements(), *BEYOND_THE_IMAGE]
    result = _bundle(requirements)
    folder = tmp_path_factory.mktemp("beyond")
    plugins = folder / "plugins"
    plugins.mkdir()
    for path in (*result.wheels, CONSTRAINTS):
        shutil.copy(path, plugins / path.name)
    deployed_file = folder / "requirements.txt"
    deployed_file.write_text(deployed_requirements(requirements, CONSTRAINTS.name))
    return result, deployed_file, plugins


def test_a_requirement_beyond_the_image_brings_what_the_image_lacks_and_nothing_it_has(beyond):
    result, _, _ = beyond
    bundled = {canonicalize_name(parse_wheel_filename(w.name)[0]) for w in result.wheels}
    ours = {canonicalize_name(parse_wheel_filename(w.name)[0]) for w in _bundle(_requirements()).wheels}
    # The slack provider's Airflow and common providers are in the image; slack_sdk is not.
    assert bundled - ours == {"apache-airflow-providers-slack", "slack-sdk", "orjson"}
    assert ours <= bundled
    orjson = next(w.name for w in result.wheels if w.name.startswith("orjson-"))
    tags = {str(tag) for tag in parse_wheel_filename(orjson)[3]}
    assert "cp312-cp312-manylinux_2_17_x86_64" in tags, tags


def test_that_bundle_installs_offline_and_every_wheel_of_it_is_used(beyond, image, tmp_path):
    result, requirements, plugins = beyond
    code, output, would_install = _install(requirements, plugins, image, tmp_path)
    assert code == 0, output
    assert would_install == [w.name for w in result.wheels]


def test_a_bundle_missing_one_wheel_fails_the_offline_install(beyond, image, tmp_path):
    _, requirements, plugins = beyond
    partial = tmp_path / "plugins"
    shutil.copytree(plugins, partial, ignore=shutil.ignore_patterns("slack_sdk-*"))
    code, output, _ = _install(requirements, partial, image, tmp_path)
    assert code != 0
    assert "slack-sdk" in output.lower().replace("_", "-")
