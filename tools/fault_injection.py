"""Faults injected inside the local AWS server, so every client (Spark tasks included) meets them.

A rule says which calls it hits (service, operation, resource or S3 key pattern,
identity; each optional, wildcards ``*``/``?``), how often (``rate``, drawn from
a seeded generator, and ``max_count``) and what happens:

- ``throttle``: DynamoDB ProvisionedThroughputExceededException, S3 SlowDown (503),
  SQS RequestThrottled, Glue ThrottlingException, SNS/CloudWatch Throttling
- ``transaction_conflict``: a DynamoDB transaction cancelled with a TransactionConflict reason
- ``internal_error`` (500) and ``unavailable`` (503)
- ``access_denied``: the service's AccessDenied answer, e.g. a 403 on one object
- ``reset``: the connection is closed without an answer
- ``latency``: the call waits ``latency_ms``, then proceeds

Bodies come from ``tools.aws_errors``, so botocore retries exactly what it retries
against AWS. The rules are set at run time through ``/_faults`` (tools/faults.py).
"""

from __future__ import annotations

import itertools
import random
import socket
import struct
import threading
import time
from collections import Counter
from dataclasses import asdict, fields, replace

from tools import aws_errors
from tools.aws_calls import Call
from tools.faults import FaultRule
from tools.iam_enforcement import Identity, wildcard_match

KINDS = ("throttle", "transaction_conflict", "internal_error", "unavailable", "access_denied", "reset", "latency")
_SERVICE_ALIASES = {"cloudwatch": "monitoring"}


class FaultRuleError(ValueError):
    """A fault rule is malformed; the message names the field at fault."""


def parse_rule(raw: dict, default_id: str) -> FaultRule:
    """A rule sent to ``/_faults``, checked; the fields are those of ``tools.faults.FaultRule``."""
    known = {f.name for f in fields(FaultRule)}
    unknown = set(raw) - known
    if unknown:
        raise FaultRuleError(f"unknown fault rule field(s) {sorted(unknown)}; known: {sorted(known)}")
    rule = FaultRule(**{"id": default_id, **raw})
    if rule.kind not in KINDS:
        raise FaultRuleError(f"kind {rule.kind!r} is not one of {KINDS}")
    if not 0 <= float(rule.rate) <= 1:
        raise FaultRuleError(f"rate {rule.rate!r} must be between 0 and 1")
    if rule.max_count is not None and int(rule.max_count) < 0:
        raise FaultRuleError(f"max_count {rule.max_count!r} must be >= 0")
    if rule.kind == "latency" and int(rule.latency_ms) <= 0:
        raise FaultRuleError("a latency rule needs latency_ms > 0")
    if rule.kind == "transaction_conflict" and rule.service not in (None, "dynamodb"):
        raise FaultRuleError("transaction_conflict applies to DynamoDB transactions only")
    if rule.service:
        rule = replace(rule, service=_SERVICE_ALIASES.get(rule.service, rule.service))
    return rule


def rule_matches(rule: FaultRule, call: Call, identity: Identity | None) -> bool:
    if rule.kind == "transaction_conflict" and call.operation not in ("TransactWriteItems", "TransactGetItems"):
        return False
    if rule.service and not wildcard_match(rule.service, call.service):
        return False
    if rule.operation and not wildcard_match(rule.operation, call.operation):
        return False
    if rule.identity and not wildcard_match(rule.identity, identity.name if identity else "unknown"):
        return False
    if rule.resource:
        candidates = list(call.resources)
        if call.bucket:
            candidates += [call.key or "", f"{call.bucket}/{call.key or ''}"]
        candidates += [key for key, _ in call.delete_objects]
        if not any(wildcard_match(rule.resource, c) for c in candidates):
            return False
    return True


class FaultInjector:
    def __init__(self, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []
        self._fired: Counter[str] = Counter()  # by rule id
        self._ids = itertools.count(1)
        self._seed = seed
        self._random = random.Random(seed)
        self._counts: Counter = Counter()

    def add(self, raw_rules: list[dict], seed: int | None = None) -> list[str]:
        rules = [parse_rule(raw, f"rule-{next(self._ids)}") for raw in raw_rules]
        with self._lock:
            if seed is not None:
                self._seed, self._random = seed, random.Random(seed)
            self._rules.extend(rules)
        return [str(rule.id) for rule in rules]

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()
            self._fired.clear()
            self._counts.clear()
            self._random = random.Random(self._seed)

    def state(self) -> dict:
        with self._lock:
            rules = [{**asdict(r), "fired": self._fired[str(r.id)]} for r in self._rules]
            return {"seed": self._seed, "rules": rules, "counts": dict(self._counts)}

    def pick(self, call: Call, identity: Identity | None) -> FaultRule | None:
        with self._lock:
            for rule in self._rules:
                if rule.max_count is not None and self._fired[str(rule.id)] >= rule.max_count:
                    continue
                if not rule_matches(rule, call, identity):
                    continue
                if rule.rate < 1 and self._random.random() >= rule.rate:
                    continue
                self._fired[str(rule.id)] += 1
                self._counts[rule.kind] += 1
                return rule
        return None

    def respond(self, rule: FaultRule, call: Call, environ: dict, start_response):
        """The faulty answer of ``rule`` (None for ``latency``: the call then proceeds)."""
        if rule.kind == "latency":
            time.sleep(rule.latency_ms / 1000)
            return None
        if rule.kind == "reset":
            connection = environ.get("werkzeug.socket")
            if connection is not None:
                connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                connection.shutdown(socket.SHUT_RDWR)
            raise ConnectionResetError(f"fault {rule.id}: connection reset")
        head = environ.get("REQUEST_METHOD") == "HEAD"
        if rule.kind == "transaction_conflict":
            return _transaction_conflict(rule, call, start_response)
        status, code = aws_errors.error(rule.kind, call.service)
        message = aws_errors.default_message(rule.kind) or "Access Denied"
        line, headers, body = aws_errors.render(
            call.service, call.protocol, status, code, f"{message} (fault {rule.id})", head=head
        )
        start_response(line, headers)
        return [body]


def _transaction_conflict(rule: FaultRule, call: Call, start_response):
    conflicting = next(
        (
            i
            for i, auth in enumerate(call.authorizations)
            if rule.resource and wildcard_match(rule.resource, auth.resource)
        ),
        0,
    )
    reasons = [{"Code": "None"} for _ in call.authorizations]
    if reasons:
        reasons[conflicting] = {"Code": "TransactionConflict", "Message": "Transaction is ongoing for the item"}
    message = (
        "Transaction cancelled, please refer cancellation reasons for specific reasons "
        f"[{', '.join(r['Code'] for r in reasons)}] (fault {rule.id})"
    )
    line, headers, body = aws_errors.render(
        "dynamodb", "json", 400, "TransactionCanceledException", message, fields={"CancellationReasons": reasons}
    )
    start_response(line, headers)
    return [body]
