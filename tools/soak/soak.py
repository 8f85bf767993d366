"""The soak itself: rounds of landing, faults and kills, then recovery, then the invariants and the figures.

``run_soak(config, workdir)`` plays the schedule ``config.seed`` makes
(tools/soak/scenario.py) on a driver: ``dag.test()`` subprocesses
(tools/soak/dagtest_driver.py) or the real Airflow processes
(tools/soak/process_driver.py). After the last round every fault but the
deterministic ones is lifted and the pipeline has to converge on its own:

1. intake, then ingest, run alone (each ingest after the leases of killed claims ran out, so the
   sweeper can repair them) until every landed version is terminal and the
   queue is drained, at most ``config.recovery_runs`` times; what ingest leaves
   undone is a finding of its own;
2. end-of-day runs for every landed day until each day is complete (bounded).

The end state is then read from the local AWS and judged (tools/soak/invariants.py).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ndjson_pipeline.clock import utcnow
from ndjson_pipeline.ledger import ManifestState
from tools.soak.dagtest_driver import DagTestDriver, Job, RunOutcome
from tools.soak.faultplan import BURSTS, FaultLedger
from tools.soak.invariants import DEFECTS, Check, check_all, unfinished
from tools.soak.landing import LandingBook
from tools.soak.observe import observe
from tools.soak.scenario import Kill, Schedule, SoakConfig, make_schedule
from tools.soak.stack import SoakStack, soak_stack

END_OF_DAY_PASSES = 3


@dataclass
class SoakReport:
    config: SoakConfig
    schedule: Schedule
    checks: list[Check] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    workdir: Path | None = None

    @property
    def violations(self) -> list[Check]:
        return [c for c in self.checks if not c.held]

    @property
    def known_defects(self) -> list[str]:
        return sorted({DEFECTS[d] for c in self.violations for d in c.defects})

    @property
    def unexplained(self) -> list[Check]:
        return [c for c in self.violations if not c.defects]

    def text(self, *, schedule: bool = False) -> str:
        lines = [f"soak seed {self.config.seed} ({self.config.driver}), workdir {self.workdir}"]
        lines += [f"  {name}: {json.dumps(value)}" for name, value in self.figures.items()]
        lines += ["invariants:"] + [f"  {c.line()}" for c in self.checks]
        if schedule:
            lines += [f"reproduce with seed {self.config.seed}; its schedule:", self.schedule.describe()]
        return "\n".join(lines)


def make_driver(config: SoakConfig, stack: SoakStack):
    if config.driver == "dagtest":
        return DagTestDriver(stack)
    from tools.soak.process_driver import ProcessDriver  # PostgreSQL and the real processes: the benchmark's

    return ProcessDriver(stack)


def run_soak(config: SoakConfig, workdir: Path, progress: Callable[[str], None] = lambda _line: None) -> SoakReport:
    """Play ``config``'s schedule, converge, judge; ``progress`` gets a line per round and phase."""
    schedule = make_schedule(config, tuple(BURSTS))
    report = SoakReport(config, schedule, workdir=workdir)
    started = time.monotonic()
    with soak_stack(workdir, **config.pipeline) as stack:
        book = LandingBook(stack.settings, stack.client("s3"), stack.client("sqs"), stack.queue_url, config.seed)
        faults = FaultLedger(stack.endpoint, config.seed, config.fault_scale)
        driver = make_driver(config, stack)
        runs: list[RunOutcome] = []
        driver.start()
        try:
            phase = time.monotonic()
            for plan in schedule.rounds:
                book.land(plan.index, plan.wave)
                faults.set_round(plan.index, plan.bursts, book.unreadable_keys(), publish_latency=plan.publish_latency)
                jobs = _intake_and_ingest(plan.kill if plan.kill and plan.kill.target != "eod" else None)
                if plan.end_of_day:
                    day = book.days()[plan.index % len(book.days())]
                    jobs.append(Job("ndjson_end_of_day", {"day": day}))
                played = driver.run(jobs, book.days(), clear_failed=plan.clear_failed)
                runs += played
                progress(
                    f"round {plan.index}: {len(book.versions)} versions landed, bursts {list(plan.bursts)}, "
                    + ", ".join(f"{r.job.dag_id} {r.state} in {r.seconds:.0f}s (killed: {r.killed})" for r in played)
                )
            chaos_seconds = time.monotonic() - phase
            faults.set_deterministic_only(book.unreadable_keys())
            phase = time.monotonic()
            ingest_alone = _ingest_alone(driver, stack, book, config, runs)
            recovery_ingest = time.monotonic() - phase
            progress(f"recovery, ingest alone ({recovery_ingest:.0f}s): {ingest_alone.line()}")
            phase = time.monotonic()
            _end_of_day(driver, stack, book, runs)
            recovery_eod = time.monotonic() - phase
            progress(f"recovery, end of day ({recovery_eod:.0f}s): {len(_not_terminal(stack, book))} not terminal")
            faults.collect()
            seen = observe(stack)
        finally:
            driver.stop()
        kills = [r for r in runs if r.killed]
        failure_budget = len(kills) + schedule.bursts
        checks = check_all(seen, book, failure_budget=failure_budget, max_attempts=stack.settings.max_attempts)
        report.checks = [ingest_alone, *checks]
        report.figures = _figures(config, book, seen, faults, runs, kills)
        report.figures["seconds"] = {
            "total": round(time.monotonic() - started),
            "rounds": round(chaos_seconds),
            "recovery_ingest": round(recovery_ingest),
            "recovery_end_of_day": round(recovery_eod),
        }
    return report


def _intake_and_ingest(kill: Kill | None) -> list[Job]:
    """An intake run and an ingest run at once, as their schedules make them overlap; a kill at intake is intake's."""
    at_intake = kill is not None and kill.at == "intake"
    return [
        Job("ndjson_intake", None, kill if at_intake else None),
        Job("ndjson_ingest", None, None if at_intake else kill),
    ]


def _not_terminal(stack: SoakStack, book: LandingBook) -> dict[str, str]:
    """identity -> day of every landed version the ledger has no terminal record of."""
    records = stack.ledger().get_files([v.identity for v in book.versions])
    return {
        v.identity: v.day for v in book.versions if v.identity not in records or not records[v.identity].state.terminal
    }


def _queue_left(stack: SoakStack) -> int:
    attrs = stack.client("sqs").get_queue_attributes(
        QueueUrl=stack.queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return sum(int(v) for v in attrs.values())


def _wait_for_leases(stack: SoakStack, days: list[str]) -> float:
    """Wait until no open manifest's lease is still running (a killed claim is then the sweeper's); returns s waited."""
    ledger, waited = stack.ledger(), 0.0
    bound = stack.settings.lease_seconds + 30
    while waited < bound:
        now = utcnow()
        leases = [
            datetime.fromisoformat(record.lease_expires_at)
            for day in days
            for manifest_id in ledger.open_manifests(day)
            if (record := ledger.get_manifest(manifest_id)) is not None and record.state is ManifestState.CLAIMED
        ]
        ahead = max(((lease - now).total_seconds() for lease in leases), default=0.0)
        if ahead <= 0:
            break
        step = min(ahead + 1, bound - waited)
        time.sleep(step)
        waited += step
    return waited


def _ingest_alone(driver, stack: SoakStack, book: LandingBook, config: SoakConfig, runs: list) -> Check:
    name = "fault-free ingest runs alone finish every landed day"
    extra = 0
    while (_not_terminal(stack, book) or _queue_left(stack)) and extra < config.recovery_runs:
        _wait_for_leases(stack, book.days())
        runs += driver.run([Job("ndjson_intake")], book.days())
        runs += driver.run([Job("ndjson_ingest")], book.days())
        extra += 1
    summary = f"{extra} ingest runs after the last round ({_queue_left(stack)} messages left in the queue)"
    seen = stack.ledger().get_files([v.identity for v in book.versions])
    return unfinished(book.versions, seen, name, summary, by_ingest=True)


def _end_of_day(driver, stack: SoakStack, book: LandingBook, runs: list) -> None:
    """End-of-day for every landed day, again for days still incomplete; ingest too while the queue holds messages."""
    days = book.days()
    for _ in range(END_OF_DAY_PASSES):
        _wait_for_leases(stack, days)
        runs += driver.run([Job("ndjson_end_of_day", {"day": day}) for day in days], book.days())
        if _queue_left(stack):
            runs += driver.run([Job("ndjson_intake")], days)
            runs += driver.run([Job("ndjson_ingest")], days)
        left = set(_not_terminal(stack, book).values())
        if not left and not _queue_left(stack):
            return
        days = sorted(left) or days


def _figures(config: SoakConfig, book: LandingBook, seen, faults: FaultLedger, runs, kills) -> dict[str, Any]:
    landed = Counter(v.kind for v in book.versions)
    states = Counter(str(r.state) for i, r in seen.files.items() if i in {v.identity for v in book.versions})
    rows_landed = sum(len(v.rows) for v in book.versions)
    return {
        "rounds": config.rounds,
        "runs": dict(Counter(f"{r.job.dag_id}:{r.state}" for r in runs)),
        "faults_by_kind": dict(sorted(faults.by_kind.items())),
        "faults_by_rule": dict(sorted(faults.by_label.items())),
        "kills": dict(Counter(k.killed.split(" ", 1)[0] for k in kills)),
        "files": {
            "versions": len(book.versions),
            "keys": len(book.current()),
            "days": book.days(),
            "landed_by_kind": dict(landed),
            "final_states": dict(states),
            "duplicate_notifications": book.duplicates_sent,
            "malformed_notifications": len(book.malformed_bodies),
        },
        "rows": {
            "of_all_versions": rows_landed,
            "in_parquet": len(seen.rows),
            "distinct_in_parquet": len({event_id for event_id, _ in seen.rows}),
            "quarantined_lines": seen.quarantined_lines,
        },
        "manifests": dict(Counter(str(m.state) for m in seen.manifests.values())),
    }
