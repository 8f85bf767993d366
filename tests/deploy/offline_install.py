"""pip, offline, on a stand-in for MWAA's image: does a deployed requirements.txt install from plugins.zip alone?

Only Python 3.11 exists here, so nothing is installed for real. pip resolves the
deployed requirements.txt (``--dry-run``) for CPython 3.12 on manylinux x86_64, in
an interpreter that sees no site-packages (``-S``) and whose only installed
distributions are the image's: one ``.dist-info`` per distribution of the image's
resolution (name, version, Requires-Dist, as MWAA's image has them installed).
pip itself runs from its wheel (``PIP_VERSION``, recent like the pip MWAA upgrades
to when it builds its image; pip before 24 refuses platform options without
``--target``, which ignores installed distributions), with ``--isolated`` (no pip
configuration or ``PIP_*`` variable of this machine) and the requirements file's
own ``--no-index``: every distribution it would install must come from the
unpacked plugins.zip, or it fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tools.requirements_bundle import MWAA_PLUGINS_DIR, Resolved, pip, target_options

PIP_VERSION = "26.3"

_METADATA_FIELDS = (
    ("requires_python", "Requires-Python"),
    ("requires_dist", "Requires-Dist"),
    ("provides_extra", "Provides-Extra"),
)


def image_site(dists: tuple[Resolved, ...], folder: Path) -> Path:
    """A folder of installed-distribution metadata: MWAA's image as pip sees it, without the code."""
    for dist in dists:
        info = folder / f"{dist.key.replace('-', '_')}-{dist.version}.dist-info"
        info.mkdir(parents=True)
        lines = ["Metadata-Version: 2.1", f"Name: {dist.name}", f"Version: {dist.version}"]
        for key, field in _METADATA_FIELDS:
            value = dist.metadata.get(key)
            lines += [f"{field}: {v}" for v in (value if isinstance(value, list) else [value] if value else [])]
        (info / "METADATA").write_text("\n".join(lines) + "\n")
        (info / "INSTALLER").write_text("mwaa-image\n")
    return folder


def pip_wheel(cache: Path) -> Path:
    """pip's wheel (``PIP_VERSION``), downloaded once into ``cache``: run from the wheel, it brings nothing along."""
    wheel = cache / f"pip-{PIP_VERSION}-py3-none-any.whl"
    if not wheel.exists():
        command = pip("download", "--no-deps", "--only-binary=:all:", "-q", "-d", str(cache), f"pip=={PIP_VERSION}")
        subprocess.run(command, check=True, capture_output=True, timeout=300)
    return wheel


def offline_install(
    requirements: Path, plugins: Path, image: Path, work: Path, cache: Path
) -> tuple[int, str, list[str]]:
    """Resolve ``requirements`` (as deployed, MWAA's plugins path pointing at ``plugins``) on ``image``, offline.

    Returns pip's exit code, its output (stdout and stderr: the resolver explains a conflict on stdout), and the
    file names of the wheels it would install.
    """
    local = work / "requirements.txt"
    local.write_text(requirements.read_text().replace(MWAA_PLUGINS_DIR, str(plugins)))
    report = work / "report.json"
    command = [
        sys.executable, "-S", str(pip_wheel(cache) / "pip"), "--isolated", "--disable-pip-version-check",
        "install", "--dry-run", "--report", str(report), *target_options(), "-r", str(local),
    ]  # fmt: skip
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(work),
        "PYTHONPATH": str(image),
        "PIP_INDEX_URL": "http://127.0.0.1:9",
    }
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=work, timeout=300)
    would_install = []
    if done.returncode == 0:
        items = json.loads(report.read_text())["install"]
        would_install = sorted(item["download_info"]["url"].rsplit("/", 1)[-1] for item in items)
    return done.returncode, done.stdout + done.stderr, would_install
