"""A soak's knobs and the schedule one seed makes of them: what lands, which faults fire, what gets killed.

Everything random in a soak comes from ``SoakConfig.seed`` through
``make_schedule``: the files of each round, the fault bursts, the kills and the
point of the run at which each kill fires. Timing is not reproducible (a kill
lands wherever the run happens to be), the schedule is: ``describe`` prints it,
and a failure message carries it with the seed.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field, replace
from typing import Any

# Where a kill fires in a run, and the range of its delay after that moment (seconds): once the run's intake has
# received messages (they are in flight), once it has claimed a manifest, once a conversion's Spark job is up, once
# the job has written its publish log (it is copying its output), while its sensor is deferred (real processes), or
# at a random time.
TRIGGERS = {
    "intake": (0, 1),
    "claim": (0, 2),
    "conversion": (0, 8),
    "publish": (0, 0),
    "deferred": (0, 4),
    "time": (0, 40),
}
# What each driver can kill. dag.test runs: the whole run process (and its Spark job). Real processes: the
# scheduler or triggerer (started again after a pause), a task's process tree (task runner and its Spark job), or
# a worker (the task's supervisor too: the scheduler finds it by its missing heartbeat).
KILL_TARGETS = {
    "dagtest": (("intake", "intake"), ("ingest", "claim"), ("ingest", "conversion"), ("ingest", "publish")),
    "processes": (
        ("scheduler", "time"),
        ("scheduler", "conversion"),
        ("triggerer", "deferred"),
        ("triggerer", "time"),
        ("dag-processor", "time"),
        ("task", "conversion"),
        ("task", "publish"),
        ("worker", "conversion"),
    ),
}


@dataclass(frozen=True)
class SoakConfig:
    """One soak: how much lands, how hard it is hit, and the pipeline settings it runs with.

    :param driver: ``dagtest`` (``dag.test()`` runs in killable subprocesses) or ``processes``
        (the real scheduler, DAG processor, triggerer and API server).
    :param new_files: range of new keys landed per round.
    :param malformed: malformed notifications sent in the first round (they must end in the DLQ).
    :param old_day_files: files landed in round 1 for a day three days back.
    :param unreadable_files: landing objects the Glue job is refused (a 403) for, for good.
    :param long_keys: files whose key is 1,000 bytes long (S3 allows 1,024).
    :param kill_rate: probability that a round kills something.
    :param burst_rate: probability that a round has a fault burst the code's retries cannot absorb.
    :param fault_scale: multiplies the background fault rates.
    :param overlap_rate: probability that an end-of-day run overlaps the round's ingest run.
    :param recovery_runs: fault-free ingest runs (then end-of-day passes) allowed to converge.
    :param pipeline: pipeline settings on top of the soak's defaults.
    """

    seed: int = 20261201
    driver: str = "dagtest"
    rounds: int = 4
    new_files: tuple[int, int] = (20, 30)
    overwrites: tuple[int, int] = (1, 3)
    duplicates: tuple[int, int] = (1, 3)
    malformed: int = 2
    old_day_files: int = 0
    unreadable_files: int = 0
    long_keys: int = 0
    kill_rate: float = 0.6
    burst_rate: float = 0.4
    fault_scale: float = 1.0
    overlap_rate: float = 0.3
    recovery_runs: int = 6
    pipeline: dict[str, Any] = field(default_factory=dict)

    def with_seed(self, seed: int) -> SoakConfig:
        return replace(self, seed=seed)


@dataclass(frozen=True)
class Wave:
    """What lands in one round."""

    new_files: int
    overwrites: int
    duplicates: int
    malformed: int = 0
    old_day_files: int = 0
    unreadable: int = 0
    long_keys: int = 0
    gzip: int = 0
    rejected: int = 0  # an empty object and a suffix the pipeline does not accept, alternately


@dataclass(frozen=True)
class Kill:
    target: str  # see KILL_TARGETS
    at: str  # see TRIGGERS
    delay: float  # seconds after the trigger
    restart_after: float = 0.0  # a killed scheduler or triggerer is started again after this pause


@dataclass(frozen=True)
class RoundPlan:
    index: int
    wave: Wave
    bursts: tuple[str, ...] = ()
    kill: Kill | None = None
    end_of_day: bool = False  # an end-of-day run overlaps the round's ingest run
    clear_failed: bool = False  # clear the failed tasks of the round's runs and let them run again (processes)
    publish_latency: bool = False  # the job's copies are slowed so a publish kill lands inside the publication


@dataclass(frozen=True)
class Schedule:
    seed: int
    rounds: tuple[RoundPlan, ...]

    def describe(self) -> str:
        return json.dumps({"seed": self.seed, "rounds": [asdict(r) for r in self.rounds]}, indent=1)

    @property
    def kills(self) -> int:
        return sum(r.kill is not None for r in self.rounds)

    @property
    def bursts(self) -> int:
        return sum(len(r.bursts) for r in self.rounds)


def make_schedule(config: SoakConfig, bursts: tuple[str, ...]) -> Schedule:
    """The rounds one seed makes of ``config``; ``bursts`` are the burst names to draw from."""
    rng = random.Random(config.seed)
    rounds = []
    for index in range(config.rounds):
        wave = Wave(
            new_files=rng.randint(*config.new_files),
            overwrites=rng.randint(*config.overwrites) if index else 0,
            duplicates=rng.randint(*config.duplicates),
            malformed=config.malformed if index == 0 else 0,
            old_day_files=config.old_day_files if index == min(1, config.rounds - 1) else 0,
            unreadable=config.unreadable_files if index == 0 else 0,
            long_keys=config.long_keys if index == 0 else 0,
            gzip=1 if rng.random() < 0.5 else 0,
            rejected=1 if rng.random() < 0.5 else 0,
        )
        kill = None
        # The last round is left without a kill: the run that follows it shows the pipeline recovering.
        if index < config.rounds - 1 and rng.random() < config.kill_rate:
            target, at = rng.choice(KILL_TARGETS[config.driver])
            delay = round(rng.uniform(*TRIGGERS[at]), 1)
            kill = Kill(target, at, delay, restart_after=round(rng.uniform(0, 10), 1))
        rounds.append(
            RoundPlan(
                index=index,
                wave=wave,
                bursts=(rng.choice(bursts),) if rng.random() < config.burst_rate else (),
                kill=kill,
                end_of_day=rng.random() < config.overlap_rate,
                clear_failed=config.driver == "processes" and rng.random() < 0.5,
                publish_latency=kill is not None and kill.at == "publish",
            )
        )
    return Schedule(config.seed, tuple(rounds))
