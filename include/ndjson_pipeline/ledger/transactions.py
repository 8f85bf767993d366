"""DynamoDB transaction mechanics: the 100-action limit, cancellation reasons, backoff, idempotency tokens.

A cancelled ``TransactWriteItems`` reports one reason per action, in order: an
action's own failed condition (``ConditionalCheckFailed``, with the item as it
was when asked for), a conflict with another writer, throttling, or ``None``
for an action that was not at fault. Callers decide per action; this module
only takes the response apart.
"""

from __future__ import annotations

import hashlib
import random
import time
from dataclasses import dataclass, field
from typing import Any, TypeVar

from botocore.exceptions import ClientError

from ndjson_pipeline.ledger.codec import decode_item
from ndjson_pipeline.ledger.errors import LedgerError

TRANSACTION_LIMIT = 100
# Attempts of one logical write that keeps losing races before the ledger gives up.
CONFLICT_RETRIES = 8
CONDITION_FAILED = "ConditionalCheckFailed"

T = TypeVar("T")


@dataclass(frozen=True)
class Cancellation:
    """Why one action of a cancelled transaction did not commit."""

    code: str | None  # None: this action was not at fault
    item: dict[str, Any] = field(default_factory=dict)  # the item as it was (on a failed condition)

    @property
    def condition_failed(self) -> bool:
        return self.code == CONDITION_FAILED

    @property
    def at_fault(self) -> bool:
        return self.code is not None


def transact_write(client: Any, actions: list[dict[str, Any]], *, token: str | None = None) -> list[Cancellation]:
    """Run one transaction; return ``[]`` when it committed, else one Cancellation per action.

    ``token`` (``ClientRequestToken``) makes botocore's own retries of this very
    request idempotent for ten minutes. Errors other than a cancellation raise.
    """
    if len(actions) > TRANSACTION_LIMIT:
        raise LedgerError(f"a transaction holds at most {TRANSACTION_LIMIT} actions, not {len(actions)}")
    request: dict[str, Any] = {"TransactItems": actions}
    if token:
        request["ClientRequestToken"] = token
    try:
        client.transact_write_items(**request)
    except ClientError as exc:
        return cancellation_reasons(exc)
    return []


def cancellation_reasons(exc: ClientError) -> list[Cancellation]:
    if exc.response.get("Error", {}).get("Code") != "TransactionCanceledException":
        raise exc
    reasons = exc.response.get("CancellationReasons")
    if not reasons:
        raise LedgerError("transaction cancelled without cancellation reasons") from exc
    return [
        Cancellation(None if r.get("Code") in (None, "None") else r["Code"], decode_item(r.get("Item", {})))
        for r in reasons
    ]


def request_token(*parts: str) -> str:
    """A ``ClientRequestToken`` (at most 36 characters) derived from what makes the request unique."""
    return hashlib.sha256("@".join(parts).encode()).hexdigest()[:36]


class Stalls:
    """The tries of a write that made no progress, of the ``CONFLICT_RETRIES`` it may make.

    A try that loses some of its items to another writer (a file claimed or
    recorded meanwhile) drops them and shrinks the work, so it is retried at once
    and uses up nothing: the work only shrinks, so such retries end. A try that
    lost nothing (a conflict with another transaction, throttling) backs off and
    counts; ``another()`` is False once the retries are used up.
    """

    def __init__(self) -> None:
        self.count = 0

    def another(self) -> bool:
        self.count += 1
        if self.count >= CONFLICT_RETRIES:
            return False
        backoff(self.count - 1)
        return True


def backoff(attempt: int) -> None:
    """Sleep before retrying a write that lost a race or was throttled: jittered, capped at 2 s."""
    time.sleep(min(2.0, 0.05 * 2**attempt) * (0.5 + random.random()))  # noqa: S311
