"""IAM inside the local AWS: who is calling, and does their identity policy allow each authorisation.

moto's own enforcement (``INITIAL_NO_AUTH_ACTION_COUNT``) cannot serve here: it
checks DynamoDB, Glue and SNS against resource ``*`` (so any ARN-scoped policy
refuses everything), TransactWriteItems as one ``dynamodb:TransactWriteItems``,
DeleteObjects against the bucket ARN, and it ignores every Condition outside
trust policies (``s3:prefix``, ``cloudwatch:namespace`` always pass). This
module evaluates the calls of ``tools.aws_calls`` against the policies stored
in moto's IAM backend, the way IAM evaluates identity-based policies: an explicit
Deny wins, otherwise some Allow statement must match the action (case-insensitive
wildcards), the resource (case-sensitive wildcards) and every condition.

Identities: the root access key (``ROOT_ACCESS_KEY``, used by the bootstrap,
tests and tools for set-up and inspection) may do anything; IAM users created
through the IAM API (the bootstrap's stand-ins for the two roles) are checked;
any other key is refused as AWS refuses an unknown key.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import threading
from collections import Counter, deque
from dataclasses import dataclass

from tools.aws_calls import Authorization, Call

log = logging.getLogger("local_iam")

ROOT_ACCESS_KEY = "testing"
_NEGATED = {"StringNotEquals", "StringNotEqualsIgnoreCase", "StringNotLike", "ArnNotEquals", "ArnNotLike"}


class UnsupportedPolicy(ValueError):
    """A policy uses a construct this evaluator does not implement; the message names it."""


@dataclass(frozen=True)
class Identity:
    name: str
    arn: str
    policies: tuple[tuple[str, str], ...] = ()  # (policy name, JSON document)
    root: bool = False

    @property
    def template(self) -> str | None:
        from tools.iam_policies import TEMPLATES

        for role, template in TEMPLATES.items():
            if self.name.endswith(f"-{role}"):
                return f"infra/policies/{template}"
        return None

    def describe_policies(self) -> str:
        names = ", ".join(f"'{name}'" for name, _ in self.policies) or "none"
        where = f", rendered from {self.template}" if self.template else ""
        return f"policies {names} of user {self.name}{where}"


@dataclass(frozen=True)
class Decision:
    allowed: bool
    statement: str | None = None  # Sid of the deciding statement
    pattern: str | None = None  # the Resource pattern that matched
    explicit_deny: bool = False


class Identities:
    """Access keys -> identities, read from moto's IAM backend at each call (policies can change at run time)."""

    def __init__(self, account: str) -> None:
        self.account = account
        self.root = Identity("root", f"arn:aws:iam::{account}:root", root=True)

    def resolve(self, access_key: str | None) -> Identity | None:
        if access_key == ROOT_ACCESS_KEY:
            return self.root
        from moto.iam.models import iam_backends

        backend = iam_backends[self.account]["aws"]
        key = backend.access_keys.get(access_key or "")
        user = backend.users.get(getattr(key, "user_name", None) or "")
        if user is None or key not in user.access_keys or key.status != "Active":
            return None
        policies = [(name, document) for name, document in sorted(user.policies.items())]
        for policy in user.managed_policies.values():
            policies.append((policy.name, _default_version(policy)))
        return Identity(user.name, user.arn, tuple(policies))


def _default_version(policy) -> str:
    return next(v.document for v in policy.versions if v.is_default)


# --------------------------------------------------------------------------- evaluation


@functools.lru_cache(maxsize=4096)
def _wildcard(pattern: str, ignore_case: bool) -> re.Pattern:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(regex, re.IGNORECASE if ignore_case else 0)


def wildcard_match(pattern: str, value: str, ignore_case: bool = False) -> bool:
    return _wildcard(pattern, ignore_case).fullmatch(value) is not None


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def _condition_holds(operator: str, key: str, expected: list[str], context: dict[str, str]) -> bool:
    base = operator.split(":", 1)[-1]  # ForAnyValue:/ForAllValues: on single-valued keys act as the plain test
    if_exists = base.endswith("IfExists")
    base = base.removesuffix("IfExists")
    actual = context.get(key.lower())
    if base == "Null":
        return (actual is None) == (str(expected[0]).lower() == "true")
    if actual is None:
        return if_exists or base in _NEGATED
    tests = {
        "StringEquals": lambda e: actual == e,
        "StringEqualsIgnoreCase": lambda e: actual.lower() == e.lower(),
        "StringLike": lambda e: wildcard_match(e, actual),
        "ArnEquals": lambda e: actual == e,
        "ArnLike": lambda e: wildcard_match(e, actual),
        "Bool": lambda e: actual.lower() == str(e).lower(),
    }
    positive = base.replace("Not", "", 1) if base in _NEGATED else base
    if positive not in tests:
        raise UnsupportedPolicy(f"condition operator {operator} is not implemented by the local IAM checker")
    found = any(tests[positive](str(e)) for e in expected)
    return not found if base in _NEGATED else found


def _statement_applies(statement: dict, auth: Authorization, context: dict[str, str]) -> str | None:
    """The Resource pattern through which ``statement`` covers ``auth`` (None: it does not)."""
    if "Action" in statement:
        if not any(wildcard_match(a, auth.action, ignore_case=True) for a in _as_list(statement["Action"])):
            return None
    elif any(wildcard_match(a, auth.action, ignore_case=True) for a in _as_list(statement.get("NotAction", []))):
        return None
    if "Resource" in statement:
        pattern = next((r for r in _as_list(statement["Resource"]) if wildcard_match(r, auth.resource)), None)
    elif "NotResource" in statement:
        excluded = any(wildcard_match(r, auth.resource) for r in _as_list(statement["NotResource"]))
        pattern = None if excluded else f"NotResource {statement['NotResource']}"
    else:
        pattern = None
    if pattern is None:
        return None
    for operator, keys in statement.get("Condition", {}).items():
        for key, expected in keys.items():
            if not _condition_holds(operator, key, _as_list(expected), context):
                return None
    return pattern


def evaluate(documents: list[dict], auth: Authorization, context: dict[str, str]) -> Decision:
    """IAM's evaluation of identity-based policies: explicit Deny, else some Allow, else implicit deny."""
    context = {**{k.lower(): v for k, v in context.items()}, **{k.lower(): v for k, v in auth.context}}
    allowed: Decision | None = None
    for document in documents:
        for statement in _as_list(document.get("Statement", [])):
            pattern = _statement_applies(statement, auth, context)
            if pattern is None:
                continue
            if statement.get("Effect") == "Deny":
                return Decision(False, statement.get("Sid"), pattern, explicit_deny=True)
            if allowed is None and statement.get("Effect") == "Allow":
                allowed = Decision(True, statement.get("Sid"), pattern)
    return allowed or Decision(False)


def authorise(identity: Identity, call: Call, auth: Authorization) -> Decision:
    if identity.root or auth.action.lower() == "sts:getcalleridentity":  # AWS never refuses GetCallerIdentity
        return Decision(True, pattern="*" if identity.root else None)
    context = {
        "aws:PrincipalArn": identity.arn,
        "aws:PrincipalAccount": identity.arn.split(":")[4],
        "aws:username": identity.name,
        "aws:RequestedRegion": call.region,
        "aws:SecureTransport": "false",
    }
    return evaluate([json.loads(document) for _, document in identity.policies], auth, context)


def denial_message(identity: Identity, call: Call, auth: Authorization, decision: Decision) -> str:
    why = (
        f"with an explicit deny in statement {decision.statement}"
        if decision.explicit_deny
        else f"because no identity-based policy allows the {auth.action} action"
    )
    context = "".join(f", {k}={v!r}" for k, v in auth.context)
    return (
        f"User: {identity.arn} is not authorized to perform: {auth.action} on resource: {auth.resource} {why} "
        f"[local IAM: {call.service} {call.operation}{context}; {identity.describe_policies()}]"
    )


# --------------------------------------------------------------------------- recording


class Recorder:
    """Every authorisation, counted by identity, action and the policy statement and pattern that decided it."""

    def __init__(self, max_denials: int = 1000) -> None:
        self._lock = threading.Lock()
        self._counts: Counter = Counter()
        self._denials: deque = deque(maxlen=max_denials)
        self._denied = 0  # refusals ever recorded: each denial's "seq", so callers can ask for the new ones

    def record(self, identity: Identity, call: Call, auth: Authorization, decision: Decision, message: str) -> None:
        resource = decision.pattern if decision.allowed else auth.resource
        entry = (identity.name, auth.action, resource, decision.statement, decision.allowed)
        with self._lock:
            self._counts[entry] += 1
            if not decision.allowed:
                self._denied += 1
                self._denials.append(
                    {
                        "seq": self._denied,
                        "identity": identity.name,
                        "operation": f"{call.service}:{call.operation}",
                        "action": auth.action,
                        "resource": auth.resource,
                        "context": dict(auth.context),
                        "message": message,
                    }
                )
        if not decision.allowed:
            log.warning("DENIED %s", message)

    def calls(self, identity: str | None = None) -> list[dict]:
        with self._lock:
            items = sorted(self._counts.items(), key=lambda kv: tuple(str(x) for x in kv[0]))
        keys = ("identity", "action", "resource", "statement", "allowed")
        return [{**dict(zip(keys, k, strict=True)), "count": n} for k, n in items if identity in (None, k[0])]

    def denials(self, identity: str | None = None, since: int = 0) -> list[dict]:
        with self._lock:
            return [d for d in self._denials if identity in (None, d["identity"]) and d["seq"] > since]

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()
            self._denials.clear()
