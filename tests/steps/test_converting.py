"""The conversion decision, without Airflow or AWS: the same recorded state gives the same answer on every try."""

from __future__ import annotations

import pytest

from ndjson_pipeline.ledger import ManifestRecord, ManifestState
from ndjson_pipeline.steps.converting import ConversionKind, decide_conversion

MANIFEST = "20261124-0123456789abcdef0123"


def _make_record(**overrides) -> ManifestRecord:
    fields = {
        "manifest_id": MANIFEST,
        "day": "2026-11-24",
        "state": ManifestState.CLAIMED,
        "groups": frozenset({"20261124-0123456789abcdef0123"}),
        "file_count": 1,
        "total_bytes": 10,
        "generation": 0,
        "owner": "ndjson_ingest/run-1",
        "created_at": "2026-11-24T01:00:00.000000+00:00",
        "lease_expires_at": "2026-11-24T02:00:00.000000+00:00",
    }
    return ManifestRecord(**{**fields, **overrides})


def test_an_open_manifest_without_result_or_run_is_converted():
    decision = decide_conversion(MANIFEST, _make_record(), result_exists=False, active_run_id=None)
    assert (decision.kind, decision.run_id, decision.holds_the_claim) == (ConversionKind.CONVERT, None, True)


def test_an_active_run_is_waited_for_instead_of_starting_another():
    decision = decide_conversion(MANIFEST, _make_record(), result_exists=False, active_run_id="jr_1")
    assert (decision.kind, decision.run_id, decision.holds_the_claim) == (ConversionKind.WAIT_FOR, "jr_1", True)


def test_a_result_means_done_even_while_a_run_winds_down():
    decision = decide_conversion(MANIFEST, _make_record(), result_exists=True, active_run_id="jr_1")
    assert (decision.kind, decision.holds_the_claim) == (ConversionKind.ALREADY_DONE, False)


@pytest.mark.parametrize("state", [ManifestState.SUCCEEDED, ManifestState.COMPENSATED])
def test_a_closed_manifest_is_skipped_whatever_else_is_found(state):
    decision = decide_conversion(MANIFEST, _make_record(state=state), result_exists=True, active_run_id="jr_1")
    assert decision.kind is ConversionKind.SKIP
    assert f"{MANIFEST} is {state}" in decision.reason


def test_an_unknown_manifest_is_skipped():
    decision = decide_conversion(MANIFEST, None, result_exists=False, active_run_id=None)
    assert decision.kind is ConversionKind.SKIP
    assert "missing" in decision.reason
