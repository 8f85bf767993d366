"""Registering file versions over the moto server: one transaction per batch, known versions left alone."""

from __future__ import annotations

from ndjson_pipeline.landing import registration_for
from tests.factories import DAY, DAY_PATH, register_files


def test_one_transaction_batch_with_a_known_item_still_registers_the_others(stack):
    first = register_files(stack, 3)
    regs = [
        registration_for(stack.names.landing_bucket, f"{DAY_PATH}f{i:05d}.ndjson", 100, f"etag{i}", DAY, stack.settings)
        for i in range(150)
    ]

    outcome = stack.ledger.register(regs)

    assert sorted(outcome.already_known) == sorted(first)
    assert len(outcome.registered) == 147
    assert stack.ledger.pending_summary(DAY, enough_files=10**6, enough_bytes=10**12).files == 150
