"""The ledger under every operation the pipeline and the operators use, interleaved by concurrent workers.

Seeded (``tests/ledger/interleaving.py`` says how a run goes): each seed is one
reproducible sequence of steps; the workers of a step run at the same moment
against DynamoDB Local, so which one wins a race is DynamoDB's answer. Writes
are slowed now and then (the emulator's latency faults) to widen the windows
between an operation's reads and its writes. More seeds:
``LEDGER_INTERLEAVING_SEEDS=1-200 pytest tests/ledger/test_interleaving.py``.
"""

from __future__ import annotations

import os
import random

import pytest

from ndjson_pipeline.ledger import Ledger, table_schema
from tests.conftest import make_stack
from tests.ledger.interleaving import (
    LIMITS,
    MAX_ATTEMPTS,
    Model,
    VirtualClock,
    Worker,
    check,
    choose,
    drain,
    pick_focus,
    read_view,
    run_step,
    use_clock,
)
from tools import faults
from tools.faults import FaultRule
from tools.local_stack import client

WORKERS = 3
STEPS = 40


def _seeds() -> list[int]:
    first, _, last = os.environ.get("LEDGER_INTERLEAVING_SEEDS", "1-6").partition("-")
    return list(range(int(first), int(last or first) + 1))


@pytest.mark.parametrize("seed", _seeds())
def test_interleaved_operations_keep_every_invariant(aws_endpoint, monkeypatch, seed):
    stack = make_stack(aws_endpoint, max_attempts=MAX_ATTEMPTS)
    virtual = VirtualClock()
    use_clock(monkeypatch, virtual)
    model = Model()
    # A client each, so the workers' requests are concurrent.
    workers = [Worker(n, _ledger(stack), model, virtual, stack.settings) for n in range(WORKERS)]

    def read():
        return read_view(stack.dynamodb, stack.names.ledger_table, table_schema().ttl_attribute)

    rng = random.Random(seed)
    log: list[str] = []
    slow_writes = [
        FaultRule(
            "latency", service="dynamodb", operation=op, identity=stack.identities.mwaa.user, rate=0.3, latency_ms=40
        )
        for op in ("TransactWriteItems", "PutItem", "UpdateItem")
    ]
    with faults.injected(stack.endpoint, *slow_writes, seed=seed):
        for step in range(STEPS):
            view = read()
            focus = pick_focus(rng, view)
            operations = [choose(random.Random(rng.random()), worker, view, focus) for worker in workers]
            log.append(f"step {step} (focus {focus}): {run_step(operations, model)}")
            problems = model.violations + check(read(), model)
            assert not problems, _failure(seed, step, problems, log)
            virtual.advance(rng.choice([0, 0, 20, 60, 200, 400]))
    drain(workers[0], virtual, read)
    problems = model.violations + check(read(), model, final=True)
    assert not problems, _failure(seed, STEPS, problems, log)
    assert model.conversions, "the run claimed something"


def _ledger(stack) -> Ledger:
    dynamodb = client("dynamodb", stack.endpoint, stack.identities.mwaa)
    return Ledger(dynamodb, stack.names.ledger_table, group_limits=LIMITS)


def _failure(seed: int, step: int, problems: list[str], log: list[str]) -> str:
    steps = "\n".join(log[-8:])
    return (
        f"seed {seed} broke the ledger at step {step} "
        f"(again: LEDGER_INTERLEAVING_SEEDS={seed} pytest tests/ledger/test_interleaving.py):\n"
        + "\n".join(problems[:10])
        + f"\nlast steps:\n{steps}"
    )
