"""The wheels MWAA installs requirements.txt from when it has no index: what requirements.txt needs beyond its image.

MWAA without internet access installs ``requirements.txt`` with ``--no-index`` and
``--find-links /usr/local/airflow/plugins``, the folder plugins.zip is unpacked to
(MWAA's documented way for private environments). Everything the requirements
need that MWAA's image does not already have must then be a wheel in plugins.zip.

``bundle`` works that out with pip, for MWAA's platform (CPython 3.12 on Linux
x86_64, glibc 2.34) and under Airflow's constraints file:

1. resolve the image (``constraints/mwaa-image.txt``), then the image together with
   requirements.txt, both from PyPI, reading metadata only;
2. the packages of the second resolution that the first does not have, at that
   version, are the bundle; a package the image has at another version fails the
   build (MWAA would have to replace a package of its own image);
3. download those wheels, each checked against the sha256 the resolution reported.

Resolutions and wheels are cached under ``.local/requirements-bundle`` by the
content of their inputs, so a second build with the same inputs makes no network
call and gives the same bytes. pip runs ``--isolated``: no user or machine pip
configuration (extra indexes, find-links, constraints) takes part.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from packaging.utils import canonicalize_name

# Where MWAA unpacks plugins.zip on every component (scheduler, workers, triggerer, web server).
MWAA_PLUGINS_DIR = "/usr/local/airflow/plugins"
PYTHON_VERSION = "3.12"
# MWAA's Airflow 3.3.1 image is Amazon Linux 2023 (glibc 2.34): any manylinux wheel up to glibc 2.34 loads there.
# pip expands manylinux2014 to manylinux2010 and manylinux1 by itself but takes the PEP 600 tags one by one
# (libcst 1.9.0, which Airflow needs, ships manylinux_2_28 wheels only).
PLATFORMS = (*(f"manylinux_2_{minor}_x86_64" for minor in range(34, 16, -1)), "manylinux2014_x86_64")
# Bump when the resolution or the cache layout changes: older cache entries are then ignored.
_CACHE_FORMAT = 1
_REQUIREMENT_OPTIONS = ("-c", "--constraint", "-f", "--find-links", "--no-index", "-i", "--index-url")


class BundleError(RuntimeError):
    """The requirements cannot be bundled for MWAA; the message says which requirement and why."""


@dataclass(frozen=True)
class Resolved:
    """One distribution of a resolution: the wheel pip chose for MWAA's platform, and its core metadata."""

    name: str
    version: str
    filename: str
    url: str
    sha256: str
    metadata: dict

    @property
    def key(self) -> str:
        return canonicalize_name(self.name)


@dataclass(frozen=True)
class Bundle:
    """The wheels to ship (``wheels``, sorted by file name), and the image resolution they were computed against."""

    wheels: tuple[Path, ...]
    image: tuple[Resolved, ...]


def target_options() -> list[str]:
    """pip options that select wheels for MWAA's interpreter and platform instead of this machine's."""
    platforms = [arg for platform in PLATFORMS for arg in ("--platform", platform)]
    return [*platforms, "--python-version", PYTHON_VERSION, "--implementation", "cp", "--only-binary=:all:"]


def pip(*args: str) -> list[str]:
    """A pip command line that reads no pip configuration file or ``PIP_*`` variable of this machine."""
    return [sys.executable, "-m", "pip", "--isolated", "--disable-pip-version-check", *args]


def requirement_lines(text: str, source: str) -> list[str]:
    """The requirement specifiers of a requirements file: comments, blank lines and index/constraint options dropped.

    Constraints come from the vendored file (the build passes it); any other option is refused, naming it.
    """
    lines = []
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-"):
            if line.split()[0].split("=")[0] in _REQUIREMENT_OPTIONS:
                continue
            raise BundleError(f"{source}: option {line!r} is not supported in requirements MWAA installs offline")
        lines.append(line)
    return lines


def bundle(requirements: list[str], image: list[str], constraints: Path, cache: Path) -> Bundle:
    """The wheels MWAA needs for ``requirements`` beyond ``image``, downloaded into ``cache`` (or found there).

    :param requirements: requirement specifiers (``requirement_lines`` of requirements.txt).
    :param image: requirement specifiers of what MWAA's image has installed.
    :param constraints: Airflow's constraints file MWAA installs under.
    """
    image_dists = _resolution(image, constraints, cache)
    together = _resolution([*image, *requirements], constraints, cache)
    in_image = {d.key: d for d in image_dists}
    needed = []
    for dist in together:
        have = in_image.get(dist.key)
        if have is None:
            needed.append(dist)
        elif have.version != dist.version:
            raise BundleError(
                f"requirements.txt needs {dist.name}=={dist.version} but MWAA's image has {have.name}=={have.version}: "
                "MWAA installs over its own image only what the constraints allow; pin the image's version"
            )
    wheels = _download(needed, cache / "wheels")
    return Bundle(wheels=wheels, image=image_dists)


def _cache_key(requirements: list[str], constraints: Path) -> str:
    document = {
        "format": _CACHE_FORMAT,
        "requirements": requirements,
        "constraints": hashlib.sha256(constraints.read_bytes()).hexdigest(),
        "target": target_options(),
    }
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()[:24]


def _resolution(requirements: list[str], constraints: Path, cache: Path) -> tuple[Resolved, ...]:
    """pip's resolution of ``requirements`` for MWAA's platform (metadata only), cached by its inputs."""
    path = cache / "resolutions" / f"{_cache_key(requirements, constraints)}.json"
    if not path.exists():
        with tempfile.TemporaryDirectory(prefix="bundle-") as work:
            listed = Path(work) / "requirements.txt"
            listed.write_text("\n".join(requirements) + "\n")
            report = Path(work) / "report.json"
            command = pip(
                "install", "--dry-run", "--ignore-installed", "--quiet", "--report", str(report),
                "--target", str(Path(work) / "target"), *target_options(),
                "-c", str(constraints), "-r", str(listed),
            )  # fmt: skip
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                raise BundleError(
                    f"pip could not resolve {requirements} for CPython {PYTHON_VERSION} on manylinux x86_64 "
                    f"under {constraints.name}:\n{done.stderr[-3000:]}"
                )
            resolved = [_from_report(item) for item in json.loads(report.read_text())["install"]]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps([asdict(d) for d in sorted(resolved, key=lambda d: d.key)], indent=1) + "\n")
    return tuple(Resolved(**item) for item in json.loads(path.read_text()))


def _from_report(item: dict) -> Resolved:
    info = item["download_info"]
    archive = info.get("archive_info", {})
    sha256 = archive.get("hashes", {}).get("sha256") or archive.get("hash", "").removeprefix("sha256=")
    url = info["url"]
    filename = url.rsplit("/", 1)[-1]
    if not filename.endswith(".whl") or not sha256:
        raise BundleError(f"pip chose {url} for {item['metadata']['name']}: not a wheel with a sha256")
    metadata = item["metadata"]
    return Resolved(metadata["name"], metadata["version"], filename, url, sha256, metadata)


def _download(needed: list[Resolved], folder: Path) -> tuple[Path, ...]:
    """Each wheel of ``needed`` in ``folder``, downloaded unless already there with the expected sha256."""
    folder.mkdir(parents=True, exist_ok=True)
    missing = [d for d in needed if _sha256(folder / d.filename) != d.sha256]
    if missing:
        with tempfile.TemporaryDirectory(prefix="bundle-") as work:
            pinned = Path(work) / "wheels.txt"
            pinned.write_text("".join(f"{d.name} @ {d.url} --hash=sha256:{d.sha256}\n" for d in missing))
            command = pip(
                "download", "--no-deps", "--require-hashes", "--quiet", *target_options(), "-d", work, "-r", str(pinned)
            )
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                raise BundleError(f"pip could not download {[d.filename for d in missing]}:\n{done.stderr[-3000:]}")
            for dist in missing:
                (Path(work) / dist.filename).replace(folder / dist.filename)
    return tuple(sorted((folder / d.filename for d in needed), key=lambda p: p.name))


def _sha256(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
