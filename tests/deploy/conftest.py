"""One build of the real repository per test session (the build reads dags/, plugins/, include/, glue_scripts/)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tools.build_artifacts import ROOT, build

# Only to develop these tests against a fixture tree; CI builds the repository itself.
SOURCE_ROOT = Path(os.environ.get("NDJSON_BUILD_SOURCE_ROOT", ROOT))


@pytest.fixture(scope="session")
def built(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("build") / "dist"
    return out, build(out, root=SOURCE_ROOT)
