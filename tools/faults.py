"""Make the local AWS misbehave on purpose: a client of the server's ``/_faults`` endpoint.

In tests::

    with faults.injected(endpoint, FaultRule("throttle", service="dynamodb", operation="TransactWriteItems",
                                             max_count=2), seed=7):
        ...
    faults.counts(endpoint)  # {"throttle": 2}

By hand, against a running local stack (``make run`` prints its endpoint)::

    python -m tools.faults --endpoint URL inject throttle --service s3 --operation PutObject --rate 0.1
    python -m tools.faults --endpoint URL show
    python -m tools.faults --endpoint URL clear

Kinds, matching and wire formats: tools/fault_injection.py.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class FaultRule:
    """One rule; every matcher is optional and takes ``*``/``?`` wildcards.

    :param kind: throttle, transaction_conflict, internal_error, unavailable, access_denied, reset or latency.
    :param service: signing name or IAM prefix: s3, dynamodb, sqs, glue, sns, cloudwatch.
    :param operation: API operation, e.g. ``PutObject``, ``TransactWriteItems``, ``ReceiveMessage``.
    :param resource: matched against the call's resource ARNs and, for S3, the object key and ``bucket/key``.
    :param identity: IAM user name of the caller (``*-glue-job``, ``*-mwaa-execution``) or ``root``.
    :param rate: probability that a matching call fails (seeded draws).
    :param max_count: stop after this many faults.
    :param latency_ms: the delay of a ``latency`` rule.
    """

    kind: str
    service: str | None = None
    operation: str | None = None
    resource: str | None = None
    identity: str | None = None
    rate: float = 1.0
    max_count: int | None = None
    latency_ms: int = 0
    id: str | None = None

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None and not (k == "latency_ms" and v == 0)}


class FaultEndpointError(RuntimeError):
    """The server refused a request to /_faults; the message is the server's."""


def _request(endpoint: str, method: str, payload: dict | None = None) -> dict:
    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(f"{endpoint}/_faults", data=data, method=method)  # noqa: S310 - the loopback emulator
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise FaultEndpointError(json.loads(exc.read()).get("error", str(exc))) from exc


def inject(endpoint: str, *rules: FaultRule, seed: int | None = None) -> list[str]:
    """Add rules (after the existing ones; the first matching rule fires); returns their ids."""
    payload: dict = {"rules": [rule.as_dict() for rule in rules]}
    if seed is not None:
        payload["seed"] = seed
    return _request(endpoint, "POST", payload)["ids"]


def clear(endpoint: str) -> None:
    """Remove every rule and reset the counts and the random draws."""
    _request(endpoint, "DELETE")


def state(endpoint: str) -> dict:
    """The rules (each with how often it fired), the counts by kind and the seed."""
    return _request(endpoint, "GET")


def counts(endpoint: str) -> dict[str, int]:
    """How many faults of each kind fired since the last ``clear``."""
    return state(endpoint)["counts"]


@contextlib.contextmanager
def injected(endpoint: str, *rules: FaultRule, seed: int | None = None) -> Iterator[list[str]]:
    clear(endpoint)
    try:
        yield inject(endpoint, *rules, seed=seed)
    finally:
        clear(endpoint)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", required=True, help="the local stack, e.g. http://127.0.0.1:5000")
    commands = parser.add_subparsers(dest="command", required=True)
    add = commands.add_parser("inject", help="add a rule")
    add.add_argument("kind")
    for name in ("service", "operation", "resource", "identity"):
        add.add_argument(f"--{name}")
    add.add_argument("--rate", type=float, default=1.0)
    add.add_argument("--max-count", type=int)
    add.add_argument("--latency-ms", type=int, default=0)
    add.add_argument("--seed", type=int)
    commands.add_parser("show", help="rules and counts")
    commands.add_parser("clear", help="remove every rule")
    args = parser.parse_args()
    if args.command == "inject":
        rule = FaultRule(
            args.kind,
            args.service,
            args.operation,
            args.resource,
            args.identity,
            args.rate,
            args.max_count,
            args.latency_ms,
        )
        print(json.dumps(inject(args.endpoint, rule, seed=args.seed)))
    elif args.command == "show":
        print(json.dumps(state(args.endpoint), indent=2))
    else:
        clear(args.endpoint)


if __name__ == "__main__":
    main()
