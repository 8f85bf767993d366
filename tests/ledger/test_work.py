"""Finding pending work over the moto server: bounded pages across shards, summaries that stop at the thresholds."""

from __future__ import annotations

from datetime import timedelta

from ndjson_pipeline.clock import utcnow
from tests.factories import DAY, register_files


def test_pending_work_is_read_in_bounded_pages_across_shards(stack):
    identities = register_files(stack, 260)

    seen = [f.identity for f in stack.ledger.iter_pending(DAY, page_size=7)]

    assert sorted(seen) == sorted(identities)
    assert len(seen) == len(set(seen))


def test_pending_summary_stops_counting_at_the_threshold_and_reports_the_oldest(stack):
    register_files(stack, 120)

    partial = stack.ledger.pending_summary(DAY, enough_files=10, enough_bytes=10**12)
    full = stack.ledger.pending_summary(DAY, enough_files=10**6, enough_bytes=10**12)

    assert 10 <= partial.files < 120
    assert not partial.exhaustive
    assert (full.files, full.bytes, full.exhaustive) == (120, 12000, True)
    assert full.oldest_age_seconds(utcnow() + timedelta(hours=1)) >= 3600
