"""One DAG run with ``dag.test()`` in this process: the soak's unit of work, killed from outside at random points.

Usage: ``python tools/soak/dag_run.py DAG_ID [CONF_JSON]``. The last line of its
output is ``SOAK-RUN {"run_id": ..., "state": ..., "tasks": {task_id: [states]}}``.
Tasks and triggers run inline (the sensor's trigger too), conversions as a
spark-submit child, so killing this process's tree kills the whole run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

DAGS = Path(__file__).resolve().parents[2] / "dags"


def main(argv: list[str]) -> None:
    from airflow.dag_processing.dagbag import DagBag

    dag_id = argv[1]
    conf = json.loads(argv[2]) if len(argv) > 2 else None
    bag = DagBag(dag_folder=str(DAGS))
    if bag.import_errors:
        sys.exit(f"DAG import errors: {bag.import_errors}")
    run = bag.dags[dag_id].test(run_conf=conf)
    tasks: dict[str, list[str]] = {}
    for ti in run.get_task_instances():
        tasks.setdefault(ti.task_id, []).append(str(ti.state))
    print("SOAK-RUN " + json.dumps({"run_id": run.run_id, "state": str(run.state), "tasks": tasks}), flush=True)


if __name__ == "__main__":
    main(sys.argv)
