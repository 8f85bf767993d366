"""Intake: S3 object-created notifications from SQS into the ledger.

A message is deleted only after every file version it names is durably in the
ledger, so a crash at any point leads to redelivery, and redelivery is a no-op.
A message the ledger refuses is left in flight (SQS moves it to the DLQ after
its maxReceiveCount) without holding back the rest of its batch.
Logs carry counts, keys and reasons, never message bodies or file contents.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus

from ndjson_pipeline.landing import registration_for
from ndjson_pipeline.ledger import Ledger, RegisterOutcome, Registration
from ndjson_pipeline.settings import PipelineSettings

log = logging.getLogger(__name__)

SQS_MAX_BATCH = 10
# Messages registered together: about one ledger transaction's worth (100 actions: one a file, two a day).
REGISTER_MESSAGES = 90


class MalformedMessageError(ValueError):
    """An SQS message body is not an S3 event notification; the message says why."""


@dataclass(frozen=True)
class ObjectCreated:
    bucket: str
    key: str
    size: int
    etag: str
    event_time: str
    sequencer: str | None = None
    version_id: str | None = None


@dataclass(frozen=True)
class ParsedMessage:
    created: tuple[ObjectCreated, ...]
    test_event: bool = False
    ignored_events: int = 0


def parse_notification(body: str) -> ParsedMessage:
    """Decode one S3 notification body; object keys are URL-decoded (``+`` is a space)."""
    try:
        doc = json.loads(body)
    except (json.JSONDecodeError, TypeError) as exc:
        raise MalformedMessageError(f"body is not JSON ({exc.__class__.__name__})") from exc
    if not isinstance(doc, dict):
        raise MalformedMessageError("body is not a JSON object")
    if doc.get("Event") == "s3:TestEvent":
        return ParsedMessage(created=(), test_event=True)
    records = doc.get("Records")
    if not isinstance(records, list):
        raise MalformedMessageError("body has no Records list")
    created, ignored = [], 0
    for index, record in enumerate(records):
        try:
            if not str(record["eventName"]).startswith("ObjectCreated:"):
                ignored += 1
                continue
            obj = record["s3"]["object"]
            created.append(
                ObjectCreated(
                    bucket=str(record["s3"]["bucket"]["name"]),
                    key=unquote_plus(str(obj["key"])),
                    size=int(obj["size"]),
                    etag=str(obj["eTag"]).strip('"'),
                    event_time=str(record["eventTime"]),
                    sequencer=obj.get("sequencer"),
                    version_id=obj.get("versionId"),
                )
            )
        except KeyError as exc:  # one of the names looked up above
            raise MalformedMessageError(f"record {index} lacks a valid {exc}") from exc
        except (TypeError, ValueError) as exc:
            # Not the exception's text: int() quotes the value it refused, and a body is data, never logged.
            raise MalformedMessageError(
                f"record {index} has a value of the wrong type ({exc.__class__.__name__})"
            ) from exc
    return ParsedMessage(created=tuple(created), ignored_events=ignored)


@dataclass
class IntakeReport:
    messages: int = 0
    registered: int = 0
    already_known: int = 0
    quarantined: int = 0
    test_events: int = 0
    ignored_events: int = 0
    malformed: int = 0
    unstored: int = 0  # well-formed messages the ledger refused: left for the DLQ
    deleted: int = 0
    stopped_because: str = ""
    quarantine_reasons: Counter[str] = field(default_factory=Counter)
    days: set[str] = field(default_factory=set)  # days that received new pending files

    def as_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k not in ("quarantine_reasons", "days")}
        out["quarantine_reasons"] = dict(self.quarantine_reasons)
        out["days"] = sorted(self.days)
        return out


def drain_queue(
    sqs: Any,
    queue_url: str,
    ledger: Ledger,
    settings: PipelineSettings,
    *,
    max_messages: int | None = None,
    time_budget_seconds: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> IntakeReport:
    """Receive notifications until the queue is drained, ``max_messages`` were read or the budget ran out.

    Drained means a receive brought fewer messages than it asked for: what
    arrives after it waits for the next run (a minute later) instead of being
    picked up a message or two per receive, which would cost a receive, a ledger
    transaction and a delete for every one or two files.

    Received messages are held until ``REGISTER_MESSAGES`` have come or the
    receives stop (a short receive registers at once: no latency is added), then
    registered with as few ledger transactions as fit, and only the messages
    whose every file version is stored are deleted. Held messages are stored
    before any error leaves the run; had that failed too, they stay in flight
    and come back after their visibility timeout.
    Malformed bodies, and messages the ledger refuses (the batch is then
    registered message by message), are counted and left in flight, so SQS moves
    them to the DLQ after its maxReceiveCount; they never fail the batch.
    """
    max_messages = max_messages or settings.intake_max_messages
    budget = time_budget_seconds or settings.intake_time_budget_seconds
    deadline = clock() + budget
    report = IntakeReport()
    held: list[dict[str, Any]] = []
    try:
        while True:
            if report.messages >= max_messages:
                report.stopped_because = "message limit"
                break
            remaining = deadline - clock()
            if remaining <= 0:
                report.stopped_because = "time budget"
                break
            asked = min(SQS_MAX_BATCH, max_messages - report.messages)
            response = sqs.receive_message(
                QueueUrl=queue_url,
                MaxNumberOfMessages=asked,
                WaitTimeSeconds=max(0, min(settings.intake_wait_seconds, int(remaining))),
                MessageSystemAttributeNames=["ApproximateReceiveCount"],
            )
            messages = response.get("Messages", [])
            if not messages:
                report.stopped_because = "queue empty"
                break
            report.messages += len(messages)
            held += messages
            if len(held) >= REGISTER_MESSAGES:
                _store_and_delete(sqs, queue_url, ledger, settings, held, report)
                held = []
            if len(messages) < asked:
                report.stopped_because = "queue drained"
                break
    finally:
        if held:
            _store_and_delete(sqs, queue_url, ledger, settings, held, report)
    log.info(
        "intake: %d messages, %d registered, %d already known, %d quarantined, "
        "%d malformed and %d refused by the ledger (left for the DLQ), %d deleted; stopped: %s",
        report.messages,
        report.registered,
        report.already_known,
        report.quarantined,
        report.malformed,
        report.unstored,
        report.deleted,
        report.stopped_because,
        extra={
            "days": sorted(report.days),
            "messages": report.messages,
            "registered": report.registered,
            "already_known": report.already_known,
            "quarantined": report.quarantined,
            "malformed": report.malformed,
            "unstored": report.unstored,
            "deleted": report.deleted,
            "stopped_because": report.stopped_because,
        },
    )
    return report


def _store_and_delete(
    sqs: Any,
    queue_url: str,
    ledger: Ledger,
    settings: PipelineSettings,
    messages: list[dict[str, Any]],
    report: IntakeReport,
) -> None:
    deletable: list[tuple[dict[str, Any], list[str]]] = []  # message and the identities it names
    registrations: list[Registration] = []
    for message in messages:
        try:
            parsed = parse_notification(message["Body"])
        except MalformedMessageError as exc:
            report.malformed += 1
            log.warning(
                "malformed message %s (receive count %s): %s; left for the DLQ",
                message["MessageId"],
                message.get("Attributes", {}).get("ApproximateReceiveCount", "?"),
                exc,
                extra={"message_id": message["MessageId"]},
            )
            continue
        report.test_events += parsed.test_event
        report.ignored_events += parsed.ignored_events
        regs = [
            registration_for(
                c.bucket,
                c.key,
                c.size,
                c.etag,
                c.event_time,
                settings,
                sequencer=c.sequencer,
                version_id=c.version_id,
            )
            for c in parsed.created
        ]
        registrations.extend(regs)
        deletable.append((message, [r.file.identity for r in regs]))
    outcome = _register(ledger, registrations, deletable, report, settings)
    newly_pending = set(outcome.registered)
    report.days.update(r.day for r in registrations if r.file.identity in newly_pending)
    report.registered += len(outcome.registered)
    report.already_known += len(outcome.already_known)
    report.quarantined += len(outcome.quarantined)
    for reg in registrations:
        if reg.rejection and reg.file.identity in outcome.quarantined:
            report.quarantine_reasons[reg.rejection.split(":")[0]] += 1
            log.warning(
                "quarantined at intake: %s: %s",
                reg.file.uri,
                reg.rejection,
                extra={"day": reg.day, "uri": reg.file.uri},
            )
    stored = outcome.stored()
    ready = [m for m, identities in deletable if all(i in stored for i in identities)]
    report.deleted += _delete_messages(sqs, queue_url, ready)


def _register(
    ledger: Ledger,
    registrations: list[Registration],
    messages: list[tuple[dict[str, Any], list[str]]],
    report: IntakeReport,
    settings: PipelineSettings,
) -> RegisterOutcome:
    """Register a batch at once; if the ledger refuses it, message by message, leaving refused ones unstored."""
    try:
        return ledger.register(registrations)
    except Exception as exc:
        log.warning(
            "registering %d messages at once failed (%s); registering them one by one",
            len(messages),
            exc,
            extra={"messages": len(messages)},
        )
    by_identity = {r.file.identity: r for r in registrations}
    outcome = RegisterOutcome()
    for message, identities in messages:
        try:
            outcome.add(ledger.register([by_identity[i] for i in identities]))
        except Exception as exc:
            report.unstored += 1
            log.error(
                "message %s (receive count %s) could not be stored (%s: %s); left for the DLQ",
                message["MessageId"],
                message.get("Attributes", {}).get("ApproximateReceiveCount", "?"),
                exc.__class__.__name__,
                exc,
                extra={"message_id": message["MessageId"]},
            )
    return outcome


def _delete_messages(sqs: Any, queue_url: str, messages: list[dict[str, Any]]) -> int:
    deleted = 0
    for start in range(0, len(messages), SQS_MAX_BATCH):
        batch = messages[start : start + SQS_MAX_BATCH]
        response = sqs.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)],
        )
        for failure in response.get("Failed", []):
            # The record is stored; redelivery of this message will be a no-op.
            message_id = batch[int(failure["Id"])]["MessageId"]
            log.warning(
                "could not delete message %s: %s", message_id, failure.get("Code"), extra={"message_id": message_id}
            )
        deleted += len(response.get("Successful", []))
    return deleted
