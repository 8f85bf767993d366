"""The randomized fault soak at benchmark size, on the real Airflow processes (``make bench-soak``).

Many rounds over a few hundred files: every round lands new keys, overwrites,
duplicate and (in the first) malformed notifications, late files for a day three
days back, one object the Glue job is refused (a 403) and one 1,000-byte key;
faults fire at modest rates on the Airflow side's and the job's calls, with
bursts retries cannot absorb; the scheduler, triggerer or DAG processor is
killed and restarted, or a task's process tree or its worker is killed mid
conversion; failed runs are cleared; end-of-day runs overlap the ingest runs.
Then the pipeline must converge with the faults lifted (see tools/soak/soak.py).

Prints the figures (rounds, runs, faults by kind from the server's counters,
kills by kind, files, rows, seconds) and every invariant; exits 1 if one was
violated, printing the seed and the schedule it made.

Run: ``make bench-soak`` (``SEED=... ROUNDS=...``), or
``python -m benchmarks.soak --seed 7 --rounds 12 [--driver dagtest]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from tools.soak.scenario import SoakConfig
from tools.soak.soak import run_soak

BENCHMARK = SoakConfig(
    driver="processes",
    rounds=12,
    new_files=(25, 40),
    overwrites=(2, 4),
    duplicates=(2, 5),
    malformed=3,
    old_day_files=50,
    unreadable_files=1,
    long_keys=1,
    kill_rate=0.8,
    burst_rate=0.5,
    overlap_rate=0.4,
    recovery_runs=10,
    # Two manifests per run, so a day three days back with 50 files is more than one run converts; a sensor
    # that waits for 60 files or 15 s defers long enough for a triggerer kill to find it deferred (and outlives
    # that wait, as the settings require).
    pipeline={"max_manifests_per_run": 2, "min_batch_files": 60, "max_wait_seconds": 15, "sensor_timeout_seconds": 20},
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=BENCHMARK.seed)
    parser.add_argument("--rounds", type=int, default=BENCHMARK.rounds)
    parser.add_argument("--driver", choices=("processes", "dagtest"), default=BENCHMARK.driver)
    parser.add_argument("--workdir", type=Path, help="where logs and Airflow homes go (default: a temporary dir)")
    args = parser.parse_args()
    config = replace(BENCHMARK, seed=args.seed, rounds=args.rounds, driver=args.driver)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix=f"soak-{args.seed}-"))
    print(f"soak: seed {config.seed}, {config.rounds} rounds on {config.driver}; logs in {workdir}", flush=True)
    report = run_soak(config, workdir, progress=lambda line: print(line, flush=True))
    print(report.text(schedule=bool(report.violations)))
    if report.violations:
        print(f"\n{len(report.violations)} invariant(s) violated; known defects they point at: {report.known_defects}")
        sys.exit(1)


if __name__ == "__main__":
    main()
