"""Registering file versions over the moto server: one transaction per batch, known versions left alone."""

from __future__ import annotations

from collections import Counter

from ndjson_pipeline.files import FileVersion
from ndjson_pipeline.landing import registration_for
from ndjson_pipeline.ledger import GroupLimits, Ledger, Registration
from ndjson_pipeline.ledger.transactions import TRANSACTION_LIMIT
from tests.conftest import make_stack
from tests.factories import DAY, DAY_PATH, mwaa_ledger, register_files


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


def test_registrations_of_several_days_fit_their_transactions_and_open_every_day(stack):
    """Each transaction holds its items and, per day, the day's group and its touch, within 100 actions."""
    bucket = stack.names.landing_bucket
    ledger, recording = mwaa_ledger(stack, "transact_write_items")
    days = [DAY, "2026-11-23", "2026-10-02"]
    regs = [
        Registration(
            FileVersion(bucket, f"incoming/{days[i % 3].replace('-', '/')}/s{i:04d}.ndjson", f"e{i}", 10),
            days[i % 3],
            f"{DAY}T01:00:00+00:00",
            sequencer=f"{i:04X}",
        )
        for i in range(150)
    ]

    outcome = ledger.register(regs)

    sent = [len(request["TransactItems"]) for request in recording.requests["transact_write_items"]]
    assert len(outcome.registered) == 150
    assert all(n <= TRANSACTION_LIMIT for n in sent)
    assert sum(sent) == 150 + 6 * len(sent)  # every transaction here holds files of all three days
    assert ledger.open_days() == sorted(days, reverse=True)
    records = ledger.get_files([r.file.identity for r in regs])
    assert len({records[r.file.identity].group_id for r in regs}) == 3 * len(sent)
    assert all(records[r.file.identity].day == r.day for r in regs)


def test_groups_are_cut_to_what_one_manifest_may_hold(aws_endpoint):
    """A claim takes whole groups, so a registration never makes a group a manifest could not hold."""
    stack = make_stack(aws_endpoint, max_files_per_manifest=10, max_bytes_per_manifest=250, max_file_bytes=100)
    regs = [
        registration_for(stack.names.landing_bucket, f"{DAY_PATH}g{i:05d}.ndjson", 100, f"etag{i}", DAY, stack.settings)
        for i in range(25)
    ]
    by_files = Ledger(stack.ledger._table.client, stack.names.ledger_table, group_limits=GroupLimits(max_files=10))

    by_files.register(regs[:20])
    stack.ledger.register(regs[20:])  # the settings' limits: 10 files, 250 bytes

    records = stack.ledger.get_files([r.file.identity for r in regs])
    sizes = Counter(Counter(r.group_id for r in records.values()).values())
    assert sizes == {10: 2, 2: 2, 1: 1}
