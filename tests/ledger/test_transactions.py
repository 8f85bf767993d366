"""Transaction mechanics: cancellation reasons taken apart, request tokens, retries of contested writes."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from ndjson_pipeline.clock import utcnow
from ndjson_pipeline.files import FileVersion
from ndjson_pipeline.ledger import LedgerError, transactions
from ndjson_pipeline.ledger.claims import claim_manifest
from ndjson_pipeline.ledger.groups import new_group
from ndjson_pipeline.ledger.schema import table_schema
from ndjson_pipeline.ledger.table import LedgerTable
from ndjson_pipeline.ledger.transactions import CONFLICT_RETRIES, cancellation_reasons, request_token


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


class _ContestedClient:
    """A DynamoDB client whose transactions are cancelled as scripted: a group lost to another claimer, or conflict.

    A group lost to another claimer reads back as claimed by that claimer.
    """

    def __init__(self, script: list[str]) -> None:
        self.script = script  # one entry per transaction: "lost" (its first action's group), "conflict", "commit"
        self.transactions: list[list[dict]] = []
        self.taken: dict[str, dict] = {}  # group key -> its item, claimed by another manifest

    def transact_write_items(self, TransactItems, **_):
        self.transactions.append(TransactItems)
        outcome = self.script.pop(0) if self.script else "commit"
        if outcome == "commit":
            return {}
        if outcome == "lost":
            item = dict(TransactItems[0]["Put"]["Item"])
            item["manifest_id"] = {"S": "20261124-another-claimer"}
            self.taken[item["pk"]["S"]] = item
        first = {"Code": "ConditionalCheckFailed"} if outcome == "lost" else {"Code": "TransactionConflict"}
        raise _make_cancellation(first, *[{"Code": "None"}] * (len(TransactItems) - 1))

    def batch_get_item(self, RequestItems, **_):
        ((table, spec),) = RequestItems.items()
        found = [self.taken[key["pk"]["S"]] for key in spec["Keys"] if key["pk"]["S"] in self.taken]
        return {"Responses": {table: found}}


def _contested_claim(script: list[str], files: int):
    client = _ContestedClient(script)
    table = LedgerTable(client, "ledger", table_schema(), terminal_ttl_days=30)
    now = utcnow()
    candidates = [
        new_group("2026-11-24", [FileVersion("landing", f"k{i:02d}.ndjson", f"e{i}", 10)], now) for i in range(files)
    ]
    candidates.sort(key=lambda g: g.group_id)
    return client, candidates, claim_manifest(table, "2026-11-24", candidates, lease_seconds=600, owner="plan")


def test_a_claim_that_keeps_losing_groups_to_other_claimers_goes_on_with_the_rest(monkeypatch):
    """Losing groups is progress (the batch shrinks), so it never uses up the retries meant for conflicts."""
    monkeypatch.setattr(transactions.time, "sleep", lambda _: None)
    client, candidates, manifest = _contested_claim(["lost"] * (CONFLICT_RETRIES + 4), files=20)

    assert len(client.transactions) == CONFLICT_RETRIES + 5
    assert manifest is not None
    kept = sorted(f.identity for g in candidates[CONFLICT_RETRIES + 4 :] for f in g.files)
    assert [f.identity for f in manifest.files] == kept


def test_a_claim_that_only_conflicts_gives_up_after_its_retries_backing_off(monkeypatch):
    slept: list[float] = []
    monkeypatch.setattr(transactions.time, "sleep", slept.append)

    with pytest.raises(LedgerError, match=f"kept conflicting after {CONFLICT_RETRIES} attempts"):
        _contested_claim(["conflict"] * 100, files=5)

    assert len(slept) == CONFLICT_RETRIES - 1
    assert all(s > 0 for s in slept)
