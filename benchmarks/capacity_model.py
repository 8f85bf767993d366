"""A discrete-event model of the ingest DAG's timeline: how long files wait, and how much backlog builds up.

The model replays what the intake and ingest DAGs do with their real settings
(``PipelineSettings``) and DAG shape (``Design``): every ``intake_interval_seconds``
an intake run (never two at once) drains SQS into the ledger (long polls that
return at the first message, up to 10 messages, until a receive brings fewer than
10 or waits ``intake_wait_seconds`` for nothing, the time budget ends or the
message limit is hit); every ``schedule_seconds`` an ingest run (never more than
``max_active_runs`` at once) sweeps, defers a sensor that polls the pending files until the batch
thresholds in effect (``PipelineSettings.batching``: files, bytes, or the oldest registration's wait) are
reached or the sensor's timeout ends (polling as the trigger does: every ``sensor_poll_seconds``, and at
the instant the oldest file comes of age, so the waiting sensors of overlapping runs see it together). A
ready day wakes one of them, the one that takes the day's wake (``Design.one_run_per_batch``); it resumes,
then its planner claims at most ``max_manifests_per_run`` manifests of what is pending by then (full
manifests, and a partial one only once its oldest file waited: ``Design.batches_only``; nothing, when
another run's planner came first: an empty plan), then converts them with at most ``conversion_slots``
conversions at a time over all runs (a deferred conversion keeps its slot), each followed by its
finaliser. ``separate_intake=False`` models the former design, where each ingest
run drained the queue itself before its sensor.

Latencies of single steps are ``Assumptions`` (every one printed by the benchmark);
the requests each step sends are measured by the benchmark over the moto server
and turned into seconds with the assumed per-request latency. No AWS is called here.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
import statistics
from collections import Counter, deque
from collections.abc import Callable, Generator
from dataclasses import dataclass, field, fields
from typing import Any

from ndjson_pipeline.ledger import wakes
from ndjson_pipeline.resources import conversion_slots
from ndjson_pipeline.settings import PipelineSettings

MB = 1_000_000
MiB = 1024 * 1024


@dataclass(frozen=True)
class Assumptions:
    """What the model takes as given; each is printed next to the figures it produces."""

    file_bytes: int = 3_500_000
    s3_event_delay_s: float = 1.0  # S3 -> SQS delivery
    # Seconds per request, by kind (a StepRequests kind).
    request_s: dict[str, float] = field(
        default_factory=lambda: {
            "sqs": 0.020,
            "dynamodb_transaction": 0.025,
            "dynamodb": 0.010,
            "s3": 0.030,
            "glue": 0.100,
            "cloudwatch": 0.030,
        }
    )
    task_start_s: float = 8.0  # an MWAA worker picks up a task (or a resumed deferred one)
    scheduler_delay_s: float = 2.0  # the next run after one ends
    glue_start_s: tuple[float, float] = (10.0, 30.0)  # StartJobRun -> RUNNING, uniform
    # Glue run: Spark and job overhead, then the groups in parallel on the executor's cores at Arrow's rate.
    glue_overhead_s: float = 18.0
    arrow_mb_per_s_per_core: float = 20.0
    executor_cores: int = 4  # G.1X x 2 workers: one driver and one 4-vCPU executor
    glue_min_billed_s: int = 60
    glue_dpu: float = 2.0

    def described(self) -> list[str]:
        return [f"{f.name} = {getattr(self, f.name)}" for f in fields(self)]


@dataclass(frozen=True)
class StepRequests:
    """Requests per step, by kind, as measured over the moto server (the benchmark fills them in)."""

    intake_batch: dict[str, float] = field(
        default_factory=lambda: {"sqs": 2, "dynamodb_transaction": 1}
    )  # one receive of <= 10 messages, its registration and its deletes
    sweep: dict[str, float] = field(default_factory=lambda: {"dynamodb": 4, "cloudwatch": 1})
    claim: dict[str, float] = field(default_factory=lambda: {"dynamodb": 8, "dynamodb_transaction": 1, "s3": 1})
    conversion_start: dict[str, float] = field(default_factory=lambda: {"dynamodb": 2, "s3": 1, "glue": 3})
    finalise_fixed: dict[str, float] = field(default_factory=lambda: {"dynamodb": 2, "s3": 4, "glue": 1})
    finalise_per_file: dict[str, float] = field(default_factory=lambda: {"dynamodb_transaction": 0.01})

    def seconds(self, step: str, assumptions: Assumptions, files: int = 0) -> float:
        kinds = dict(getattr(self, step))
        if step == "finalise_fixed":
            for kind, count in self.finalise_per_file.items():
                kinds[kind] = kinds.get(kind, 0) + count * files
        return sum(count * assumptions.request_s[kind] for kind, count in kinds.items())


@dataclass(frozen=True)
class Design:
    """The DAG shape (what dags/ and the task wiring decide, not the settings); the defaults are the DAGs'."""

    name: str = "intake DAG every minute, overlapping ingest runs every minute"
    schedule_seconds: int = 60  # dags/ndjson_ingest.py
    max_active_runs: int = 4  # dags/ndjson_ingest.py MAX_ACTIVE_RUNS
    conversion_slots: int = field(default_factory=lambda: conversion_slots("ingest"))
    separate_intake: bool = True  # dags/ndjson_intake.py
    intake_interval_seconds: int = 60
    # A ready day wakes one run: the sensor that takes the day's wake (ledger/wakes.py), freed when its planner
    # has claimed. False: every waiting sensor that sees the day ready resumes, and all but one plan nothing.
    one_run_per_batch: bool = True
    # The woken planner claims full manifests, and fewer files only once the oldest waited the batch wait
    # (steps/planning.py, woken). False: it claims everything pending.
    batches_only: bool = True


@dataclass(frozen=True)
class Scenario:
    name: str
    base_files_per_day: float
    hours: float
    burst_files: int = 0
    burst_start_h: float = 0.0
    burst_hours: float = 1.0

    def arrivals(self, rng: random.Random) -> list[float]:
        times, t = [], 0.0
        rate = self.base_files_per_day / 86_400
        while rate and (t := t + rng.expovariate(rate)) < self.hours * 3600:
            times.append(t)
        start = self.burst_start_h * 3600
        times += [start + rng.random() * self.burst_hours * 3600 for _ in range(self.burst_files)]
        return sorted(times)


# ---------------------------------------------------------------------- a minimal process scheduler


class _Sim:
    """Processes are generators that yield a delay in seconds, or a ``_Slots`` to acquire."""

    def __init__(self) -> None:
        self.now = 0.0
        self._heap: list[tuple[float, int, Generator]] = []
        self._seq = itertools.count()

    def start(self, process: Generator, delay: float = 0.0) -> None:
        heapq.heappush(self._heap, (self.now + delay, next(self._seq), process))

    def run(self, until: float) -> None:
        while self._heap and self._heap[0][0] <= until:
            self.now, _, process = heapq.heappop(self._heap)
            self._step(process)

    def _step(self, process: Generator) -> None:
        try:
            request = next(process)
        except StopIteration:
            return
        if isinstance(request, _Slots):
            request.acquire(self, process)
        else:
            self.start(process, float(request))


class _Slots:
    def __init__(self, count: int) -> None:
        self.free = count
        self.waiting: deque[Generator] = deque()

    def acquire(self, sim: _Sim, process: Generator) -> None:
        if self.free:
            self.free -= 1
            sim.start(process)
        else:
            self.waiting.append(process)

    def release(self, sim: _Sim) -> None:
        if self.waiting:
            sim.start(self.waiting.popleft())
        else:
            self.free += 1


# ---------------------------------------------------------------------- the pipeline


@dataclass
class Outcome:
    latencies: list[float]
    arrived: int
    peak_backlog: int
    runs: int
    manifests: list[int]
    glue_dpu_seconds: float
    sensor_timeouts: int  # sensors that gave up while files were pending
    # How often each step ran ("intake.receive", "sensor.poll", "glue.poll", ...), for the request counts.
    counts: Counter[str]
    poll_pending: list[int]  # pending files each sensor poll counted
    backlog: list[int]  # files arrived and not yet DONE, every sample (10 s)

    def percentile(self, pct: float) -> float:
        if not self.latencies:
            return math.nan
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, math.ceil(pct / 100 * len(ordered)) - 1)]

    def summary(self) -> dict[str, Any]:
        done = len(self.latencies)
        return {
            "arrived": self.arrived,
            "done": done,
            "p50_s": round(self.percentile(50), 1),
            "p95_s": round(self.percentile(95), 1),
            "max_s": round(max(self.latencies, default=math.nan), 1),
            "peak_backlog": self.peak_backlog,
            "runs": self.runs,
            "manifests": len(self.manifests),
            "files_per_manifest": round(statistics.fmean(self.manifests), 1) if self.manifests else 0,
            "glue_dpu_s_per_file": round(self.glue_dpu_seconds / max(1, done), 3),
            "sensor_timeouts": self.sensor_timeouts,
            "ingest_runs_per_hour": self.per_hour("run"),
            "glue_runs_per_day": round(24 * self.per_hour("claim"), 1),
            "empty_plans_per_hour": self.per_hour("plan.empty"),
            "task_starts_per_hour": self.per_hour("task_start"),
        }

    def per_hour(self, step: str) -> float:
        """How often ``step`` ran per hour while files arrived."""
        return round(self.counts[step] / max(1e-9, self.counts["arrival_hours"]), 1)


class PipelineModel:
    def __init__(
        self,
        settings: PipelineSettings,
        design: Design,
        assumptions: Assumptions,
        requests: StepRequests,
        arrivals: list[float],
        seed: int = 7,
    ) -> None:
        self.s, self.d, self.a, self.r = settings, design, assumptions, requests
        self.batching = settings.batching
        # The day's wake: which run holds it, since when, and when its planner claimed (ledger/wakes.py).
        self.wake: tuple[int, float, float | None] | None = None
        self.arrivals = arrivals
        self.rng = random.Random(seed)
        self.sim = _Sim()
        self.slots = _Slots(design.conversion_slots)
        self.queue_pos = 0  # arrivals before this index were received from SQS
        self.pending: deque[tuple[float, float]] = deque()  # (registered at, arrived at), oldest first
        self.latencies: list[float] = []
        self.manifests: list[int] = []
        self.glue_dpu_seconds = 0.0
        self.runs = self.active_runs = self.sensor_timeouts = 0
        self.run_waiting = False
        self.intake_running = False
        self.counts: Counter[str] = Counter()
        self.poll_pending: list[int] = []
        self.arrivals_end = arrivals[-1] if arrivals else 0.0

    # ---------------------------------------------------------------- steps

    def _count(self, step: str, times: int = 1) -> None:
        """Steps are counted while files arrive: a drain after the last arrival would inflate the per-file figures."""
        if self.sim.now <= self.arrivals_end:
            self.counts[step] += times

    def _visible(self, index: int) -> float:
        return self.arrivals[index] + self.a.s3_event_delay_s

    def intake(self) -> Generator:
        self._count("task.intake")
        self._count("task_start")
        yield self.a.task_start_s
        deadline = self.sim.now + self.s.intake_time_budget_seconds
        received = 0
        batch_s = self.r.seconds("intake_batch", self.a)
        while received < self.s.intake_max_messages and self.sim.now < deadline:
            wait = min(self.s.intake_wait_seconds, deadline - self.sim.now)
            if self.queue_pos >= len(self.arrivals) or self._visible(self.queue_pos) > self.sim.now + wait:
                self._count("intake.empty_receive")
                yield wait  # an empty receive: intake stops
                return
            yield max(0.0, self._visible(self.queue_pos) - self.sim.now)  # a long poll returns at the first message
            batch = []
            while (
                len(batch) < 10
                and self.queue_pos < len(self.arrivals)
                and self._visible(self.queue_pos) <= self.sim.now
            ):
                batch.append(self.arrivals[self.queue_pos])
                self.queue_pos += 1
            self._count("intake.receive")
            yield batch_s
            self.pending.extend((self.sim.now, arrived) for arrived in batch)
            received += len(batch)
            if len(batch) < 10:
                return  # drained: the rest waits for the next intake run

    def _ready(self) -> bool:
        files = len(self.pending)
        if not files:
            return False
        if files >= self.batching.files or files * self.a.file_bytes >= self.batching.bytes:
            return True
        return self.sim.now - self.pending[0][0] >= self.batching.wait_seconds

    def _take_wake(self, run: int) -> bool:
        """As the trigger's conditional write: free, this run's already, its lease run out, or planned and settled."""
        if self.d.one_run_per_batch:
            self._count("wake.take")  # a refused conditional write is billed too
        if self.d.one_run_per_batch and self.wake is not None:
            holder, taken_at, planned_at = self.wake
            expired = self.sim.now >= taken_at + wakes.LEASE_SECONDS
            settled = planned_at is not None and self.sim.now >= planned_at + wakes.SETTLE_SECONDS
            if holder != run and not expired and not settled:
                return False
        self.wake = (run, self.sim.now, None)
        return True

    def _release_wake(self, run: int) -> None:
        if self.d.one_run_per_batch:
            self._count("wake.release")
        if self.wake is not None and self.wake[0] == run:
            self.wake = (run, self.wake[1], self.sim.now)

    def _next_poll_in(self, deadline: float) -> float:
        """As the trigger sleeps: a poll interval, or less when the oldest pending file comes of age or the
        deadline falls sooner (so every waiting trigger wakes at the same instant for a file coming of age)."""
        due = [deadline, self.sim.now + self.s.sensor_poll_seconds]
        if self.pending:
            comes_of_age = self.pending[0][0] + self.batching.wait_seconds
            if comes_of_age > self.sim.now:
                due.append(comes_of_age)
        return max(0.0, min(due) - self.sim.now)

    def sensor(self, run: int, outcome: list[bool]) -> Generator:
        self._count("task.sensor")
        self._count("task_start")
        yield self.a.task_start_s
        deadline = self.sim.now + self.batching.sensor_timeout_seconds
        while True:
            self._count("sensor.poll")
            if self.sim.now <= self.arrivals_end:
                self.poll_pending.append(len(self.pending))
            ready = self._ready() and self._take_wake(run)
            if ready or self.sim.now >= deadline:
                self._count("task_start")  # the task resumes on a worker, to plan or to skip the run
                yield self.a.task_start_s
                outcome.append(ready)
                return
            yield self._next_poll_in(deadline)

    def claim(self) -> list[list[float]]:
        per_manifest = min(self.s.max_files_per_manifest, self.s.max_bytes_per_manifest // self.a.file_bytes)
        waited = self.sim.now - self.batching.wait_seconds
        manifests = []
        while self.pending and len(manifests) < self.s.max_manifests_per_run:
            take = min(per_manifest, len(self.pending))
            batch = take >= self.batching.files or take * self.a.file_bytes >= self.batching.bytes
            if self.d.batches_only and take < per_manifest and not batch and self.pending[0][0] > waited:
                break  # a young remainder waits to fill a later run
            manifests.append([self.pending.popleft()[1] for _ in range(take)])
        return manifests

    def glue_run_seconds(self, files: int) -> float:
        total_mb = files * self.a.file_bytes / MB
        groups = max(1, math.ceil(total_mb * MB / (self.s.conversion.target_file_mb * MiB)))
        group_mb = total_mb / groups
        waves = math.ceil(groups / self.a.executor_cores)
        return self.a.glue_overhead_s + waves * group_mb / self.a.arrow_mb_per_s_per_core

    def conversion(self, files: list[float], finished: list[int]) -> Generator:
        yield self.slots
        self._count("task_start", 3)  # the conversion, its resumption after the run, its finaliser
        yield self.a.task_start_s + self.r.seconds("conversion_start", self.a)
        # Deferred right after StartJobRun: the run starts, runs, and the completion trigger notices its end at
        # its next poll; then the task resumes on a worker and gives its slot back.
        running = self.glue_run_seconds(len(files))
        self.glue_dpu_seconds += max(self.a.glue_min_billed_s, running) * self.a.glue_dpu
        until_end = self.rng.uniform(*self.a.glue_start_s) + running
        self._count("task.convert")
        self._count("glue.poll", math.ceil(until_end / self.s.glue_poll_seconds))
        yield math.ceil(until_end / self.s.glue_poll_seconds) * self.s.glue_poll_seconds + self.a.task_start_s
        self.slots.release(self.sim)
        self._count("task.finalise")
        yield self.a.task_start_s + self.r.seconds("finalise_fixed", self.a, len(files))
        self.latencies += [self.sim.now - arrived for arrived in files]
        finished.append(len(files))

    def ingest_run(self) -> Generator:
        self._count("run")
        self._count("task.sweep")
        self._count("task_start")
        self.runs += 1
        run = self.runs
        self.active_runs += 1
        if not self.d.separate_intake:
            yield from self.intake()
        yield self.a.task_start_s + self.r.seconds("sweep", self.a)
        ready: list[bool] = []
        yield from self.sensor(run, ready)
        if ready and ready[0]:
            self._count("task.plan")
            self._count("task_start")
            yield self.a.task_start_s
            manifests = self.claim()  # what is pending when the planner runs, not when its sensor fired
            self._release_wake(run)
            self._count("claim", len(manifests))
            if not manifests:
                self._count("plan.empty")
            yield len(manifests) * self.r.seconds("claim", self.a)
            finished: list[int] = []
            for files in manifests:
                self.manifests.append(len(files))
                self.sim.start(self.conversion(files, finished))
            while len(finished) < len(manifests):
                yield 1.0
        elif self.pending:
            self.sensor_timeouts += 1  # gave up with work pending: it waits for a later run
        self.active_runs -= 1
        if self.run_waiting:
            self.run_waiting = False
            self.sim.start(self.ingest_run(), self.a.scheduler_delay_s)

    def scheduler(self) -> Generator:
        while True:
            if self.active_runs < self.d.max_active_runs:
                self.sim.start(self.ingest_run())
            else:
                self.run_waiting = True  # catchup=False: one queued run, started when a run ends
            yield self.d.schedule_seconds

    def intake_dag(self) -> Generator:
        while True:
            if not self.intake_running:
                self.sim.start(self._intake_run())
            yield self.d.intake_interval_seconds

    def _intake_run(self) -> Generator:
        self.intake_running = True
        yield from self.intake()
        self.intake_running = False

    def run(self, hours: float, sample_s: float = 10.0) -> Outcome:
        self.sim.start(self.scheduler())
        if self.d.separate_intake:
            self.sim.start(self.intake_dag())
        backlog, t, index = [], 0.0, 0
        end = hours * 3600
        while t < end:
            t += sample_s
            self.sim.run(t)
            while index < len(self.arrivals) and self.arrivals[index] <= t:
                index += 1
            backlog.append(index - len(self.latencies))
        self.counts["arrival_hours"] = self.arrivals_end / 3600
        return Outcome(
            counts=self.counts,
            poll_pending=self.poll_pending,
            latencies=self.latencies,
            arrived=len(self.arrivals),
            peak_backlog=max(backlog, default=0),
            backlog=backlog,
            runs=self.runs,
            manifests=self.manifests,
            glue_dpu_seconds=self.glue_dpu_seconds,
            sensor_timeouts=self.sensor_timeouts,
        )


def simulate(
    settings: PipelineSettings,
    design: Design,
    scenario: Scenario,
    *,
    assumptions: Assumptions | None = None,
    requests: StepRequests | None = None,
    drain_hours: float = 2.0,
    seed: int = 7,
    arrivals: Callable[[random.Random], list[float]] | None = None,
) -> Outcome:
    """Replay ``scenario``'s arrivals through ``design`` with ``settings``; ``drain_hours`` more to finish."""
    rng = random.Random(seed)
    times = (arrivals or scenario.arrivals)(rng)
    model = PipelineModel(settings, design, assumptions or Assumptions(), requests or StepRequests(), times, seed)
    return model.run(scenario.hours + drain_hours)
