"""How long each DAG file takes to parse in a warm process, against Airflow's own tutorial DAG in the same run.

The DAG processor parses every file on every loop, each in a process that has
Airflow loaded already; what a file costs is what it imports beyond that, plus
building its DAG. Each measurement here is a fresh child process that imports
Airflow's authoring interface (``airflow.sdk``: ``dag``, ``task``, the base
operator and sensor) first, then times ``DagBag`` filling up from one file.
Prints the median of ``--runs`` measurements per file and its ratio to the
tutorial DAG (target: within 2x). Run: ``make bench-dag-parse``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import airflow.example_dags

REPO = Path(__file__).resolve().parent.parent
TUTORIAL = Path(airflow.example_dags.__file__).parent / "tutorial.py"
CHILD = r"""
import sys, time
import airflow.sdk  # what a DAG processor has loaded before it parses a file
from airflow.sdk import BaseOperator, BaseSensorOperator, dag, task
from airflow.dag_processing.dagbag import DagBag
started = time.perf_counter()
bag = DagBag(dag_folder=sys.argv[1])
elapsed = time.perf_counter() - started
if bag.import_errors or not bag.dags:
    raise SystemExit(f"{sys.argv[1]} did not parse: {bag.import_errors}")
print(elapsed)
"""


def parse_seconds(path: Path, runs: int, bytecode: str) -> float:
    """The median of ``runs`` warm parses of ``path``, each in its own process, after one that compiles its imports.

    Modules are compiled once and their bytecode kept (in ``bytecode``), as a DAG processor keeps it; Airflow's
    own modules come with theirs.
    """
    env = {
        **{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
        "PYTHONPYCACHEPREFIX": bytecode,
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "PYTHONPATH": os.pathsep.join(str(REPO / p) for p in ("include", "plugins", ".")),
    }
    times = []
    for _ in range(runs + 1):
        done = subprocess.run([sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True, env=env)
        if done.returncode:
            raise SystemExit(done.stderr[-2000:])
        times.append(float(done.stdout.strip().splitlines()[-1]))
    return statistics.median(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    bytecode = tempfile.mkdtemp(prefix="dag-parse-pycache-")
    tutorial = parse_seconds(TUTORIAL, args.runs, bytecode)
    print(f"{'tutorial.py (Airflow)':32s} {tutorial * 1000:7.1f} ms")
    worst = 0.0
    for path in sorted((REPO / "dags").glob("*.py")):
        seconds = parse_seconds(path, args.runs, bytecode)
        worst = max(worst, seconds / tutorial)
        print(f"{path.name:32s} {seconds * 1000:7.1f} ms  {seconds / tutorial:4.1f}x the tutorial")
    print(f"slowest DAG file: {worst:.1f}x the tutorial DAG (target <= 2x)")


if __name__ == "__main__":
    main()
