"""The faults a soak injects into the local AWS server (tools/faults.py), and what the server says fired.

Three layers, set again at every round (the server's rules are cleared between rounds):

- background faults at modest rates, on the Airflow side's calls (the MWAA identity) and the Glue
  job's (the Glue identity): botocore's and the ledger's retries are expected to absorb them;
- the round's bursts: consecutive failures of one kind of call, more than botocore retries, so a
  task fails and Airflow's retry, the finaliser's compensation or the sweeper has to repair it;
- deterministic faults that hold for the whole soak: a 403 on reading each "unreadable" landing object.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace

from tools import faults
from tools.faults import FaultRule

AIRFLOW = "*-mwaa-execution"
JOB = "*-glue-job"

# Modest rates: four or more consecutive failures of one call (what would get past botocore) stay improbable.
BACKGROUND = (
    ("ddb-throttle", FaultRule("throttle", service="dynamodb", identity=AIRFLOW, rate=0.02)),
    ("ddb-conflict", FaultRule("transaction_conflict", service="dynamodb", identity=AIRFLOW, rate=0.05)),
    ("ddb-unavailable", FaultRule("unavailable", service="dynamodb", identity=AIRFLOW, rate=0.01)),
    ("sqs-throttle", FaultRule("throttle", service="sqs", identity=AIRFLOW, rate=0.03)),
    ("s3-slowdown", FaultRule("throttle", service="s3", identity=AIRFLOW, rate=0.02)),
    ("s3-500", FaultRule("internal_error", service="s3", identity=AIRFLOW, rate=0.01)),
    ("metrics-throttle", FaultRule("throttle", service="cloudwatch", identity=AIRFLOW, rate=0.05)),
    ("sns-throttle", FaultRule("throttle", service="sns", identity=AIRFLOW, rate=0.05)),
    ("reset", FaultRule("reset", identity=AIRFLOW, rate=0.005)),
    ("latency", FaultRule("latency", identity=AIRFLOW, rate=0.05, latency_ms=100)),
    ("job-s3-slowdown", FaultRule("throttle", service="s3", identity=JOB, rate=0.02)),
    ("job-s3-500", FaultRule("internal_error", service="s3", identity=JOB, rate=0.01)),
    ("job-reset", FaultRule("reset", service="s3", identity=JOB, rate=0.005)),
    ("job-latency", FaultRule("latency", service="s3", identity=JOB, rate=0.03, latency_ms=150)),
)

# More consecutive failures than botocore's retries (5 attempts; 10 for DynamoDB) or the ledger's conflict
# retries (8) absorb: the call fails, and with it the task.
BURSTS = {
    "job-put-500": (FaultRule("internal_error", service="s3", operation="PutObject", identity=JOB, max_count=6),),
    "job-read-slowdown": (FaultRule("throttle", service="s3", operation="GetObject", identity=JOB, max_count=6),),
    "ledger-throttle": (FaultRule("throttle", service="dynamodb", identity=AIRFLOW, max_count=12),),
    "ledger-conflicts": (FaultRule("transaction_conflict", service="dynamodb", identity=AIRFLOW, max_count=12),),
    "queue-throttle": (
        FaultRule("throttle", service="sqs", operation="ReceiveMessage", identity=AIRFLOW, max_count=6),
    ),
    "alerts-down": (
        FaultRule("throttle", service="cloudwatch", identity=AIRFLOW, max_count=6),
        FaultRule("throttle", service="sns", identity=AIRFLOW, max_count=6),
    ),
    "deletes-500": (
        FaultRule("internal_error", service="s3", operation="DeleteObjects", identity=AIRFLOW, max_count=6),
    ),
    "resets": (FaultRule("reset", identity=AIRFLOW, max_count=6),),
}

# Slows the job's publication (its copies of staged files and its listings, which all come after the publish log),
# so a kill at "publish" lands inside it.
PUBLISH_LATENCY = (
    FaultRule("latency", service="s3", operation="CopyObject", identity=JOB, latency_ms=1500),
    FaultRule("latency", service="s3", operation="ListObjectsV2", identity=JOB, latency_ms=1500),
)


def unreadable(key: str) -> FaultRule:
    """The Glue job is refused every read of ``key`` (its policy allows it: this is the object's own problem)."""
    return FaultRule("access_denied", service="s3", operation="GetObject", resource=key, identity=JOB)


@dataclass
class FaultLedger:
    """Sets each round's rules and adds up what fired, by kind (the server's counters) and by rule label."""

    endpoint: str
    seed: int
    scale: float = 1.0
    by_kind: Counter = field(default_factory=Counter)
    by_label: Counter = field(default_factory=Counter)
    _labels: dict[str, str] = field(default_factory=dict)

    def set_round(
        self, round_index: int, bursts: tuple[str, ...], unreadable_keys: list[str], *, publish_latency: bool
    ) -> None:
        """Replace the server's rules: deterministic ones first (the first matching rule fires), then the rest."""
        self.collect()
        labelled = [("unreadable-403", unreadable(key)) for key in unreadable_keys]
        labelled += [(f"burst:{name}", rule) for name in bursts for rule in BURSTS[name]]
        if publish_latency:
            labelled += [("publish-latency", rule) for rule in PUBLISH_LATENCY]
        if self.scale > 0:
            labelled += [(label, replace(rule, rate=min(1.0, rule.rate * self.scale))) for label, rule in BACKGROUND]
        self._inject(labelled, seed=self.seed * 1000 + round_index)

    def set_deterministic_only(self, unreadable_keys: list[str]) -> None:
        self.collect()
        self._inject([("unreadable-403", unreadable(key)) for key in unreadable_keys], seed=self.seed)

    def _inject(self, labelled: list[tuple[str, FaultRule]], seed: int) -> None:
        ids = faults.inject(self.endpoint, *(rule for _, rule in labelled), seed=seed) if labelled else []
        self._labels = {rule_id: label for rule_id, (label, _) in zip(ids, labelled, strict=True)}

    def collect(self) -> None:
        """Add what fired since the last collection, then clear the server's rules and counters."""
        state = faults.state(self.endpoint)
        self.by_kind.update(state["counts"])
        for rule in state["rules"]:
            if rule["fired"]:
                self.by_label[self._labels.get(rule["id"], rule["id"])] += rule["fired"]
        faults.clear(self.endpoint)
        self._labels = {}
