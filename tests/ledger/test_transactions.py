"""Transaction mechanics: cancellation reasons taken apart, request tokens."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from ndjson_pipeline.ledger import LedgerError
from ndjson_pipeline.ledger.transactions import cancellation_reasons, request_token


def _make_cancellation(*reasons: dict) -> ClientError:
    response = {"Error": {"Code": "TransactionCanceledException"}, "CancellationReasons": list(reasons)}
    return ClientError(response, "TransactWriteItems")


def test_cancellation_reasons_name_each_action():
    exc = _make_cancellation(
        {"Code": "None"},
        {"Code": "ConditionalCheckFailed", "Item": {"latest_etag": {"S": "NEW"}}},
        {"Code": "TransactionConflict"},
    )

    ok, lost, conflict = cancellation_reasons(exc)

    assert (ok.at_fault, ok.condition_failed) == (False, False)
    assert (lost.condition_failed, lost.item) == (True, {"latest_etag": "NEW"})
    assert (conflict.at_fault, conflict.condition_failed) == (True, False)


def test_other_errors_are_not_taken_for_cancellations():
    throttled = ClientError({"Error": {"Code": "ProvisionedThroughputExceededException"}}, "TransactWriteItems")
    with pytest.raises(ClientError):
        cancellation_reasons(throttled)
    with pytest.raises(LedgerError, match="without cancellation reasons"):
        cancellation_reasons(_make_cancellation())


def test_request_tokens_fit_dynamodb_and_follow_their_parts():
    token = request_token("20261124-abc", "2026-11-24T01:00:00.000000+00:00")
    assert len(token) == 36
    assert token == request_token("20261124-abc", "2026-11-24T01:00:00.000000+00:00")
    assert token != request_token("20261124-abd", "2026-11-24T01:00:00.000000+00:00")
